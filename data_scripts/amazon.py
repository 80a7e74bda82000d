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
match skips them); the rest are parsed fully. A malformed line stops with an error naming the file and
line number, or with ``on_error="skip"`` is skipped and counted.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from tqdm.auto import tqdm

from .splits import LineErrors, SourceData, UserSequence, clean_user_sequence, iter_json_records, iter_lines

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


def _read_reviews(
    path: Path, fmt: _Format, errors: LineErrors, texts: dict[tuple[str, str, int], tuple[str, str]] | None = None
) -> tuple[list[str], dict[str, tuple[list[str], list[int]]]]:
    """Per-user (item key, time) lists in file order; users in order of their first review.

    With ``texts`` (a dict filled in place), also the review text and summary of each (user, item key,
    time); the first line wins for duplicates, as the sequence cleaning keeps the first.
    """
    by_user: dict[str, tuple[list[str], list[int]]] = {}
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
        entry = by_user.get(user)
        if entry is None:
            entry = by_user[user] = ([], [])
        entry[0].append(item)
        entry[1].append(stamp)
        if texts is not None:
            texts.setdefault((user, item, stamp), (_text(record.get(fmt.review_key)), _text(record.get(fmt.summary_key))))
    return list(by_user), by_user


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
        found[key] = record
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
    predicts. ``False`` saves the memory of holding every review text while reading.
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
    texts: dict[tuple[str, str, int], tuple[str, str]] | None = {} if keep_review_text else None
    user_order, by_user = _read_reviews(reviews, fmt, errors, texts)
    raw_reviews = sum(len(entry[0]) for entry in by_user.values())

    # Chronological order per user (stable) and duplicate removal, before k-core (as S3-Rec sorts first).
    item_codes: dict[str, int] = {}
    flat_users: list[int] = []
    flat_items: list[int] = []
    flat_times: list[int] = []
    resorted = duplicates = 0
    for code, user in enumerate(tqdm(user_order, desc="sorting users", unit=" users", disable=None, leave=False)):
        items, times, was_resorted, dropped = clean_user_sequence(*by_user[user])
        resorted += was_resorted
        duplicates += dropped
        flat_users.extend([code] * len(items))
        flat_items.extend(item_codes.setdefault(item, len(item_codes)) for item in items)
        flat_times.extend(times)
    del by_user
    users = np.asarray(flat_users, dtype=np.int64)
    items = np.asarray(flat_items, dtype=np.int64)
    keep, rounds = kcore_mask(users, items, kcore)
    kept_users = np.unique(users[keep])
    kept_items = np.unique(items[keep])
    logger.info(
        "%d-core: kept %d of %d interactions, %d of %d users, %d of %d items (%d rounds)",
        kcore, int(keep.sum()), len(keep), len(kept_users), len(user_order), len(kept_items), len(item_codes), rounds,
    )

    # Renumber: users by first review in the file, items by first appearance in that walk.
    item_keys = list(item_codes)
    new_item_id: dict[int, str] = {}
    sequences: list[UserSequence] = []
    original_users: list[str] = []
    review_rows: dict[str, list[Any]] = {name: [] for name in REVIEWS_SCHEMA.names}
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.array([], dtype=np.int64)
    ends = np.r_[starts[1:], len(users)] if len(users) else np.array([], dtype=np.int64)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        span = np.flatnonzero(keep[start:end]) + start
        if not len(span):
            continue
        ids = [new_item_id.setdefault(int(code), str(len(new_item_id) + 1)) for code in items[span].tolist()]
        user_id = str(len(sequences) + 1)
        sequences.append(UserSequence(user_id, ids, [flat_times[i] for i in span.tolist()]))
        original_users.append(user_order[int(users[start])])
        if texts is not None:
            original = user_order[int(users[start])]
            for index, item_id in zip(span.tolist(), ids, strict=True):
                review, summary = texts.get((original, item_keys[int(items[index])], flat_times[index]), ("", ""))
                for name, value in zip(REVIEWS_SCHEMA.names, (user_id, item_id, flat_times[index], review, summary),
                                       strict=True):
                    review_rows[name].append(value)

    needed = {item_keys[code]: item_id for code, item_id in new_item_id.items()}
    records, repeated = _read_meta(meta, fmt, set(needed), errors)
    rows = [_item_row(fmt, item_id, key, records.get(key)) for key, item_id in needed.items()]
    table = {name: [row[name] for row in rows] for name in fmt.item_schema.names}
    item_table = Dataset(pa.Table.from_pydict(table, schema=fmt.item_schema))
    users_table = Dataset(
        pa.Table.from_pydict(
            {"user_id": [s.user_id for s in sequences], "original_user_id": original_users},
            schema=pa.schema([pa.field("user_id", pa.string()), pa.field("original_user_id", pa.string())]),
        )
    )
    without_meta = sum(1 for key in needed if key not in records)
    without_title = sum(1 for row in rows if not row["title"])
    if without_meta:
        logger.warning("%d items have reviews but no metadata line; kept with empty text", without_meta)

    skipped = errors.counts()
    skipped.update(
        {
            "duplicate_consecutive_interactions": duplicates,
            "kcore_interactions": int(len(keep) - keep.sum()),
            "kcore_users": int(len(user_order) - len(kept_users)),
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
        extra_configs={"users": users_table, **(
            {"reviews": Dataset(pa.Table.from_pydict(review_rows, schema=REVIEWS_SCHEMA))} if texts is not None else {}
        )},
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
