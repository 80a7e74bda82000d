"""MSCGRec: every history item read in several modalities, the next item generated in one (mscgrec.md §3.1, §3.3).

The model is UNGER's encoder-decoder (``modeling_unger``) with a history encoder that adds, for every history
item, the embeddings of its codes in the history modalities (e.g. text, image) to the embeddings of its
decoding-modality codes. Decoding, the constraint to existing items (``generate``), constrained training and the
``recommend`` contract are UNGER's, over the decoding modality's code table. Interpretations:
:mod:`.configuration_mscgrec` and ``docs/mscgrec.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from .configuration_mscgrec import MSCGRecConfig
from .modeling_unger import UngerEncoder, UngerForGenerativeRecommendation, padding_bias

__all__ = ["MSCGRecEncoder", "MSCGRecForGenerativeRecommendation"]


class MSCGRecEncoder(UngerEncoder):
    """UNGER's ``per_item`` history encoder plus the history modalities' code embeddings of every item.

    Buffers (saved with the weights): ``history_item_keys`` / ``history_item_rows`` (find an item's row from its
    decoding-modality codes) and ``modality_codes`` (N, sum of the history modalities' levels), ``-1`` where an
    item lacks a modality. Parameters: ``modality_tokens`` (one row per code of every history-modality level plus
    one mask row per level) and ``decode_mask_tokens`` (one mask row per decoding-modality level).
    """

    def __init__(self, config: MSCGRecConfig) -> None:
        super().__init__(config)
        n, d = config.num_items, config.d_model
        if n < 1:
            raise ValueError("MSCGRec needs config.num_items (build the config with MSCGRecConfig.from_tokenizer)")
        if not hasattr(self, "history_item_keys"):  # UNGER creates them only for history_item_embedding != "none"
            self.register_buffer("history_item_keys", torch.full((n,), -1, dtype=torch.long), persistent=True)
            self.register_buffer("history_item_rows", torch.arange(n, dtype=torch.long), persistent=True)
        levels = config.history_levels
        offsets, masks, start = [], [], 0
        for _, size in levels:
            offsets.append(start)
            masks.append(start + size)
            start += size + 1
        self.register_buffer("modality_codes", torch.full((n, len(levels)), -1, dtype=torch.long), persistent=True)
        # plain lists (tensors made per call): transformers builds models on the meta device and would leave
        # non-persistent buffers uninitialised after from_pretrained
        self._modality_offsets = offsets
        self._modality_mask_ids = masks
        self._modality_of_level = [m for m, _ in levels]
        self.modality_tokens = nn.Embedding(max(start, 1), d)
        self.decode_mask_tokens = nn.Parameter(torch.zeros(config.num_code_levels, d))
        # modality indices (0 = the decoding modality, m + 1 = history modality m) treated as missing for every
        # history item, at any time: set through MSCGRecForGenerativeRecommendation.hide_modalities (not saved)
        self.hidden_modalities: frozenset[int] = frozenset()
        if config.history_feed == "stacked":  # the paper's two relative position embeddings (per head, summed)
            heads = config.num_attention_heads
            self.item_distance_bias = nn.Embedding(2 * config.max_history_items - 1, heads)
            self.slot_offset_bias = nn.Embedding(2 * config.positions_per_item - 1, heads)

    def _modality_inputs(self, input_ids: torch.Tensor, item_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every history item's history-modality token ids (B, I, H) — mask ids where the item lacks a modality,
        is unknown, or the modality is masked (training) / hidden (:meth:`hide_modalities`) — and whether its
        decoding-modality codes are masked / hidden (B, I)."""
        config = self.config
        batch, width = input_ids.shape
        depth, n = config.num_code_levels, config.num_items
        items = width // depth
        rows = self.history_item_rows_of(input_ids.view(batch, items, depth), item_mask)
        found = rows < n
        codes = self.modality_codes[rows.clamp(max=n - 1)]
        codes = torch.where(found.unsqueeze(-1), codes, torch.full_like(codes, -1))  # unknown item: all masked
        device = codes.device
        offsets = torch.tensor(self._modality_offsets, dtype=torch.long, device=device)
        mask_ids = torch.tensor(self._modality_mask_ids, dtype=torch.long, device=device)
        modality_of_level = torch.tensor(self._modality_of_level, dtype=torch.long, device=device)
        decode_hidden = torch.zeros(batch, items, dtype=torch.bool, device=device)
        probability = config.mask_probability
        if self.training and probability > 0:
            # one modality per history item (decoding one included) replaced by its mask tokens, with probability p
            masked = torch.rand(batch, items, device=device) < probability
            choice = torch.randint(0, config.num_modalities, (batch, items), device=device)
            codes = codes.masked_fill(masked.unsqueeze(-1) & (modality_of_level + 1 == choice.unsqueeze(-1)), -1)
            decode_hidden |= masked & (choice == 0)
        hidden = self.hidden_modalities
        if hidden:
            # inference-time ablation (hide_modalities): these modalities are missing for every history item
            hide_all = torch.tensor([m + 1 in hidden for m in self._modality_of_level], dtype=torch.bool, device=device)
            codes = codes.masked_fill(hide_all, -1)
            if 0 in hidden:
                decode_hidden |= True
        tokens = torch.where(codes >= 0, offsets + codes.clamp(min=0), mask_ids)
        return tokens, decode_hidden & item_mask.bool()

    def item_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token-level (B, L*D) mask -> the mask of the encoder's positions (P per item in the stacked feed)."""
        mask = super().item_mask(attention_mask)
        if self.config.history_feed == "stacked":
            mask = mask.repeat_interleave(self.config.positions_per_item, dim=1)
        return mask

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L*D) decoding-modality history tokens -> encoder inputs with every modality in them and their mask:
        one vector per history item (``item_sum``) or one per code of every modality (``stacked``)."""
        if self.config.history_feed == "stacked":
            return self._embed_stacked(input_ids, attention_mask)
        x, item_mask = super().embed(input_ids, attention_mask)
        batch, width = input_ids.shape
        depth = self.config.num_code_levels
        tokens, decode_hidden = self._modality_inputs(input_ids, item_mask)
        if bool(decode_hidden.any()):
            decode_sum = self.embed_tokens(input_ids).view(batch, width // depth, depth, -1).sum(2)
            x = x + decode_hidden.unsqueeze(-1).to(x.dtype) * (self.decode_mask_tokens.sum(0) - decode_sum)
        if tokens.shape[-1]:
            x = x + self.modality_tokens(tokens).sum(2) * item_mask.unsqueeze(-1).to(x.dtype)
        return x, item_mask

    def _embed_stacked(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's feed: every code of every modality of a history item is an encoder position (decoding
        modality's levels first, then each history modality's), no absolute position (the relative biases of
        :meth:`relative_bias` locate them)."""
        config = self.config
        batch, width = input_ids.shape
        depth = config.num_code_levels
        mask = attention_mask.long()
        if width % depth or bool((mask.sum(-1) % depth).any()):
            raise ValueError(
                f"the history must be whole items ({depth} code tokens each); encode it with tokenizer.encode_history"
            )
        blocks = mask.view(batch, width // depth, depth)
        if bool((blocks.amin(-1) != blocks.amax(-1)).any()):
            raise ValueError("the history's items must be aligned to multiples of D (tokenizer.encode_history pads whole items)")
        item_mask = blocks[..., 0]
        tokens, decode_hidden = self._modality_inputs(input_ids, item_mask)
        decode = self.embed_tokens(input_ids).view(batch, width // depth, depth, -1)
        decode = torch.where(decode_hidden[..., None, None], self.decode_mask_tokens.to(decode.dtype), decode)
        x = torch.cat([decode, self.modality_tokens(tokens).to(decode.dtype)], dim=2)
        positions = config.positions_per_item
        return x.reshape(batch, -1, x.shape[-1]), item_mask.repeat_interleave(positions, dim=1)

    def relative_bias(self, num_items: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, heads, T, T) attention bias of the stacked feed: one learned bias per head for the distance between
        two positions' items (clipped to ``max_history_items - 1``) plus one for their offset inside an item."""
        config = self.config
        per_item, span = config.positions_per_item, config.max_history_items - 1
        position = torch.arange(num_items * per_item, device=self.item_distance_bias.weight.device)
        item, slot = position // per_item, position % per_item
        across = (item[:, None] - item[None, :]).clamp(-span, span) + span
        within = slot[:, None] - slot[None, :] + per_item - 1
        bias = self.item_distance_bias(across) + self.slot_offset_bias(within)
        return bias.permute(2, 0, 1).unsqueeze(0).to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        """UNGER's encoder; in the stacked feed every layer also adds :meth:`relative_bias` to its attention."""
        if self.config.history_feed != "stacked":
            return super().forward(input_ids, attention_mask=attention_mask, return_dict=return_dict, **kwargs)
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        x, mask = self.embed(input_ids, attention_mask)
        x = self.dropout(x)
        items = input_ids.shape[1] // self.config.num_code_levels
        bias = padding_bias(mask, x.dtype) + self.relative_bias(items, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return BaseModelOutput(last_hidden_state=self.layer_norm(x))


class MSCGRecForGenerativeRecommendation(UngerForGenerativeRecommendation):
    """MSCGRec's sequence model: UNGER's encoder-decoder whose history encoder reads every modality of an item.

    Inputs, outputs, ``generate`` and ``recommend`` are UNGER's (histories in the decoding modality's tokens).
    Before training, install the history modalities with :meth:`set_modality_codes`; they are saved with the
    weights, so a reloaded model needs only its decoding-modality tokenizer.
    """

    config_class = MSCGRecConfig
    encoder_class = MSCGRecEncoder

    @torch.no_grad()
    def set_modality_codes(self, tokenizer: Any, tables: Mapping[str, Any]) -> None:
        """Install the history modalities' codes of every catalogue item.

        ``tokenizer``: the decoding modality's semantic-ID tokenizer (its code table's row order is the model's
        item order). ``tables``: one code table per name in ``config.history_modalities`` (duck-typed
        ``CodeTable``: ``item_ids``, ``codes``, ``codebook_sizes``, ``content_hash``); items it lacks are missing
        that modality (mask tokens). Records each table's content hash in the config and refuses a table whose
        hash differs from one already recorded (a model trained with other codes).
        """
        config: MSCGRecConfig = self.config
        self.check_tokenizer(tokenizer)
        unknown = sorted(set(tables) - set(config.history_modalities))
        absent = [name for name in config.history_modalities if name not in tables]
        if unknown or absent:
            raise ValueError(
                f"this model reads the history modalities {config.history_modalities}; got tables for "
                f"{sorted(tables)} (unknown: {unknown}, missing: {absent})"
            )
        decode_table = tokenizer.code_table
        self._install_history_keys(torch.tensor(np.asarray(decode_table.codes), dtype=torch.long))
        row_of = {item: row for row, item in enumerate(decode_table.item_ids)}
        columns = []
        for m, name in enumerate(config.history_modalities):
            table = tables[name]
            sizes = [int(k) for k in table.codebook_sizes]
            if sizes != config.history_codebook_sizes[m]:
                raise ValueError(
                    f"modality {name!r}: the table's codebook sizes {sizes} differ from the config's "
                    f"{config.history_codebook_sizes[m]}"
                )
            recorded = config.history_code_hashes[m]
            if recorded is not None and recorded != str(table.content_hash):
                raise ValueError(
                    f"modality {name!r}: this model was set up with a code table of hash {recorded[:12]}..., got "
                    f"{str(table.content_hash)[:12]}...; use the modality's table the model was trained with"
                )
            block = np.full((config.num_items, len(sizes)), -1, dtype=np.int64)
            codes = np.asarray(table.codes)
            rows = [row_of.get(item) for item in table.item_ids]
            keep = [i for i, row in enumerate(rows) if row is not None]
            if not keep:
                raise ValueError(f"modality {name!r}: its table shares no item with the decoding modality's table")
            block[[rows[i] for i in keep]] = codes[keep]
            columns.append(block)
            config.history_code_hashes[m] = str(table.content_hash)
        if columns:
            self.encoder.modality_codes.copy_(torch.from_numpy(np.concatenate(columns, axis=1)))

    @property
    def modality_names(self) -> list[str]:
        """Every modality a history item is read in: the decoding one first, then the history modalities."""
        config: MSCGRecConfig = self.config
        return [config.decode_modality, *config.history_modalities]

    @contextlib.contextmanager
    def hide_modalities(self, names: Iterable[str]) -> Iterator[MSCGRecForGenerativeRecommendation]:
        """Within the ``with`` block, treat the modalities ``names`` as missing for every history item.

        Their codes are replaced by the learnable mask tokens (as for an item that lacks them), in training and
        in inference alike; this is how the Shapley-style modality contribution of §4.3 evaluates the model
        with a subset of modalities present. Hiding the decoding modality replaces the sum of the history
        items' decoding-modality code embeddings by its mask tokens (the decoder still generates its codes).
        Unknown names raise ``ValueError``; with ``history_item_embedding != "none"`` the decoding modality
        cannot be hidden (the item's id / integrated embedding would still identify it).
        """
        wanted = list(names)
        known = self.modality_names
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}: this model reads the modalities {known}")
        indices = frozenset(known.index(name) for name in wanted)
        if 0 in indices and getattr(self.config, "history_item_embedding", "none") != "none":
            raise ValueError(
                f"cannot hide the decoding modality {known[0]!r}: history_item_embedding="
                f"{self.config.history_item_embedding!r} still feeds each history item's own embedding"
            )
        previous = self.encoder.hidden_modalities
        self.encoder.hidden_modalities = indices
        try:
            yield self
        finally:
            self.encoder.hidden_modalities = previous

    def modality_coverage(self) -> dict[str, float]:
        """Share of catalogue items that have codes in each history modality (1.0 = no item misses it)."""
        config: MSCGRecConfig = self.config
        present = (self.encoder.modality_codes >= 0).float()
        coverage, column = {}, 0
        for name, sizes in zip(config.history_modalities, config.history_codebook_sizes, strict=True):
            coverage[name] = float(present[:, column].mean()) if config.num_items else 0.0
            column += len(sizes)
        return coverage


MSCGRecForGenerativeRecommendation.register_for_auto_class("AutoModel")
