"""Configuration of UNGER's Stage II generative recommender (encoder-decoder over semantic-ID code tokens).

The config describes the model completely, including what binds it to one code table: the vocabulary size,
the number of code positions per item (D), each position's codebook size and token offset, and the code
table's content hash. ``UngerForGenerativeRecommendation`` refuses a tokenizer whose code table differs (see
:func:`~.modeling_unger.check_tokenizer_compatibility`). Every interpretation of the paper is named on
:class:`UngerConfig` and in ``docs/stage2.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from .config_fields import as_bool, as_float, as_int, as_int_list, as_optional_int, reject_unknown_keys

__all__ = ["HISTORY_ITEM_EMBEDDINGS", "HISTORY_MODES", "UngerConfig", "history_item_parts"]

HISTORY_MODES = ("flattened", "per_item")
HISTORY_ITEM_EMBEDDINGS = ("none", "id", "integrated", "integrated+id")


def history_item_parts(mode: str) -> frozenset[str]:
    """The per-item vectors a ``history_item_embedding`` mode adds to a history position: a subset of
    ``{"id", "integrated"}`` (one place that knows ``"integrated+id"`` means both)."""
    return frozenset() if mode == "none" else frozenset(mode.split("+"))

#: Ids of the special tokens of genrec's semantic-ID vocabulary (``SemanticIDTokenizer``).
PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
_NUM_SPECIALS = 4

# Fields that do not change what the model computes (bookkeeping written by transformers or by us).
_HASH_EXCLUDED = frozenset(
    {"transformers_version", "architectures", "_name_or_path", "auto_map", "torch_dtype", "dtype", "genrec_version"}
)


# Fields added after models were trained: at their default they leave the hash as it was, so that runs
# started by an earlier version still resume (the hash is part of every checkpoint's fingerprint).
_HASH_OMITTED_AT_DEFAULT: dict[str, Any] = {"num_transitions": 0, "transition_weight": 0.0,
                                             "transition_smoothing": 0.0}

_OWNER = "UngerConfig"


def _positive(name: str, value: Any) -> int:
    return as_int(_OWNER, name, value, minimum=1)


class UngerConfig(PretrainedConfig):
    """Everything that defines an UNGER Stage II model (paper §3.4-3.5, Table 4), interpretations named.

    Code binding (filled by :meth:`from_tokenizer`; the model checks a tokenizer against them):

    Args:
        vocab_size: tokens of the semantic-ID vocabulary: ``<pad>``=0, ``</s>``=1, ``<s>``=2 (the decoder
            start token, the paper's <BOS>), ``<unk>``=3, then the code tokens level by level.
        num_code_levels: D, code tokens per item (semantic levels + the collision level when present).
        codebook_sizes: K_d, code tokens at each of the D positions.
        code_token_offsets: token id of code 0 at each position (code c at depth d = offset_d + c).
        code_table_hash: content hash of the code table the model is trained with (None: not bound yet).
        num_items: items in that code table (rows of the integrated-embedding buffer).

    Architecture (paper Table 4 defaults):

    Args:
        d_model: embedding / model width (96).
        encoder_layers: encoder layers (1). decoder_layers: decoder layers (4).
        num_attention_heads: heads in every attention block (6).
        ffn_dim: feed-forward width, the paper's "hidden size" (256).
        activation_function: FFN activation, any ``transformers`` ACT2FN name ("relu").
        dropout: dropout on embeddings, attention outputs and FFNs (0). attention_dropout: on attention
            weights (0).
        norm_first: pre-LayerNorm blocks with a final LayerNorm (default True; the paper does not say; pre-LN
            trains stably at lr 1e-3 with a short warm-up). False: post-LN (original Transformer).
        layer_norm_eps, initializer_range: numerics and initialisation (normal(0, 0.02), zero biases).
        max_history_items: most history items the encoder reads (20, the paper's history cap); one learned
            item-position embedding per recency (0 = the most recent item).
        history_mode: how the history enters the encoder. ``"per_item"`` (default): one position per item,
            the sum of its D code-token embeddings plus its item-position (recency) embedding (D times
            shorter sequences: 2.8x cheaper training steps and beam searches on CPU; our option, not the
            paper's); ``"flattened"``: D positions per item, each the sum of its code-token embedding, its
            item-position embedding and its code-level embedding (TIGER-style). On Beauty at equal steps
            flattened was only 4 % better in test Recall@10 (within 1.5 standard errors), so per_item is the
            better trade-off (docs/stage2.md).
        history_item_embedding: what, besides its codes, a history item contributes to its encoder position
            (``per_item`` mode only). ``"none"`` (default, the paper): the sum of its code embeddings.
            ``"id"``: plus a learned per-item embedding (meant to give back the identity the code sum blurs;
            on Beauty it recalls fewer pairs seen once than ``"integrated"`` and is 17 % lower at NDCG@10).
            ``"integrated"``: plus a learned linear map of the item's frozen Stage-I integrated embedding (the
            default profile's). ``"integrated+id"``: both. Our options, not the paper's (docs/quality.md measures
            each). The item is found from its codes inside the model (a sorted key buffer installed by
            :meth:`~UngerForGenerativeRecommendation.set_history_items`), so tokenizer, ``generate`` and
            ``recommend`` are unchanged.
        tie_word_embeddings: share the token embedding with the output projection (default False, as
            MSCGRec's "unbound output embedding table"; True ties them, TIGER/T5-style).

    Intra-modality knowledge distillation (paper §3.4.3, Eq. 11-12):

    Args:
        distillation_weight: lambda in L = L_rec + lambda * L_ikd (paper: 1). 0, or a model without
            integrated embeddings, trains plain TIGER-style with L_rec only.
        distillation_temperature: InfoNCE temperature tau over cosine similarities (default 0.07; the paper's
            Eq. 11 is lost in our copy).
        distillation_negatives: None (default): every other item of the corpus is a negative (full softmax
            over the N integrated embeddings); an int n: n items drawn uniformly per batch (shared by the
            batch, with torch's global RNG), the target masked out where drawn. The paper's prose names "a
            randomly selected" negative, i.e. n=1.
        integrated_dim: width of the Stage-I integrated item embeddings (0: none; the model then has no
            distillation head and no embedding buffer).
        integrated_embeddings_hash: sha256 of the installed integrated-embedding matrix (provenance).

    Constrained training (MSCGRec §3.3, Eq. 6):

    Args:
        constrained_training: normalise each step's softmax only over the valid children of the
            teacher-forced prefix in the code tree (default False). Beam search of such a model should score
            beams the same way (``recommend`` re-normalises the constrained scores by default).
        label_smoothing: epsilon of label-smoothed cross-entropy on the code tokens (default 0: plain
            cross-entropy). The smoothing mass is spread over the tokens the softmax normalises over: the valid
            children of the prefix under ``constrained_training``, else the whole vocabulary (as
            ``torch.nn.functional.cross_entropy(label_smoothing=)``). Training only; docs/quality.md measures it.

    Transition prior (genrec's addition, not the paper's; docs/quality.md measures it):

    Args:
        num_transitions: stored (item, next item) pairs of the first-order transition table installed by
            :meth:`~UngerForGenerativeRecommendation.set_transition_prior` (0: none).
        transition_weight: w in ``p = (1 - w) p_model + w p_transition(item | last history item)``, the
            interpolation ``recommend`` ranks by (0: the model alone). The generative model does not memorise
            item pairs seen once or twice in training; the table does, and the mixture beats both.
        transition_smoothing: c in ``p_transition = count(last -> item) / (count(last -> *) + c)``, the
            additive smoothing the installed table was fitted with (0: plain frequencies; a record, the table
            holds the smoothed values). An item left only a few times in training then pushes its successors
            less far up; docs/quality.md measures it.
    """

    model_type = "unger"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "decoder_layers"}

    def __init__(
        self,
        vocab_size: int = _NUM_SPECIALS + 4 * 256,
        num_code_levels: int = 4,
        codebook_sizes: Sequence[int] | None = None,
        code_token_offsets: Sequence[int] | None = None,
        code_table_hash: str | None = None,
        num_items: int = 0,
        d_model: int = 96,
        encoder_layers: int = 1,
        decoder_layers: int = 4,
        num_attention_heads: int = 6,
        ffn_dim: int = 256,
        activation_function: str = "relu",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        max_history_items: int = 20,
        history_mode: str = "per_item",
        history_item_embedding: str = "none",
        tie_word_embeddings: bool = False,
        distillation_weight: float = 1.0,
        distillation_temperature: float = 0.07,
        distillation_negatives: int | None = None,
        integrated_dim: int = 0,
        integrated_embeddings_hash: str | None = None,
        constrained_training: bool = False,
        label_smoothing: float = 0.0,
        num_transitions: int = 0,
        transition_weight: float = 0.0,
        transition_smoothing: float = 0.0,
        use_cache: bool = True,
        pad_token_id: int = PAD_ID,
        eos_token_id: int = EOS_ID,
        bos_token_id: int = BOS_ID,
        decoder_start_token_id: int = BOS_ID,
        is_encoder_decoder: bool = True,
        **kwargs: Any,
    ) -> None:
        reject_unknown_keys(self, kwargs)  # a misspelled field would otherwise be a silent stray attribute
        depth = _positive("num_code_levels", num_code_levels)
        sizes = [256] * depth if codebook_sizes is None else as_int_list(_OWNER, "codebook_sizes", codebook_sizes)
        if len(sizes) != depth or any(k < 1 for k in sizes):
            raise ValueError(
                f"UngerConfig.codebook_sizes must hold {depth} positive sizes (one per code level), got {sizes}."
            )
        if code_token_offsets is None:
            offsets, start = [], _NUM_SPECIALS
            for k in sizes:
                offsets.append(start)
                start += k
        else:
            offsets = as_int_list(_OWNER, "code_token_offsets", code_token_offsets)
        if len(offsets) != depth:
            raise ValueError(f"UngerConfig.code_token_offsets must hold {depth} ints, got {offsets}.")
        for d in range(depth):
            if offsets[d] < _NUM_SPECIALS or (d and offsets[d] < offsets[d - 1] + sizes[d - 1]):
                raise ValueError(
                    f"UngerConfig.code_token_offsets {offsets} overlap the special tokens or each other for "
                    f"codebook_sizes {sizes}."
                )
        vocab_size = _positive("vocab_size", vocab_size)
        if vocab_size < offsets[-1] + sizes[-1]:
            raise ValueError(
                f"UngerConfig.vocab_size={vocab_size} does not cover the code tokens (last id "
                f"{offsets[-1] + sizes[-1] - 1})."
            )
        if history_mode not in HISTORY_MODES:
            raise ValueError(f"UngerConfig.history_mode must be one of {list(HISTORY_MODES)}, got {history_mode!r}.")
        if history_item_embedding not in HISTORY_ITEM_EMBEDDINGS:
            raise ValueError(
                f"UngerConfig.history_item_embedding must be one of {list(HISTORY_ITEM_EMBEDDINGS)}, got "
                f"{history_item_embedding!r}."
            )
        if history_item_embedding != "none" and history_mode != "per_item":
            raise ValueError(
                f"UngerConfig.history_item_embedding={history_item_embedding!r} needs history_mode='per_item' "
                "(one encoder position per history item)."
            )
        d_model = _positive("d_model", d_model)
        heads = _positive("num_attention_heads", num_attention_heads)
        if d_model % heads:
            raise ValueError(f"UngerConfig.d_model ({d_model}) must be divisible by num_attention_heads ({heads}).")
        distillation_temperature = as_float(_OWNER, "distillation_temperature", distillation_temperature, above=0)
        distillation_weight = as_float(_OWNER, "distillation_weight", distillation_weight, minimum=0)
        distillation_negatives = as_optional_int(_OWNER, "distillation_negatives", distillation_negatives, minimum=1)
        integrated_dim = as_int(_OWNER, "integrated_dim", integrated_dim, minimum=0)
        num_items = as_int(_OWNER, "num_items", num_items, minimum=0)

        self.vocab_size = vocab_size
        self.num_code_levels = depth
        self.codebook_sizes = sizes
        self.code_token_offsets = offsets
        self.code_table_hash = None if code_table_hash is None else str(code_table_hash)
        self.num_items = num_items
        self.d_model = d_model
        self.encoder_layers = _positive("encoder_layers", encoder_layers)
        self.decoder_layers = _positive("decoder_layers", decoder_layers)
        self.num_attention_heads = heads
        self.ffn_dim = _positive("ffn_dim", ffn_dim)
        self.activation_function = str(activation_function)
        self.dropout = as_float(_OWNER, "dropout", dropout, minimum=0)
        self.attention_dropout = as_float(_OWNER, "attention_dropout", attention_dropout, minimum=0)
        self.norm_first = as_bool(_OWNER, "norm_first", norm_first)
        self.layer_norm_eps = as_float(_OWNER, "layer_norm_eps", layer_norm_eps, above=0)
        self.initializer_range = as_float(_OWNER, "initializer_range", initializer_range, minimum=0)
        self.max_history_items = _positive("max_history_items", max_history_items)
        self.history_mode = history_mode
        self.history_item_embedding = history_item_embedding
        self.distillation_weight = distillation_weight
        self.distillation_temperature = distillation_temperature
        self.distillation_negatives = distillation_negatives
        self.integrated_dim = integrated_dim
        self.integrated_embeddings_hash = integrated_embeddings_hash
        self.constrained_training = as_bool(_OWNER, "constrained_training", constrained_training)
        self.label_smoothing = as_float(_OWNER, "label_smoothing", label_smoothing, minimum=0)
        if self.label_smoothing >= 1:
            raise ValueError(f"{_OWNER}.label_smoothing must be < 1, got {self.label_smoothing}")
        self.num_transitions = as_int(_OWNER, "num_transitions", num_transitions, minimum=0)
        self.transition_weight = as_float(_OWNER, "transition_weight", transition_weight, minimum=0)
        if self.transition_weight > 1:
            raise ValueError(f"UngerConfig.transition_weight must be in [0, 1], got {transition_weight!r}.")
        self.transition_smoothing = as_float(_OWNER, "transition_smoothing", transition_smoothing, minimum=0)
        self.use_cache = as_bool(_OWNER, "use_cache", use_cache)
        super().__init__(
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            bos_token_id=bos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    # ------------------------------------------------------------------------------------------ helpers

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> UngerConfig:
        """A config bound to ``tokenizer``'s code table (duck-typed: ``modeling`` never imports tokenization).

        Reads ``len(tokenizer)``, ``code_token_offsets``, ``code_table`` (``codebook_sizes``, ``num_levels``,
        ``content_hash``, ``len``) and the special token ids; ``kwargs`` set the other hyper-parameters.
        """
        return cls(**{**kwargs, **code_binding(tokenizer)})

    def init_values(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this config (``to_dict`` without what transformers adds)."""
        values = self.to_dict()
        for key in ("model_type", "transformers_version", "architectures"):
            values.pop(key, None)
        return values

    def bind_to_tokenizer(self, tokenizer: Any) -> UngerConfig:
        """A copy of this config with the code-binding fields taken from ``tokenizer`` (others kept)."""
        values = self.init_values()
        values.update(code_binding(tokenizer))
        return type(self)(**values)

    @property
    def decoder_positions(self) -> int:
        """Decoder positions: the start token, D codes and the distillation token (D + 2)."""
        return self.num_code_levels + 2

    @property
    def uses_distillation(self) -> bool:
        """Whether training adds L_ikd (a positive weight and integrated embeddings in the model)."""
        return self.distillation_weight > 0 and self.integrated_dim > 0

    def config_hash(self) -> str:
        """sha256 of the fields that define the model (bookkeeping fields excluded), for provenance."""
        fields = {
            k: v for k, v in self.to_dict().items()
            if k not in _HASH_EXCLUDED and not (k in _HASH_OMITTED_AT_DEFAULT and v == _HASH_OMITTED_AT_DEFAULT[k])
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def code_binding(tokenizer: Any) -> dict[str, Any]:
    """The config fields that bind a model to ``tokenizer``'s code table (vocabulary, codes, hash, items)."""
    missing = [a for a in ("code_table", "code_token_offsets") if not hasattr(tokenizer, a)]
    if missing:
        raise TypeError(
            f"{type(tokenizer).__name__} has no {', '.join(missing)}: UNGER needs a semantic-ID tokenizer "
            "(genrec SemanticIDTokenizer)"
        )
    table = tokenizer.code_table
    specials = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    expected = {"pad_token_id": PAD_ID, "eos_token_id": EOS_ID, "bos_token_id": BOS_ID}
    if specials != expected:
        raise ValueError(f"the tokenizer's special token ids {specials} are not the semantic-ID layout {expected}")
    return {
        "vocab_size": len(tokenizer),
        "num_code_levels": int(table.num_levels),
        "codebook_sizes": [int(k) for k in table.codebook_sizes],
        "code_token_offsets": [int(o) for o in tokenizer.code_token_offsets],
        "code_table_hash": str(table.content_hash),
        "num_items": len(table),
    }


# Saved folders carry this file and an ``auto_map`` entry: AutoConfig loads them with trust_remote_code=True
# where genrec is not installed.
UngerConfig.register_for_auto_class()
