"""``genrec prepare``: raw interactions + item text -> a dataset folder in the Hub layout, and its helpers.

A prepared folder is exactly what ``DatasetDict.push_to_hub`` writes (see :mod:`.hub_layout`):

    README.md                      dataset card (YAML ``configs:`` + ``dataset_info:``; body: source,
                                   counts, split protocol, max_history, every skip with its count)
    sequences/{train,validation,test}-00000-of-00001.parquet   user_id, item_ids, timestamps
    items/train-00000-of-00001.parquet                        item_id + text fields
    users/train-...parquet         (Amazon sources only) user_id, original_user_id
    genrec_dataset.json            the report as plain json (counts, skips, source, max_history)

``sequences`` is the default config. It loads with ``datasets.load_dataset(folder, "sequences")`` and
``load_dataset(folder, "items")`` (or :func:`load_genrec_dataset`) and uploads as is
(:func:`push_dataset_folder`). Each row of ``sequences`` is one example whose LAST ``item_ids`` element
is the target (see :mod:`.splits`). The items config holds exactly the items that occur in the
sequences: items of the item file that no kept user interacted with are dropped and counted, items
that occur without a metadata/item line are kept with empty text and counted (for ``hub`` the item
table is kept as given and such items are only counted / added).

The folder is written to a temporary sibling and renamed into place, so an interrupted run leaves any
previous folder untouched; the card and the json hold no timings or absolute paths, so the same inputs
give the same files.

Sources: ``ml-100k`` (:mod:`.movielens`), ``s3rec`` (:mod:`.s3rec`), ``amazon2014`` / ``amazon2023``
(:mod:`.amazon`; download the files from the McAuley lab pages: 2014
https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html, 2023 https://amazon-reviews-2023.github.io/),
and ``hub`` (any dataset already in this layout, by Hub repo id or folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, concatenate_datasets

from . import hub_layout
from .provenance import data_terms, dataset_display_name
from .splits import (
    DEFAULT_MAX_HISTORY,
    MIN_INTERACTIONS,
    SEQUENCE_SCHEMA,
    SPLITS,
    SourceData,
    arrow_column,
    build_splits,
    check_on_error,
    empty_value,
    sequence_features,
    truncate_history,
)

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, CommitOperationAdd

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")
REPORT_FILENAME = "genrec_dataset.json"
REPORT_FORMAT = "genrec.dataset_report"
SEQUENCES_CONFIG = "sequences"
ITEMS_CONFIG = "items"


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` wrote: counts, every skip with its count, source and settings.

    ``skipped`` holds what was removed (by reason), ``counts`` other numbers worth knowing (input
    sizes, users re-sorted, items kept without a title or metadata, ...). ``seconds`` and ``out_dir``
    are not written to disk (the files stay identical across runs).
    """

    source: str
    max_history: int
    kcore: int | None
    users: int
    items: int
    interactions: int
    rows: dict[str, int]
    skipped: dict[str, int]
    counts: dict[str, int]
    configs: list[str]
    files: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    out_dir: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The json written to ``genrec_dataset.json`` (no timings, no absolute paths)."""
        return {
            "format": REPORT_FORMAT,
            "source": self.source,
            "max_history": self.max_history,
            "kcore": self.kcore,
            "users": self.users,
            "items": self.items,
            "interactions": self.interactions,
            "rows": dict(self.rows),
            "skipped": dict(self.skipped),
            "counts": dict(self.counts),
            "configs": list(self.configs),
            "files": [dict(f) for f in self.files],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        rows = ", ".join(f"{split} {n:,}" for split, n in self.rows.items())
        lines = [
            f"{self.source}: {self.users:,} users, {self.items:,} items, {self.interactions:,} interactions; "
            f"rows {rows}; max_history {self.max_history}"
            + (f"; {self.kcore}-core" if self.kcore else "")
            + (f" ({self.seconds:.1f} s)" if self.seconds else ""),
        ]
        nonzero = {k: v for k, v in self.skipped.items() if v}
        lines.append("skipped: " + (", ".join(f"{k} {v:,}" for k, v in nonzero.items()) if nonzero else "nothing"))
        notable = {k: v for k, v in self.counts.items() if v}
        if notable:
            lines.append("counts: " + ", ".join(f"{k} {v:,}" for k, v in notable.items()))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Reading and validating datasets in genrec's layout
# --------------------------------------------------------------------------------------------------


def _is_string(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_list_of(arrow_type: pa.DataType, check: Any) -> bool:
    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)) and check(arrow_type.value_type)


def validate_sequences(sequences: DatasetDict, where: str) -> DatasetDict:
    """Check the ``sequences`` config (splits, columns, types); returns it cast to the exact genrec schema.

    Raises ``ValueError`` naming the dataset, the split and the missing or mistyped column.
    """
    expected = "user_id: string, item_ids: list[string], timestamps: list[int64]"
    missing_splits = [split for split in SPLITS if split not in sequences]
    if missing_splits:
        raise ValueError(
            f"{where}: config 'sequences' lacks the split(s) {missing_splits} (has {list(sequences)}); "
            f"a genrec dataset has splits {list(SPLITS)}"
        )
    checks = {
        "user_id": _is_string,
        "item_ids": lambda t: _is_list_of(t, _is_string),
        "timestamps": lambda t: _is_list_of(t, pa.types.is_integer),
    }
    out = {}
    for split in SPLITS:
        dataset = sequences[split]
        schema = dataset.features.arrow_schema
        for column, check in checks.items():
            if column not in schema.names:
                raise ValueError(
                    f"{where}: config 'sequences', split '{split}' has no column '{column}' "
                    f"(columns: {schema.names}; expected {expected})"
                )
            if not check(schema.field(column).type):
                raise ValueError(
                    f"{where}: config 'sequences', split '{split}', column '{column}' has type "
                    f"{schema.field(column).type}; expected {expected}"
                )
        extra = [name for name in schema.names if name not in checks]
        if extra:
            logger.info("%s: sequences/%s has extra columns %s; they are dropped", where, split, extra)
            dataset = dataset.select_columns(SEQUENCE_SCHEMA.names)
        if dataset.features.arrow_schema != SEQUENCE_SCHEMA or dataset.column_names != SEQUENCE_SCHEMA.names:
            dataset = dataset.select_columns(SEQUENCE_SCHEMA.names).cast(sequence_features())
        items, times = arrow_column(dataset, "item_ids"), arrow_column(dataset, "timestamps")
        for column, values in (("item_ids", items), ("timestamps", times)):
            if values.null_count:
                raise ValueError(f"{where}: config 'sequences', split '{split}': column '{column}' has null rows")
        if not pc.all(pc.equal(pc.list_value_length(items), pc.list_value_length(times))).as_py():
            raise ValueError(
                f"{where}: config 'sequences', split '{split}': item_ids and timestamps differ in length in some rows"
            )
        out[split] = dataset
    return DatasetDict(out)


def validate_items(items: Dataset, where: str) -> Dataset:
    """Check the ``items`` config (an ``item_id`` string column, unique ids); returns it unchanged."""
    schema = items.features.arrow_schema
    if "item_id" not in schema.names:
        raise ValueError(f"{where}: config 'items' has no column 'item_id' (columns: {schema.names})")
    if not _is_string(schema.field("item_id").type):
        raise ValueError(
            f"{where}: config 'items', column 'item_id' has type {schema.field('item_id').type}; item ids are strings"
        )
    ids = arrow_column(items, "item_id")
    if ids.null_count:
        raise ValueError(f"{where}: config 'items' has rows without an item_id")
    if len(pc.unique(ids)) != len(ids):
        counts = pc.value_counts(ids)
        repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:5]
        raise ValueError(f"{where}: config 'items' lists some item ids more than once, e.g. {repeated}")
    return items


def _available_configs(name_or_path: str, revision: str | None = None) -> list[str]:
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        if not (folder / hub_layout.CARD_FILENAME).is_file():
            raise ValueError(
                f"{folder} is not a genrec dataset folder: it has no {hub_layout.CARD_FILENAME} declaring the "
                "configs 'sequences' and 'items' (build one with `genrec prepare`)"
            )
        return hub_layout.config_names(folder)
    from datasets import get_dataset_config_names

    return list(get_dataset_config_names(name_or_path, revision=revision))


def load_genrec_dataset(
    name_or_path: str | Path, *, cache_dir: str | Path | None = None, revision: str | None = None
) -> tuple[DatasetDict, Dataset]:
    """Load and validate a genrec dataset (local folder or Hub repo id): ``(sequences, items)``.

    ``revision``: branch, tag or commit of a Hub repo (pin it for reproducible runs); ignored for folders.

    ``sequences`` is the train/validation/test ``DatasetDict``, ``items`` the ``train`` split of the
    ``items`` config. A missing config, split or column raises ``ValueError`` naming it.
    """
    from datasets import load_dataset

    source = str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().is_dir() else str(name_or_path)
    is_folder = Path(name_or_path).expanduser().is_dir()
    configs = _available_configs(source, None if is_folder else revision)
    for needed in (SEQUENCES_CONFIG, ITEMS_CONFIG):
        if needed not in configs:
            raise ValueError(
                f"{source}: no config '{needed}' (configs: {configs}); a genrec dataset has the configs "
                f"'{SEQUENCES_CONFIG}' (splits {list(SPLITS)}) and '{ITEMS_CONFIG}'"
            )
    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    if revision is not None and not is_folder:
        kwargs["revision"] = revision
    sequences = validate_sequences(load_dataset(source, SEQUENCES_CONFIG, **kwargs), source)
    items_dict = load_dataset(source, ITEMS_CONFIG, **kwargs)
    if "train" not in items_dict:
        raise ValueError(f"{source}: config 'items' has no split 'train' (splits: {list(items_dict)})")
    return sequences, validate_items(items_dict["train"], source)


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _used_items(sequences: DatasetDict) -> pa.Array:
    """Distinct item ids of all rows, in order of first appearance (train, validation, test)."""
    chunks = [arrow_column(sequences[split], "item_ids").combine_chunks().flatten() for split in SPLITS]
    return pc.unique(pa.concat_arrays([c for c in chunks if len(c)] or [pa.array([], pa.string())]))


def _empty_items(features: Any, item_ids: list[str]) -> Dataset:
    """Rows with empty text for items that have interactions but no item/metadata line."""
    rows = {
        name: (item_ids if name == "item_id" else [empty_value(feature) for _ in item_ids])
        for name, feature in features.items()
    }
    return Dataset.from_dict(rows, features=features)


def align_items(items: Dataset, used: pa.Array, *, drop_unused: bool = True) -> tuple[Dataset, dict[str, int]]:
    """Make the item table cover the items of the sequences; returns it and the counts of what changed.

    Items without interactions are dropped (``drop_unused``) or kept; items with interactions but no
    row are appended with empty text. Both are counted, never silent.
    """
    ids = arrow_column(items, "item_id")
    in_use = pc.is_in(ids, value_set=used)
    unused = int(len(ids) - pc.sum(in_use).as_py()) if len(ids) else 0
    if drop_unused and unused:
        items = items.select([i for i, flag in enumerate(in_use.to_pylist()) if flag])
    missing_mask = pc.invert(pc.is_in(used, value_set=ids))
    missing = used.filter(missing_mask).to_pylist()
    if missing:
        logger.warning("%d items occur in the sequences without an item row; added with empty text", len(missing))
        items = concatenate_datasets([items.flatten_indices(), _empty_items(items.features, missing)])
    elif drop_unused and unused:
        items = items.flatten_indices()
    counts = {"items_without_metadata": len(missing)}
    if drop_unused:
        counts["items_without_interactions_dropped"] = unused
    else:
        counts["items_without_interactions"] = unused
    return items, counts


def _check_items_match(items: Dataset, used: pa.Array, files: list[Path]) -> None:
    """Refuse item metadata that describes none of the sequences' items (ids spelled another way, or the
    files of two datasets): that would silently prepare a dataset whose every item has empty text."""
    if not len(items) or not len(used):
        return
    ids = arrow_column(items, "item_id")
    if pc.any(pc.is_in(used, value_set=ids)).as_py():
        return
    names = ", ".join(f.name for f in files) or "the input"
    raise ValueError(
        f"{names}: none of the {len(used)} items of the interactions has an item row (item rows: {len(items)}); "
        f"the ids do not match, e.g. interactions use {used[:3].to_pylist()} and the item rows "
        f"{ids[:3].to_pylist()}"
    )


def _file_record(path: Path) -> dict[str, Any]:
    """Name, size and sha256 of one input file (provenance for the card and the json)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _dataset_title(source: str, files: list[Path], path: str | Path | None) -> str:
    if source == "ml-100k":
        return "MovieLens-100K"
    if source == "s3rec" and path is not None:
        return f"{Path(path).name} (S3-Rec format)"
    if source in ("amazon2014", "amazon2023") and files:
        match = re.match(r"^(?:reviews_)?(.+?)(?:_5)?\.jsonl?(?:\.gz)?$", files[0].name)
        category = match.group(1) if match else files[0].name
        return f"Amazon {source[-4:]} {category.replace('_', ' ')}"
    return str(path)


def _card_body(title: str, report: PrepareReport, item_columns: list[str], source_label: str) -> str:
    """The markdown body of the dataset card (what the data is, how it was split, what was skipped)."""
    from genrec._version import __version__

    rows = report.rows
    n = lambda value: f"{value:,}"  # noqa: E731
    lines = [
        f"# {title} — genrec dataset",
        "",
        f"Built by `genrec prepare {report.source}` (genrec {__version__}) from {source_label}.",
        "",
        "| | |",
        "|---|---|",
        f"| users | {n(report.users)} |",
        f"| items | {n(report.items)} |",
        f"| interactions | {n(report.interactions)} |",
        f"| rows (train / validation / test) | {n(rows['train'])} / {n(rows['validation'])} / {n(rows['test'])} |",
        f"| max history | {report.max_history} |",
    ]
    if report.kcore:
        lines.append(f"| k-core | {report.kcore} |")
    lines += [
        "",
        "## Configs",
        "",
        "- `sequences` (default): `user_id` (string), `item_ids` (list of strings), `timestamps` (list of int64); "
        "splits `train`, `validation`, `test`. Each row is one example: the **last** element of `item_ids` is "
        "the target, the elements before it are the history (oldest first); `timestamps` is aligned with "
        "`item_ids`.",
        f"- `items` (split `train`): {', '.join(f'`{c}`' for c in item_columns)}.",
    ]
    for extra in report.configs:
        if extra == "users":
            lines.append("- `users` (split `train`): `user_id` and the `original_user_id` of the source files.")
        elif extra not in (SEQUENCES_CONFIG, ITEMS_CONFIG):
            lines.append(f"- `{extra}`")
    lines += [
        "",
        "## Split protocol",
        "",
        "Leave-one-out per user, in chronological order (the protocol of the UNGER, TIGER and S3-Rec papers): "
        "the last interaction is the test target, the second-to-last the validation target, and every "
        "earlier interaction after the first is the target of one training example. A user with n "
        f"interactions gives n - 3 train rows, 1 validation row and 1 test row; users with fewer than "
        f"{MIN_INTERACTIONS} interactions are skipped. Histories keep the {report.max_history} most recent "
        f"items (a row holds at most {report.max_history + 1} items). Interactions are sorted per user with a "
        "stable sort (ties keep the source order); a repeated item at the same time as the interaction "
        "before it is dropped as a duplicate.",
        "",
        "## Source",
        "",
    ]
    lines += [f"- {note}" for note in report.notes]
    for record in report.files:
        lines.append(f"- `{record['name']}`: {n(record['bytes'])} bytes, sha256 `{record['sha256']}`")
    lines += ["", "## Skipped (removed, by reason)", ""]
    lines += [f"- {key}: {n(value)}" for key, value in report.skipped.items()] or ["- nothing"]
    lines += ["", "## Other counts", ""]
    lines += [f"- {key}: {n(value)}" for key, value in report.counts.items()] or ["- none"]
    terms = data_terms(report.source)
    lines += ["", "## Licence and provenance", "", terms.text, ""]
    if terms.license_link:
        lines += [f"Terms: <{terms.license_link}>.", ""]
    if not terms.redistributable:
        lines += [
            "This folder is a derived copy for local use. Keep any Hub copy private (or do not upload it) "
            "unless the owner's terms allow publishing it.",
            "",
        ]
    if terms.citation:
        lines += ["```bibtex", terms.citation, "```", ""]
    lines += [
        "## Files",
        "",
        "- `sequences/`, `items/` (and other configs): parquet shards, described by this card's YAML.",
        "- `prepare_report.json`: the counts above, machine-readable.",
        "- `embeddings/` (created by `genrec embed` / `genrec run`, if present): a local cache of the items' "
        "semantic embeddings (safetensors, keyed by encoder and item texts). `genrec push --dataset` leaves it "
        "out unless `--with-embeddings`.",
        "",
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'sequences = load_dataset("<this folder or repo id>", "sequences")  # train / validation / test',
        'items = load_dataset("<this folder or repo id>", "items", split="train")',
        "```",
        "",
        "Pass `revision=` (a tag or commit) to pin a version; `genrec.data_scripts.prepare.load_genrec_dataset("
        "repo_id, revision=...)` loads and validates both configs.",
        "",
    ]
    return "\n".join(lines)


def _read_source(
    source: str,
    *,
    path: str | Path | None,
    reviews: str | Path | None,
    meta: str | Path | None,
    kcore: int,
    on_error: str,
) -> SourceData:
    if source == "ml-100k":
        from .movielens import read_ml100k

        return read_ml100k(path, on_error=on_error)
    if source == "s3rec":
        if path is None:
            raise ValueError("source 's3rec' needs path=<folder with sequences.txt and items.jsonl> (CLI: --path)")
        from .s3rec import read_s3rec

        return read_s3rec(path, on_error=on_error)
    from .amazon import DOWNLOAD_2014, DOWNLOAD_2023, read_amazon

    release = source[-4:]
    if reviews is None or meta is None:
        names = (
            "reviews_<Category>_5.json.gz and meta_<Category>.json.gz"
            if release == "2014"
            else "<Category>.jsonl(.gz) and meta_<Category>.jsonl(.gz)"
        )
        raise ValueError(
            f"source '{source}' needs reviews= and meta= (CLI: --reviews, --meta): {names}, downloaded from "
            f"{DOWNLOAD_2014 if release == '2014' else DOWNLOAD_2023}"
        )
    return read_amazon(reviews, meta, release=release, kcore=kcore, on_error=on_error)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another output folder"
        )


def _install(staging: Path, out_dir: Path) -> None:
    """Move the finished staging folder to ``out_dir`` (replacing an old one only after success)."""
    old = None
    if out_dir.exists():
        old = hub_layout.make_temp_dir(out_dir.parent, f"{out_dir.name}.old")
        try:
            os.replace(out_dir, old / out_dir.name)
        except BaseException:
            shutil.rmtree(old, ignore_errors=True)  # nothing moved: leave no empty .old-* folder behind
            raise
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if old is not None:  # put the previous folder back where it was
            os.replace(old / out_dir.name, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_dataset(
    source: str,
    out_dir: str | Path,
    *,
    path: str | Path | None = None,
    reviews: str | Path | None = None,
    meta: str | Path | None = None,
    max_history: int = DEFAULT_MAX_HISTORY,
    kcore: int = 5,
    overwrite: bool = False,
    on_error: str = "raise",
    revision: str | None = None,
) -> PrepareReport:
    """Build a genrec dataset folder from ``source`` into ``out_dir``; returns the report (also saved).

    ``source``: ``ml-100k`` (``path`` optional: a folder with ml-100k.inter/.item, default the recbole
    wheel), ``s3rec`` (``path``: sequences.txt + items.jsonl), ``amazon2014`` / ``amazon2023``
    (``reviews`` + ``meta`` files; ``kcore`` applies to these only), ``hub`` (``path``: a repo id or
    folder already in genrec's layout; rows are re-truncated to ``max_history``). A non-empty
    ``out_dir`` is refused unless ``overwrite``. ``on_error``: ``"raise"`` stops at the first malformed
    input line (file and line named), ``"skip"`` skips and counts such lines. ``revision``: the branch, tag
    or commit of a Hub ``path`` (source ``hub``).
    """
    start = time.perf_counter()
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    check_on_error(on_error)
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be a positive int, got {max_history!r}")
    if isinstance(kcore, bool) or not isinstance(kcore, int) or kcore < 1:
        raise ValueError(f"kcore must be a positive int (1 keeps everything), got {kcore!r}")
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir, overwrite)

    if source == "hub":
        if path is None:
            raise ValueError("source 'hub' needs path=<Hub dataset repo id or folder in genrec's layout> (CLI: --path)")
        report, configs, title, label = _from_hub(str(path), max_history, revision)
    else:
        data = _read_source(source, path=path, reviews=reviews, meta=meta, kcore=kcore, on_error=on_error)
        sequences, split_report = build_splits(data.sequences, max_history=max_history)
        used = _used_items(sequences)
        _check_items_match(data.items, used, data.files)
        items, item_counts = align_items(data.items, used)
        configs = {SEQUENCES_CONFIG: sequences, ITEMS_CONFIG: items}
        kept_users = arrow_column(sequences["test"], "user_id")
        for name, extra in data.extra_configs.items():
            if "user_id" in extra.column_names:
                mask = pc.is_in(arrow_column(extra, "user_id"), value_set=kept_users).to_pylist()
                extra = extra.select([i for i, flag in enumerate(mask) if flag]).flatten_indices()
            configs[name] = extra
        skipped = {**data.skipped, **split_report.skipped}
        counts = {
            "input_users": split_report.input_users,
            "input_interactions": split_report.input_interactions,
            "resorted_users": split_report.resorted_users,
            "truncated_rows": split_report.truncated_rows,
        }
        for key, value in data.counts.items():  # the reader's counts add to the split's (e.g. resorted_users)
            counts[key] = counts.get(key, 0) + value
        for key, value in item_counts.items():
            target = skipped if key.endswith("_dropped") else counts
            target[key] = target.get(key, 0) + value
        report = PrepareReport(
            source=source,
            max_history=max_history,
            kcore=kcore if source.startswith("amazon") else None,
            users=split_report.users,
            items=len(items),
            interactions=split_report.interactions,
            rows=dict(split_report.rows),
            skipped=skipped,
            counts=counts,
            configs=[],
            files=[_file_record(f) for f in data.files],
            notes=list(data.notes),
        )
        title = _dataset_title(source, data.files, path)
        label = ", ".join(f"`{f.name}`" for f in data.files)
    report.configs = sorted(configs)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = hub_layout.make_temp_dir(out_dir.parent, f"{out_dir.name}.tmp")
    try:
        for name, data_ in configs.items():
            hub_layout.write_config(staging, name, data_, default=(name == SEQUENCES_CONFIG))
        item_columns = configs[ITEMS_CONFIG].column_names
        hub_layout.update_card(
            staging,
            body=_card_body(title, report, item_columns, label),
            metadata={
                "pretty_name": title,
                "tags": ["recommendation", "sequential-recommendation", "genrec"],
                **_license_metadata(report.source),
            },
        )
        (staging / REPORT_FILENAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        _check_out_dir(out_dir, overwrite)  # nothing appeared there meanwhile
        _install(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.out_dir = str(out_dir)
    report.seconds = time.perf_counter() - start
    logger.info("prepared %s in %.1f s", out_dir, report.seconds)
    return report


def _license_metadata(source: str) -> dict[str, Any]:
    """The card's YAML licence fields for a source (``license: other`` + name and link of the owner's terms)."""
    terms = data_terms(source)
    meta: dict[str, Any] = {"license": terms.license}
    if terms.license == "other" and terms.license_name:
        meta["license_name"] = terms.license_name
    if terms.license == "other" and terms.license_link:
        meta["license_link"] = terms.license_link
    return meta


def _from_hub(
    name_or_path: str, max_history: int, revision: str | None = None
) -> tuple[PrepareReport, dict[str, Any], str, str]:
    """Validate a dataset in genrec's layout and lay it out again (re-truncated to ``max_history``)."""
    sequences, items = load_genrec_dataset(name_or_path, revision=revision)
    cut = 0
    splits = {}
    for split in SPLITS:
        splits[split], n_cut = truncate_history(sequences[split], max_history)
        cut += n_cut
    sequences = DatasetDict(splits)
    items, item_counts = align_items(items, _used_items(sequences), drop_unused=False)
    users = len(pc.unique(arrow_column(sequences["test"], "user_id")))
    total_rows = sum(len(sequences[split]) for split in SPLITS)
    report = PrepareReport(
        source="hub",
        max_history=max_history,
        kcore=None,
        users=users,
        items=len(items),
        interactions=total_rows + users,
        rows={split: len(sequences[split]) for split in SPLITS},
        skipped={},
        counts={"rows_truncated_to_max_history": cut, **item_counts},
        configs=[],
        files=[],
        notes=[
            f"Copied from `{dataset_display_name(name_or_path)}`{f' at revision `{revision}`' if revision else ''} "
            "(already in genrec's layout; its own card states its terms). Interactions are derived from the "
            "protocol: rows + users (a user with n interactions has n - 1 rows).",
        ],
    )
    name = dataset_display_name(name_or_path)
    return report, {SEQUENCES_CONFIG: sequences, ITEMS_CONFIG: items}, Path(name).name, f"`{name}`"


# --------------------------------------------------------------------------------------------------
# Adding configs and uploading
# --------------------------------------------------------------------------------------------------


def _require_genrec_folder(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    configs = _available_configs(str(folder))
    missing = [name for name in (SEQUENCES_CONFIG, ITEMS_CONFIG) if name not in configs]
    if missing:
        raise ValueError(
            f"{folder} is not a genrec dataset folder: its card declares no config {missing} (configs: {configs}); "
            "build one with `genrec prepare`"
        )
    return configs


def add_config(folder: str | Path, config_name: str, dataset: Dataset, split: str = "train") -> None:
    """Add (or replace) one more config, e.g. a ``code_table``, to a prepared folder: parquet + card YAML.

    The folder stays loadable with ``load_dataset(folder, config_name)`` and uploadable as is. The
    ``sequences`` and ``items`` configs cannot be replaced this way (use :func:`prepare_dataset`).
    """
    folder = Path(folder).expanduser()
    _require_genrec_folder(folder)
    if config_name in (SEQUENCES_CONFIG, ITEMS_CONFIG):
        raise ValueError(
            f"config '{config_name}' is the dataset itself; rebuild it with prepare_dataset instead of add_config"
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"add_config expects a datasets.Dataset, got {type(dataset).__name__}")
    hub_layout.write_config(folder, config_name, dataset, split=split)
    report_path = folder / REPORT_FILENAME
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report["configs"] = sorted(set(report.get("configs", [])) | {config_name})
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    include_embeddings: bool = False,
    extra_operations: Sequence[CommitOperationAdd] = (),
) -> CommitInfo:
    """Upload a prepared folder to a Hub dataset repo as is, in one commit (``HfApi().create_commit``).

    ``extra_operations`` add files or replace the folder's own at the same paths (e.g. a ``code_table``
    config and the card that describes it, :func:`genrec.trainers.hub.code_table_config_operations`).

    Creates the repo when needed. Hidden leftovers (``.*``) are not uploaded, nor the local ``embeddings/``
    cache unless ``include_embeddings``. Returns the commit info. The card states the data owner's terms:
    push MovieLens / Amazon derived data only where they allow it (e.g. a private repo).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder = Path(folder).expanduser()
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a non-empty 'owner/name' string, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {error}") from None
    if not isinstance(private, bool):
        raise TypeError(f"private must be a bool, got {private!r}")
    _require_genrec_folder(folder)
    operations = {op.path_in_repo: op for op in dataset_push_operations(folder, include_embeddings=include_embeddings)}
    operations.update({op.path_in_repo: op for op in extra_operations})
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.create_commit(
        repo_id=repo_id,
        repo_type="dataset",
        operations=[operations[path] for path in sorted(operations)],
        commit_message=commit_message or "Upload genrec dataset",
    )


def dataset_push_operations(folder: str | Path, *, include_embeddings: bool = False) -> list[CommitOperationAdd]:
    """The commit operations that publish a prepared folder: every file but hidden ones and ``embeddings/``."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder).expanduser()
    operations = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if not include_embeddings and relative.startswith("embeddings/"):
            continue
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    return operations
