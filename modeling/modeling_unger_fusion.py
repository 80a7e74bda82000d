"""UNGER Stage I: learn integrated item embeddings from frozen semantic and trainable collaborative ones.

Paper §3.3 (UNGER, "Item Unicodes Generation"): a sequential recommender over item IDs (DIN) gives the
collaborative embedding of each item; a frozen text encoder gives its semantic embedding; a *modality
adaptation layer* (a projection followed by AdaLN) maps the semantic embedding into the collaborative
space; the two are trained jointly with next-item prediction and an InfoNCE *cross-modality knowledge
alignment* loss, ``L = L_next + alpha * L_align``. The item representation used for next-item prediction
(the *integrated embedding*) is what the quantizer turns into codes.

The paper's equations are lost in our copy; the choices made where the prose is ambiguous are named in
:class:`~.configuration_unger_fusion.UngerFusionConfig` and in ``docs/stage1.md``. In short:

* MAL: ``s_hat = AdaLN(W s + b)`` with ``AdaLN(x) = LN(x) * (1 + scale(x)) + shift(x)`` (LayerNorm without
  affine parameters; scale and shift predicted by ``Linear(SiLU(x))`` from the input itself, zero-initialised
  as in DiT so that the layer starts as a plain LayerNorm).
* Integrated embedding ``e = fuse(c, s_hat)`` (``c``: the item's ID embedding), used both for the history
  items fed to the encoder and for the candidate items; the score of item j for a user is ``<u, e_j>``.
* DIN's target attention is queried with the most recent history item by default, so the user vector does
  not depend on the candidate and full-corpus scoring is one matrix product.

The frozen semantic table lives in the model as a non-trainable, persistent buffer of shape
``(num_items + 1, semantic_dim)`` (row 0 = padding), so a saved model is self-contained: 12,101 Beauty
items take 18.6 MB with 384-d MiniLM embeddings and 198 MB with 4096-d Llama-2-7b embeddings (float32).
The ``concat`` ablation keeps only the PCA-reduced table ``(num_items + 1, hidden_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .configuration_unger_fusion import UngerFusionConfig
from .safe_weights import SafetensorsOnlyMixin

__all__ = ["UngerFusionModel", "UngerFusionOutput", "UngerFusionPreTrainedModel"]

# Seed of the randomised PCA (torch.pca_lowrank) used by the concat ablation; fixed so that building the
# same model twice gives the same buffer, whatever the global RNG state.
_PCA_SEED = 2024


def _items_of_every_process(items: torch.Tensor) -> torch.Tensor | None:
    """Under data-parallel training (a ``torch.distributed`` group of several processes), the sorted distinct
    item indices of every process's part of the batch; else None.

    The alignment loss contrasts the batch's items with each other (in-batch negatives): with the batch split
    across processes, each process computes it over the whole batch's items, as one process would, so that a
    multi-process run trains what a one-process run trains. Item indices carry no gradient; the embeddings of
    the gathered items come from the (replicated) item tables.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    world = dist.get_world_size()
    size = torch.tensor([items.numel()], device=items.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = F.pad(items.long(), (0, longest - items.numel()))
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.unique(torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)]))


@dataclass
class UngerFusionOutput(ModelOutput):
    """Output of :class:`UngerFusionModel`.

    Args:
        loss: ``loss_next + align_weight * loss_align`` (when ``labels`` are given).
        loss_next: next-item prediction cross-entropy (full or sampled softmax).
        loss_align: cross-modality InfoNCE (``unger`` mode in training; None otherwise).
        logits: with the full softmax or without labels, ``(batch, num_items + 1)`` scores over the item
            vocabulary (column j = item index j; column 0, padding, holds the dtype's minimum); with the
            sampled softmax and labels, ``(batch, 1 + num_negatives)`` sampled logits, column 0 the target.
        user_embeddings: ``(batch, hidden)`` user vectors (None with ``din_query="target"``).
        negative_ids: the item indices sampled as negatives (sampled softmax only).
    """

    loss: torch.Tensor | None = None
    loss_next: torch.Tensor | None = None
    loss_align: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    user_embeddings: torch.Tensor | None = None
    negative_ids: torch.Tensor | None = None


def _mlp(in_dim: int, hidden_sizes: list[int], out_dim: int, act: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACT2FN[act] if act != "prelu" else nn.PReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class AdaptiveLayerNorm(nn.Module):
    """AdaLN (Peebles & Xie 2023): LayerNorm without affine, then ``x * (1 + scale) + shift``.

    ``scale`` and ``shift`` are predicted from a conditioning vector (here the input itself or the raw
    semantic embedding) by ``Linear(SiLU(cond))``; the linear layer is zero-initialised (adaLN-Zero), so the
    layer starts as a plain LayerNorm and learns how far to depart from it.
    """

    def __init__(self, hidden_size: int, condition_size: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps, elementwise_affine=False)
        self.modulation = nn.Linear(condition_size, 2 * hidden_size)
        self.modulation._genrec_zero_init = True  # read by UngerFusionPreTrainedModel._init_weights

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(F.silu(condition)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class ModalityAdaptationLayer(nn.Module):
    """MAL (paper §3.3.1): ``AdaLN(W s + b)`` maps a frozen semantic embedding into the collaborative space."""

    def __init__(self, config: UngerFusionConfig) -> None:
        super().__init__()
        self.condition = config.adaln_condition
        self.projection = nn.Linear(config.semantic_dim, config.hidden_size)
        condition_size = config.hidden_size if self.condition == "projected" else config.semantic_dim
        self.adaln = AdaptiveLayerNorm(config.hidden_size, condition_size, config.layer_norm_eps)

    def forward(self, semantic: torch.Tensor) -> torch.Tensor:
        projected = self.projection(semantic)
        return self.adaln(projected, projected if self.condition == "projected" else semantic)


class Fusion(nn.Module):
    """Integrated embedding from the ID embedding ``c`` and the adapted semantic embedding ``s``."""

    def __init__(self, config: UngerFusionConfig) -> None:
        super().__init__()
        self.kind = config.fusion
        d = config.hidden_size
        self.collaborative_norm = (
            nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=False)
            if config.collaborative_norm == "layernorm"
            else None
        )
        if self.kind == "gate":
            self.gate = nn.Linear(2 * d, d)
        elif self.kind == "mlp":
            self.mlp = _mlp(2 * d, [d], d, config.hidden_act, config.dropout)

    def forward(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.collaborative_norm is not None:  # put c on the scale of the LayerNorm-ed s before fusing
            c = self.collaborative_norm(c)
        if self.kind == "sum":
            return c + s
        both = torch.cat([c, s], dim=-1)
        if self.kind == "gate":
            g = torch.sigmoid(self.gate(both))
            return g * c + (1 - g) * s
        return self.mlp(both)


class DinEncoder(nn.Module):
    """DIN (Zhou et al. 2018): activation-unit attention over the history, then an MLP to a user vector.

    The activation unit scores each history item h against the query q with MLP([h, q, h - q, h * q]);
    the weights are used as they are (DIN: no softmax, to keep the intensity of the user's interest) or
    softmax-normalised; the weighted sum p and the query go through MLP([p, q]) -> user vector.
    """

    def __init__(self, config: UngerFusionConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.normalization = config.din_attention_normalization
        self.attention = _mlp(4 * d, config.din_attention_hidden_sizes, 1, config.hidden_act, config.dropout)
        self.output = _mlp(2 * d, config.din_mlp_hidden_sizes, d, config.hidden_act, config.dropout)

    def forward(self, history: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """history (B, L, d), mask (B, L), query (B, d) -> (B, d); or query (B, K, d) -> (B, K, d)."""
        per_candidate = query.dim() == 3
        if per_candidate:  # one query per candidate: broadcast the history over the K candidates
            history = history.unsqueeze(1).expand(-1, query.shape[1], -1, -1)
            mask = mask.unsqueeze(1).expand(-1, query.shape[1], -1)
        q = query.unsqueeze(-2).expand_as(history)
        weights = self.attention(torch.cat([history, q, history - q, history * q], dim=-1)).squeeze(-1)
        valid = mask.bool()
        if self.normalization == "softmax":
            weights = weights.masked_fill(~valid, torch.finfo(weights.dtype).min).softmax(dim=-1)
        weights = weights.masked_fill(~valid, 0.0)
        pooled = (weights.unsqueeze(-1) * history).sum(dim=-2)
        return self.output(torch.cat([pooled, query], dim=-1))


class SASRecEncoder(nn.Module):
    """SASRec-style causal self-attention (Kang & McAuley 2018); the user vector is the last position's output.

    Positions are counted back from the most recent item (0 = most recent), which equals SASRec's absolute
    positions for left-padded histories and makes the encoder independent of the padding side.
    """

    def __init__(self, config: UngerFusionConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.max_history = config.max_history_items
        self.positions = nn.Embedding(config.max_history_items, d)
        self.dropout = nn.Dropout(config.dropout)
        act = config.hidden_act if config.hidden_act in ("relu", "gelu") else "gelu"
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, config.num_attention_heads, config.intermediate_size, config.dropout, activation=act,
                layer_norm_eps=config.layer_norm_eps, batch_first=True, norm_first=True,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, history: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        valid = mask.bool()
        recency = valid.flip(-1).long().cumsum(-1).flip(-1) - 1  # 0 for the most recent valid item
        if int(recency.max()) >= self.max_history:
            raise ValueError(
                f"history of {int(recency.max()) + 1} items is longer than max_history={self.max_history}; "
                "keep the most recent max_history items."
            )
        x = self.dropout(history + self.positions(recency.clamp(min=0)))
        length = history.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=history.device).tril()
        allowed = causal & valid.unsqueeze(1)  # (B, L, L): query i may see valid keys j <= i
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=history.device)  # no empty rows
        blocked = (~allowed).repeat_interleave(self.num_heads, dim=0)
        for layer in self.layers:
            x = layer(x, src_mask=blocked)
        x = self.final_norm(x)
        return x[torch.arange(x.shape[0], device=x.device), last]


class UngerFusionPreTrainedModel(SafetensorsOnlyMixin, PreTrainedModel):
    """Weight initialisation and loading glue for the Stage I model (weights from safetensors only)."""

    config_class = UngerFusionConfig
    base_model_prefix = "unger_fusion"
    main_input_name = "history_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults (normal(0, initializer_range), zero biases, unit norms), plus a zero
        AdaLN modulation (adaLN-Zero) and a zero padding row."""
        super()._init_weights(module)
        if isinstance(module, nn.Linear) and getattr(module, "_genrec_zero_init", False):
            init.zeros_(module.weight)
            init.zeros_(module.bias)


class UngerFusionModel(UngerFusionPreTrainedModel):
    """UNGER Stage I: next-item prediction + cross-modality alignment over integrated item embeddings.

    Build it with ``UngerFusionModel(config, semantic_embeddings=table)`` where ``table`` is the
    ``(num_items, semantic_dim)`` frozen semantic matrix in item-vocabulary order (row i = item index
    i + 1), or call :meth:`set_semantic_embeddings` later. ``from_pretrained`` restores the table from the
    checkpoint.

    Inputs: ``history_ids`` (B, L) item indices (0 = padding, any padding side, chronological order),
    ``attention_mask`` (B, L) 1 for real items, ``labels`` (B,) the target item index (1..num_items).
    """

    def __init__(self, config: UngerFusionConfig, semantic_embeddings: torch.Tensor | None = None) -> None:
        super().__init__(config)
        d = config.hidden_size
        n = config.num_items + 1
        if config.uses_collaborative:
            self.item_embeddings = nn.Embedding(n, d, padding_idx=0)
        if config.mode == "concat":
            self.register_buffer("semantic_pca", torch.zeros(n, d), persistent=True)
        elif config.uses_semantic:
            self.register_buffer("semantic_table", torch.zeros(n, config.semantic_dim), persistent=True)
            self.adapter = ModalityAdaptationLayer(config)
        if config.mode == "unger":
            self.fusion = Fusion(config)
        if config.collaborative_encoder == "din":
            self.encoder: nn.Module = DinEncoder(config)
        else:
            self.encoder = SASRecEncoder(config)
        self.post_init()
        if semantic_embeddings is not None:
            self.set_semantic_embeddings(semantic_embeddings)

    # ------------------------------------------------------------------ semantic table

    @torch.no_grad()
    def set_semantic_embeddings(self, embeddings: torch.Tensor) -> None:
        """Install the frozen semantic table: ``(num_items, semantic_dim)`` rows in vocabulary order
        (row 0 of the buffer stays the zero padding row). In ``concat`` mode only its PCA to
        ``hidden_size`` dimensions is kept (``torch.pca_lowrank`` with a fixed seed)."""
        config = self.config
        if not config.uses_semantic:
            raise ValueError(f"mode={config.mode!r} uses no semantic embeddings; do not pass any.")
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ValueError("semantic embeddings must be a 2-D tensor (num_items x semantic_dim).")
        if tuple(embeddings.shape) != (config.num_items, config.semantic_dim):
            raise ValueError(
                f"semantic embeddings have shape {tuple(embeddings.shape)}, the config expects "
                f"({config.num_items}, {config.semantic_dim}) (num_items x semantic_dim, vocabulary order)."
            )
        table = embeddings.detach().to(torch.float32).cpu()
        if not bool(torch.isfinite(table).all()):
            bad = torch.nonzero(~torch.isfinite(table).all(dim=1)).flatten()[:10].tolist()
            raise ValueError(f"semantic embeddings hold non-finite values (rows {bad}); recompute them.")
        if config.mode == "concat":
            rank = min(config.hidden_size, *table.shape)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_PCA_SEED)
                _, _, v = torch.pca_lowrank(table, q=rank, center=True, niter=4)
            reduced = (table - table.mean(dim=0, keepdim=True)) @ v[:, :rank]
            target = self.semantic_pca
            target.zero_()
            target[1:, :rank] = reduced.to(target.device, target.dtype)
        else:
            target = self.semantic_table
            target.zero_()
            target[1:] = table.to(target.device, target.dtype)

    # ------------------------------------------------------------------ item representations

    def _components(self, ids: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(collaborative c, adapted semantic s_hat, item representation e) for item indices ``ids``."""
        mode = self.config.mode
        c = self.item_embeddings(ids) if self.config.uses_collaborative else None
        s = self.adapter(self.semantic_table[ids]) if mode in ("unger", "semantic_only") else None
        if mode == "unger":
            e = self.fusion(c, s)
        elif mode == "semantic_only":
            e = s
        else:  # collaborative_only and concat (the concat model is trained on item IDs alone, §4.3)
            e = c
        return c, s, e

    def item_table(self) -> torch.Tensor:
        """``(num_items + 1, hidden)`` item representations used for next-item prediction (row 0 = padding)."""
        ids = torch.arange(self.config.num_items + 1, device=self.device)
        return self._components(ids)[2]

    def integrated_item_embeddings(self) -> torch.Tensor:
        """``(num_items, integrated_dim)`` embeddings of items 1..N, the quantizer's input.

        The item representation used for next-item prediction; in ``concat`` mode the §4.3 baseline
        ``[l2norm(PCA(semantic)), l2norm(ID embedding)]`` (width 2 * hidden_size).
        """
        if self.config.mode == "concat":
            ids = torch.arange(1, self.config.num_items + 1, device=self.device)
            semantic = F.normalize(self.semantic_pca[ids], dim=-1)
            collaborative = F.normalize(self.item_embeddings(ids), dim=-1)
            return torch.cat([semantic, collaborative], dim=-1)
        return self.item_table()[1:]

    def collaborative_item_embeddings(self) -> torch.Tensor:
        """``(num_items, hidden)`` ID embeddings of items 1..N (the collaborative modality)."""
        if not self.config.uses_collaborative:
            raise ValueError(f"mode={self.config.mode!r} has no collaborative (ID) embeddings.")
        return self.item_embeddings.weight[1:]

    def adapted_semantic_item_embeddings(self) -> torch.Tensor:
        """``(num_items, hidden)`` MAL outputs of items 1..N (the semantic modality in the collaborative space)."""
        if self.config.mode not in ("unger", "semantic_only"):
            raise ValueError(f"mode={self.config.mode!r} has no modality adaptation layer.")
        ids = torch.arange(1, self.config.num_items + 1, device=self.device)
        return self.adapter(self.semantic_table[ids])

    # ------------------------------------------------------------------ users

    def _check_inputs(self, history_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if history_ids.dim() != 2:
            raise ValueError(f"history_ids must be (batch, length), got shape {tuple(history_ids.shape)}.")
        if attention_mask is None:
            attention_mask = (history_ids != 0).long()
        if attention_mask.shape != history_ids.shape:
            raise ValueError("attention_mask must have the shape of history_ids.")
        if history_ids.numel() and (int(history_ids.min()) < 0 or int(history_ids.max()) > self.config.num_items):
            raise ValueError(f"history_ids must lie in 0..{self.config.num_items} (0 = padding).")
        if not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError("every row needs at least one history item (an all-padding row has no user vector).")
        return attention_mask

    @staticmethod
    def _last_positions(mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        return torch.where(mask.bool(), positions, -1).amax(dim=1)

    def _users(self, history: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors from history representations (B, L, d); ``query`` only for ``din_query="target"``."""
        last = self._last_positions(mask)
        if self.config.collaborative_encoder == "sasrec":
            return self.encoder(history, mask, last)
        if query is None:
            if self.config.din_query == "mean":
                m = mask.unsqueeze(-1).to(history.dtype)
                query = (history * m).sum(1) / m.sum(1).clamp(min=1)
            else:  # "last" (and the default query for any caller that does not pass candidates)
                query = history[torch.arange(history.shape[0], device=history.device), last]
        return self.encoder(history, mask, query)

    def encode_users(
        self,
        history_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        item_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, hidden)`` user vectors; pass a precomputed :meth:`item_table` to score many batches."""
        if self.config.din_query == "target" and self.config.collaborative_encoder == "din":
            raise ValueError("din_query='target' has one user vector per candidate; use score_items().")
        mask = self._check_inputs(history_ids, attention_mask)
        table = self.item_table() if item_table is None else item_table
        return self._users(table[history_ids], mask)

    def score_items(
        self,
        history_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        item_table: torch.Tensor | None = None,
        candidate_chunk: int = 256,
    ) -> torch.Tensor:
        """``(B, num_items)`` scores of items 1..N (column j = item index j + 1).

        A dot product with the item table, except for ``din_query="target"``, which runs DIN once per
        candidate (chunks of ``candidate_chunk`` items; B x N x L work).
        """
        table = self.item_table() if item_table is None else item_table
        if not (self.config.din_query == "target" and self.config.collaborative_encoder == "din"):
            return self.encode_users(history_ids, attention_mask, table) @ table[1:].T
        mask = self._check_inputs(history_ids, attention_mask)
        history = table[history_ids]
        scores = []
        for start in range(1, table.shape[0], candidate_chunk):
            candidates = table[start : start + candidate_chunk]
            query = candidates.unsqueeze(0).expand(history.shape[0], -1, -1)
            users = self._users(history, mask, query)
            scores.append((users * candidates.unsqueeze(0)).sum(-1))
        return torch.cat(scores, dim=1)

    # ------------------------------------------------------------------ losses

    def _alignment_loss(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """InfoNCE between each item's collaborative and adapted semantic embedding, in-batch negatives."""
        config = self.config
        if config.align_max_items is not None and c.shape[0] > config.align_max_items:
            keep = torch.randperm(c.shape[0], device=c.device)[: config.align_max_items]
            c, s = c[keep], s[keep]
        if config.align_similarity == "cosine":
            c, s = F.normalize(c, dim=-1), F.normalize(s, dim=-1)
        logits = (c @ s.T) / config.align_temperature
        target = torch.arange(c.shape[0], device=c.device)
        loss = F.cross_entropy(logits.float(), target)
        if config.align_symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T.float(), target))
        return loss

    def forward(
        self,
        history_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> UngerFusionOutput:
        """Scores over the corpus (no labels) or the Stage I loss (labels = target item indices)."""
        config = self.config
        mask = self._check_inputs(history_ids, attention_mask)
        if labels is not None:
            labels = labels.reshape(-1).to(history_ids.device)
            if labels.shape[0] != history_ids.shape[0]:
                raise ValueError("labels must hold one target item index per row of history_ids.")
            if int(labels.min()) < 1 or int(labels.max()) > config.num_items:
                raise ValueError(f"labels must be item indices in 1..{config.num_items} (0 is padding).")
        sampled = labels is not None and config.loss_type == "sampled"
        negatives = None
        if sampled:
            negatives = torch.randint(1, config.num_items + 1, (config.num_negatives,), device=history_ids.device)
            needed = torch.cat([history_ids.reshape(-1), labels, negatives])
            ids, inverse = torch.unique(needed, return_inverse=True)
            c, s, e = self._components(ids)
            history = e[inverse[: history_ids.numel()].view_as(history_ids)]
            target_pos = inverse[history_ids.numel() : history_ids.numel() + labels.shape[0]]
            negative_pos = inverse[history_ids.numel() + labels.shape[0] :]
        else:
            ids = torch.arange(config.num_items + 1, device=history_ids.device)
            c, s, e = self._components(ids)
            history = e[history_ids]

        target_query = config.collaborative_encoder == "din" and config.din_query == "target"
        users = None
        loss_next = loss_align = loss = None
        if sampled:
            positives, negative_items = e[target_pos], e[negative_pos]
            if target_query:
                pos_users = self._users(history, mask, positives.unsqueeze(1)).squeeze(1)
                neg_users = self._users(history, mask, negative_items.unsqueeze(0).expand(len(labels), -1, -1))
                pos_logit = (pos_users * positives).sum(-1, keepdim=True)
                neg_logits = (neg_users * negative_items.unsqueeze(0)).sum(-1)
            else:
                users = self._users(history, mask)
                pos_logit = (users * positives).sum(-1, keepdim=True)
                neg_logits = users @ negative_items.T
            hits = negatives.unsqueeze(0) == labels.unsqueeze(1)  # accidental hits are not negatives
            neg_logits = neg_logits.masked_fill(hits, torch.finfo(neg_logits.dtype).min)
            logits = torch.cat([pos_logit, neg_logits], dim=1)
            loss_next = F.cross_entropy(logits.float(), torch.zeros_like(labels))
        else:
            if target_query:  # inference only (labels need the sampled softmax, see the config)
                scores = self.score_items(history_ids, mask, e)
            else:
                users = self._users(history, mask)
                scores = users @ e[1:].T
            pad = torch.full_like(scores[:, :1], torch.finfo(scores.dtype).min)
            logits = torch.cat([pad, scores], dim=1)
            if labels is not None:
                loss_next = F.cross_entropy(logits.float(), labels)

        if labels is not None:
            loss = loss_next
            if config.uses_alignment:
                in_batch = torch.unique(torch.cat([history_ids[mask.bool()], labels]))
                in_batch = in_batch[in_batch > 0]
                everywhere = _items_of_every_process(in_batch)
                if everywhere is not None:
                    # data-parallel training: the global batch's items, the negatives one process would use
                    c_all, s_all, _ = self._components(everywhere)
                    loss_align = self._alignment_loss(c_all, s_all)
                elif sampled:
                    rows = torch.searchsorted(ids, in_batch)
                    loss_align = self._alignment_loss(c[rows], s[rows])
                else:
                    loss_align = self._alignment_loss(c[in_batch], s[in_batch])
                loss = loss_next + config.align_weight * loss_align
        return UngerFusionOutput(
            loss=loss, loss_next=loss_next, loss_align=loss_align, logits=logits, user_embeddings=users,
            negative_ids=negatives,
        )


# Saved folders carry this file and an ``auto_map`` entry (trust_remote_code=True without genrec).
UngerFusionModel.register_for_auto_class("AutoModel")
