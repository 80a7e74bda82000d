"""The first-order transition prior of a generative recommender: ``p(next item | last history item)``.

Why: a generative model ranks rare but exact "bought together" pairs below a first-order chain; mixing the two,
``p = (1 - w) p_model + w p_transition(item | last history item)``, keeps both strengths (docs/quality.md).

:class:`TransitionPriorMixin` holds the table (a CSR over code-table rows, three persistent buffers
``transition_indptr`` / ``transition_targets`` / ``transition_probs`` saved with the weights; their size is
``config.num_transitions``, the mixture weight ``config.transition_weight``) and builds the mixture's
candidates; :func:`mix_transition_scores` ranks them. The host model (``UngerForGenerativeRecommendation``)
provides ``config`` (``num_items``, ``num_transitions``, ``transition_weight``), ``register_buffer``,
``get_output_embeddings`` (the device of the table), ``recommend(..., transition_weight=0.0,
exclude_history=False)`` and ``score_items``, and calls :meth:`TransitionPriorMixin._register_transition_buffers` from ``__init__`` when
``config.num_transitions > 0`` (so that a saved table loads).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["TransitionPriorMixin", "mix_transition_scores"]


class TransitionPriorMixin:
    """First-order transition table + the candidates of its mixture with the model (see the module docstring)."""

    def _register_transition_buffers(self, num_items: int, num_transitions: int) -> None:
        # CSR over code-table rows: successors of item i are targets[indptr[i]:indptr[i + 1]], most probable first.
        self.register_buffer("transition_indptr", torch.zeros(num_items + 1, dtype=torch.int64), persistent=True)
        self.register_buffer("transition_targets", torch.zeros(num_transitions, dtype=torch.int64), persistent=True)
        self.register_buffer("transition_probs", torch.zeros(num_transitions, dtype=torch.float32), persistent=True)

    @property
    def has_transition_prior(self) -> bool:
        """Whether a first-order transition table is installed (:meth:`set_transition_prior`)."""
        return getattr(self, "transition_probs", None) is not None and self.config.num_transitions > 0

    def _transition_weight(self, weight: float | None) -> float:
        if weight is None:
            return float(self.config.transition_weight) if self.has_transition_prior else 0.0
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= weight <= 1:
            raise ValueError(f"transition_weight must be a number in [0, 1], got {weight!r}")
        if weight > 0 and not self.has_transition_prior:
            raise ValueError(
                "transition_weight > 0 needs a transition table: call model.set_transition_prior(...) first "
                "(`genrec run` installs one fitted on the training rows)"
            )
        return float(weight)

    def set_transition_weight(self, weight: float) -> None:
        """Set ``config.transition_weight`` (checked: in [0, 1], and > 0 only with a transition table)."""
        self.config.transition_weight = self._transition_weight(weight)

    @torch.no_grad()
    def set_transition_prior(
        self, sources: Any, targets: Any, counts: Any = None, *, weight: float | None = None,
        smoothing: float = 0.0,
    ) -> None:
        """Install first-order transition counts: ``sources[j] -> targets[j]`` seen ``counts[j]`` times.

        Sources and targets are code-table rows (``tokenizer.code_table.lookup_indices(item_ids)``); counts
        default to one per pair and repeated pairs add up. Stored as p(next | item) = count / (item's total +
        ``smoothing``), saved with the weights (``config.num_transitions`` pairs; ``config.transition_smoothing``
        records ``smoothing``). ``weight`` sets ``config.transition_weight`` (kept when None). Why: the generative
        model ranks rare but exact "bought together" pairs below a first-order chain; the mixture in
        :meth:`recommend` keeps both strengths, and ``smoothing`` > 0 lets an item left only a few times in
        training push its successors less far up (docs/quality.md).
        """
        config = self.config
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0 <= smoothing < math.inf:
            raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
        if config.num_items < 1:
            raise ValueError("a transition prior needs config.num_items (build the config from the tokenizer)")
        src = torch.as_tensor(np.asarray(sources), dtype=torch.int64).flatten()
        dst = torch.as_tensor(np.asarray(targets), dtype=torch.int64).flatten()
        cnt = (torch.ones(src.shape[0], dtype=torch.float64) if counts is None
               else torch.as_tensor(np.asarray(counts), dtype=torch.float64).flatten())
        if not (src.shape == dst.shape == cnt.shape):
            raise ValueError(f"sources, targets and counts must have one entry per pair, got {src.shape[0]}, "
                             f"{dst.shape[0]}, {cnt.shape[0]}")
        for name, rows in (("sources", src), ("targets", dst)):
            if rows.numel() and bool(((rows < 0) | (rows >= config.num_items)).any()):
                raise ValueError(f"{name} must be code-table rows in 0..{config.num_items - 1}")
        if cnt.numel() and not bool((cnt > 0).all() and torch.isfinite(cnt).all()):
            raise ValueError("counts must be positive and finite")
        if src.numel() == 0:  # nothing to install: no table (and no empty buffers in the saved weights)
            for name in ("transition_indptr", "transition_targets", "transition_probs"):
                self._buffers.pop(name, None)
            config.num_transitions, config.transition_weight, config.transition_smoothing = 0, 0.0, 0.0
            return
        pairs, inverse = torch.unique(src * config.num_items + dst, return_inverse=True)
        summed = torch.zeros(pairs.shape[0], dtype=torch.float64).index_add_(0, inverse, cnt)
        pair_src, pair_dst = pairs // config.num_items, pairs % config.num_items
        totals = torch.zeros(config.num_items, dtype=torch.float64).index_add_(0, pair_src, summed)
        probs = summed / (totals[pair_src] + float(smoothing))
        # by source, then most probable first (ties: lower row first) so that a row's prefix is its top successors
        order = np.lexsort((pair_dst.numpy(), -probs.numpy(), pair_src.numpy()))
        order = torch.from_numpy(order)
        indptr = torch.zeros(config.num_items + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(pair_src, minlength=config.num_items), 0)
        device = self.get_output_embeddings().weight.device
        self._register_transition_buffers(config.num_items, int(pairs.shape[0]))
        self.transition_indptr.copy_(indptr.to(device))
        self.transition_targets.copy_(pair_dst[order].to(device))
        self.transition_probs.copy_(probs[order].float().to(device))
        config.num_transitions = int(pairs.shape[0])
        config.transition_smoothing = float(smoothing)
        if weight is not None:
            self.set_transition_weight(weight)

    def transition_successors(self, row: int, limit: int | None = None) -> list[tuple[int, float]]:
        """The installed successors of code-table row ``row`` as (row, probability), most probable first."""
        if not self.has_transition_prior:
            return []
        start, end = (int(v) for v in self.transition_indptr[row : row + 2].tolist())
        if limit is not None:
            end = min(end, start + int(limit))
        return list(zip(self.transition_targets[start:end].tolist(), self.transition_probs[start:end].tolist(),
                        strict=True))

    @torch.no_grad()
    def transition_candidates(
        self,
        histories: Sequence[Sequence[str]],
        tokenizer: Any,
        *,
        num_beams: int = 20,
        successors: int | None = None,
        batch_size: int = 256,
        on_unknown: str = "raise",
        renormalize: bool | None = None,
    ) -> list[list[tuple[str, float, float]]]:
        """Candidates of the transition mixture per history: ``(item, model log-probability, p_transition)``.

        The ``num_beams`` beams of the constrained search plus the last known history item's ``successors``
        (default ``num_beams``) most frequent successors in the installed table; a successor that no beam
        reached gets its exact model log-probability (:meth:`score_items`). Exposed so that a weight can be
        chosen on validation data from one decoding (:func:`mix_transition_scores` ranks them).
        """
        if not self.has_transition_prior:
            raise ValueError("no transition table installed: call model.set_transition_prior(...) first")
        limit = num_beams if successors is None else int(successors)
        # the plain beams (no history exclusion: the validation weight search scores them as evaluation does;
        # recommend() drops history items after mixing), at most one per item of the catalogue
        beams = self.recommend(histories, tokenizer, k=min(num_beams, len(tokenizer.code_table)), num_beams=num_beams,
                               batch_size=batch_size, on_unknown=on_unknown, renormalize=renormalize,
                               transition_weight=0.0, exclude_history=False)
        table = tokenizer.code_table
        item_ids = table.item_ids
        rows_out: list[dict[str, list[float]]] = []
        missing: list[list[str]] = []
        for history, beam in zip(histories, beams, strict=True):
            known = [int(r) for r in table.lookup_indices(list(history)) if r >= 0]
            # all successors of the last item, most probable first: the first `limit` are candidates, and every
            # beam item reads its probability here too (a successor past the limit keeps its probability)
            follow = [(item_ids[t], p) for t, p in self.transition_successors(known[-1])] if known and beam else []
            probs = dict(follow)
            row = {item: [score, probs.get(item, 0.0)] for item, score in beam if item is not None}
            extra = [item for item, _ in follow[:limit] if item not in row]
            for item in extra:
                row[item] = [math.nan, probs[item]]
            rows_out.append(row)
            missing.append(extra)
        scores = self.score_items(histories, tokenizer, missing, batch_size=batch_size, on_unknown=on_unknown,
                                  renormalize=renormalize)
        for row, items, values in zip(rows_out, missing, scores, strict=True):
            for item, value in zip(items, values, strict=True):
                row[item][0] = float(value)
        return [[(item, v[0], v[1]) for item, v in row.items()] for row in rows_out]


def mix_transition_scores(
    candidates: Sequence[tuple[str, float, float]], weight: float
) -> list[tuple[str, float]]:
    """Rank ``(item, model log-probability, p_transition)`` candidates by ``log((1 - w) p_model + w p_trans)``."""
    ranked = []
    for item, log_p, p_trans in candidates:
        mixed = (1.0 - weight) * math.exp(log_p) + weight * p_trans
        ranked.append((item, math.log(mixed) if mixed > 0 else -math.inf))
    ranked.sort(key=lambda pair: -pair[1])
    return ranked
