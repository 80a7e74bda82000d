"""S3-Rec-style dataset folders: ``sequences.txt`` + ``items.jsonl`` (e.g. the papers' Amazon Beauty).

Layout (that of ``shared/data/amazon-beauty-2014``, the widely shared S3-Rec preprocessing):
  * ``sequences.txt``: one user per line, ``user_id item_id item_id ...`` separated by whitespace, items
    in chronological order;
  * ``items.jsonl``: one JSON object per line with ``item_id`` (the ids of sequences.txt) and text
    fields (for Beauty: ``asin``, ``title``, ``brand``, ``categories`` (list), ``price``, ``sales_rank``).

The format has NO timestamps: each user's timestamps are the ordinal positions 0, 1, ..., n-1 of the
items in its line (so the file order is the chronological order, and no two interactions of a user
share a time). Item fields are normalised to strings (numbers written as they print, JSON objects as
compact JSON, null as "") or, for a field that is a list on any line, lists of strings ([] when
missing). Items without a title are kept (their other fields still describe them) and counted. Users
and items keep the ids of the files. Beauty gives 22,363 users, 12,101 items, 198,502 interactions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from .splits import (
    DataFormatError,
    LineErrors,
    SourceData,
    UserSequence,
    count_empty,
    iter_json_records,
    iter_lines,
)

logger = logging.getLogger(__name__)

SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"


def read_sequences(path: Path, errors: LineErrors) -> list[UserSequence]:
    """Users of ``sequences.txt`` in file order, with timestamps = positions 0..n-1."""
    sequences: list[UserSequence] = []
    seen: set[str] = set()
    for number, line in iter_lines(path, desc=SEQUENCES_FILE):
        tokens = line.split()
        if not tokens:
            errors.blank_line(path)
            continue
        user, items = tokens[0], tokens[1:]
        bad = next((item for item in items if not is_integer_id(item)), None)
        if bad is not None:
            errors(path, number, f"item id {bad!r} is not a non-negative integer written plainly (e.g. 17); "
                                 "S3-Rec item ids are integers")
            continue
        if user in seen:
            errors(path, number, f"user {user!r} already has a line; write one line per user")
            continue
        seen.add(user)
        sequences.append(UserSequence(user, items, list(range(len(items)))))
    if not sequences:
        raise DataFormatError(f"{path} holds no user line; expected 'user_id item_id item_id ...' per line")
    return sequences


def is_integer_id(token: str) -> bool:
    """Whether ``token`` is an S3-Rec item id: a non-negative integer in its plain form ("17", not "017",
    "+17", "1.5", "-3" or "abc"), so that ``sequences.txt`` and ``items.jsonl`` spell each id one way."""
    return token.isascii() and token.isdigit() and (token == "0" or not token.startswith("0"))


def _item_id(value: Any) -> tuple[str | None, str]:
    """The item id of an ``items.jsonl`` record as text, or (None, why it is not one).

    A JSON integer (17) or a string ("17") is an id; a JSON float (17.0), boolean, object or list is not:
    ``17.0`` would otherwise become the text "17.0" and silently miss item 17 of ``sequences.txt``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "no 'item_id'"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, (
            f"'item_id' {json.dumps(value)} is a JSON {type(value).__name__}; write the id as an integer (17) "
            'or a string ("17")'
        )
    return str(value), ""


def _text(value: Any) -> str:
    """One scalar item field as text ('' for null, compact JSON for objects)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _text_list(value: Any) -> list[str]:
    """A list item field as a flat list of strings (nested lists flattened, empty values dropped)."""
    if value is None:
        return []
    if not isinstance(value, list):
        text = _text(value)
        return [text] if text else []
    out: list[str] = []
    for element in value:
        out.extend(_text_list(element) if isinstance(element, list) else ([_text(element)] if element is not None else []))
    return out


def read_items(path: Path, errors: LineErrors) -> Dataset:
    """The item table of ``items.jsonl`` in file order (fields normalised as the module docstring says)."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    columns: dict[str, bool] = {"item_id": False}  # name -> is a list field (insertion-ordered)
    for number, record in iter_json_records(path, errors, desc=ITEMS_FILE):
        item, why = _item_id(record.get("item_id"))
        if item is None:
            errors(path, number, why)
            continue
        if item in seen:
            errors(path, number, f"item {item!r} is listed a second time")
            continue
        seen.add(item)
        record["item_id"] = item
        for name, value in record.items():
            if name != "item_id":
                columns[name] = columns.get(name, False) or isinstance(value, list)
        records.append(record)
    schema = pa.schema(
        [pa.field(name, pa.list_(pa.string()) if is_list else pa.string()) for name, is_list in columns.items()]
    )
    table = {
        name: [(_text_list if is_list else _text)(record.get(name)) for record in records]
        for name, is_list in columns.items()
    }
    return Dataset(pa.Table.from_pydict(table, schema=schema))


def read_s3rec(path: str | Path, *, on_error: str = "raise") -> SourceData:
    """Read an S3-Rec-style folder (``sequences.txt`` + ``items.jsonl``)."""
    folder = Path(path)
    sequences_path, items_path = folder / SEQUENCES_FILE, folder / ITEMS_FILE
    for needed in (sequences_path, items_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found: an S3-Rec-style folder holds {SEQUENCES_FILE} "
                f"('user_id item_id item_id ...' per line) and {ITEMS_FILE} (one JSON object per item)"
            )
    errors = LineErrors(on_error)
    sequences = read_sequences(sequences_path, errors)
    items = read_items(items_path, errors)
    no_title = count_empty(items, "title")
    if no_title:
        logger.info("%d items have no title; they are kept (their other fields describe them)", no_title)
    return SourceData(
        source="s3rec",
        sequences=sequences,
        items=items,
        skipped=errors.counts(),
        counts={"items_without_title": no_title},
        notes=[
            "S3-Rec-style folder (sequences.txt + items.jsonl); user and item ids are those of the files.",
            "The format has no timestamps: timestamps are each user's ordinal positions 0..n-1.",
        ],
        files=[sequences_path, items_path],
    )
