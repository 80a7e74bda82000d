"""``embed_items`` / ``embed_dataset``: item embeddings computed once and reused, under a key covering
everything that changes the numbers (see :mod:`genrec.data_scripts.embeddings`)."""


from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from datasets import Dataset

from .item_embeddings import FORMAT_VERSION, ItemEmbeddings
from .item_text import checked_item_ids, default_template, hash_item_texts, render_item_texts
from .text_encoders import (
    DEFAULT_ENCODER,
    EncoderSpec,
    encode_texts,
    load_encoder,
    resolve_encoder,
    resolve_pooling,
)

logger = logging.getLogger(__name__)

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
    # encoder problems first: they are the likelier mistake on a command line
    spec = resolve_encoder(encoder, revision=encoder_revision)
    resolved = resolve_pooling(spec, pooling)
    template = default_template(items.column_names) if template is None else template
    texts = render_item_texts(items, template)
    item_ids = checked_item_ids(items)
    rows_hash = hash_item_texts(item_ids, texts)
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

    from genrec._version import __version__ as genrec_version

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
    map_batches: Callable[..., list] | None = None,
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
        map_batches=map_batches,
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
    map_batches: Callable[..., list] | None = None,
    write: bool = True,
) -> ItemEmbeddings:
    """Embed every item's rendered text (:func:`render_item_texts`) with ``encoder``; rows follow ``items``.

    ``encoder``: None for the packaged all-MiniLM-L6-v2, a local ``save_pretrained`` folder, or a Hub
    name. ``pooling``: see :func:`resolve_pooling`. ``dtype`` (default float32; a dtype or a name such as
    ``"bfloat16"``) is the model's compute dtype; the result is always float32. ``normalize``
    L2-normalises each vector (all-MiniLM-L6-v2's sentence-transformers pipeline does; off by default).
    With ``cache_dir``, a file ``<encoder>-<key16>.safetensors`` there whose key matches is loaded
    instead of recomputing (and a fresh result is written there); the key covers encoder identity,
    template, pooling, max_length, dtype, normalize and the items hash, not batch size or device.

    Under a multi-process launch every process calls it with ``map_batches`` (the items' batches are split
    across the processes and gathered back in order, so every process gets the one-process result) and only
    the main process writes the file (``write``).
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
        plan, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype, normalize=normalize,
        show_progress=show_progress, map_batches=map_batches,
    )
    if path is not None and write:
        _save(result, path)
    return result


def _save(result: ItemEmbeddings, path: Path) -> None:
    result.save(path)
    logger.info("saved item embeddings to %s", path)


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
    map_batches: Callable[..., list] | None = None,
    write: bool = True,
) -> tuple[Path, ItemEmbeddings]:
    """Embed the ``items`` config of a genrec dataset (local folder or Hub id); returns (file, embeddings).

    ``revision`` pins a Hub dataset, ``encoder_revision`` a Hub encoder (branch, tag or commit).

    The items come from ``datasets.load_dataset(data, "items", split="train")`` (or ``load_items(data)``).
    By default the file is ``<data>/embeddings/<encoder>-<key16>.safetensors`` for a local folder and
    ``~/.cache/genrec/embeddings/<owner--name>/...`` for a Hub id; an existing file with the same cache key
    is reused. An explicit ``out`` holding embeddings of another job is replaced (with a warning).
    ``map_batches`` / ``write``: as for :func:`embed_items` (a multi-process launch: the items split across the
    processes, the file written by the main process).
    """
    local = Path(data).expanduser().is_dir()
    if load_items is None:
        from .dataset_loading import ITEMS_CONFIG, load_config

        def load_items(source: str) -> Dataset:
            loaded = load_config(source, ITEMS_CONFIG, revision=None if local else revision)
            if "train" not in loaded:
                raise ValueError(f"{source}: config 'items' has no split 'train' (splits: {list(loaded)})")
            return loaded["train"]

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
    if path.exists() and write:
        logger.warning("replacing %s: it holds embeddings made with other settings or items", path)
    result = _compute(
        plan, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype, normalize=normalize,
        show_progress=show_progress, map_batches=map_batches,
    )
    if write:
        _save(result, path)
    return path, result
