"""A CodeTable's two files on disk: ``code_table.parquet`` (the codes) and ``code_table.json`` (its description).

Kept apart from :mod:`.code_table` (the table's logic) because reading files is where every kind of bad input
arrives: a missing file, invalid JSON, another format or version, a damaged parquet file, wrong columns or
types, truncated rows, missing values. Each gets a ``ValueError`` / ``FileNotFoundError`` that names the file
and what to do; the content hash is checked by the caller (:meth:`CodeTable.from_files`) once the table is
built. ``pyarrow`` is imported inside the functions: it comes with ``datasets``, but this folder's modules
must import without it (see :mod:`.code_table`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: File names of a saved table (both live in the same folder; the tokenizer saves them beside its own files).
CODE_TABLE_DATA_FILE = "code_table.parquet"
CODE_TABLE_META_FILE = "code_table.json"
#: Bumped whenever the on-disk layout or the canonical hash encoding changes.
CODE_TABLE_FORMAT_VERSION = 1
FORMAT_NAME = "genrec.code_table"
COLLISION_COLUMN = "collision"


def level_column(depth: int) -> str:
    """The column name of semantic level ``depth`` in the table's parquet file."""
    return f"level_{depth}"

_REQUIRED_META = ("format", "version", "num_items", "num_semantic_levels", "codebook_sizes", "content_hash")


def write_code_table_files(table: Any, directory: Path) -> None:
    """Write ``table`` (a CodeTable) as parquet + JSON into ``directory``, each file by an atomic rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    codes = table.codes
    arrays = [pa.array(table.item_ids, type=pa.string())]
    arrays += [pa.array(codes[:, d], type=pa.int64()) for d in range(table.num_levels)]
    data = pa.Table.from_arrays(arrays, names=["item_id", *table._column_names()])
    data_path = directory / CODE_TABLE_DATA_FILE
    meta_path = directory / CODE_TABLE_META_FILE
    tmp_data = data_path.with_name(data_path.name + ".tmp")
    tmp_meta = meta_path.with_name(meta_path.name + ".tmp")
    pq.write_table(data, tmp_data, compression="zstd")
    tmp_meta.write_text(json.dumps(table.metadata(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_data, data_path)
    os.replace(tmp_meta, meta_path)


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta_path} is not valid JSON ({error}): the file is corrupt or truncated") from None
    if not isinstance(meta, dict) or any(key not in meta for key in _REQUIRED_META):
        raise ValueError(f"{meta_path} is not a genrec code table description (needs keys {list(_REQUIRED_META)})")
    if meta["format"] != FORMAT_NAME:
        raise ValueError(f"{meta_path}: format {meta['format']!r} is not {FORMAT_NAME!r}")
    if meta["version"] != CODE_TABLE_FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: code table format version {meta['version']} is not supported by this genrec "
            f"(version {CODE_TABLE_FORMAT_VERSION}); upgrade genrec or re-save the table"
        )
    return meta


def read_code_table_files(
    meta_path: Path, data_path: Path
) -> tuple[list[str], np.ndarray, list[int], int, str]:
    """Validated contents of the two files: (item ids, codes (N, D), codebook sizes, semantic levels, hash)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in (meta_path, data_path):
        if not path.is_file():
            raise FileNotFoundError(f"code table file {path} not found; save the table with CodeTable.save")
    meta = _read_meta(meta_path)
    try:
        data = pq.read_table(data_path)
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError subclasses for damaged files
        raise ValueError(
            f"cannot read {data_path} as parquet ({error}): the file is corrupt or truncated; re-save the code table"
        ) from None
    num_semantic = int(meta["num_semantic_levels"])
    sizes = [int(k) for k in meta["codebook_sizes"]]
    expected = ["item_id", *[level_column(d) for d in range(num_semantic)]]
    if len(sizes) == num_semantic + 1:
        expected.append(COLLISION_COLUMN)
    if data.column_names != expected:
        raise ValueError(f"{data_path} has columns {data.column_names}, expected {expected} (see {meta_path})")
    if data.num_rows != int(meta["num_items"]):
        raise ValueError(
            f"{data_path} has {data.num_rows} rows but {meta_path} records {meta['num_items']} items: the "
            "files are truncated or do not belong together"
        )
    for name in expected:
        column = data.column(name)
        if column.null_count:
            raise ValueError(f"{data_path}: column {name!r} has {column.null_count} missing values")
    if not pa.types.is_string(data.schema.field("item_id").type):
        raise ValueError(f"{data_path}: column 'item_id' must be strings, got {data.schema.field('item_id').type}")
    for name in expected[1:]:
        if not pa.types.is_integer(data.schema.field(name).type):
            raise ValueError(f"{data_path}: column {name!r} must be integers, got {data.schema.field(name).type}")
    ids = data.column("item_id").to_pylist()
    codes = np.stack([data.column(name).to_numpy() for name in expected[1:]], axis=1)
    return ids, codes, sizes, num_semantic, str(meta["content_hash"])
