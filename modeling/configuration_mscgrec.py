"""Configuration of MSCGRec (multimodal generative recommendation, ``../shared/papers/mscgrec.md`` §3.1, §3.3).

MSCGRec represents every history item by the codes of several modalities — each modality quantized on its own,
each with its own collision level so that an item is unique in every modality — and decodes the next item in
**one** modality (the paper decodes the collaborative modality's codes, §4.1). Here the decoding modality is the
model's own code table, exactly as for UNGER (vocabulary, offsets, hash: :class:`UngerConfig`'s binding
fields), so the tokenizer, ``generate`` with its constraint and ``recommend`` are UNGER's. The other modalities
("history modalities", e.g. text) are read per history item: the model keeps their codes for every catalogue
item (a buffer saved with the weights) and finds them from the history item's decoding-modality codes.

Interpretations (also in ``docs/mscgrec.md``):

* history feed (``history_feed``): ``"item_sum"`` (default) gives one encoder position per history item whose
  input is the sum of the embeddings of all its codes (decoding modality + history modalities, one token table
  per modality and level) plus the item's recency — genrec's ``per_item`` feed, the cheap one on a CPU.
  ``"stacked"`` is the paper's: every code of every modality is its own position (L x D per item), located by
  two learned relative attention biases per head, one over the distance between the positions' items (clipped
  at ``max_history_items - 1``) and one over their offset inside an item, summed (§3.3); all tables are kept
  whole instead of sharing T5's 32 buckets. In both, ``history_mode`` stays ``per_item`` (the input layout).
* missing modalities: an item without a modality (or whose codes are masked) contributes one learnable mask
  token per code level of that modality instead of its codes (§3.1).
* masking in training: with probability ``mask_probability`` (paper: 0.75 when training for missing
  modalities, else 0) one of the item's modalities — the decoding one included — is chosen uniformly and
  replaced by its mask tokens, independently per history item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config_fields import as_float, as_int_list
from .configuration_unger import UngerConfig

__all__ = ["HISTORY_FEEDS", "MSCGRecConfig"]

HISTORY_FEEDS = ("item_sum", "stacked")

_OWNER = "MSCGRecConfig"


class MSCGRecConfig(UngerConfig):
    """UNGER's Stage II config (the decoding modality's code binding, sizes, training switches) plus the
    history modalities.

    Args:
        decode_modality: name of the modality whose codes the model generates (the model's own code table;
            paper: ``"collaborative"``).
        history_modalities: names of the other modalities read per history item, e.g. ``["text"]``.
        history_codebook_sizes: one list of codebook sizes per history modality (its levels, collision level
            included), in the order of ``history_modalities``.
        history_code_hashes: content hashes of the history modalities' code tables (recorded when their codes
            are installed; ``set_modality_codes`` refuses tables with other content once set).
        mask_probability: chance that one modality of a history item is replaced by mask tokens in training.
        history_feed: ``"item_sum"`` (one encoder position per history item: the sum of all its codes'
            embeddings plus its recency) or ``"stacked"`` (the paper's: one position per code of every modality,
            with two learned relative attention biases, across items and within an item).
        kwargs: :class:`UngerConfig` fields (``history_mode`` must stay ``"per_item"``).
    """

    model_type = "mscgrec"

    def __init__(
        self,
        decode_modality: str = "collaborative",
        history_modalities: Sequence[str] = (),
        history_codebook_sizes: Sequence[Sequence[int]] = (),
        history_code_hashes: Sequence[str | None] | None = None,
        mask_probability: float = 0.0,
        history_feed: str = "item_sum",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.history_mode != "per_item":
            raise ValueError(
                f"{_OWNER}.history_mode must be 'per_item' (whole items per history row; choose the encoder's feed "
                f"with history_feed='item_sum' or 'stacked'), got {self.history_mode!r}"
            )
        names = [str(name) for name in history_modalities]
        if len(set(names)) != len(names) or any(not name for name in names):
            raise ValueError(f"{_OWNER}.history_modalities must be distinct non-empty names, got {names}")
        decode_modality = str(decode_modality)
        if decode_modality in names:
            raise ValueError(
                f"{_OWNER}: the decoding modality {decode_modality!r} is read from the input codes; do not list it "
                "in history_modalities"
            )
        sizes = [as_int_list(_OWNER, f"history_codebook_sizes[{i}]", s) for i, s in enumerate(history_codebook_sizes)]
        if len(sizes) != len(names):
            raise ValueError(
                f"{_OWNER}: {len(names)} history modalities but {len(sizes)} lists of codebook sizes"
            )
        for name, levels in zip(names, sizes, strict=True):
            if not levels or any(k < 1 for k in levels):
                raise ValueError(f"{_OWNER}: modality {name!r} needs positive codebook sizes, got {levels}")
        hashes = [None] * len(names) if history_code_hashes is None else list(history_code_hashes)
        if len(hashes) != len(names):
            raise ValueError(f"{_OWNER}.history_code_hashes must hold one entry per history modality")
        probability = as_float(_OWNER, "mask_probability", mask_probability, minimum=0)
        if probability > 1:
            raise ValueError(f"{_OWNER}.mask_probability must be in [0, 1], got {probability}")
        self.decode_modality = decode_modality
        self.history_modalities = names
        self.history_codebook_sizes = sizes
        self.history_code_hashes = [None if h is None else str(h) for h in hashes]
        self.mask_probability = probability
        if history_feed not in HISTORY_FEEDS:
            raise ValueError(f"{_OWNER}.history_feed must be one of {list(HISTORY_FEEDS)}, got {history_feed!r}")
        if history_feed == "stacked" and getattr(self, "history_item_embedding", "none") != "none":
            raise ValueError(
                f"{_OWNER}: the stacked history feed reads codes only; history_item_embedding must be 'none', got "
                f"{self.history_item_embedding!r}"
            )
        self.history_feed = history_feed

    @property
    def num_modalities(self) -> int:
        """Modalities per history item: the decoding one and the history modalities."""
        return 1 + len(self.history_modalities)

    @property
    def positions_per_item(self) -> int:
        """Encoder positions per history item in the stacked feed: every code level of every modality."""
        return self.num_code_levels + sum(len(sizes) for sizes in self.history_codebook_sizes)

    @property
    def history_levels(self) -> list[tuple[int, int]]:
        """``(modality index, codebook size)`` of every history-modality code level, in buffer column order."""
        return [(m, k) for m, sizes in enumerate(self.history_codebook_sizes) for k in sizes]


MSCGRecConfig.register_for_auto_class()
