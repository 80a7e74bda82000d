"""UNGER Stage II: an encoder-decoder that reads a history of item codes and generates the next item's code.

Paper §3.4-3.5 (UNGER): the encoder (1 layer) reads the user's history as semantic-ID code tokens; the decoder
(4 layers) generates the target item's D codes after the start token ``<s>`` (the paper's <BOS>), trained with
cross-entropy (L_rec); a learnable *distillation token* appended after the target codes (training only) is
trained contrastively against the target's Stage-I integrated embedding (L_ikd, intra-modality knowledge
distillation), ``L = L_rec + lambda * L_ikd``. Inference is beam search restricted to existing codes
(``genrec.modeling.constrained_decoding.SemanticIDLogitsProcessor``). Optionally (MSCGRec), the softmax of
every training step is normalised over the valid children of the teacher-forced prefix only.

Interpretations (the paper's equations are lost in our copy; see ``docs/stage2.md``):

* Blocks are standard Transformer blocks (multi-head attention, ReLU FFN), pre-LayerNorm by default.
* History embedding: ``history_mode="flattened"`` gives D encoder positions per item (code token + item
  recency + code level embeddings); ``"per_item"`` gives one position per item (sum of its D code-token
  embeddings + item recency embedding). Recency 0 is the most recent item, so padding side does not matter.
* Decoder positions: learned absolute embeddings for the start token, the D codes and the distillation token.
* The distillation token is a free parameter (not a vocabulary entry, so generation can never emit it); its
  final hidden state is projected linearly to the integrated-embedding width and compared by cosine / tau
  with the target's integrated embedding (positive) and the other items' (negatives: all, or n sampled).
  Under the decoder's causal mask no code position can attend to it, so L_rec and generation are untouched.
* The integrated embeddings are a persistent buffer (saved in ``model.safetensors``): a checkpoint is
  self-contained for continued training (12,101 x 128 float32 = 6.2 MB for Beauty), and its content hash
  is recorded in the config. They are not needed for inference.

KV caching follows Bart (transformers 5): ``generate()`` passes an ``EncoderDecoderCache`` and only the
newest decoder token; self-attention keys/values are appended per layer, cross-attention keys/values are
computed once and reused (``is_updated``). The model never imports ``genrec.tokenization``: tokenizers are
duck-typed and code tables enter as plain tensors (the prefix index).
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, LogitsProcessorList, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from .configuration_unger import UngerConfig, history_item_parts
from .constrained_decoding import SemanticIDLogitsProcessor, code_tree_fingerprint, prefix_index_from_codes
from .safe_weights import SafetensorsOnlyMixin
from .transition_prior import TransitionPriorMixin, mix_transition_scores

__all__ = [
    "UngerForGenerativeRecommendation",
    "UngerPreTrainedModel",
    "UngerSeq2SeqLMOutput",
    "check_tokenizer_compatibility",
    "EXCLUSION_STEP",
    "exclusion_width",
    "item_id_lists",
    "recommend_excluding_history",
    "shift_tokens_right",
]

logger = logging.getLogger(__name__)


@dataclass
class UngerSeq2SeqLMOutput(Seq2SeqLMOutput):
    """``Seq2SeqLMOutput`` plus the two loss terms and the distillation embedding.

    Args:
        loss: ``loss_rec + distillation_weight * loss_ikd`` (``loss_rec`` alone without distillation).
        loss_rec: cross-entropy of the target codes (+ eos), constrained to the valid children of each
            prefix when ``constrained_training``.
        loss_ikd: the distillation InfoNCE (None when distillation is off).
        distillation_embeddings: ``(batch, integrated_dim)`` projected distillation-token states (training
            with distillation only).
    """

    loss_rec: torch.Tensor | None = None
    loss_ikd: torch.Tensor | None = None
    distillation_embeddings: torch.Tensor | None = None


# transformers >= 5.24 names the output's cache field ``cache`` (``past_key_values`` before).
_CACHE_FIELD = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"


def _keep_item_codes_when_missing(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` of a checkpoint written before models carried ``item_codes`` keeps the current ones."""
    key = prefix + "item_codes"
    if key not in state_dict and hasattr(module, "item_codes"):
        state_dict[key] = module.item_codes.detach().clone()


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``[<s>, labels[:-1]]`` (``-100`` replaced by ``<pad>``)."""
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def check_tokenizer_compatibility(config: UngerConfig, tokenizer: Any) -> None:
    """Raise ``ValueError`` unless ``tokenizer``'s code table is exactly the one ``config`` was built for.

    Compares the content hash (when the config records one), the number of code levels, the codebook sizes,
    the code-token offsets, the vocabulary size and the special token ids. Duck-typed: ``tokenizer`` needs
    ``code_table`` and ``code_token_offsets`` (a genrec ``SemanticIDTokenizer``).
    """
    if not hasattr(tokenizer, "code_table") or not hasattr(tokenizer, "code_token_offsets"):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a semantic-ID tokenizer (no code_table / code_token_offsets); "
            "load the tokenizer saved with this model (SemanticIDTokenizer.from_pretrained(model_dir))"
        )
    table = tokenizer.code_table
    found = {
        "code_table_hash": str(table.content_hash),
        "num_code_levels": int(table.num_levels),
        "codebook_sizes": [int(k) for k in table.codebook_sizes],
        "code_token_offsets": [int(o) for o in tokenizer.code_token_offsets],
        "vocab_size": len(tokenizer),
        "pad/eos/start ids": [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id],
    }
    wanted = {
        "code_table_hash": config.code_table_hash,
        "num_code_levels": config.num_code_levels,
        "codebook_sizes": list(config.codebook_sizes),
        "code_token_offsets": list(config.code_token_offsets),
        "vocab_size": config.vocab_size,
        "pad/eos/start ids": [config.pad_token_id, config.eos_token_id, config.decoder_start_token_id],
    }
    if config.code_table_hash is None:
        wanted.pop("code_table_hash")
    if config.num_items:
        found["num_items"], wanted["num_items"] = len(table), config.num_items
    diff = {key: (found[key], value) for key, value in wanted.items() if found[key] != value}
    if diff:
        details = "; ".join(f"{key}: tokenizer {got!r} vs model {exp!r}" for key, (got, exp) in diff.items())
        raise ValueError(
            f"the tokenizer's code table does not match this UNGER model ({details}). The model was trained on "
            f"code table {config.code_table_hash}; load the tokenizer saved with the model "
            "(SemanticIDTokenizer.from_pretrained on the model folder) or retrain for the new code table"
        )


def item_id_lists(histories: Sequence[Sequence[Any]], tokenizer: Any) -> list[list[Any]]:
    """``histories`` as lists of item ids: an int whose decimal string is an item id of ``tokenizer``'s code table
    becomes that string (item ids are strings; ``1`` can only mean ``"1"``); everything else is kept as given,
    so that the tokenizer reports it (an unknown id, or a string where a list of ids belongs)."""
    if isinstance(histories, (str, bytes)):
        raise TypeError(
            "histories must be a list of histories (lists of item ids, oldest first), got a single string; "
            'wrap one history as [history], e.g. [["1", "50", "181"]] or ["1 50 181".split()]'
        )
    convert = getattr(tokenizer, "item_id", None)
    table = tokenizer.code_table

    def as_id(value: Any) -> Any:
        if convert is not None:
            return convert(value)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and str(int(value)) in table:
            return str(int(value))
        return value

    return [history if isinstance(history, (str, bytes)) else [as_id(v) for v in history] for history in histories]


#: History exclusion decodes this many beams beyond ``k`` first; a history with more of its own items among them is
#: decoded again with ``k`` + its length rounded up to a multiple of this (so that histories of similar length
#: share one beam search).
EXCLUSION_STEP = 8


def exclusion_width(num_history_items: int, *, k: int, num_beams: int, num_items: int) -> int:
    """Beams that leave ``k`` items after dropping ``num_history_items`` distinct known history items:
    ``max(num_beams, k + h)``, ``h`` rounded up to a multiple of :data:`EXCLUSION_STEP` and ``k + h`` capped at
    the catalogue size (a beam search of ``w`` beams returns ``w`` distinct items, at most ``h`` of them the
    history's). Depends on the history alone, never on the other histories of a batch."""
    rounded = -(-int(num_history_items) // EXCLUSION_STEP) * EXCLUSION_STEP
    return max(int(num_beams), min(int(num_items), int(k) + rounded))


def recommend_excluding_history(
    recommend: Callable[[list[int], int], list[list[tuple[str | None, float]]]],
    histories: Sequence[Sequence[str]],
    *,
    k: int,
    num_beams: int,
    num_items: int,
    is_item: Callable[[str], bool],
) -> list[list[tuple[str | None, float]]]:
    """Top-``k`` ``(item, score)`` per history with the history's own items removed.

    ``recommend(rows, width)`` must return, for the histories at positions ``rows``, the plain ranking of a beam
    search with ``width`` beams (its best ``min(width, num_items)`` items; no exclusion). Two passes, so that the
    common case costs few extra beams and every case gets ``k`` items:

    1. every history is decoded with ``max(num_beams, k + EXCLUSION_STEP)`` beams (capped at the catalogue) and
       its own items are dropped;
    2. a history left with fewer than ``k`` items (more than :data:`EXCLUSION_STEP` of its own items ranked that
       high) is decoded again with :func:`exclusion_width` beams for its ``h`` distinct known items, which leaves
       ``k`` whenever the catalogue has ``k`` items outside the history; otherwise all of those are returned.

    Items and scores are those of the plain ranking of the pass that decided, history items left out. Each
    history's result depends on that history and the settings only (never on its batch-mates), so a history gets
    the same items alone and in a batch. Shared by UNGER's and TTDS's ``recommend``.
    """
    seen = [{item for item in history if isinstance(item, str)} for history in histories]
    known = [sum(1 for item in items if is_item(item)) for items in seen]
    out: list[list[tuple[str | None, float]]] = [[] for _ in histories]
    first = max(int(num_beams), min(int(num_items), int(k) + EXCLUSION_STEP))
    retry: dict[int, list[int]] = {}
    rows = list(range(len(histories)))
    for r, row in zip(rows, recommend(rows, first) if rows else [], strict=True):
        out[r] = [(item, score) for item, score in row if item not in seen[r]][:k]
        width = exclusion_width(known[r], k=k, num_beams=num_beams, num_items=num_items)
        if row and len(out[r]) < k and width > first:
            retry.setdefault(width, []).append(r)
    for width, again in sorted(retry.items()):
        for r, row in zip(again, recommend(again, width), strict=True):
            out[r] = [(item, score) for item, score in row if item not in seen[r]][:k]
    return out


# --------------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------------


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, S) additive attention bias: 0 for real keys, the dtype's minimum for padding.

    A finite minimum (not -inf) keeps a row without any real key finite (uniform attention) instead of NaN.
    """
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


class UngerAttention(nn.Module):
    """Multi-head attention (self or cross) with Bart's ``EncoderDecoderCache`` handling."""

    def __init__(self, config: UngerConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.d_model // config.num_attention_heads
        self.attention_dropout = config.attention_dropout
        self.layer_idx = layer_idx
        d = config.d_model
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_bias: torch.Tensor | None = None,
        past_key_values: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        """``hidden_states`` (B, Q, d) attend to themselves, or to ``key_value_states`` (cross-attention).

        With a cache: self-attention appends this step's keys/values and attends over all of them;
        cross-attention computes the encoder's keys/values on the first call and reuses them afterwards.
        """
        is_cross = key_value_states is not None
        query = self._heads(self.q_proj(hidden_states))
        cache = None
        if past_key_values is not None:
            cache = past_key_values.cross_attention_cache if is_cross else past_key_values.self_attention_cache
        reuse = is_cross and cache is not None and past_key_values.is_updated.get(self.layer_idx, False)
        if reuse:
            key = cache.layers[self.layer_idx].keys
            value = cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross else hidden_states
            key, value = self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
            if cache is not None:
                key, value = cache.update(key, value, self.layer_idx)
                if is_cross:
                    past_key_values.is_updated[self.layer_idx] = True
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_bias,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(*hidden_states.shape[:2], -1))


class UngerFeedForward(nn.Module):
    """Position-wise FFN: Linear(d, ffn) - activation - dropout - Linear(ffn, d)."""

    def __init__(self, config: UngerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)
        self.act = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the FFN to every position."""
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class UngerEncoderLayer(nn.Module):
    """Self-attention + FFN, each a residual sub-block (pre- or post-LayerNorm per ``config.norm_first``)."""

    def __init__(self, config: UngerConfig, layer_idx: int) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.self_attn = UngerAttention(config, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = UngerFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def _block(self, x: torch.Tensor, norm: nn.LayerNorm, fn: Any) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(fn(norm(x)))
        return norm(x + self.dropout(fn(x)))

    def forward(self, hidden_states: torch.Tensor, attention_bias: torch.Tensor) -> torch.Tensor:
        """One encoder layer over (B, S, d) with the (B, 1, 1, S) padding bias."""
        x = self._block(
            hidden_states, self.self_attn_layer_norm, lambda h: self.self_attn(h, attention_bias=attention_bias)
        )
        return self._block(x, self.final_layer_norm, self.ffn)


class UngerDecoderLayer(UngerEncoderLayer):
    """Causal self-attention + cross-attention to the encoder + FFN (cached in generation)."""

    def __init__(self, config: UngerConfig, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.encoder_attn = UngerAttention(config, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        causal_bias: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        encoder_bias: torch.Tensor,
        past_key_values: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        """One decoder layer over (B, T, d); ``past_key_values`` holds earlier steps when generating."""
        x = self._block(
            hidden_states,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(h, attention_bias=causal_bias, past_key_values=past_key_values),
        )
        x = self._block(
            x,
            self.encoder_attn_layer_norm,
            lambda h: self.encoder_attn(
                h, key_value_states=encoder_hidden_states, attention_bias=encoder_bias, past_key_values=past_key_values
            ),
        )
        return self._block(x, self.final_layer_norm, self.ffn)


class UngerEncoder(nn.Module):
    """History encoder; owns the token embedding shared with the decoder (``get_encoder()`` returns it)."""

    main_input_name = "input_ids"

    def __init__(self, config: UngerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.item_positions = nn.Embedding(config.max_history_items, d)
        if config.history_mode == "flattened":
            self.code_levels = nn.Embedding(config.num_code_levels, d)
        mode = getattr(config, "history_item_embedding", "none")
        if mode != "none":
            n = config.num_items
            if n < 1:
                raise ValueError(
                    f"history_item_embedding={mode!r} needs config.num_items (build the config with "
                    "UngerConfig.from_tokenizer / bind_to_tokenizer)"
                )
            parts = history_item_parts(mode)
            if "integrated" in parts and config.integrated_dim < 1:
                raise ValueError(
                    f"history_item_embedding={mode!r} needs the width of the Stage-I integrated embeddings "
                    "(config.integrated_dim > 0; train_stage2 sets it from integrated_embeddings)"
                )
            # Sorted mixed-radix keys of the items' codes and their code-table rows: the encoder finds each
            # history item's row from its code tokens (installed by set_history_items; saved with the model).
            self.register_buffer("history_item_keys", torch.full((n,), -1, dtype=torch.long), persistent=True)
            self.register_buffer("history_item_rows", torch.arange(n, dtype=torch.long), persistent=True)
            if "id" in parts:
                self.history_item_ids = nn.Embedding(n + 1, d, padding_idx=n)
            if "integrated" in parts:
                self.register_buffer(
                    "history_item_features", torch.zeros(n, config.integrated_dim), persistent=True
                )
                self.history_item_proj = nn.Linear(config.integrated_dim, d, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(UngerEncoderLayer(config, i) for i in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()

    def item_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token-level (B, L*D) mask -> the mask of the encoder's positions (per item in ``per_item`` mode)."""
        if self.config.history_mode == "flattened":
            return attention_mask
        depth = self.config.num_code_levels
        return attention_mask[:, ::depth]

    def _recency(self, mask: torch.Tensor, per_position: int) -> torch.Tensor:
        """Item recency (0 = most recent) of every position, from the real tokens to its right."""
        after = mask.flip(-1).cumsum(-1).flip(-1)  # real positions at or after this one
        items = torch.div(mask.sum(-1), per_position, rounding_mode="floor")
        if bool((items > self.config.max_history_items).any()):
            raise ValueError(
                f"a history has {int(items.max())} items but this model reads at most "
                f"max_history_items={self.config.max_history_items}; encode histories with "
                f"tokenizer.encode_history(..., max_items={self.config.max_history_items})"
            )
        recency = torch.div((after - 1).clamp(min=0), per_position, rounding_mode="floor")
        return recency.clamp(max=self.config.max_history_items - 1)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L*D) history tokens -> encoder input embeddings and the mask of those positions."""
        config = self.config
        depth = config.num_code_levels
        mask = attention_mask.long()
        if bool((mask.sum(-1) % depth).any()):
            raise ValueError(
                f"the attention mask must cover whole items ({depth} code tokens each): some rows have "
                f"{mask.sum(-1).tolist()} real tokens; encode histories with tokenizer.encode_history"
            )
        tokens = self.embed_tokens(input_ids)
        if config.history_mode == "flattened":
            offsets = torch.tensor(config.code_token_offsets, dtype=input_ids.dtype, device=input_ids.device)
            levels = torch.bucketize(input_ids.contiguous(), offsets, right=True) - 1
            levels = levels.clamp(0, depth - 1)
            x = tokens + self.code_levels(levels) + self.item_positions(self._recency(mask, depth))
            return x, mask
        batch, width = input_ids.shape
        if width % depth:
            raise ValueError(f"per_item history mode needs whole items: width {width} is not a multiple of D={depth}")
        blocks = mask.view(batch, width // depth, depth)
        if bool((blocks.amin(-1) != blocks.amax(-1)).any()):
            raise ValueError(
                "per_item history mode needs items aligned to multiples of D in the token row (encode histories "
                "with tokenizer.encode_history, which pads whole items)"
            )
        item_mask = blocks[..., 0]
        x = tokens.view(batch, width // depth, depth, -1).sum(2) + self.item_positions(self._recency(item_mask, 1))
        mode = getattr(config, "history_item_embedding", "none")
        if mode != "none":
            rows = self.history_item_rows_of(input_ids.view(batch, width // depth, depth), item_mask)
            parts = history_item_parts(mode)
            if "id" in parts:
                x = x + self.history_item_ids(rows)
            if "integrated" in parts:
                found = (rows < config.num_items).unsqueeze(-1)
                features = self.history_item_features[rows.clamp(max=config.num_items - 1)] * found
                x = x + self.history_item_proj(features)
        return x, item_mask

    def history_item_keys_of(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., D) code values -> (...) mixed-radix int64 keys (-1 where a code is out of its level's range)."""
        sizes = self.config.codebook_sizes
        key = torch.zeros(codes.shape[:-1], dtype=torch.long, device=codes.device)
        valid = torch.ones(codes.shape[:-1], dtype=torch.bool, device=codes.device)
        for d, k in enumerate(sizes):
            code = codes[..., d].long()
            valid &= (code >= 0) & (code < k)
            key = key * k + code.clamp(0, k - 1)
        return torch.where(valid, key, torch.full_like(key, -1))

    def history_item_rows_of(self, item_tokens: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D) history code tokens -> (B, L) code-table rows; ``num_items`` for padding / unknown codes."""
        offsets = torch.tensor(self.config.code_token_offsets, dtype=torch.long, device=item_tokens.device)
        keys = self.history_item_keys_of(item_tokens.long() - offsets)
        table = self.history_item_keys
        pos = torch.searchsorted(table, keys).clamp_(max=table.numel() - 1)
        found = (table[pos] == keys) & (keys >= 0) & item_mask.bool()
        return torch.where(found, self.history_item_rows[pos], torch.full_like(pos, self.config.num_items))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        """Encodes (B, L*D) history tokens; ``attention_mask`` 1 on real tokens (default: all real)."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        x, mask = self.embed(input_ids, attention_mask)
        x = self.dropout(x)
        bias = padding_bias(mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return BaseModelOutput(last_hidden_state=self.layer_norm(x))


class UngerDecoder(nn.Module):
    """Decoder stack; token embeddings come from the encoder's table (passed in as ``inputs_embeds``)."""

    def __init__(self, config: UngerConfig) -> None:
        super().__init__()
        self.config = config
        self.positions = nn.Embedding(config.decoder_positions, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(UngerDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.layer_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()
        )

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_mask: torch.Tensor,
        past_key_values: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        """(B, T, d) decoder input embeddings -> (B, T, d) final states (positions continue after the cache)."""
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        length = inputs_embeds.shape[1]
        if past + length > self.config.decoder_positions:
            raise ValueError(
                f"the decoder reads at most {self.config.decoder_positions} positions (start token, "
                f"D={self.config.num_code_levels} codes, distillation token), got {past + length}; generate with "
                f"max_new_tokens <= D + 1"
            )
        device = inputs_embeds.device
        position_ids = torch.arange(past, past + length, device=device)
        x = self.dropout(inputs_embeds + self.positions(position_ids)[None])
        causal = None
        if length > 1:
            keys = torch.arange(past + length, device=device)
            blocked = keys[None, :] > position_ids[:, None]
            causal = torch.zeros(blocked.shape, dtype=x.dtype, device=device)
            causal = causal.masked_fill(blocked, torch.finfo(x.dtype).min)[None, None]
        encoder_bias = padding_bias(encoder_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, causal, encoder_hidden_states, encoder_bias, past_key_values)
        return self.layer_norm(x)


# --------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------


class UngerPreTrainedModel(SafetensorsOnlyMixin, PreTrainedModel):
    """Weight initialisation and loading glue for the Stage II model (weights from safetensors only)."""

    config_class = UngerConfig
    base_model_prefix = "unger"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults (normal(0, initializer_range) weights and embeddings, zero biases and padding
        row, unit LayerNorms) plus the distillation token (normal(0, initializer_range))."""
        super()._init_weights(module)
        if isinstance(module, UngerForGenerativeRecommendation) and hasattr(module, "distillation_token"):
            init.normal_(module.distillation_token, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, UngerForGenerativeRecommendation) and hasattr(module, "item_codes"):
            init.constant_(module.item_codes, -1)  # "not installed" (checkpoints older than the buffer)


class UngerForGenerativeRecommendation(UngerPreTrainedModel, GenerationMixin, TransitionPriorMixin):
    """UNGER Stage II: history codes -> next item's codes, with optional distillation and constrained training.

    Inputs: ``input_ids`` / ``attention_mask`` (B, L*D) from ``tokenizer.encode_history`` (any padding side);
    ``labels`` (B, D + 1) from ``tokenizer.encode_targets`` (codes + ``</s>``); for distillation
    ``target_item_indices`` (B,), the targets' code-table rows; for constrained training an optional
    ``constraint_mask`` (B, D + 1, V) bool of allowed tokens (else built from :meth:`set_prefix_index`).

    Use ``generate(**inputs, num_beams=K, num_return_sequences=K, max_new_tokens=D + 1,
    logits_processor=[SemanticIDLogitsProcessor.from_tokenizer(tok)])`` or :meth:`recommend`. The optional
    first-order transition prior (:meth:`set_transition_prior`, mixed into :meth:`recommend`) comes from
    :class:`~.transition_prior.TransitionPriorMixin` (``transition_prior.py``).
    """

    _tied_weights_keys = {"lm_head.weight": "encoder.embed_tokens.weight"}
    encoder_class: type[UngerEncoder] = UngerEncoder  # model families that read more per history item override it

    def __init__(self, config: UngerConfig) -> None:
        super().__init__(config)
        self.encoder = self.encoder_class(config)
        self.decoder = UngerDecoder(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.uses_distillation:
            if config.num_items < 1:
                raise ValueError(
                    "config.integrated_dim > 0 needs config.num_items (rows of the integrated-embedding buffer): "
                    "build the config with UngerConfig.from_tokenizer(tokenizer, ...)"
                )
            # Only models with a distillation head carry the token, so that no parameter is ever unused
            # (DistributedDataParallel refuses unused parameters by default).
            self.distillation_token = nn.Parameter(torch.zeros(config.d_model))
            self.distillation_proj = nn.Linear(config.d_model, config.integrated_dim)
            self.register_buffer(
                "integrated_embeddings", torch.zeros(config.num_items, config.integrated_dim), persistent=True
            )
        if config.num_items > 0:
            # The code of every item (code-table row order), saved with the weights so that the model alone
            # can constrain generate() to existing items; -1 = not installed yet (set_code_table).
            self.register_buffer(
                "item_codes",
                torch.full((config.num_items, config.num_code_levels), -1, dtype=torch.int32),
                persistent=True,
            )
            self.register_load_state_dict_pre_hook(_keep_item_codes_when_missing)
        if config.num_transitions > 0:
            self._register_transition_buffers(config.num_items, config.num_transitions)
        self._constraint: SemanticIDLogitsProcessor | None = None
        self._processors: dict[tuple[str | None, int], SemanticIDLogitsProcessor] = {}
        self._own_processors: dict[int, SemanticIDLogitsProcessor] = {}
        self._own_fingerprint: str | None = None
        self.post_init()
        self._set_generation_defaults()

    def _set_generation_defaults(self) -> None:
        """``generate(**inputs)`` without arguments is a top-k recommendation: a beam search of D codes + eos.

        ``num_beams`` = ``num_return_sequences`` = min(10, items); sums of log-probabilities
        (``length_penalty=0``); softmax over allowed tokens when the model was trained that way. Saved as
        ``generation_config.json`` and overridable per call, as in any transformers model.
        """
        config, gen = self.config, self.generation_config
        if gen is None:
            return
        beams = max(1, min(10, config.num_items or 10))
        gen.max_new_tokens = config.num_code_levels + 1
        gen.num_beams = beams
        gen.num_return_sequences = beams
        gen.do_sample = False
        gen.length_penalty = 0.0
        gen.early_stopping = True
        gen.renormalize_logits = bool(config.constrained_training)
        gen.decoder_start_token_id = config.decoder_start_token_id
        gen.eos_token_id = config.eos_token_id
        gen.pad_token_id = config.pad_token_id
        gen.bos_token_id = config.bos_token_id

    # ------------------------------------------------------------------ plumbing

    def get_encoder(self, modality: str | None = None) -> UngerEncoder:
        """The history encoder (``generate`` runs it once per batch)."""
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (encoder and decoder inputs)."""
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replace the token embedding."""
        self.encoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        """The output projection to the vocabulary."""
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        """Replace the output projection."""
        self.lm_head = value

    @staticmethod
    def _reorder_cache(past_key_values: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam-search cache reordering (``generate`` calls this hook when the model defines it).

        Only the self-attention cache is reordered. ``beam_idx`` only moves rows within the beams of one batch
        entry, and those rows share their encoder output (``generate`` repeats it per beam), hence their
        cross-attention keys/values: reordering them (Bart's default) is an exact no-op that copied the
        largest tensors of the search every step (about half the time of a 20-beam search on CPU).
        """
        if isinstance(past_key_values, EncoderDecoderCache):
            past_key_values.self_attention_cache.reorder_cache(beam_idx)
        else:
            past_key_values.reorder_cache(beam_idx)
        return past_key_values

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.save_pretrained``; the folder also carries the modeling source and an ``auto_map``
        for ``AutoModel`` and ``AutoModelForSeq2SeqLM`` (``trust_remote_code=True`` without genrec)."""
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModelForSeq2SeqLM", f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}")
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise a clear ``ValueError`` unless ``tokenizer``'s code table is the one this model was built for."""
        check_tokenizer_compatibility(self.config, tokenizer)

    # ------------------------------------------------------------------ history item embeddings

    @torch.no_grad()
    def set_history_items(self, codes: Any, features: torch.Tensor | None = None) -> None:
        """Install the catalogue for ``config.history_item_embedding``: ``codes`` (N, D) code values in code-table
        row order (``tokenizer.code_table.codes``), and for ``"integrated"`` the (N, integrated_dim) Stage-I
        embeddings in the same order (default: the installed distillation targets)."""
        config = self.config
        mode = getattr(config, "history_item_embedding", "none")
        if mode == "none":
            raise ValueError("this model has config.history_item_embedding='none': it has no history item table")
        codes = torch.tensor(np.asarray(codes), dtype=torch.long)  # a copy: code tables hand out read-only arrays
        if codes.shape != (config.num_items, config.num_code_levels):
            raise ValueError(
                f"codes must be ({config.num_items}, {config.num_code_levels}) in code-table row order, got "
                f"{tuple(codes.shape)}"
            )
        encoder = self.encoder
        self._install_history_keys(codes)
        if "integrated" in history_item_parts(mode):
            if features is None:
                installed = getattr(self, "integrated_embeddings", None)
                if installed is None or not bool(installed.abs().sum() > 0):
                    raise ValueError(f"history_item_embedding={mode!r} needs the Stage-I integrated embeddings")
                features = installed
            table, digest = self._checked_integrated_table(features, "history item features")
            encoder.history_item_features.copy_(table.to(encoder.history_item_features.device))
            if not config.uses_distillation:  # provenance of the features when no distillation table records it
                config.integrated_embeddings_hash = digest

    def _install_history_keys(self, codes: torch.Tensor) -> None:
        """Fill the encoder's sorted (key, row) table that finds a history item's code-table row from its codes."""
        encoder = self.encoder
        keys = encoder.history_item_keys_of(codes)
        if bool((keys < 0).any()):
            raise ValueError("codes hold values outside the codebook sizes of this model's config")
        order = torch.argsort(keys)
        if bool((keys[order][1:] == keys[order][:-1]).any()):
            raise ValueError("two items share a code: the code table must identify every item")
        encoder.history_item_keys.copy_(keys[order].to(encoder.history_item_keys.device))
        encoder.history_item_rows.copy_(order.to(encoder.history_item_rows.device))

    # ------------------------------------------------------------------ the model's own code table

    @torch.no_grad()
    def set_code_table(self, tokenizer: Any) -> None:
        """Install the item codes of ``tokenizer``'s code table (checked against the config) in ``item_codes``.

        Saved with the weights, they let ``generate()`` constrain decoding to existing items with no
        tokenizer at hand (:meth:`default_logits_processor`), and let the model refuse a processor built
        from other codes.
        """
        self.check_tokenizer(tokenizer)
        if not hasattr(self, "item_codes"):
            raise ValueError("this model has no item_codes buffer (config.num_items is 0)")
        codes = torch.from_numpy(np.array(tokenizer.code_table.codes, dtype=np.int32))
        if tuple(codes.shape) != tuple(self.item_codes.shape):
            raise ValueError(
                f"the code table's codes have shape {tuple(codes.shape)}, the model expects "
                f"{tuple(self.item_codes.shape)}"
            )
        self.item_codes.copy_(codes.to(self.item_codes.device))
        self._own_processors, self._own_fingerprint = {}, None

    @property
    def has_code_table(self) -> bool:
        """Whether the item codes are installed (every item has a code), i.e. ``generate`` can constrain itself."""
        codes = getattr(self, "item_codes", None)
        return codes is not None and codes.numel() > 0 and bool((codes >= 0).all())

    def default_logits_processor(self, num_beams: int = 1) -> SemanticIDLogitsProcessor:
        """The constraint ``generate`` adds when none is passed: built from ``item_codes`` (cached)."""
        if not self.has_code_table:
            raise ValueError(
                "this model carries no item codes, so generate() cannot restrict itself to existing items: load "
                "a model saved by genrec >= 0.1 with its codes, call model.set_code_table(tokenizer), or pass "
                "logits_processor=[SemanticIDLogitsProcessor.from_tokenizer(tokenizer)] (constrain_to_items=False "
                "turns the constraint off)"
            )
        processor = self._own_processors.get(int(num_beams))
        if processor is None:
            config = self.config
            processor = SemanticIDLogitsProcessor(
                self._own_prefix_index(), config.code_token_offsets, prompt_length=1,
                eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, num_beams=int(num_beams),
                vocab_size=config.vocab_size, code_table_hash=config.code_table_hash,
            )
            self._own_processors = {int(num_beams): processor}  # one at a time (dense masks can be large)
        return processor

    def _own_prefix_index(self) -> dict[str, torch.Tensor]:
        return prefix_index_from_codes(self.item_codes.cpu(), self.config.codebook_sizes)

    def code_tree_fingerprint(self) -> str:
        """The fingerprint of the installed item codes' tree (as ``SemanticIDLogitsProcessor.fingerprint``)."""
        if self._own_fingerprint is None:
            self._own_fingerprint = code_tree_fingerprint(self._own_prefix_index(), self.config.code_token_offsets)
        return self._own_fingerprint

    def check_logits_processor(self, processor: Any) -> None:
        """Refuse a ``SemanticIDLogitsProcessor`` built for another code table than this model's.

        Compares the processor's ``code_table_hash`` with the config's (when both are known) and its
        ``fingerprint`` (the code tree at its token ids) with the one of ``item_codes`` (when installed), so
        that a same-shaped processor of another quantization cannot silently decode wrong items.
        """
        config = self.config
        theirs = getattr(processor, "code_table_hash", None)
        if theirs is not None and config.code_table_hash is not None and theirs != config.code_table_hash:
            raise ValueError(
                f"the SemanticIDLogitsProcessor was built for code table {theirs} but this model was trained on "
                f"{config.code_table_hash}: build it from the tokenizer saved with the model"
            )
        offsets = [int(o) for o in getattr(processor, "token_offsets", [])]
        if offsets != list(config.code_token_offsets):
            raise ValueError(
                f"the SemanticIDLogitsProcessor's token offsets {offsets} differ from the model's "
                f"{list(config.code_token_offsets)}"
            )
        theirs_tree = getattr(processor, "fingerprint", None)
        if self.has_code_table and theirs_tree is not None and theirs_tree != self.code_tree_fingerprint():
            raise ValueError(
                "the SemanticIDLogitsProcessor's codes differ from this model's item codes (another "
                "quantization or code table): build it from the tokenizer saved with the model"
            )

    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: Any = None,
        logits_processor: LogitsProcessorList | Sequence[Any] | None = None,
        *args: Any,
        constrain_to_items: bool = True,
        **kwargs: Any,
    ) -> Any:
        """``GenerationMixin.generate``, restricted to existing items by default.

        Without a ``SemanticIDLogitsProcessor`` in ``logits_processor`` (and no ``prefix_allowed_tokens_fn``),
        the model adds :meth:`default_logits_processor` (built from its saved item codes), so that plain
        ``model.generate(**tokenizer(...))`` only yields items. A processor that is passed is checked against
        the model's code table (:meth:`check_logits_processor`). ``constrain_to_items=False`` decodes freely.
        Defaults (beams, D + 1 new tokens, ...) come from ``generation_config`` (see the saved
        ``generation_config.json``); every argument of ``GenerationMixin.generate`` works as usual.
        """
        processors = LogitsProcessorList(list(logits_processor or []))
        ours = [p for p in processors if getattr(p, "fingerprint", None) is not None and hasattr(p, "depth")]
        for processor in ours:
            self.check_logits_processor(processor)
        if constrain_to_items and not ours and kwargs.get("prefix_allowed_tokens_fn") is None:
            beams = kwargs.get("num_beams")
            if beams is None:
                beams = getattr(generation_config if generation_config is not None else self.generation_config,
                                "num_beams", 1) or 1
            processors.append(self.default_logits_processor(int(beams)))
        return super().generate(inputs, generation_config, processors, *args, **kwargs)

    # ------------------------------------------------------------------ distillation targets

    @torch.no_grad()
    def set_integrated_embeddings(self, embeddings: torch.Tensor) -> str:
        """Install the Stage-I integrated embeddings, ``(num_items, integrated_dim)`` in code-table row order.

        Returns (and records in ``config.integrated_embeddings_hash``) the sha256 of the float32 matrix.
        """
        config = self.config
        if not config.uses_distillation:
            raise ValueError(
                "this model has no distillation head (config.integrated_dim=0 or distillation_weight=0); build it "
                "with UngerConfig(integrated_dim=<embedding width>, num_items=<items>, distillation_weight > 0)"
            )
        table, digest = self._checked_integrated_table(embeddings, "integrated embeddings")
        self.integrated_embeddings.copy_(table.to(self.integrated_embeddings.device))
        config.integrated_embeddings_hash = digest
        return digest

    def _checked_integrated_table(self, embeddings: Any, what: str) -> tuple[torch.Tensor, str]:
        """``embeddings`` as a finite float32 CPU ``(num_items, integrated_dim)`` matrix and its sha256 (the
        provenance hash of the Stage-I table, for the distillation targets and the history features alike)."""
        config = self.config
        if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != (
            config.num_items,
            config.integrated_dim,
        ):
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(
                f"{what} must be a ({config.num_items}, {config.integrated_dim}) tensor in code-table row order, "
                f"got {shape}"
            )
        table = embeddings.detach().to("cpu", torch.float32).contiguous()
        if not bool(torch.isfinite(table).all()):
            bad = torch.nonzero(~torch.isfinite(table).all(dim=1)).flatten()[:10].tolist()
            raise ValueError(f"{what} hold non-finite values (rows {bad})")
        return table, hashlib.sha256(table.numpy().tobytes()).hexdigest()

    def set_prefix_index(self, prefix_index: Mapping[str, torch.Tensor], token_offsets: Sequence[int]) -> None:
        """Store the code table's prefix index (``CodeTable.prefix_index()``) for constrained training.

        Kept in memory only (not saved): with ``config.constrained_training`` the forward pass builds each
        batch's mask of valid next codes from it when no ``constraint_mask`` is given.
        """
        if [int(o) for o in token_offsets] != list(self.config.code_token_offsets):
            raise ValueError(
                f"token_offsets {list(token_offsets)} differ from the model's code_token_offsets "
                f"{self.config.code_token_offsets}"
            )
        self._constraint = SemanticIDLogitsProcessor(
            prefix_index,
            list(token_offsets),
            prompt_length=1,
            eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
            vocab_size=self.config.vocab_size,
        )

    def constraint_mask_for(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, L, V) allowed-token mask for teacher-forced ``labels`` (B, L) from the stored prefix index."""
        if self._constraint is None:
            raise ValueError(
                "constrained training needs the code table's prefix index: call "
                "model.set_prefix_index(tokenizer.code_table.prefix_index(), tokenizer.code_token_offsets) or pass "
                "constraint_mask="
            )
        targets = labels.masked_fill(labels == -100, self.config.pad_token_id)
        return self._constraint.teacher_forcing_mask(targets, vocab_size=self.config.vocab_size)

    # ------------------------------------------------------------------ losses

    def _rec_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, constraint_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if constraint_mask is not None:
            if constraint_mask.shape != logits.shape:
                raise ValueError(
                    f"constraint_mask has shape {tuple(constraint_mask.shape)}, expected {tuple(logits.shape)} "
                    "(batch, label length, vocab)"
                )
            constraint_mask = constraint_mask.to(device=logits.device, dtype=torch.bool)
            real = labels != -100
            allowed = constraint_mask.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            if bool((real & ~allowed).any()):
                raise ValueError(
                    "a label token is not allowed by the constraint mask: the labels and the prefix index come "
                    "from different code tables"
                )
            logits = logits.masked_fill(~constraint_mask, torch.finfo(logits.dtype).min)
        flat, targets = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
        epsilon = getattr(self.config, "label_smoothing", 0.0)
        if not epsilon:
            return F.cross_entropy(flat, targets, ignore_index=-100)
        if constraint_mask is None:
            return F.cross_entropy(flat, targets, ignore_index=-100, label_smoothing=epsilon)
        # smoothing over the allowed tokens only: the masked ones have no probability to smooth towards
        log_p = F.log_softmax(flat, dim=-1)
        allowed = constraint_mask.reshape(-1, constraint_mask.shape[-1])
        real = targets != -100
        nll = -log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        uniform = -torch.where(allowed, log_p, torch.zeros_like(log_p)).sum(-1) / allowed.sum(-1).clamp(min=1)
        per_token = (1 - epsilon) * nll + epsilon * uniform
        return per_token[real].sum() / real.sum().clamp(min=1)

    def _distillation_loss(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """InfoNCE of the projected distillation states against the integrated embeddings (cosine / tau)."""
        config = self.config
        table = self.integrated_embeddings
        if targets.dim() != 1 or targets.shape[0] != states.shape[0]:
            raise ValueError(f"target_item_indices must be (batch,), got shape {tuple(targets.shape)}")
        if bool(((targets < 0) | (targets >= table.shape[0])).any()):
            raise ValueError(f"target_item_indices must be code-table rows in 0..{table.shape[0] - 1}")
        query = F.normalize(states.float(), dim=-1)
        keys = F.normalize(table.float(), dim=-1)
        if config.distillation_negatives is None:
            logits = query @ keys.T / config.distillation_temperature
            return F.cross_entropy(logits, targets)
        negatives = torch.randint(0, table.shape[0], (config.distillation_negatives,), device=targets.device)
        positive = (query * keys[targets]).sum(-1, keepdim=True)
        negative = query @ keys[negatives].T
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], -math.inf)
        logits = torch.cat([positive, negative], dim=1) / config.distillation_temperature
        return F.cross_entropy(logits, torch.zeros_like(targets))

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        target_item_indices: torch.LongTensor | None = None,
        constraint_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> UngerSeq2SeqLMOutput:
        """Encoder-decoder pass; with ``labels`` the losses (L_rec, L_ikd, their weighted sum).

        Args:
            input_ids, attention_mask: (B, L*D) history code tokens and their mask.
            decoder_input_ids: (B, T) decoder tokens (default: ``[<s>, labels[:-1]]``). With a cache only the
                new tokens.
            decoder_attention_mask: accepted for API compatibility; must be all ones (decoder rows are never
                padded: every item has exactly D codes).
            encoder_outputs: precomputed encoder output (``generate`` passes it).
            past_key_values: an ``EncoderDecoderCache`` (a plain ``Cache`` is used as the self-attention cache).
            labels: (B, D + 1) target codes + eos (``-100`` = ignore).
            target_item_indices: (B,) code-table rows of the targets; required for distillation.
            constraint_mask: (B, D + 1, V) bool, allowed tokens per label position (constrained training).
            use_cache: return the cache for incremental decoding (off when ``labels`` are given).
            cache: the same as ``past_key_values``; transformers >= 5.24 renamed the argument and ``generate``
                passes this name (ignoring it would silently restart decoding at every step).
        """
        if cache is not None:
            if past_key_values is not None and past_key_values is not cache:
                raise ValueError("pass the decoder cache as `cache` or `past_key_values`, not both")
            past_key_values = cache
        config = self.config
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("UNGER needs input_ids (the history) or encoder_outputs")
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoder_states = encoder_outputs.last_hidden_state
        if attention_mask is None:
            encoder_mask = torch.ones(encoder_states.shape[:2], dtype=torch.long, device=encoder_states.device)
        elif attention_mask.shape[1] == encoder_states.shape[1]:
            encoder_mask = attention_mask
        else:
            encoder_mask = self.encoder.item_mask(attention_mask)
        if decoder_attention_mask is not None and not bool(decoder_attention_mask.bool().all()):
            raise ValueError("UNGER decoder rows are never padded: decoder_attention_mask must be all ones")

        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        if decoder_input_ids is None:
            raise ValueError("UNGER needs decoder_input_ids or labels")
        use_cache = config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = EncoderDecoderCache(DynamicCache(), DynamicCache())
        elif past_key_values is not None and not isinstance(past_key_values, EncoderDecoderCache):
            past_key_values = EncoderDecoderCache(past_key_values, DynamicCache())
        if not use_cache:
            past_key_values = None

        embeds = self.encoder.embed_tokens(decoder_input_ids)
        distill = labels is not None and config.uses_distillation
        if distill:
            if target_item_indices is None:
                raise ValueError(
                    "distillation is on (distillation_weight > 0 and integrated embeddings installed): pass "
                    "target_item_indices (the targets' code-table rows), or set distillation_weight=0"
                )
            token = self.distillation_token.to(embeds.dtype).expand(embeds.shape[0], 1, -1)
            embeds = torch.cat([embeds, token], dim=1)
        hidden = self.decoder(embeds, encoder_states, encoder_mask, past_key_values)
        code_hidden = hidden[:, :-1] if distill else hidden
        logits = self.lm_head(code_hidden)

        loss = loss_rec = loss_ikd = distilled = None
        if labels is not None:
            if labels.shape != logits.shape[:2]:
                raise ValueError(
                    f"labels have shape {tuple(labels.shape)} but the decoder produced {tuple(logits.shape[:2])}"
                )
            if config.constrained_training and constraint_mask is None:
                constraint_mask = self.constraint_mask_for(labels)
            loss_rec = self._rec_loss(logits, labels, constraint_mask if config.constrained_training else None)
            loss = loss_rec
            if distill:
                distilled = self.distillation_proj(hidden[:, -1])
                loss_ikd = self._distillation_loss(distilled, target_item_indices.to(hidden.device))
                loss = loss_rec + config.distillation_weight * loss_ikd
        return UngerSeq2SeqLMOutput(
            loss=loss,
            loss_rec=loss_rec,
            loss_ikd=loss_ikd,
            logits=logits,
            encoder_last_hidden_state=encoder_states,
            distillation_embeddings=distilled,
            **{_CACHE_FIELD: past_key_values},
        )

    # ------------------------------------------------------------------ recommendation

    def logits_processor_for(self, tokenizer: Any, num_beams: int = 1) -> SemanticIDLogitsProcessor:
        """The constrained-decoding processor for ``tokenizer``'s code table (checked, cached per table)."""
        self.check_tokenizer(tokenizer)
        key = (str(tokenizer.code_table.content_hash), int(num_beams))
        processor = self._processors.get(key)
        if processor is None:
            processor = SemanticIDLogitsProcessor.from_tokenizer(
                tokenizer, prompt_length=1, num_beams=num_beams, vocab_size=self.config.vocab_size
            )
            self._processors = {key: processor}  # one table at a time
        return processor

    @torch.no_grad()
    def generate_codes(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        processor: SemanticIDLogitsProcessor,
        *,
        k: int,
        num_beams: int,
        renormalize: bool | None = None,
        use_cache: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Constrained beam search: (B * k, D + 2) sequences (best first per row) and their (B * k,) scores.

        Scores are the sum of the per-token log-probabilities (``length_penalty=0``), i.e. the log-probability
        of the item's code and ``</s>``; with ``renormalize`` (default: ``config.constrained_training``) the
        softmax of every step is taken over the allowed tokens only, as the model was trained.
        """
        renormalize = self.config.constrained_training if renormalize is None else renormalize
        out = self.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_beams=num_beams,
            num_return_sequences=k,
            max_new_tokens=self.config.num_code_levels + 1,
            logits_processor=LogitsProcessorList([processor]),
            renormalize_logits=renormalize,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,
            use_cache=use_cache,
            return_dict_in_generate=True,
            output_scores=True,
            decoder_start_token_id=self.config.decoder_start_token_id,
            eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
        )
        return out.sequences, out.sequences_scores

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[str | int]],
        tokenizer: Any,
        k: int = 10,
        num_beams: int | None = None,
        *,
        batch_size: int = 256,
        on_unknown: str = "raise",
        renormalize: bool | None = None,
        transition_weight: float | None = None,
        exclude_history: bool = True,
    ) -> list[list[tuple[str | None, float]]]:
        """Top-``k`` items for each history (item ids, oldest first) with their beam scores, best first.

        ``exclude_history`` (default True): a history's own items are never recommended to it, which is what a
        user of "what next?" expects (a model can rank a history's popular items high although the user has
        them; docs/recommend.md). Each history is decoded wide enough that ``k`` items remain
        (see :func:`recommend_excluding_history`); fewer than ``k`` remain only when the catalogue has fewer than
        ``k`` items outside the history (then all of those are returned). ``exclude_history=False`` gives the
        plain beam search, the ranking that evaluation scores (``evaluate_model`` passes it: the leave-one-out
        protocol does not exclude history items).

        With a transition prior installed (:meth:`set_transition_prior`) and ``transition_weight`` > 0
        (default: ``config.transition_weight``; 0 = the model alone), items are ranked by the mixture
        ``(1 - w) p_model + w p_transition(item | last history item)`` over the beams and the last item's
        ``num_beams`` most frequent successors, and the scores are that mixture's log-probabilities.

        Constrained beam search with ``num_beams`` (default ``k``; must be >= k) over the full corpus of
        ``tokenizer``'s code table, which must be the model's (checked). ``k`` above the number of items is a
        ``ValueError``. Item ids are strings; an int stands for its decimal string when that is an item id
        (``1`` -> ``"1"``). Histories keep their ``max_history_items`` most recent items (the excluded items are
        all of the history's). ``on_unknown="skip"`` leaves item ids the code table does not know out; a history
        with no known item left gets an empty list. An entry is None only if a generated code is not an item,
        which the constraint rules out. Scores: see :meth:`generate_codes`. Bad ``k``/``num_beams``/
        ``batch_size`` values raise ``ValueError``.
        """
        self.check_tokenizer(tokenizer)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if num_beams is not None and (
            isinstance(num_beams, bool) or not isinstance(num_beams, numbers.Integral) or num_beams < 1
        ):
            raise ValueError(f"num_beams must be None (= k) or a positive int, got {num_beams!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        num_items = len(tokenizer.code_table)
        k = int(k)
        if k > num_items:
            raise ValueError(f"k ({k}) is more than the catalogue's {num_items} items")
        num_beams = k if num_beams is None else int(num_beams)
        if num_beams < k:
            raise ValueError(f"num_beams ({num_beams}) must be >= k ({k})")
        histories = item_id_lists(histories, tokenizer)
        weight = self._transition_weight(transition_weight)
        if exclude_history:
            table = tokenizer.code_table
            return recommend_excluding_history(
                lambda rows, width: self.recommend(
                    [histories[r] for r in rows], tokenizer, k=min(width, num_items), num_beams=width,
                    batch_size=batch_size, on_unknown=on_unknown, renormalize=renormalize, transition_weight=weight,
                    exclude_history=False,
                ),
                histories, k=k, num_beams=num_beams, num_items=num_items, is_item=table.__contains__,
            )
        if weight > 0:
            candidates = self.transition_candidates(
                histories, tokenizer, num_beams=num_beams, batch_size=batch_size, on_unknown=on_unknown,
                renormalize=renormalize,
            )
            return [mix_transition_scores(row, weight)[:k] for row in candidates]
        processor = self.logits_processor_for(tokenizer, num_beams)
        was_training = self.training
        self.eval()
        results: list[list[tuple[str | None, float]]] = []
        try:
            for start in range(0, len(histories), batch_size):
                chunk = histories[start : start + batch_size]
                enc = tokenizer.encode_history(
                    chunk, max_items=self.config.max_history_items, on_unknown=on_unknown, return_tensors="pt"
                )
                # A history left empty by on_unknown="skip" has nothing to condition on: it gets no
                # recommendations (an empty list) instead of beams decoded from padding alone.
                nonempty = enc["attention_mask"].sum(dim=1) > 0
                ranked: list[list[tuple[str | None, float]]] = [[] for _ in range(len(chunk))]
                rows = torch.nonzero(nonempty).flatten().tolist()
                if rows:
                    sequences, scores = self.generate_codes(
                        enc["input_ids"][nonempty].to(self.device),
                        enc["attention_mask"][nonempty].to(self.device),
                        processor,
                        k=k,
                        num_beams=num_beams,
                        renormalize=renormalize,
                    )
                    items = tokenizer.decode_items(sequences.cpu())
                    values = scores.float().cpu().tolist()
                    for position, row in enumerate(rows):
                        span = slice(position * k, (position + 1) * k)
                        ranked[row] = list(zip(items[span], values[span], strict=True))
                results.extend(ranked)
        finally:
            self.train(was_training)
        return results

    @torch.no_grad()
    def score_items(
        self,
        histories: Sequence[Sequence[str]],
        tokenizer: Any,
        candidates: Sequence[Sequence[str]],
        *,
        batch_size: int = 256,
        on_unknown: str = "raise",
        renormalize: bool | None = None,
    ) -> list[list[float | None]]:
        """Log-probability of each candidate item after its history: the score ``recommend`` gives that item.

        Why: re-ranking candidates that come from elsewhere (another retriever, business rules, a transition
        prior) needs the model's score of items the beams did not reach. ``candidates[i]`` are item ids for
        ``histories[i]``; each gets the teacher-forced log-probability of its codes and ``</s>``, with each
        step's softmax taken over the allowed tokens when ``renormalize`` (default: ``config.
        constrained_training``, as in :meth:`generate_codes`), so a candidate that a beam also found gets the
        beam's score. Unknown candidate ids raise ``KeyError``; a history left empty by ``on_unknown="skip"``
        gets ``None`` for every candidate.
        """
        self.check_tokenizer(tokenizer)
        if len(candidates) != len(histories):
            raise ValueError(f"got {len(histories)} histories but {len(candidates)} candidate lists")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        renormalize = self.config.constrained_training if renormalize is None else renormalize
        processor = self.logits_processor_for(tokenizer, 1)
        was_training = self.training
        self.eval()
        results: list[list[float | None]] = []
        try:
            for start in range(0, len(histories), batch_size):
                chunk = histories[start : start + batch_size]
                wanted = [list(c) for c in candidates[start : start + batch_size]]
                enc = tokenizer.encode_history(
                    chunk, max_items=self.config.max_history_items, on_unknown=on_unknown, return_tensors="pt"
                )
                nonempty = (enc["attention_mask"].sum(dim=1) > 0).tolist()
                rows = [r for r, ok in enumerate(nonempty) if ok and wanted[r]]
                scored: list[list[float | None]] = [
                    [None] * len(c) if not nonempty[r] else [] for r, c in enumerate(wanted)
                ]
                if rows:
                    input_ids = enc["input_ids"][rows].to(self.device)
                    attention_mask = enc["attention_mask"][rows].to(self.device)
                    states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                    counts = torch.tensor([len(wanted[r]) for r in rows], device=self.device)
                    labels = tokenizer.encode_targets([item for r in rows for item in wanted[r]]).to(self.device)
                    logits = self(
                        encoder_outputs=BaseModelOutput(last_hidden_state=states.repeat_interleave(counts, 0)),
                        attention_mask=attention_mask.repeat_interleave(counts, 0),
                        decoder_input_ids=shift_tokens_right(
                            labels, self.config.pad_token_id, self.config.decoder_start_token_id
                        ),
                        use_cache=False,
                    ).logits.float()
                    if renormalize:
                        allowed = processor.teacher_forcing_mask(labels, vocab_size=self.config.vocab_size)
                        logits = logits.masked_fill(~allowed, float("-inf"))
                    token_scores = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
                    values = token_scores.sum(-1).cpu().tolist()
                    offset = 0
                    for r in rows:
                        scored[r] = values[offset : offset + len(wanted[r])]
                        offset += len(wanted[r])
                results.extend(scored)
        finally:
            self.train(was_training)
        return results


UngerForGenerativeRecommendation.register_for_auto_class("AutoModel")
