"""Configuration of UNGER's Stage I fusion model (integrated semantic + collaborative item embeddings).

The config describes the whole model (item vocabulary size, semantic width, encoder, adaptation layer,
fusion, losses), so ``UngerFusionModel.from_pretrained`` rebuilds it exactly. The interpretation choices
behind every option are documented on :class:`UngerFusionConfig` and in ``docs/stage1.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from .config_fields import as_bool, as_float, as_int, as_int_list, as_optional_int, reject_unknown_keys

__all__ = ["UngerFusionConfig"]

MODES = ("unger", "semantic_only", "collaborative_only", "concat")
FUSIONS = ("sum", "gate", "mlp")
ENCODERS = ("din", "sasrec")
DIN_QUERIES = ("last", "mean", "target")
DIN_NORMALIZATIONS = ("none", "softmax")
ADALN_CONDITIONS = ("projected", "semantic")
SIMILARITIES = ("cosine", "dot")
COLLABORATIVE_NORMS = ("none", "layernorm")
LOSS_TYPES = ("full", "sampled")

# Fields that do not change what the model computes (bookkeeping written by transformers or by us).
_HASH_EXCLUDED = frozenset(
    {"transformers_version", "architectures", "_name_or_path", "auto_map", "torch_dtype", "dtype", "genrec_version"}
)


# Renamed fields (old -> new, the transformers names UngerConfig uses too). The hash keeps hashing the old
# names, so that Stage I fingerprints of earlier runs stay valid and their runs resume.
_LEGACY_NAMES = {"num_heads": "num_attention_heads", "num_layers": "num_hidden_layers", "max_history": "max_history_items"}
_HASH_NAMES = {new: old for old, new in _LEGACY_NAMES.items()}


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"UngerFusionConfig.{name} must be one of {list(allowed)}, got {value!r}.")
    return str(value)


_OWNER = "UngerFusionConfig"


def _sizes(name: str, value: Sequence[int]) -> list[int]:
    return as_int_list(_OWNER, name, value, minimum=1)


class UngerFusionConfig(PretrainedConfig):
    """Everything that defines an UNGER Stage I model (paper §3.3), with the interpretation choices named.

    Item vocabulary: index 0 is padding, items are ``1..num_items`` in the order of the dataset's
    ``items`` config.

    Args:
        num_items: N, number of items (the embedding tables have N + 1 rows; row 0 is padding).
        semantic_dim: width of the frozen semantic embeddings (384 for all-MiniLM-L6-v2, 4096 for
            Llama-2-7b).
        hidden_size: width d of the collaborative space, the integrated embedding and the user vector
            (paper: 128).
        mode: ``"unger"`` (fused ID + adapted semantic embedding, trained with L_next + alpha * L_align),
            ``"semantic_only"`` (the adapted semantic embedding alone; no ID table, no alignment loss),
            ``"collaborative_only"`` (the ID embedding alone; no semantic input) or ``"concat"`` (the paper's
            §4.3 baseline: a collaborative-only model whose exported item embedding is
            ``[l2norm(PCA_d(semantic)), l2norm(ID embedding)]``, width 2d; the PCA-reduced semantic table is
            a buffer computed once when the semantic embeddings are set).
        fusion: how the ID embedding ``c`` and the adapted semantic embedding ``s`` make the integrated
            embedding in ``"unger"`` mode: ``"sum"`` (c + s), ``"gate"`` (g * c + (1 - g) * s with a learned
            per-dimension sigmoid gate g = sigmoid(W [c; s] + b)) or ``"mlp"`` (Linear-act-Linear over
            [c; s]). The paper does not say how the two are combined (its equations are lost in our copy).
            Default ``"gate"``: best validation Recall@10 of the three on ML-100K (docs/stage1.md).
        collaborative_norm: ``"none"`` (default) or ``"layernorm"``: a LayerNorm without affine on the ID
            embedding before fusion. The adapted semantic embedding leaves AdaLN with norm ~sqrt(d) while
            ID embeddings start at std ``initializer_range``; on Beauty the trained ID embeddings end ~14x
            smaller, so the semantic part dominates the integrated embedding's geometry. The option puts
            both on the same scale (docs/stage1.md has the measured effect).
        collaborative_encoder: ``"din"`` (the paper's choice, Zhou et al. 2018) or ``"sasrec"`` (causal
            self-attention, Kang & McAuley 2018).
        max_history_items: longest history the encoder reads (paper: 20); SASRec's number of positions.
        din_query: what DIN's target attention attends with. ``"last"`` (default): the most recent history
            item's representation, so the user vector does not depend on the candidate and full-corpus
            next-item prediction is one dot product per item; ``"mean"``: the masked mean of the history;
            ``"target"``: the candidate item itself (DIN's true target attention, one user vector per
            candidate; only with ``loss_type="sampled"``, and evaluation costs users x items x history).
        din_attention_hidden_sizes: hidden widths of DIN's activation unit MLP([h, q, h - q, h * q]) -> 1
            (DIN paper: 80, 40).
        din_attention_normalization: ``"none"`` (DIN: raw activation weights, no softmax, which keeps the
            intensity of interest) or ``"softmax"`` over the valid history positions.
        din_mlp_hidden_sizes: hidden widths of the MLP([pooled, query]) -> user vector (DIN paper: 200, 80).
        hidden_act: activation of the MLPs (paper Table 4: ReLU); any ``transformers`` ACT2FN name.
        num_hidden_layers, num_attention_heads, intermediate_size: SASRec blocks (pre-LayerNorm transformer encoder layers).
        dropout: dropout on SASRec inputs/blocks and DIN MLPs (paper Table 4: 0).
        adaln_condition: what AdaLN's scale and shift are predicted from: ``"projected"`` (default: the
            projected embedding W s + b itself, i.e. "conditioned on the input itself") or ``"semantic"``
            (the raw frozen semantic embedding).
        align_weight: alpha in L = L_next + alpha * L_align (paper: 1).
        align_temperature: InfoNCE temperature tau (default 0.07, SimCLR/CLIP-style).
        align_similarity: ``"cosine"`` (default) or ``"dot"``.
        align_symmetric: False (default, the paper's direction: each item's collaborative embedding is the
            anchor, the batch's adapted semantic embeddings are the candidates) or True (mean of both
            directions, CLIP-style).
        align_max_items: cap on the number of distinct in-batch items used by the alignment loss (a random
            subset, drawn with torch's global RNG; default 1024). A batch of 256 histories of 20 items
            holds ~4,000 distinct items on Beauty, and the (items x items) InfoNCE over all of them costs
            more than the rest of the step on a CPU; None uses them all.
        loss_type: ``"full"`` (softmax over all N items, default) or ``"sampled"`` (softmax over the target
            and ``num_negatives`` uniformly sampled items shared by the batch, accidental hits masked).
        num_negatives: negatives per batch for ``loss_type="sampled"``.
        layer_norm_eps, initializer_range: numerics and initialisation.
    """

    model_type = "unger_fusion"
    attribute_map = dict(_LEGACY_NAMES)  # config.num_heads / num_layers / max_history still read (and write)

    def __init__(
        self,
        num_items: int = 1,
        semantic_dim: int = 384,
        hidden_size: int = 128,
        mode: str = "unger",
        fusion: str = "gate",
        collaborative_norm: str = "none",
        collaborative_encoder: str = "din",
        max_history_items: int = 20,
        din_query: str = "last",
        din_attention_hidden_sizes: Sequence[int] = (80, 40),
        din_attention_normalization: str = "none",
        din_mlp_hidden_sizes: Sequence[int] = (200, 80),
        hidden_act: str = "relu",
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 256,
        dropout: float = 0.0,
        adaln_condition: str = "projected",
        align_weight: float = 1.0,
        align_temperature: float = 0.07,
        align_similarity: str = "cosine",
        align_symmetric: bool = False,
        align_max_items: int | None = 1024,
        loss_type: str = "full",
        num_negatives: int = 1024,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        # Names before genrec 0.2 (configs saved by earlier versions still load; attribute_map keeps
        # config.num_heads etc. readable).
        for old, new in _LEGACY_NAMES.items():
            if old in kwargs:
                value = kwargs.pop(old)
                if new == "max_history_items":
                    max_history_items = value
                elif new == "num_hidden_layers":
                    num_hidden_layers = value
                else:
                    num_attention_heads = value
        reject_unknown_keys(self, kwargs)  # a misspelled field would otherwise be a silent stray attribute
        self.num_items = as_int(_OWNER, "num_items", num_items, minimum=1)
        self.semantic_dim = as_int(_OWNER, "semantic_dim", semantic_dim, minimum=1)
        self.hidden_size = as_int(_OWNER, "hidden_size", hidden_size, minimum=1)
        self.mode = _choice("mode", mode, MODES)
        self.fusion = _choice("fusion", fusion, FUSIONS)
        self.collaborative_norm = _choice("collaborative_norm", collaborative_norm, COLLABORATIVE_NORMS)
        self.collaborative_encoder = _choice("collaborative_encoder", collaborative_encoder, ENCODERS)
        self.max_history_items = as_int(_OWNER, "max_history_items", max_history_items, minimum=1)
        self.din_query = _choice("din_query", din_query, DIN_QUERIES)
        self.din_attention_hidden_sizes = _sizes("din_attention_hidden_sizes", din_attention_hidden_sizes)
        self.din_attention_normalization = _choice(
            "din_attention_normalization", din_attention_normalization, DIN_NORMALIZATIONS
        )
        self.din_mlp_hidden_sizes = _sizes("din_mlp_hidden_sizes", din_mlp_hidden_sizes)
        self.hidden_act = str(hidden_act)
        self.num_hidden_layers = as_int(_OWNER, "num_hidden_layers", num_hidden_layers, minimum=1)
        self.num_attention_heads = as_int(_OWNER, "num_attention_heads", num_attention_heads, minimum=1)
        self.intermediate_size = as_int(_OWNER, "intermediate_size", intermediate_size, minimum=1)
        self.dropout = as_float(_OWNER, "dropout", dropout, minimum=0)
        self.adaln_condition = _choice("adaln_condition", adaln_condition, ADALN_CONDITIONS)
        self.align_weight = as_float(_OWNER, "align_weight", align_weight, minimum=0)
        self.align_temperature = as_float(_OWNER, "align_temperature", align_temperature)
        self.align_similarity = _choice("align_similarity", align_similarity, SIMILARITIES)
        self.align_symmetric = as_bool(_OWNER, "align_symmetric", align_symmetric)
        self.align_max_items = as_optional_int(_OWNER, "align_max_items", align_max_items)
        self.loss_type = _choice("loss_type", loss_type, LOSS_TYPES)
        self.num_negatives = as_int(_OWNER, "num_negatives", num_negatives)
        self.layer_norm_eps = as_float(_OWNER, "layer_norm_eps", layer_norm_eps, above=0)
        self.initializer_range = as_float(_OWNER, "initializer_range", initializer_range, minimum=0)
        if self.collaborative_encoder == "sasrec" and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"UngerFusionConfig: hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}) for the SASRec encoder."
            )
        if self.din_query == "target" and (self.collaborative_encoder != "din" or self.loss_type != "sampled"):
            raise ValueError(
                "UngerFusionConfig: din_query='target' (one user vector per candidate) needs "
                "collaborative_encoder='din' and loss_type='sampled'; full-corpus softmax with target "
                "attention costs users x items x history."
            )
        if self.align_temperature <= 0:
            raise ValueError(f"UngerFusionConfig.align_temperature must be > 0, got {align_temperature}.")
        if self.loss_type == "sampled" and self.num_negatives < 1:
            raise ValueError("UngerFusionConfig.num_negatives must be >= 1 with loss_type='sampled'.")
        if self.align_max_items is not None and self.align_max_items < 2:
            raise ValueError("UngerFusionConfig.align_max_items must be >= 2 (InfoNCE needs negatives) or None.")
        super().__init__(**kwargs)

    @property
    def uses_semantic(self) -> bool:
        """Whether the model reads the semantic embeddings (all modes but ``collaborative_only``)."""
        return self.mode != "collaborative_only"

    @property
    def uses_collaborative(self) -> bool:
        """Whether the model has an item-ID embedding table (all modes but ``semantic_only``)."""
        return self.mode != "semantic_only"

    @property
    def uses_alignment(self) -> bool:
        """Whether the cross-modality alignment loss is part of training (``unger`` mode only)."""
        return self.mode == "unger" and self.align_weight > 0

    @property
    def integrated_dim(self) -> int:
        """Width of the exported item embedding (2d for ``concat``, d otherwise)."""
        return 2 * self.hidden_size if self.mode == "concat" else self.hidden_size

    def config_hash(self) -> str:
        """sha256 of the fields that define the model (bookkeeping fields excluded), for provenance."""
        fields = {_HASH_NAMES.get(k, k): v for k, v in self.to_dict().items() if k not in _HASH_EXCLUDED}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode("utf-8")).hexdigest()


# Saved folders carry this file and an ``auto_map`` entry (trust_remote_code=True without genrec).
UngerFusionConfig.register_for_auto_class()
