"""Reading and validating datasets in genrec's layout (``sequences`` train / validation / test, ``items``),
from a folder or the Hub: what every trainer reads its data with."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from . import hub_layout
from .splits import (
    SEQUENCE_SCHEMA,
    SPLITS,
    arrow_column,
    sequence_features,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

SEQUENCES_CONFIG = "sequences"
ITEMS_CONFIG = "items"


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


def available_configs(name_or_path: str, revision: str | None = None) -> list[str]:
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
    configs = available_configs(source, None if is_folder else revision)
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


def load_optional_config(
    name_or_path: str | Path, config: str, *, cache_dir: str | Path | None = None, revision: str | None = None
) -> Dataset | None:
    """The ``train`` split of an optional extra config of a genrec dataset (e.g. ``reviews``, ``users``), or
    ``None`` when the dataset has no such config (ML-100K has no ``reviews``)."""
    from datasets import load_dataset

    is_folder = Path(name_or_path).expanduser().is_dir()
    source = str(Path(name_or_path).expanduser()) if is_folder else str(name_or_path)
    if config not in available_configs(source, None if is_folder else revision):
        return None
    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    if revision is not None and not is_folder:
        kwargs["revision"] = revision
    loaded = load_dataset(source, config, **kwargs)
    if "train" not in loaded:
        raise ValueError(f"{source}: config {config!r} has no split 'train' (splits: {list(loaded)})")
    return loaded["train"]
