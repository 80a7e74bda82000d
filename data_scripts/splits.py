"""Leave-one-out splits of per-user interaction sequences (the protocol of the UNGER/TIGER/S3-Rec papers).

Input: one chronological sequence per user (``user_id``, ``item_ids``, ``timestamps``). Per user the last
item is the test target, the second-to-last the validation target, and every earlier item after the
first is a training target (the target of a "prefix" example).

Storage (fixed for every genrec dataset):
  * every row of every split is ONE example; the LAST element of ``item_ids`` is the target and the
    elements before it are the history, oldest first;
  * only the ``max_history`` (default 20) most recent history items are kept, so a row holds at most
    ``max_history + 1`` items; ``timestamps`` is aligned with ``item_ids`` element by element;
  * a user with n interactions gives n - 3 train rows (targets at positions 1 .. n-3, 0-based), one
    validation row (target n-2) and one test row (target n-1); rows are ordered by user (input order)
    and, within a user, by target position.

Input cleaning (always counted in :class:`SplitReport`, never silent):
  * a user whose timestamps are not non-decreasing is sorted chronologically with a STABLE sort (ties
    keep the input order) and counted in ``resorted_users``;
  * duplicate consecutive interactions -- the same item at the same timestamp as the interaction just
    before it (after sorting) -- are dropped, keeping the first, and counted in
    ``duplicate_interactions``. They are double records of one event (e.g. a review saved twice, or two
    variants of one parent item reviewed at once); kept, they would create examples whose target is
    the last history item at the same instant. A repeat of an item at a LATER time is a real repeat
    interaction and is kept;
  * users left with fewer than 3 interactions cannot give a train, a validation and a test target;
    they are skipped and counted in ``short_users`` (and their interactions in ``short_interactions``).

This module also holds the small input helpers shared by the source readers (text lines from plain or
gzip files with file/line error reporting, the raise-or-skip error policy, :class:`SourceData`).
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, NamedSplit
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

SPLITS: tuple[str, str, str] = ("train", "validation", "test")
"""Split names of the ``sequences`` config, in the order they are written."""

MIN_INTERACTIONS = 3
"""Fewest interactions a user needs: one train target (the 2nd item), one validation and one test target."""

DEFAULT_MAX_HISTORY = 20
"""History items kept per example by default (the papers' setting)."""

ON_ERROR_CHOICES: tuple[str, str] = ("raise", "skip")

SEQUENCE_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("item_ids", pa.list_(pa.string())),
        pa.field("timestamps", pa.list_(pa.int64())),
    ]
)
"""Arrow schema of every split of the ``sequences`` config."""


def sequence_features() -> Features:
    """The ``datasets`` features of the ``sequences`` config (user_id str, item_ids/timestamps lists)."""
    return Features.from_arrow_schema(SEQUENCE_SCHEMA)


# --------------------------------------------------------------------------------------------------
# Input side: raw sequences, line readers, error policy
# --------------------------------------------------------------------------------------------------


@dataclass
class UserSequence:
    """One user's interactions as read from a source file (file order, possibly unsorted)."""

    user_id: str
    item_ids: list[str]
    timestamps: list[int]


@dataclass
class SourceData:
    """What a source reader hands to ``prepare_dataset``: raw sequences, item table, counts, provenance.

    ``skipped`` counts what the reader removed (malformed lines, k-core, ...); ``counts`` holds other
    numbers worth reporting (input sizes, items kept without a title, ...). ``notes`` are sentences for the
    dataset card (e.g. what the timestamps mean). ``extra_configs`` are further configs to write (e.g.
    ``users`` with the original user ids).
    """

    source: str
    sequences: list[UserSequence]
    items: Dataset
    skipped: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    extra_configs: dict[str, Dataset] = field(default_factory=dict)


class DataFormatError(ValueError):
    """A malformed or unreadable input file; the message names the file and, where known, the line."""


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` policy (``"raise"``: stop at the first bad line, ``"skip"``: skip + count)."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


class LineErrors:
    """The raise-or-skip policy for malformed input lines, with the count of skipped lines per file."""

    LOGGED_PER_FILE = 5

    def __init__(self, on_error: str = "raise") -> None:
        self.on_error = check_on_error(on_error)
        self.skipped: dict[str, int] = {}
        self.blank: dict[str, int] = {}

    def blank_line(self, path: Path) -> None:
        """Count an empty line (harmless, skipped under either policy, but reported)."""
        self.blank[path.name] = self.blank.get(path.name, 0) + 1

    def __call__(self, path: Path, line_number: int, problem: str) -> None:
        """Report a bad line: raise :class:`DataFormatError`, or count it when skipping."""
        where = f"{path}, line {line_number}"
        if self.on_error == "raise":
            raise DataFormatError(
                f"{where}: {problem}. Fix or delete that line, or pass on_error='skip' "
                "(CLI: --on-error skip) to skip malformed lines and count them."
            )
        count = self.skipped[path.name] = self.skipped.get(path.name, 0) + 1
        if count <= self.LOGGED_PER_FILE:
            logger.warning("skipping %s: %s", where, problem)
        if count == self.LOGGED_PER_FILE:
            logger.warning("further malformed lines of %s are skipped without a message (still counted)", path)

    def counts(self) -> dict[str, int]:
        """Skip counts as ``{"malformed_lines:<file name>": n, "blank_lines:<file name>": n}``."""
        out = {f"malformed_lines:{name}": n for name, n in sorted(self.skipped.items())}
        out.update({f"blank_lines:{name}": n for name, n in sorted(self.blank.items())})
        return out


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for reading bytes, transparently gunzipping it when it starts with the gzip magic."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_lines(path: str | Path, *, desc: str | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, UTF-8, without the line break) of a plain or gzip text file.

    A truncated or corrupt gzip stream and bytes that are not UTF-8 become a :class:`DataFormatError`
    naming the file and the line, instead of a bare ``EOFError``/``UnicodeDecodeError``.
    """
    path = Path(path)
    number = 0
    try:
        with open_binary(path) as handle:
            for number, raw in enumerate(
                tqdm(handle, desc=desc or path.name, unit=" lines", disable=None, leave=False), start=1
            ):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise DataFormatError(
                        f"{path}, line {number}: not UTF-8 text ({error}); the file is corrupt or in "
                        "another encoding"
                    ) from None
                yield number, line.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataFormatError(
            f"{path}: truncated or corrupt gzip file (stopped after line {number}: {error}); download it again"
        ) from None


def iter_json_records(
    path: str | Path, errors: LineErrors, *, desc: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every JSON-object line of a JSON-lines file (plain or gzip).

    Blank lines, lines that are not JSON and JSON values that are not objects go to ``errors`` (counted,
    or raised under ``on_error="raise"``) and are skipped, so every reader treats a bad line the same way.
    """
    path = Path(path)
    for number, line in iter_lines(path, desc=desc):
        if not line.strip():
            errors.blank_line(path)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors(path, number, f"not a JSON object ({error})")
            continue
        if not isinstance(record, dict):
            errors(path, number, f"expected a JSON object, got {type(record).__name__}")
            continue
        yield number, record


def arrow_column(dataset: Dataset, name: str) -> pa.ChunkedArray:
    """One column of a split as an Arrow array (fast; indexing a Dataset by column iterates in Python)."""
    return dataset.with_format("arrow")[:][name]


def count_empty(dataset: Dataset, name: str) -> int:
    """Rows whose text field ``name`` is missing or empty (all rows when there is no such column)."""
    if name not in dataset.column_names:
        return len(dataset)
    return sum(1 for value in arrow_column(dataset, name).to_pylist() if not value)


def empty_value(feature: Any) -> Any:
    """The "no text" value for an item field of a given ``datasets`` feature: ``""``, ``[]`` or ``None``."""
    arrow_type = Features({"x": feature}).arrow_schema.field("x").type
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return []
    return None


# --------------------------------------------------------------------------------------------------
# The split protocol
# --------------------------------------------------------------------------------------------------


@dataclass
class SplitReport:
    """Counts of one :func:`build_splits` run: what went in, what came out, and every skip with its reason."""

    users: int
    items: int
    interactions: int
    rows: dict[str, int]
    max_history: int
    input_users: int
    input_interactions: int
    resorted_users: int = 0
    duplicate_interactions: int = 0
    short_users: int = 0
    short_interactions: int = 0
    truncated_rows: int = 0

    @property
    def skipped(self) -> dict[str, int]:
        """Each skip reason with its count (zero counts included, so a report always shows them)."""
        return {
            f"users_with_fewer_than_{MIN_INTERACTIONS}_interactions": self.short_users,
            f"interactions_of_users_with_fewer_than_{MIN_INTERACTIONS}_interactions": self.short_interactions,
            "duplicate_consecutive_interactions": self.duplicate_interactions,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-json view (counts only)."""
        out = asdict(self)
        out["skipped"] = self.skipped
        return out


def clean_user_sequence(
    item_ids: Sequence[str], timestamps: Sequence[int]
) -> tuple[list[str], list[int], bool, int]:
    """Sort one user's interactions chronologically (stable) and drop duplicate consecutive ones.

    Returns ``(item_ids, timestamps, was_resorted, duplicates_dropped)``; see the module docstring.
    """
    items = list(item_ids)
    times = [int(t) for t in timestamps]
    if len(items) != len(times):
        raise ValueError(f"{len(items)} item ids but {len(times)} timestamps")
    resorted = any(b < a for a, b in zip(times, times[1:], strict=False))
    if resorted:
        order = sorted(range(len(times)), key=times.__getitem__)  # Python's sort is stable
        items = [items[i] for i in order]
        times = [times[i] for i in order]
    keep = [0] if items else []
    for i in range(1, len(items)):
        if items[i] != items[i - 1] or times[i] != times[i - 1]:
            keep.append(i)
    dropped = len(items) - len(keep)
    if dropped:
        items = [items[i] for i in keep]
        times = [times[i] for i in keep]
    return items, times, resorted, dropped


def _list_array(values: pa.Array, starts: np.ndarray, ends: np.ndarray) -> pa.ListArray:
    """A list array whose row r holds ``values[starts[r]:ends[r]]`` (gathered in one vectorised take)."""
    lengths = ends - starts
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total >= 2**31:
        raise ValueError(f"{total} list elements in one split exceed Arrow's 32-bit list offsets; lower max_history")
    gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    taken = values.take(pa.array(gather, type=pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), type=pa.int32()), taken)


def build_splits(
    sequences: Iterable[UserSequence | tuple[str, Sequence[str], Sequence[int]]],
    *,
    max_history: int = DEFAULT_MAX_HISTORY,
) -> tuple[DatasetDict, SplitReport]:
    """Turn per-user sequences into the train/validation/test ``DatasetDict`` of the ``sequences`` config.

    ``sequences`` holds one entry per user (a :class:`UserSequence` or a ``(user_id, item_ids,
    timestamps)`` tuple); a user id seen twice is an error. See the module docstring for the protocol,
    the row format and the counted cleaning steps.
    """
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be a positive int, got {max_history!r}")
    user_ids: list[str] = []
    lengths: list[int] = []
    flat_items: list[str] = []
    flat_times: list[int] = []
    seen: set[str] = set()
    input_users = input_interactions = 0
    resorted = duplicates = short_users = short_interactions = 0
    total = len(sequences) if isinstance(sequences, Sized) else None
    for entry in tqdm(sequences, total=total, desc="splitting users", unit=" users", disable=None, leave=False):
        if isinstance(entry, UserSequence):
            user, items, times = entry.user_id, entry.item_ids, entry.timestamps
        else:
            user, items, times = entry
        user = str(user)
        if user in seen:
            raise ValueError(f"user {user!r} appears twice in the input sequences; give one sequence per user")
        seen.add(user)
        input_users += 1
        input_interactions += len(items)
        try:
            items, times, was_resorted, dropped = clean_user_sequence([str(i) for i in items], times)
        except ValueError as error:
            raise ValueError(f"user {user!r}: {error}") from None
        resorted += was_resorted
        duplicates += dropped
        if len(items) < MIN_INTERACTIONS:
            short_users += 1
            short_interactions += len(items)
            continue
        user_ids.append(user)
        lengths.append(len(items))
        flat_items.extend(items)
        flat_times.extend(times)
    if short_users:
        logger.info(
            "skipped %d users with fewer than %d interactions (%d interactions)",
            short_users, MIN_INTERACTIONS, short_interactions,
        )
    if resorted:
        logger.info("sorted the interactions of %d users chronologically (stable)", resorted)
    if duplicates:
        logger.info("dropped %d duplicate consecutive interactions (same item, same time)", duplicates)

    n = np.asarray(lengths, dtype=np.int64)
    user_start = np.zeros(len(n), dtype=np.int64)
    if len(n):
        np.cumsum(n[:-1], out=user_start[1:])
    items_array = pa.array(flat_items, type=pa.string())
    times_array = pa.array(flat_times, type=pa.int64())
    users_array = pa.array(user_ids, type=pa.string())

    # Target positions (global index into the flat arrays) and the owning user of each row, per split.
    train_counts = n - MIN_INTERACTIONS
    train_user = np.repeat(np.arange(len(n), dtype=np.int64), train_counts)
    first_row = np.repeat(np.cumsum(train_counts) - train_counts, train_counts)
    train_target = user_start[train_user] + 1 + (np.arange(len(train_user), dtype=np.int64) - first_row)
    all_users = np.arange(len(n), dtype=np.int64)
    targets = {
        "train": (train_user, train_target),
        "validation": (all_users, user_start + n - 2),
        "test": (all_users, user_start + n - 1),
    }
    splits: dict[str, Dataset] = {}
    truncated = 0
    for split in SPLITS:
        owner, target = targets[split]
        starts = np.maximum(user_start[owner], target - max_history)
        ends = target + 1
        truncated += int(np.count_nonzero(starts > user_start[owner]))
        table = pa.Table.from_arrays(
            [
                users_array.take(pa.array(owner, type=pa.int64())),
                _list_array(items_array, starts, ends),
                _list_array(times_array, starts, ends),
            ],
            schema=SEQUENCE_SCHEMA,
        )
        splits[split] = Dataset(table, split=NamedSplit(split))
    report = SplitReport(
        users=len(user_ids),
        items=len(set(flat_items)),
        interactions=len(flat_items),
        rows={split: len(splits[split]) for split in SPLITS},
        max_history=max_history,
        input_users=input_users,
        input_interactions=input_interactions,
        resorted_users=resorted,
        duplicate_interactions=duplicates,
        short_users=short_users,
        short_interactions=short_interactions,
        truncated_rows=truncated,
    )
    return DatasetDict(splits), report


def truncate_history(dataset: Dataset, max_history: int) -> tuple[Dataset, int]:
    """Keep the last ``max_history + 1`` elements of ``item_ids``/``timestamps`` in every row of a split.

    For datasets already in genrec's layout built with a longer history; returns the new split and the
    number of rows that were cut.
    """
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be a positive int, got {max_history!r}")
    table = dataset.with_format("arrow")[:]
    columns = {}
    cut = 0
    for name in ("item_ids", "timestamps"):
        column = table[name].combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        starts, ends = offsets[:-1], offsets[1:]
        new_starts = np.maximum(starts, ends - (max_history + 1))
        cut = max(cut, int(np.count_nonzero(new_starts > starts)))
        columns[name] = _list_array(column.values, new_starts, ends)
    if not cut:
        return dataset, 0
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), column)
    return Dataset(table, split=dataset.split), cut
