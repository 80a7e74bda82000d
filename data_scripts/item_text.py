"""Item texts: the template language that renders an item row's text fields into one string, and the hash of
the rendered texts (part of the embedding cache key)."""


from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

from .item_embeddings import ITEM_ID_COLUMN

logger = logging.getLogger(__name__)

# Known text fields of genrec item tables, in the order the default template lists them, with labels.
_KNOWN_FIELDS: tuple[tuple[str, str], ...] = (
    ("title", "Title"),
    ("name", "Name"),
    ("year", "Year"),
    ("release_year", "Year"),
    ("brand", "Brand"),
    ("store", "Store"),
    ("author", "Author"),
    ("categories", "Categories"),
    ("category", "Category"),
    ("main_category", "Category"),
    ("genres", "Genres"),
    ("tags", "Tags"),
    ("price", "Price"),
    ("features", "Features"),
    ("description", "Description"),
)
# Columns that identify or rank items but carry no text worth embedding (used by the fallback template).
_NON_TEXT_FIELDS = frozenset(
    {
        "item_id",
        "asin",
        "parent_asin",
        "id",
        "sales_rank",
        "salesrank",
        "rank",
        "imurl",
        "image",
        "images",
        "image_url",
        "url",
        "related",
        "also_buy",
        "also_view",
        "bought_together",
        "timestamp",
        "timestamps",
        "num_ratings",
        "rating_number",
        "average_rating",
        "index",
    }
)
# A template segment ends after list/sentence punctuation followed by whitespace, or at a line break.
_SEGMENT_SEPARATOR = re.compile(r"[.,;!?|]+\s+|\s*\n\s*")
_SENTENCE_END = frozenset(".!?")
_FIELD_ROOT = re.compile(r"[^\[\]]+")
_PLAIN_NAME = re.compile(r"[^{}\[\].:!]+")

# --------------------------------------------------------------------------------------------------
# Templates and item texts
# --------------------------------------------------------------------------------------------------


def default_template(column_names: Sequence[str]) -> str:
    """A readable template over the known text fields present, e.g. ``"Title: {title}. Brand: {brand}."``.

    Known fields (title, name, year, brand, store, author, categories, genres, tags, price, features,
    description) are listed in that order, each as its own ``"Label: {field}."`` segment so that a missing
    value drops only its own segment; description comes last because truncation cuts the end. When none is
    present, every column except ids and non-text bookkeeping (asin, sales_rank, images, ...) is used.
    """
    columns = list(column_names)
    present = set(columns)
    chosen = [(name, label) for name, label in _KNOWN_FIELDS if name in present]
    if not chosen:
        chosen = [
            (name, name.replace("_", " ").capitalize())
            for name in columns
            if name.lower() not in _NON_TEXT_FIELDS and _PLAIN_NAME.fullmatch(name)
        ]
    if not chosen:
        raise ValueError(
            f"the items have no text field to embed (columns: {columns}); pass a template such as "
            "'Title: {title}.' over the columns that hold item text."
        )
    return " ".join(f"{label}: {{{name}}}." for name, label in chosen)


@dataclass(frozen=True)
class _Field:
    name: str
    root: str
    conversion: str | None
    format_spec: str


@dataclass
class _Segment:
    parts: list[str | _Field]
    separator: str

    @property
    def fields(self) -> list[_Field]:
        return [p for p in self.parts if isinstance(p, _Field)]


def _parse_template(template: str, columns: Sequence[str]) -> list[_Segment]:
    """Split a template into segments (see :func:`render_item_texts`) and check its field names."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError("the item text template is empty; pass e.g. 'Title: {title}.'")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"item text template {template!r} is not a valid str.format template ({error}); "
            "write literal braces as '{{' and '}}'."
        ) from None
    available = ", ".join(columns)
    segments: list[_Segment] = [_Segment([], "")]
    for literal, name, format_spec, conversion in parsed:
        # Literal text: cut at separators; the separator closes the current segment.
        pos = 0
        for match in _SEGMENT_SEPARATOR.finditer(literal):
            if match.start() > pos:
                segments[-1].parts.append(literal[pos : match.start()])
            segments[-1].separator = match.group()
            segments.append(_Segment([], ""))
            pos = match.end()
        if pos < len(literal):
            segments[-1].parts.append(literal[pos:])
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ValueError(
                f"item text template {template!r} has a positional field '{{{name}}}'; name the item "
                f"column instead, one of: {available}."
            )
        if "." in name:
            raise ValueError(
                f"item text template {template!r}: attribute access ('{{{name}}}') is not allowed; "
                "use a column name, optionally indexed like {categories[0]}."
            )
        root_match = _FIELD_ROOT.match(name)
        root = root_match.group() if root_match else name
        if root not in columns:
            raise ValueError(
                f"item text template {template!r} uses the field '{{{root}}}', which is not an item "
                f"column; available columns: {available}."
            )
        if format_spec and ("{" in format_spec):
            raise ValueError(
                f"item text template {template!r}: nested fields in format specs are not supported."
            )
        segments[-1].parts.append(_Field(name, root, conversion, format_spec or ""))
    segments = [s for s in segments if s.parts or s.separator.strip()]
    if not any(s.fields for s in segments):
        raise ValueError(
            f"item text template {template!r} has no {{field}}: every item would get the same text; "
            f"use the item columns: {available}."
        )
    return segments


def _value_text(value: Any) -> str:
    """Plain text of one field value; "" means missing (None, NaN, blank strings, empty lists)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        texts = (_value_text(v) for v in value)
        return ", ".join(t for t in texts if t)
    return str(value).strip()


def _field_text(field_: _Field, row: dict[str, Any], formatter: string.Formatter) -> str:
    if row.get(field_.root) is None:
        return ""
    try:
        value, _ = formatter.get_field(field_.name, (), row)
    except (IndexError, KeyError):
        return ""  # e.g. {categories[3]} on an item with fewer categories: a missing value
    if value is None or _value_text(value) == "":
        return ""
    if not field_.conversion and not field_.format_spec:
        return _value_text(value)
    if isinstance(value, (list, tuple, str)):
        value = _value_text(value)
    if field_.conversion:
        value = formatter.convert_field(value, field_.conversion)
    return formatter.format_field(value, field_.format_spec).strip()


def _render_rows(
    segments: list[_Segment], columns: dict[str, list[Any]], ids: Sequence[str], template: str
) -> list[str]:
    formatter = string.Formatter()
    roots = list(columns)
    n_segments = len(segments)
    texts: list[str] = []
    for i, item_id in enumerate(ids):
        row = {name: columns[name][i] for name in roots}
        kept: list[tuple[int, str]] = []
        any_value = False
        for index, segment in enumerate(segments):
            pieces: list[str] = []
            complete = True
            for part in segment.parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                try:
                    text = _field_text(part, row, formatter)
                except (ValueError, TypeError) as error:
                    raise ValueError(
                        f"item {item_id!r}: cannot format field '{{{part.name}}}' of template {template!r} "
                        f"with value {row.get(part.root)!r}: {error}"
                    ) from None
                if not text:
                    complete = False
                    break
                pieces.append(text)
            if not complete:
                continue
            any_value = any_value or bool(segment.fields)
            kept.append((index, "".join(pieces)))
        if not any_value:
            texts.append("")
            continue
        out: list[str] = []
        for k, (index, body) in enumerate(kept):
            out.append(body)
            separator = segments[index].separator
            if k + 1 < len(kept):
                out.append(separator)
            elif index + 1 < n_segments:
                # The segments after this one were dropped: keep a sentence end, drop a list separator.
                end = separator.strip()
                if end and set(end) <= _SENTENCE_END and not body.rstrip().endswith(tuple(_SENTENCE_END)):
                    out.append(end)
        texts.append("".join(out).strip())
    return texts


def checked_item_ids(items: Dataset) -> list[str]:
    """The items' ids, checked: present, strings, unique."""
    if ITEM_ID_COLUMN not in items.column_names:
        raise ValueError(f"the items have no '{ITEM_ID_COLUMN}' column (columns: {items.column_names}).")
    ids = items[ITEM_ID_COLUMN]
    ids = list(ids)
    bad = [i for i, v in enumerate(ids) if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"item ids must be strings; row {bad[0]} has {ids[bad[0]]!r} ({type(ids[bad[0]]).__name__}); "
            f"cast the column first: items.cast_column('{ITEM_ID_COLUMN}', datasets.Value('string'))."
        )
    if len(set(ids)) != len(ids):
        dupes = sorted(v for v, n in Counter(ids).items() if n > 1)
        raise ValueError(
            f"{len(dupes)} item ids occur more than once, e.g. {dupes[:10]}; item ids must be unique."
        )
    return ids


def render_item_texts(items: Dataset, template: str | None = None) -> list[str]:
    """One text per item (in row order), filled from the item's fields through ``template``.

    The template is ``str.format``-style over item columns (``{title}``, ``{categories[0]}``, format
    specs and ``!r``/``!s`` conversions work; attribute access does not). List values are joined with
    ``", "``; values are stripped, and None, NaN, blank strings and empty lists count as missing.

    Missing values drop their whole segment, so no "Brand: ." is ever left behind. Segments are cut in
    the template's literal text after punctuation followed by whitespace (``". "``, ``", "``, ``"; "``,
    ``"| "``, ``"! "``, ``"? "``) or at a line break; a segment is dropped when any field in it is
    missing (put optional fields in segments of their own: ``"{title} ({year})"`` is one segment). When
    trailing segments are dropped the last kept one keeps a sentence-ending ``.``/``!``/``?`` but not a
    list separator. The result is stripped of surrounding whitespace.

    An item whose every field is missing gets the empty string; such items are counted and reported with
    a warning (their ids in the log) rather than dropped, because every item needs an embedding.
    """
    template = default_template(items.column_names) if template is None else template
    segments = _parse_template(template, items.column_names)
    ids = checked_item_ids(items)
    roots = sorted({f.root for s in segments for f in s.fields})
    columns = items.select_columns(roots).to_dict() if roots else {}
    texts = _render_rows(segments, columns, ids, template)
    empty = [item_id for item_id, text in zip(ids, texts, strict=True) if not text]
    if empty:
        logger.warning(
            "%d of %d items have an empty text under template %r (all its fields missing); they are "
            "embedded from the empty string. First ids: %s",
            len(empty),
            len(ids),
            template,
            empty[:10],
        )
    return texts


def hash_item_texts(item_ids: Sequence[str], texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for item_id, text in zip(item_ids, texts, strict=True):
        digest.update(json.dumps([item_id, text], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def items_hash(items: Dataset, template: str | None) -> str:
    """sha256 over the (item_id, rendered text) rows in order: what the encoder sees, nothing else.

    Changing a column the template does not use keeps the hash; changing a title, the order of the items
    or the template's wording changes it. ``template=None`` means :func:`default_template`.
    """
    return hash_item_texts(checked_item_ids(items), render_item_texts(items, template))
