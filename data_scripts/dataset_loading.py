"""Reading and validating datasets in genrec's layout (``sequences`` train / validation / test, ``items``),
from a folder or the Hub: what every trainer reads its data with."""

from __future__ import annotations

import logging
import re
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

#: Item ids a genrec dataset may not use: the special tokens of the semantic-ID tokenizer
#: (``genrec.tokenization.tokenization_semantic_id.SPECIAL_TOKENS``; ``data_scripts`` does not import
#: ``tokenization``, a test keeps the two equal). ``tokenizer("<pad> 7")`` reads such a word as the token.
RESERVED_ITEM_IDS: tuple[str, ...] = ("<pad>", "</s>", "<s>", "<unk>")
#: ... and its code tokens (``<a_12>``, ``<b_3>``, ``<aa_0>``): the same collision.
CODE_TOKEN_PATTERN = r"<[a-z]+_[0-9]+>"


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
        check_item_ids(pc.list_flatten(items), f"{where}: config 'sequences', split '{split}'")
        out[split] = dataset
    return DatasetDict(out)


def check_item_ids(ids: pa.Array | pa.ChunkedArray, where: str) -> None:
    """Refuse empty (or blank) item ids and ids that are tokens of the semantic-ID tokenizer
    (:data:`RESERVED_ITEM_IDS`, code tokens such as ``<a_12>``): ``ValueError`` naming one and the count."""
    if not len(ids):
        return
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(ids)), 0)
    n_blank = int(pc.sum(blank).as_py() or 0)
    if n_blank:
        raise ValueError(
            f"{where}: {n_blank} item id(s) are empty or only whitespace; every item needs a non-empty id "
            "(fix or drop those rows in the input)"
        )
    reserved = pc.or_(pc.is_in(ids, value_set=pa.array(RESERVED_ITEM_IDS, ids.type)),
                      pc.match_substring_regex(ids, f"^{CODE_TOKEN_PATTERN}$"))
    n_reserved = int(pc.sum(reserved).as_py() or 0)
    if n_reserved:
        names = sorted(set(ids.filter(reserved).to_pylist()))
        raise ValueError(
            f"{where}: item id(s) {names[:5]} are tokens of genrec's semantic-ID tokenizer (specials "
            f"{list(RESERVED_ITEM_IDS)} and code tokens like <a_12>), which would read them as that token; "
            "rename those items in the input (e.g. add a prefix)"
        )


def check_trainable(sequences: DatasetDict, where: str, *, report: str = "") -> None:
    """Refuse a dataset whose ``train`` split is empty (no user has the 4+ interactions a training example
    needs): ``ValueError`` naming the dataset (``report``: what the input held, for the message)."""
    if SPLITS[0] in sequences and len(sequences[SPLITS[0]]):
        return
    users = len(sequences["test"]) if "test" in sequences else 0
    raise ValueError(
        f"{where}: no user can be trained on: the train split is empty ({users} users kept{report}); a user "
        "needs at least 4 interactions to give a training example (3 give only validation and test); use "
        "input with longer histories"
    )


def validate_items(items: Dataset, where: str) -> Dataset:
    """Check the ``items`` config (an ``item_id`` string column, unique, non-empty ids that are no tokenizer
    token); returns it unchanged."""
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
    check_item_ids(ids, f"{where}: config 'items'")
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


def load_config(source: str, config: str, **kwargs: Any) -> DatasetDict:
    """``datasets.load_dataset(source, config, **kwargs)`` whose verification and build failures are
    ``ValueError``s naming the dataset, the config and the fix (``datasets`` raises exceptions that are
    neither ``ValueError`` nor ``OSError`` for them, e.g. ``NonMatchingSplitsSizesError`` when the split
    sizes in the card's ``dataset_info`` no longer match the parquet files)."""
    from datasets import load_dataset
    from datasets.exceptions import ChecksumVerificationError, DatasetBuildError, SplitsVerificationError

    try:
        return load_dataset(source, config, **kwargs)
    except SplitsVerificationError as error:
        raise ValueError(
            f"{source}: config {config!r}: the split sizes recorded in its README.md (dataset_info) do not match "
            f"its data files ({_split_mismatch(error)}): the files were changed after the card was written; "
            "rebuild the dataset with `genrec prepare` (or fix or delete the card's dataset_info)"
        ) from None
    except ChecksumVerificationError as error:
        raise ValueError(
            f"{source}: config {config!r}: its data files do not match their recorded checksums ({error}); "
            "download or rebuild the dataset"
        ) from None
    except ValueError as error:  # datasets refuses to load a split whose files hold no rows
        empty = re.match(r'Instruction "([^"]+)" corresponds to no data', str(error))
        if empty is None:
            raise
        raise ValueError(
            f"{source}: config {config!r}: split {empty.group(1)!r} has no rows; a genrec dataset has rows in every "
            "split (a user needs at least 4 interactions to give a training example): rebuild it with "
            "`genrec prepare` from input with longer histories"
        ) from None
    except DatasetBuildError as error:
        cause = error.__cause__ or error.__context__ or error
        raise ValueError(
            f"{source}: config {config!r}: its data files cannot be read ({type(cause).__name__}: {cause}); "
            "rebuild the dataset with `genrec prepare`"
        ) from None


def _split_mismatch(error: Exception) -> str:
    """``train: card 170 rows, files 164`` for each mismatched split of a ``NonMatchingSplitsSizesError`` (whose
    message is the ``repr`` of its expected / recorded ``SplitInfo`` pairs)."""
    text = str(error)
    found = re.findall(
        r"'expected': SplitInfo\(name='([^']*)'.*?num_examples=(\d+).*?'recorded': SplitInfo\(.*?num_examples=(\d+)",
        text,
    )
    parts = [f"{name}: card {expected} rows, files {recorded}" for name, expected, recorded in found]
    return "; ".join(parts) or (text.splitlines()[0][:200] if text else type(error).__name__)


def load_genrec_dataset(
    name_or_path: str | Path, *, cache_dir: str | Path | None = None, revision: str | None = None
) -> tuple[DatasetDict, Dataset]:
    """Load and validate a genrec dataset (local folder or Hub repo id): ``(sequences, items)``.

    ``revision``: branch, tag or commit of a Hub repo (pin it for reproducible runs); ignored for folders.

    ``sequences`` is the train/validation/test ``DatasetDict``, ``items`` the ``train`` split of the
    ``items`` config. A missing config, split or column raises ``ValueError`` naming it, and so do item ids
    that are empty or tokens of the semantic-ID tokenizer and a card whose split sizes no longer match the
    data files.
    """
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
    sequences = validate_sequences(load_config(source, SEQUENCES_CONFIG, **kwargs), source)
    items_dict = load_config(source, ITEMS_CONFIG, **kwargs)
    if "train" not in items_dict:
        raise ValueError(f"{source}: config 'items' has no split 'train' (splits: {list(items_dict)})")
    return sequences, validate_items(items_dict["train"], source)


def load_optional_config(
    name_or_path: str | Path, config: str, *, cache_dir: str | Path | None = None, revision: str | None = None
) -> Dataset | None:
    """The ``train`` split of an optional extra config of a genrec dataset (e.g. ``reviews``, ``users``), or
    ``None`` when the dataset has no such config (ML-100K has no ``reviews``)."""
    is_folder = Path(name_or_path).expanduser().is_dir()
    source = str(Path(name_or_path).expanduser()) if is_folder else str(name_or_path)
    if config not in available_configs(source, None if is_folder else revision):
        return None
    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    if revision is not None and not is_folder:
        kwargs["revision"] = revision
    loaded = load_config(source, config, **kwargs)
    if "train" not in loaded:
        raise ValueError(f"{source}: config {config!r} has no split 'train' (splits: {list(loaded)})")
    return loaded["train"]
