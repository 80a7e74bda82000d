"""MovieLens-100K as shipped inside the ``recbole`` 1.2.1 wheel: genrec's embedded, offline dataset.

The files are RecBole "atomic files" (tab separated, typed header):
  * ``ml-100k.inter``: ``user_id:token  item_id:token  rating:float  timestamp:float`` (100,000 rows);
  * ``ml-100k.item``:  ``item_id:token  movie_title:token_seq  release_year:token  class:token_seq``.

They are located through ``importlib.util.find_spec("recbole")`` WITHOUT importing recbole (its import
pulls in its training stack), or read from an explicit folder. Every rating is kept as one implicit
interaction (the papers' practice); the timestamp is the rating time in Unix seconds. Users are listed
in numeric id order. Items get ``item_id``, ``title``, ``year`` (string, as in the file) and ``genres``
(list of strings, the space-separated ``class`` tokens). Result: 943 users, 1,682 items, 100,000
interactions.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from datasets import Dataset

from .splits import DataFormatError, LineErrors, SourceData, UserSequence, count_empty, iter_lines

logger = logging.getLogger(__name__)

INTER_FILE = "ml-100k.inter"
ITEM_FILE = "ml-100k.item"
INSTALL_HINT = (
    "pip install --no-deps recbole==1.2.1  (--no-deps because recbole 1.2.1 pins numpy<2-era "
    "dependencies; genrec only reads the ML-100K data files shipped inside its wheel and never imports it)"
)
ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("title", pa.string()),
        pa.field("year", pa.string()),
        pa.field("genres", pa.list_(pa.string())),
    ]
)


def find_ml100k_dir() -> Path:
    """The ``recbole/dataset_example/ml-100k`` folder of the installed recbole wheel (recbole not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MovieLens-100K is read from the files inside the recbole 1.2.1 wheel, which is not installed. "
            f"Install the files with: {INSTALL_HINT}. Or pass path=<folder with {INTER_FILE} and {ITEM_FILE}>."
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "dataset_example" / "ml-100k"
        if (folder / INTER_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"recbole is installed ({list(spec.submodule_search_locations)}) but has no "
        f"dataset_example/ml-100k/{INTER_FILE}; reinstall it with: {INSTALL_HINT}"
    )


def _header(path: Path, line: str, required: tuple[str, ...]) -> dict[str, int]:
    """Column positions by field name (the part before ':' of RecBole's ``name:type`` header)."""
    names = [column.split(":", 1)[0].strip() for column in line.split("\t")]
    missing = [name for name in required if name not in names]
    if missing:
        raise DataFormatError(
            f"{path}, line 1: header {line!r} lacks the column(s) {missing}; expected a RecBole atomic "
            f"file header with {', '.join(required)}"
        )
    return {name: names.index(name) for name in required}


def _atomic_rows(
    path: Path, errors: LineErrors, required: tuple[str, ...], desc: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, {column: raw field})`` for the data lines of a RecBole atomic file.

    The header (line 1) names the columns; blank lines go to ``errors``; a line with too few fields is
    yielded with the fields it has (the caller's ``KeyError``/``IndexError`` handling reports it). An empty
    file is a :class:`DataFormatError`.
    """
    columns: dict[str, int] = {}
    for number, line in iter_lines(path, desc=desc):
        if number == 1:
            columns = _header(path, line, required)
            continue
        if not line.strip():
            errors.blank_line(path)
            continue
        fields = line.split("\t")
        yield number, {name: fields[index] for name, index in columns.items() if index < len(fields)}
    if not columns:
        raise DataFormatError(f"{path} is empty; expected a RecBole atomic file with a header line")


def _timestamp(text: str) -> int:
    """A Unix timestamp from RecBole's ``float`` column (``881250949`` or ``881250949.0``)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"timestamp {text!r} is not a whole number of seconds") from None
        return int(value)


def _id_order(user: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then any non-numeric ids alphabetically."""
    return (0, int(user), "") if user.isdigit() else (1, 0, user)


def read_interactions(path: Path, errors: LineErrors) -> list[UserSequence]:
    """Per-user (file-order) sequences from ``ml-100k.inter``; users in numeric id order."""
    by_user: dict[str, UserSequence] = {}
    for number, fields in _atomic_rows(path, errors, ("user_id", "item_id", "timestamp"), INTER_FILE):
        try:
            user = fields["user_id"].strip()
            item = fields["item_id"].strip()
            stamp = _timestamp(fields["timestamp"].strip())
            if not user or not item:
                raise ValueError("empty user or item id")
        except (KeyError, ValueError) as error:
            errors(path, number, f"expected tab-separated user_id, item_id, rating, timestamp ({error})")
            continue
        sequence = by_user.get(user)
        if sequence is None:
            sequence = by_user[user] = UserSequence(user, [], [])
        sequence.item_ids.append(item)
        sequence.timestamps.append(stamp)
    return [by_user[user] for user in sorted(by_user, key=_id_order)]


def read_items(path: Path, errors: LineErrors) -> Dataset:
    """The item table from ``ml-100k.item`` (item_id, title, year, genres) in file order."""
    rows: dict[str, list] = {name: [] for name in ITEM_SCHEMA.names}
    seen: set[str] = set()
    for number, fields in _atomic_rows(path, errors, ("item_id", "movie_title", "release_year", "class"), ITEM_FILE):
        try:
            item = fields["item_id"].strip()
            title = fields["movie_title"].strip()
            year = fields["release_year"].strip()
            genres = fields["class"].split()
            if not item:
                raise ValueError("empty item id")
        except (KeyError, ValueError) as error:
            errors(path, number, f"expected tab-separated item_id, movie_title, release_year, class ({error})")
            continue
        if item in seen:
            errors(path, number, f"item {item!r} is listed a second time")
            continue
        seen.add(item)
        for name, value in zip(ITEM_SCHEMA.names, (item, title, year, genres), strict=True):
            rows[name].append(value)
    return Dataset(pa.Table.from_pydict(rows, schema=ITEM_SCHEMA))


def read_ml100k(path: str | Path | None = None, *, on_error: str = "raise") -> SourceData:
    """Read MovieLens-100K from ``path`` (a folder with ml-100k.inter/.item) or the installed recbole wheel."""
    folder = find_ml100k_dir() if path is None else Path(path)
    inter, item = folder / INTER_FILE, folder / ITEM_FILE
    for needed in (inter, item):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found; pass a folder holding {INTER_FILE} and {ITEM_FILE} "
                f"(they ship inside the recbole 1.2.1 wheel: {INSTALL_HINT})"
            )
    errors = LineErrors(on_error)
    sequences = read_interactions(inter, errors)
    items = read_items(item, errors)
    no_title = count_empty(items, "title")
    return SourceData(
        source="ml-100k",
        sequences=sequences,
        items=items,
        skipped=errors.counts(),
        counts={"items_without_title": no_title},
        notes=[
            "MovieLens-100K (GroupLens) as shipped inside the recbole 1.2.1 wheel; every rating is one "
            "implicit interaction.",
            "Timestamps are rating times in Unix seconds; ties keep the file order.",
        ],
        files=[inter, item],
    )
