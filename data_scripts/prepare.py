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
previous folder untouched (the next run removes the sibling a killed one left behind); the card and the json
hold no timings or absolute paths, so the same inputs give the same files.

Sources: ``ml-100k`` (:mod:`.movielens`), ``s3rec`` (:mod:`.s3rec`), ``amazon2014`` / ``amazon2023``
(:mod:`.amazon`; download the files from the McAuley lab pages: 2014
https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html, 2023 https://amazon-reviews-2023.github.io/),
and ``hub`` (any dataset already in this layout, by Hub repo id or folder).

Reading and validating a prepared folder lives in :mod:`.dataset_loading`, the card in :mod:`.dataset_card`,
the report in :mod:`.dataset_report` and uploading in :mod:`.dataset_upload`; their public names stay
importable from here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, concatenate_datasets

from . import hub_layout
from .dataset_names import is_hub_repo_id, unknown_hub_dataset
from .provenance import dataset_display_name
from .splits import (
    DEFAULT_MAX_HISTORY,
    SPLITS,
    SourceData,
    arrow_column,
    build_splits,
    check_on_error,
    empty_value,
    truncate_history,
)

if TYPE_CHECKING:
    pass

from .dataset_card import card_body, dataset_title, license_metadata
from .dataset_loading import (  # noqa: F401  (re-exported: the import path callers use)
    ITEMS_CONFIG,
    SEQUENCES_CONFIG,
    check_item_ids,
    check_trainable,
    load_genrec_dataset,
    validate_items,
    validate_sequences,
)
from .dataset_report import REPORT_FILENAME, REPORT_FORMAT, PrepareReport  # noqa: F401  (re-exported)
from .dataset_upload import add_config, dataset_push_operations, push_dataset_folder  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")
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
    hub_layout.remove_stale_temp_dirs(out_dir)  # a killed prepare's staging (or the previous folder it set aside)
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
        title = dataset_title(source, data.files, path)
        label = ", ".join(f"`{f.name}`" for f in data.files)
    report.configs = sorted(configs)
    # before anything is written: ids the tokenizer would misread, and a dataset no training can use
    where = str(path) if path is not None else label.replace("`", "") or source
    check_item_ids(arrow_column(configs[ITEMS_CONFIG], "item_id"), f"{where}: items")
    read = report.counts.get("input_users")
    check_trainable(configs[SEQUENCES_CONFIG], where, report=f" of {read} read" if read is not None else "")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = hub_layout.make_temp_dir(out_dir.parent, f"{out_dir.name}.tmp")
    try:
        for name, data_ in configs.items():
            hub_layout.write_config(staging, name, data_, default=(name == SEQUENCES_CONFIG))
        item_columns = configs[ITEMS_CONFIG].column_names
        hub_layout.update_card(
            staging,
            body=card_body(title, report, item_columns, label),
            metadata={
                "pretty_name": title,
                "tags": ["recommendation", "sequential-recommendation", "genrec"],
                **license_metadata(report.source),
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


def _from_hub(
    name_or_path: str, max_history: int, revision: str | None = None
) -> tuple[PrepareReport, dict[str, Any], str, str]:
    """Validate a dataset in genrec's layout and lay it out again (re-truncated to ``max_history``)."""
    if not Path(name_or_path).expanduser().is_dir() and not is_hub_repo_id(name_or_path):
        raise unknown_hub_dataset(name_or_path)  # a typo, not a Hub id: no download attempt to fail much later
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
