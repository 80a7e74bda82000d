"""The on-disk layout of a genrec dataset: the files ``DatasetDict.push_to_hub`` writes, written locally.

A genrec dataset folder is, byte for byte in structure, what ``push_to_hub(repo, config_name=...)``
leaves in a Hub dataset repo, so the folder loads with ``datasets.load_dataset(folder, config)`` and
uploads as is (``HfApi().upload_folder(repo_type="dataset")``):

    README.md                                   dataset card: YAML with ``configs:`` + ``dataset_info:``
    <config>/<split>-00000-of-00001.parquet     parquet shards, one folder per config

The YAML is produced by the same classes push_to_hub uses (``datasets.utils.metadata.MetadataConfigs``,
``datasets.DatasetInfosDict`` / ``DatasetInfo`` / ``SplitInfo`` and ``huggingface_hub.DatasetCard``), with
the same data-file patterns (``<config>/<split>-*``), shard names and shard-size rule (``max_shard_size``,
default ``datasets.config.MAX_SHARD_SIZE``). Writing a config replaces that config only (its folder and
its YAML entries); other configs and the card body are kept, as a second ``push_to_hub`` would.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, DatasetInfo, SplitDict, SplitInfo
from datasets import config as ds_config
from datasets.arrow_writer import get_writer_batch_size_from_data_size, get_writer_batch_size_from_features
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, DatasetCardData

logger = logging.getLogger(__name__)

CARD_FILENAME = "README.md"
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # the split-name rule of push_to_hub


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh hidden folder in ``parent`` (same filesystem, so it can be renamed into place atomically).

    Unlike ``tempfile.mkdtemp`` it gets the usual permissions (umask), as the final folder should.
    """
    for _ in range(100):
        candidate = parent / f".{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary folder in {parent}")


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def remove_stale_temp_dirs(target: Path) -> list[Path]:
    """Clean what a killed writer of ``target`` left beside it, before writing it again; returns what it removed.

    :func:`make_temp_dir` folders of ``target`` (``.NAME.tmp-PID-*``, the staging of a new ``target``; and
    ``.NAME.old-PID-*``, the previous ``target`` set aside for the rename) whose process is gone are removed,
    except that an ``.old`` folder still holding the previous ``target`` while ``target`` itself is missing (the
    process was killed between its two renames) is put back first. Folders of a live process (another writer
    right now, on this host) are left alone.
    """
    target = Path(target)
    removed = []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}$")
    if not target.parent.is_dir():
        return removed
    for candidate in sorted(target.parent.iterdir()):
        match = pattern.match(candidate.name)
        if not match or not candidate.is_dir() or not _process_gone(int(match.group(2))):
            continue
        previous = candidate / target.name
        if match.group(1) == "old" and previous.exists() and not target.exists():
            logger.warning("putting back %s, which an interrupted write had set aside in %s", target, candidate)
            os.replace(previous, target)
        logger.warning("removing %s, left by an interrupted write of %s", candidate, target)
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def read_card(folder: str | Path) -> DatasetCard:
    """The folder's dataset card (README.md); an empty card when there is none yet."""
    path = Path(folder) / CARD_FILENAME
    if not path.is_file():
        return DatasetCard("---\n{}\n---\n")
    return DatasetCard(path.read_text(encoding="utf-8"))


def _write_card(folder: Path, data: DatasetCardData, body: str) -> None:
    """Write README.md (YAML front matter + body) atomically."""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
    tmp = folder / f".{CARD_FILENAME}.tmp"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, folder / CARD_FILENAME)


def config_names(folder: str | Path) -> list[str]:
    """Names of the configs the folder's card declares (sorted, as ``MetadataConfigs`` writes them)."""
    return list(MetadataConfigs.from_dataset_card_data(read_card(folder).data))


def default_config_name(folder: str | Path) -> str | None:
    """The config ``load_dataset(folder)`` loads when no config name is given (None when ambiguous)."""
    return MetadataConfigs.from_dataset_card_data(read_card(folder).data).get_default_config_name()


def update_card(folder: str | Path, *, body: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
    """Replace the card's markdown body and/or set YAML fields (e.g. ``pretty_name``, ``tags``).

    ``configs`` and ``dataset_info`` belong to :func:`write_config` and cannot be set here.
    """
    folder = Path(folder)
    card = read_card(folder)
    data = card.data
    for key, value in (metadata or {}).items():
        if key in (MetadataConfigs.FIELD_NAME, "dataset_info"):
            raise ValueError(f"card field {key!r} is written by write_config, not update_card")
        data[key] = value
    _write_card(folder, data, card.text if body is None else body)


def _num_bytes(dataset: Dataset) -> int:
    """Approximate in-memory size of a split (what push_to_hub records as ``num_bytes``)."""
    table_rows = dataset.data.num_rows
    if table_rows == 0:
        return 0
    return int(dataset.data.nbytes * len(dataset) / table_rows)


def _write_shards(
    dataset: Dataset, directory: Path, split: str, max_shard_size: int
) -> tuple[SplitInfo, int]:
    """Write one split as ``<split>-XXXXX-of-YYYYY.parquet`` shards; returns its SplitInfo and file bytes."""
    nbytes = _num_bytes(dataset)
    num_shards = int(nbytes / max_shard_size) + 1
    batch_size = get_writer_batch_size_from_features(dataset.features) or get_writer_batch_size_from_data_size(
        len(dataset), nbytes
    )
    written = 0
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        path = directory / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.to_parquet(str(path), batch_size=batch_size)
        written += path.stat().st_size
    return SplitInfo(name=split, num_bytes=nbytes, num_examples=len(dataset)), written


def write_config(
    folder: str | Path,
    config_name: str,
    data: Dataset | DatasetDict | Mapping[str, Dataset],
    *,
    split: str = "train",
    default: bool = False,
    max_shard_size: int | str | None = None,
) -> DatasetInfo:
    """Write (or replace) one config of a dataset folder: its parquet shards and its card YAML entries.

    ``data`` is a ``DatasetDict`` (one entry per split) or a single ``Dataset`` stored as ``split``.
    ``default=True`` makes it the config ``load_dataset(folder)`` picks (``default: true`` in its YAML,
    removed from the other configs), like ``push_to_hub(..., set_default=True)``. The new shards are
    written beside the old ones first and swapped in, so a failure leaves the previous config intact.
    Returns the ``DatasetInfo`` recorded in the card.
    """
    folder = Path(folder)
    if not isinstance(config_name, str) or not _CONFIG_NAME.match(config_name) or config_name == "data":
        raise ValueError(
            f"config name {config_name!r} is not usable: use letters, digits, '_', '-', '.', not 'data' "
            "(the name becomes the folder of its parquet files)"
        )
    splits = {split: data} if isinstance(data, Dataset) else dict(data)
    if not splits:
        raise ValueError(f"config {config_name!r}: nothing to write (no splits)")
    for name, dataset in splits.items():
        if not isinstance(dataset, Dataset):
            raise TypeError(f"config {config_name!r}, split {name!r}: expected a datasets.Dataset, got {type(dataset)}")
        if not _SPLIT_NAME.match(name):
            raise ValueError(f"config {config_name!r}: split name {name!r} must match {_SPLIT_NAME.pattern}")
    features = next(iter(splits.values())).features
    for name, dataset in splits.items():
        if dataset.features != features:
            raise ValueError(
                f"config {config_name!r}: split {name!r} has features {dataset.features}, "
                f"other splits have {features}; all splits of a config share one schema"
            )
    limit = convert_file_size_to_int(max_shard_size or ds_config.MAX_SHARD_SIZE)
    folder.mkdir(parents=True, exist_ok=True)

    staging = make_temp_dir(folder, f"{config_name}.tmp")
    infos = []
    written = 0
    try:
        for name, dataset in splits.items():
            info, size = _write_shards(dataset, staging, name, limit)
            infos.append(info)
            written += size
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = folder / config_name
    previous = None
    if target.exists():
        previous = make_temp_dir(folder, f"{config_name}.old")
        os.replace(target, previous / config_name)
    try:
        os.replace(staging, target)
    except BaseException:
        if previous is not None:
            os.replace(previous / config_name, target)
            shutil.rmtree(previous, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)

    info = DatasetInfo(config_name=config_name, features=features, splits=SplitDict(), download_size=0, dataset_size=0)
    for split_info in infos:
        info.splits.add(split_info)
        info.dataset_size += split_info.num_bytes
    info.download_size = written
    info.size_in_bytes = info.download_size + info.dataset_size

    card = read_card(folder)
    card_data = card.data
    metadata: dict = {"data_files": [{"split": s.name, "path": f"{config_name}/{s.name}-*"} for s in infos]}
    to_dump = {config_name: metadata}
    existing = MetadataConfigs.from_dataset_card_data(card_data)
    if default:
        metadata["default"] = True
        for other, other_metadata in existing.items():
            if other != config_name and other_metadata.pop("default", False):
                to_dump[other] = other_metadata
    elif existing.get(config_name, {}).get("default"):
        metadata["default"] = True  # replacing the default config keeps it the default
    DatasetInfosDict({config_name: info}).to_dataset_card_data(card_data)
    MetadataConfigs(to_dump).to_dataset_card_data(card_data)
    _write_card(folder, card_data, card.text)
    logger.info("wrote config %r (%s) to %s", config_name, ", ".join(f"{s.name}: {s.num_examples}" for s in infos), folder)
    return info
