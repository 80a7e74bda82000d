"""Raw Amazon review data (2014 5-core and 2023 releases) -> genrec sequences + item table.

Where to download (McAuley lab, UCSD):
  * Amazon review data 2014 ("Image-based recommendations on styles and substitutes", SIGIR 2015;
    "Inferring networks of substitutable and complementary products", KDD 2015):
    https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html -- per category the "5-core" reviews
    ``reviews_<Category>_5.json.gz`` and the metadata ``meta_<Category>.json.gz`` (e.g. Beauty, Sports
    and Outdoors, Toys and Games: the UNGER/TIGER/S3-Rec benchmarks).
  * Amazon Reviews 2023 (Hou et al., "Bridging Language and Items for Retrieval and Recommendation"):
    https://amazon-reviews-2023.github.io/ -- per category the reviews ``<Category>.jsonl(.gz)`` and the
    metadata ``meta_<Category>.jsonl(.gz)``.

Formats:
  * 2014 reviews: one JSON object per line (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``
    in seconds, ...). 2014 metadata: one Python-literal dict per line (single quotes; ``asin``,
    ``title``, ``brand``, ``categories`` as a list of lists, ``price``, ``salesRank``, ``description``,
    ...), parsed with ``ast.literal_eval`` (never ``eval``), falling back to ``json.loads``.
  * 2023 reviews: JSON lines (``user_id``, ``parent_asin``, ``asin``, ``rating``, ``timestamp`` in
    milliseconds, ``text``, ...). 2023 metadata: JSON lines (``parent_asin``, ``title``, ``store``,
    ``main_category``, ``categories``, ``features``, ``description`` (list), ``price``, ...). The item
    key is ``parent_asin`` (variants of one product are one item).

Processing (the S3-Rec preprocessing the benchmarks were built with):
  1. every review is one interaction (all ratings kept), timestamps as in the file (2014: seconds,
     2023: milliseconds);
  2. per user, interactions are sorted chronologically with a stable sort (ties keep the file order)
     and duplicate consecutive interactions (same item, same time) are dropped and counted;
  3. iterative k-core filtering (default 5): users and items with fewer than k interactions are removed
     until none is left (a no-op on the 2014 5-core files);
  4. ids are renumbered "1", "2", ...: users in order of their first review in the file, items in
     order of first appearance when walking those users' chronological sequences in that order. The
     original ids are kept: items in column ``asin`` (for 2023 it holds the ``parent_asin``), users in
     the extra config ``users`` (``user_id``, ``original_user_id``).

Item text fields: 2014 ``title``, ``brand``, ``categories`` (all category paths flattened into one list,
duplicates removed, first occurrence kept), ``description``, ``price``; 2023 ``title``, ``store``,
``main_category``, ``categories``, ``features`` (list), ``description`` (the list joined with newlines),
``price``. Missing values are "" / []. Items with reviews but no metadata line are kept with empty text
and counted. Metadata lines of items that are not in the filtered reviews are not parsed (a cheap key
match skips them); the rest are parsed and only the fields above are kept. A malformed line stops with an
error naming the file and line number, or with ``on_error="skip"`` is skipped and counted.

Memory: the reviews file is streamed once; no parsed record outlives its line. Each review line costs ~40
bytes (user, item and time as int64 codes, each distinct id string held once, two offsets into a temporary
file that the review texts are appended to); sorting, k-core and renumbering work on those arrays, and the
``reviews`` config's text columns are read back from the temporary file straight into Arrow buffers
(``benchmarks/amazon_scale.py`` measures the peak RSS of ``genrec prepare`` from 10^5 to 10^7 lines).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import tempfile
from array import array
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from datasets.fingerprint import generate_random_fingerprint

from .splits import LineErrors, SourceData, UserSequence, iter_json_records, iter_lines

logger = logging.getLogger(__name__)

DOWNLOAD_2014 = "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html"
DOWNLOAD_2023 = "https://amazon-reviews-2023.github.io/"
DEFAULT_KCORE = 5


@dataclass(frozen=True)
class _Format:
    """Field names and parsing rules of one Amazon release."""

    name: str
    user_key: str
    item_key: str
    time_key: str
    time_unit: str
    meta_literal_first: bool
    item_schema: pa.Schema
    download: str
    review_key: str
    summary_key: str


_FORMAT_2014 = _Format(
    name="amazon2014",
    user_key="reviewerID",
    item_key="asin",
    time_key="unixReviewTime",
    time_unit="Unix seconds (unixReviewTime, day resolution)",
    meta_literal_first=True,
    item_schema=pa.schema(
        [
            pa.field("item_id", pa.string()),
            pa.field("asin", pa.string()),
            pa.field("title", pa.string()),
            pa.field("brand", pa.string()),
            pa.field("categories", pa.list_(pa.string())),
            pa.field("description", pa.string()),
            pa.field("price", pa.string()),
        ]
    ),
    download=DOWNLOAD_2014,
    review_key="reviewText",
    summary_key="summary",
)
_FORMAT_2023 = _Format(
    name="amazon2023",
    user_key="user_id",
    item_key="parent_asin",
    time_key="timestamp",
    time_unit="Unix milliseconds (timestamp)",
    meta_literal_first=False,
    item_schema=pa.schema(
        [
            pa.field("item_id", pa.string()),
            pa.field("asin", pa.string()),
            pa.field("title", pa.string()),
            pa.field("store", pa.string()),
            pa.field("main_category", pa.string()),
            pa.field("categories", pa.list_(pa.string())),
            pa.field("features", pa.list_(pa.string())),
            pa.field("description", pa.string()),
            pa.field("price", pa.string()),
        ]
    ),
    download=DOWNLOAD_2023,
    review_key="text",
    summary_key="title",
)

#: Schema of the ``reviews`` config: one row per kept interaction, in the order of the users' sequences.
REVIEWS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("timestamp", pa.int64()),
        pa.field("review", pa.string()),
        pa.field("summary", pa.string()),
    ]
)


# --------------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------------


def parse_record(line: str, *, literal_first: bool) -> dict[str, Any]:
    """One metadata/review line as a dict: Python literal (``ast.literal_eval``) and/or JSON.

    ``literal_first`` (2014 metadata) tries ``ast.literal_eval`` then ``json.loads``; otherwise the
    other way round. Raises ``ValueError`` describing both failures when neither parses to a dict.
    """
    parsers: list[tuple[str, Callable[[str], Any]]] = [("Python literal", ast.literal_eval), ("JSON", json.loads)]
    if not literal_first:
        parsers.reverse()
    problems = []
    for label, parser in parsers:
        try:
            value = parser(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
            problems.append(f"not {label}: {type(error).__name__}: {error}".splitlines()[0])
            continue
        if isinstance(value, dict):
            return value
        problems.append(f"{label} value is a {type(value).__name__}, not a dict")
    raise ValueError("; ".join(problems))


def _timestamp(value: Any) -> int:
    """An integer timestamp from an int (or integral float / digit string) field."""
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError(f"timestamp {value!r} is not a whole number")


def _text(value: Any) -> str:
    """A scalar text field ('' for missing)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return "\n".join(t for t in (_text(v) for v in value) if t)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _flat_unique(value: Any) -> list[str]:
    """A (possibly nested) list of strings flattened, empty and repeated entries dropped, order kept."""
    out: list[str] = []
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
            return
        text = _text(node)
        if text and text not in seen:
            seen.add(text)
            out.append(text)

    if value is not None:
        walk(value)
    return out


def _text_list(value: Any) -> list[str]:
    """A list field (e.g. 2023 ``features``) as a flat list of non-empty strings, order and repeats kept."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        text = _text(value)
        return [text] if text else []
    out: list[str] = []
    for element in value:
        out.extend(_text_list(element))
    return out


#: The metadata fields :func:`_item_row` reads (all others are dropped as soon as a line is parsed).
_META_FIELDS = ("title", "brand", "store", "main_category", "categories", "features", "description", "price")


def _item_row(fmt: _Format, item_id: str, key: str, meta: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the item table from a metadata record (or empty text when there is none)."""
    meta = meta or {}
    row: dict[str, Any] = {"item_id": item_id, "asin": key, "title": _text(meta.get("title"))}
    if fmt is _FORMAT_2014:
        row["brand"] = _text(meta.get("brand"))
        row["categories"] = _flat_unique(meta.get("categories"))
        row["description"] = _text(meta.get("description"))
    else:
        row["store"] = _text(meta.get("store"))
        row["main_category"] = _text(meta.get("main_category"))
        row["categories"] = _flat_unique(meta.get("categories"))
        row["features"] = _text_list(meta.get("features"))
        row["description"] = _text(meta.get("description"))
    row["price"] = _text(meta.get("price"))
    return row


# --------------------------------------------------------------------------------------------------
# Reviews -> filtered, renumbered sequences
# --------------------------------------------------------------------------------------------------


@dataclass
class _Interactions:
    """Every valid review line, compactly: integer codes + times in file order, texts spilled to a file.

    ``users`` / ``items`` map each id string to its code (one copy per distinct id; users in order of
    their first review, items in order of first appearance in the file); ``user``, ``item``, ``time`` hold
    one entry per review line (8 bytes each). With ``texts`` (a temporary file), review ``j``'s text is
    bytes ``offsets[2j]:offsets[2j+1]`` and its summary ``offsets[2j+1]:offsets[2j+2]`` (UTF-8), so the
    memory the reader holds grows by ~40 bytes per line, whatever the length of the review texts.
    """

    users: dict[str, int]
    items: dict[str, int]
    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    texts: Any = None
    offsets: np.ndarray | None = None


def _read_reviews(path: Path, fmt: _Format, errors: LineErrors, texts: Any = None) -> _Interactions:
    """Stream the reviews file once into :class:`_Interactions` (no parsed record outlives its line).

    ``texts``: a binary file to append each review's text and summary to (``None``: texts not kept).
    """
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    user_codes, item_codes, times = array("q"), array("q"), array("q")
    offsets = array("q", [0])
    position = 0
    keys = (fmt.user_key, fmt.item_key, fmt.time_key)
    for number, record in iter_json_records(path, errors, desc=path.name):
        missing = [key for key in keys if record.get(key) in (None, "")]
        if missing:
            errors(path, number, f"review without {', '.join(repr(k) for k in missing)}")
            continue
        try:
            stamp = _timestamp(record[fmt.time_key])
        except ValueError as error:
            errors(path, number, str(error))
            continue
        user, item = str(record[fmt.user_key]), str(record[fmt.item_key])
        user_codes.append(users.setdefault(user, len(users)))
        item_codes.append(items.setdefault(item, len(items)))
        times.append(stamp)
        if texts is not None:
            for value in (record.get(fmt.review_key), record.get(fmt.summary_key)):
                encoded = _text(value).encode("utf-8", "replace")
                texts.write(encoded)
                position += len(encoded)
                offsets.append(position)
    return _Interactions(
        users, items,
        np.frombuffer(user_codes, dtype=np.int64), np.frombuffer(item_codes, dtype=np.int64),
        np.frombuffer(times, dtype=np.int64),
        texts, np.frombuffer(offsets, dtype=np.int64) if texts is not None else None,
    )


def _first_occurrence(user: np.ndarray, item: np.ndarray, time: np.ndarray) -> np.ndarray:
    """For each line, the first line (file order) with the same (user, item, time)."""
    order = np.lexsort((time, item, user))  # stable: equal keys stay in file order
    if not len(order):
        return order
    u, i, t = user[order], item[order], time[order]
    new_group = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1]) | (t[1:] != t[:-1])]
    group_first = order[np.flatnonzero(new_group)][np.cumsum(new_group) - 1]
    first = np.empty_like(order)
    first[order] = group_first
    return first


def _string_column(texts: Any, offsets: np.ndarray, which: int, rows: np.ndarray, chunk: int = 1 << 16) -> pa.ChunkedArray:
    """The texts (``which`` 0: review, 1: summary) of review lines ``rows`` as an Arrow string column.

    Each text is read from the spill file straight into the column's Arrow buffer (``os.preadv``): no
    Python string per text, and no mapping of the whole file (rows are in user order, so a chunk of rows
    touches pages all over the file).
    """
    texts.flush()
    fd = texts.fileno()
    chunks = []
    for begin in range(0, len(rows), chunk):
        part = rows[begin:begin + chunk]
        starts, ends = offsets[2 * part + which], offsets[2 * part + which + 1]
        lengths = np.r_[0, np.cumsum(ends - starts)]
        data = pa.allocate_buffer(int(lengths[-1]))  # Arrow memory, filled in place from the spill file
        if lengths[-1]:
            target = memoryview(np.frombuffer(data, dtype=np.uint8))
            for a, b, at in zip(starts.tolist(), ends.tolist(), lengths[:-1].tolist(), strict=True):
                if b > a:
                    _read_into(fd, target[at:at + b - a], a)
            del target
        chunks.append(pa.StringArray.from_buffers(len(part), pa.py_buffer(lengths.astype(np.int32)), data))
    return pa.chunked_array(chunks, type=pa.string())


def _read_into(fd: int, target: memoryview, offset: int) -> None:
    """Fill ``target`` with the bytes of file ``fd`` from ``offset`` on."""
    done = 0
    while done < len(target):
        got = os.preadv(fd, [target[done:]], offset + done) if hasattr(os, "preadv") else _pread_copy(
            fd, target[done:], offset + done)
        if got <= 0:
            raise OSError(f"review text spill file ended early at byte {offset + done}")
        done += got


def _pread_copy(fd: int, target: memoryview, offset: int) -> int:
    data = os.pread(fd, len(target), offset)
    target[:len(data)] = data
    return len(data)



def kcore_mask(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Boolean mask of the interactions in the iterative k-core (users and items with >= k interactions).

    Removes every interaction of a user or item with fewer than ``k`` remaining interactions, and
    repeats until nothing changes (the maximal k-core; the order of removals does not matter). Returns
    the mask and the number of rounds that removed something.
    """
    if k < 1:
        raise ValueError(f"kcore must be >= 1, got {k}")
    keep = np.ones(len(users), dtype=bool)
    n_users = int(users.max()) + 1 if len(users) else 0
    n_items = int(items.max()) + 1 if len(items) else 0
    rounds = 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        drop = keep & ((user_count[users] < k) | (item_count[items] < k))
        if not drop.any():
            return keep, rounds
        keep &= ~drop
        rounds += 1


def _read_meta(
    path: Path, fmt: _Format, needed: set[str], errors: LineErrors
) -> tuple[dict[str, dict[str, Any]], int]:
    """Metadata records of the ``needed`` item keys; also returns the count of repeated item lines."""
    quick = re.compile(r"""["']""" + re.escape(fmt.item_key) + r"""["']\s*:\s*["']([^"'\\]*)["']""")
    found: dict[str, dict[str, Any]] = {}
    repeated = 0
    for number, line in iter_lines(path, desc=path.name):
        if not line.strip():
            errors.blank_line(path)
            continue
        match = quick.search(line)
        if match is not None and match.group(1) not in needed:
            continue  # an item without (filtered) reviews: not needed, not parsed
        try:
            record = parse_record(line, literal_first=fmt.meta_literal_first)
        except ValueError as error:
            errors(path, number, f"cannot parse the metadata record ({error})")
            continue
        key = record.get(fmt.item_key)
        if key in (None, ""):
            errors(path, number, f"metadata record without {fmt.item_key!r}")
            continue
        key = str(key)
        if key not in needed:
            continue
        if key in found:
            repeated += 1
            continue
        found[key] = {field: record[field] for field in _META_FIELDS if field in record}  # only what genrec reads
    return found, repeated


def read_amazon(
    reviews: str | Path,
    meta: str | Path,
    *,
    release: str,
    kcore: int = DEFAULT_KCORE,
    on_error: str = "raise",
    keep_review_text: bool = True,
) -> SourceData:
    """Read one Amazon category (``release`` "2014" or "2023"); see the module docstring for every step.

    ``keep_review_text`` (default): also write the extra config ``reviews`` (``user_id``, ``item_id``,
    ``timestamp``, ``review``, ``summary``; one row per kept interaction), the text the TTDS review task
    predicts; while reading, the texts wait in a temporary file (not in memory). ``False`` skips them.
    """
    fmt = {"2014": _FORMAT_2014, "2023": _FORMAT_2023}.get(str(release))
    if fmt is None:
        raise ValueError(f"release must be '2014' or '2023', got {release!r}")
    if isinstance(kcore, bool) or not isinstance(kcore, int) or kcore < 1:
        raise ValueError(f"kcore must be a positive int (1 disables filtering), got {kcore!r}")
    reviews, meta = Path(reviews), Path(meta)
    for label, file in (("reviews", reviews), ("meta", meta)):
        if not file.is_file():
            raise FileNotFoundError(
                f"Amazon {release} {label} file not found: {file}. Download the category's files from "
                f"{fmt.download}"
            )
    errors = LineErrors(on_error)
    with tempfile.TemporaryFile(prefix="genrec-amazon-texts-") if keep_review_text else nullcontext() as spill:
        return _build(fmt, release, kcore, reviews, meta, errors, _read_reviews(reviews, fmt, errors, spill))


def _build(
    fmt: _Format, release: str, kcore: int, reviews: Path, meta: Path, errors: LineErrors, data: _Interactions
) -> SourceData:
    """Sort, clean, k-core filter and renumber the interactions, join the metadata: the :class:`SourceData`."""
    user_order = list(data.users)
    raw_reviews = len(data.user)
    n_users = len(user_order)

    # Chronological order per user (stable: ties keep the file order) and duplicate removal, before k-core
    # (as S3-Rec sorts first). Users in order of their first review (their codes).
    by_user = np.argsort(data.user, kind="stable")
    file_times = data.time[by_user]
    same_user = data.user[by_user][1:] == data.user[by_user][:-1]
    resorted = len(np.unique(data.user[by_user][1:][same_user & (file_times[1:] < file_times[:-1])]))
    order = np.argsort(data.time, kind="stable")
    order = order[np.argsort(data.user[order], kind="stable")]
    users, items, times = data.user[order], data.item[order], data.time[order]
    repeat = np.r_[False, (users[1:] == users[:-1]) & (items[1:] == items[:-1]) & (times[1:] == times[:-1])]
    duplicates = int(repeat.sum())
    if duplicates:
        order, users, items, times = order[~repeat], users[~repeat], items[~repeat], times[~repeat]
    del by_user, file_times, same_user, repeat
    keep, rounds = kcore_mask(users, items, kcore)
    kept_users = np.unique(users[keep])
    kept_items = np.unique(items[keep])
    n_items = len(data.items)
    logger.info(
        "%d-core: kept %d of %d interactions, %d of %d users, %d of %d items (%d rounds)",
        kcore, int(keep.sum()), len(keep), len(kept_users), n_users, len(kept_items), n_items, rounds,
    )

    # Renumber: users by first review in the file, items by first appearance along those users' sequences.
    kept = np.flatnonzero(keep)
    k_users, k_items, k_times = users[kept], items[kept], times[kept]
    if len(kept):
        unique_items, first_index = np.unique(k_items, return_index=True)
        walk = unique_items[np.argsort(first_index)]  # item codes in order of first appearance in the walk
    else:
        walk = np.array([], dtype=np.int64)
    new_code = np.zeros(n_items, dtype=np.int64)
    new_code[walk] = np.arange(1, len(walk) + 1)
    item_id_strings = [str(code) for code in range(len(walk) + 1)]
    starts = np.flatnonzero(np.r_[True, k_users[1:] != k_users[:-1]]) if len(kept) else np.array([], dtype=np.int64)
    ends = np.r_[starts[1:], len(kept)] if len(kept) else np.array([], dtype=np.int64)
    id_codes = new_code[k_items].tolist()
    time_values = k_times.tolist()
    sequences: list[UserSequence] = []
    for number, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True), start=1):
        sequences.append(UserSequence(str(number), [item_id_strings[c] for c in id_codes[start:end]],
                                      time_values[start:end]))
    original_users = [user_order[code] for code in k_users[starts].tolist()] if len(kept) else []
    item_keys = list(data.items)
    extra_configs: dict[str, Dataset] = {}
    users_table = Dataset(
        pa.Table.from_pydict(
            {"user_id": [s.user_id for s in sequences], "original_user_id": original_users},
            schema=pa.schema([pa.field("user_id", pa.string()), pa.field("original_user_id", pa.string())]),
        ),
        fingerprint=generate_random_fingerprint(),
    )
    extra_configs["users"] = users_table
    if data.texts is not None:
        # the text of the first line with the same (user, item, time), as the duplicate removal keeps the first
        rows = _first_occurrence(data.user, data.item, data.time)[order[kept]]
        user_ids = np.repeat(np.arange(1, len(starts) + 1), ends - starts)
        columns = [
            pa.array(user_ids.astype(str), type=pa.string()),
            pa.array(new_code[k_items].astype(str), type=pa.string()),
            pa.array(k_times, type=pa.int64()),
            _string_column(data.texts, data.offsets, 0, rows),
            _string_column(data.texts, data.offsets, 1, rows),
        ]
        # a random fingerprint: the default one pickles (copies) the whole table just to hash it
        extra_configs["reviews"] = Dataset(pa.Table.from_arrays(columns, schema=REVIEWS_SCHEMA),
                                           fingerprint=generate_random_fingerprint())
    new_item_id = {int(code): item_id_strings[new] for code, new in zip(walk.tolist(), range(1, len(walk) + 1),
                                                                        strict=True)}
    item_codes = data.items
    texts = data.texts
    needed = {item_keys[code]: item_id for code, item_id in new_item_id.items()}
    records, repeated = _read_meta(meta, fmt, set(needed), errors)
    rows = [_item_row(fmt, item_id, key, records.get(key)) for key, item_id in needed.items()]
    table = {name: [row[name] for row in rows] for name in fmt.item_schema.names}
    item_table = Dataset(pa.Table.from_pydict(table, schema=fmt.item_schema), fingerprint=generate_random_fingerprint())
    without_meta = sum(1 for key in needed if key not in records)
    without_title = sum(1 for row in rows if not row["title"])
    if without_meta:
        logger.warning("%d items have reviews but no metadata line; kept with empty text", without_meta)

    skipped = errors.counts()
    skipped.update(
        {
            "duplicate_consecutive_interactions": duplicates,
            "kcore_interactions": int(len(keep) - keep.sum()),
            "kcore_users": int(n_users - len(kept_users)),
            "kcore_items": int(len(item_codes) - len(kept_items)),
            "repeated_metadata_lines": repeated,
        }
    )
    return SourceData(
        source=fmt.name,
        sequences=sequences,
        items=item_table,
        skipped=skipped,
        counts={
            "raw_reviews": raw_reviews,
            "resorted_users": resorted,
            "items_without_metadata": without_meta,
            "items_without_title": without_title,
            "kcore_rounds": rounds,
        },
        notes=[
            f"Amazon review data ({release}) from the McAuley lab: {fmt.download}",
            f"Timestamps are {fmt.time_unit}; each user's reviews are sorted chronologically with a stable "
            "sort (ties keep the file order).",
            f"Iterative {kcore}-core filtering; user and item ids renumbered 1, 2, ... by first appearance "
            "(users by first review in the file, items along those users' chronological sequences). "
            "Original ids: items column `asin`"
            + (" (the parent_asin)" if fmt is _FORMAT_2023 else "")
            + ", config `users` column `original_user_id`."
            + (" Review text and summary per interaction: config `reviews` (user_id, item_id, timestamp, review, "
               "summary)." if texts is not None else ""),
        ],
        files=[reviews, meta],
        extra_configs=extra_configs,
    )


def read_amazon2014(
    reviews: str | Path, meta: str | Path, *, kcore: int = DEFAULT_KCORE, on_error: str = "raise",
    keep_review_text: bool = True,
) -> SourceData:
    """Amazon 2014: ``reviews_<Category>_5.json.gz`` + ``meta_<Category>.json.gz`` (Python-literal lines)."""
    return read_amazon(reviews, meta, release="2014", kcore=kcore, on_error=on_error,
                       keep_review_text=keep_review_text)


def read_amazon2023(
    reviews: str | Path, meta: str | Path, *, kcore: int = DEFAULT_KCORE, on_error: str = "raise",
    keep_review_text: bool = True,
) -> SourceData:
    """Amazon Reviews 2023: ``<Category>.jsonl(.gz)`` + ``meta_<Category>.jsonl(.gz)``, items by parent_asin."""
    return read_amazon(reviews, meta, release="2023", kcore=kcore, on_error=on_error,
                       keep_review_text=keep_review_text)
