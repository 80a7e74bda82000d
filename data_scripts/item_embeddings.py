"""``ItemEmbeddings``: item ids + one float32 vector per item + how they were made, as one safetensors file."""


from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

FORMAT_NAME = "genrec.item_embeddings"
FORMAT_VERSION = "1"
_HEADER_KEY = "genrec_item_embeddings"
_TENSOR_NAME = "embeddings"
# safetensors refuses headers above 100 MB; keep a margin for the other metadata.
_MAX_HEADER_BYTES = 90_000_000
ITEM_ID_COLUMN = "item_id"

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
