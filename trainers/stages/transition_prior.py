"""The first-order transition prior of a trained UNGER model: fit it on the training rows, choose its weight.

Why: docs/quality.md measured that the generative model and a first-order Markov chain hit different users.
The model wins on transitions never seen in training, the chain on pairs seen one to five times (the model
does not memorise rare "bought together" pairs through their shared codes). The mixture
``(1 - w) p_model + w p_transition`` (``UngerForGenerativeRecommendation.recommend``) keeps both; ``w`` is
chosen on the validation split, never on test. The counts are the same as the Markov baseline's
(``benchmarks/markov_baseline.py``): one per training row, its last history item -> its target.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.modeling.transition_prior import mix_transition_scores
from genrec.trainers.engine.processes import map_batches
from genrec.trainers.evaluation.metrics import compute_metrics

logger = logging.getLogger(__name__)

# Candidate weights for the validation search: 0 (the model alone) and a grid that is fine where the
# measured optimum lies (0.2-0.4 on ML-100K and Beauty) and coarse elsewhere.
TRANSITION_WEIGHTS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
SELECTION_METRIC = "ndcg@10"


def mixture_key(weight: float, smoothing: float) -> str:
    """The validation table's key of one (w, c): ``"0.3"`` for the plain prior (as before smoothing existed),
    ``"0.2/c=5.0"`` for a smoothed one."""
    return str(float(weight)) if not smoothing else f"{float(weight)}/c={float(smoothing)}"


def transition_pairs(train_item_ids: Sequence[Sequence[str]], tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Code-table rows (sources, targets) of every training row's last history item -> target.

    Rows with fewer than two items, or an item the code table does not know, contribute nothing.
    """
    table = tokenizer.code_table
    pairs = [(seq[-2], seq[-1]) for seq in train_item_ids if len(seq) >= 2]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sources = table.lookup_indices([a for a, _ in pairs])
    targets = table.lookup_indices([b for _, b in pairs])
    known = (sources >= 0) & (targets >= 0)
    if not bool(known.all()):
        logger.warning("transition prior: %d training pair(s) name items outside the code table; left out",
                       int((~known).sum()))
    return sources[known].astype(np.int64), targets[known].astype(np.int64)


def training_transitions(tokenizer: Any, data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`transition_pairs` of ``data_dir``'s training rows: the counts every fit of the prior installs (read
    once, then fitted as often as needed)."""
    from genrec.data_scripts.prepare import load_genrec_dataset

    sequences, _ = load_genrec_dataset(data_dir)
    return transition_pairs(sequences["train"]["item_ids"][:], tokenizer)


def fit_transition_prior(
    model: Any, tokenizer: Any, data_dir: str | Path, *, weight: float | None = None, smoothing: float = 0.0,
) -> int:
    """Install the training rows' transition counts of ``data_dir`` in ``model`` (``smoothing``: the additive
    c of ``count / (n + c)``); returns the pairs stored."""
    sources, targets = training_transitions(tokenizer, data_dir)
    model.set_transition_prior(sources, targets, weight=weight, smoothing=smoothing)
    return int(model.config.num_transitions)


def times_left(sources: np.ndarray, num_items: int) -> np.ndarray:
    """n(item): how often each code-table row is a training row's last history item (the prior's totals), from
    :func:`training_transitions`' sources."""
    return np.bincount(sources, minlength=num_items)


def choose_transition_weight(
    model: Any,
    tokenizer: Any,
    histories: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    num_beams: int = 20,
    weights: Sequence[float] = TRANSITION_WEIGHTS,
    batch_size: int = 256,
) -> tuple[float, dict[str, dict[str, float]]]:
    """The weight with the best validation NDCG@10 (ties: the smaller weight), and every weight's metrics.

    One constrained decoding serves every weight (``model.transition_candidates``).
    """
    weight, _, table = choose_transition_mixture(model, tokenizer, histories, targets, num_beams=num_beams,
                                                 weights=weights, batch_size=batch_size)
    return weight, table


def choose_transition_mixture(
    model: Any,
    tokenizer: Any,
    histories: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    num_beams: int = 20,
    weights: Sequence[float] = TRANSITION_WEIGHTS,
    smoothings: Sequence[float] = (0.0,),
    left: np.ndarray | None = None,
    batch_size: int = 256,
) -> tuple[float, float, dict[str, dict[str, float]]]:
    """The (weight, smoothing) with the best validation NDCG@10 (ties: the smaller smoothing, then weight), and
    every pair's metrics keyed by :func:`mixture_key`.

    The installed table must be the plain one (smoothing 0); a smoothed candidate's probability is the plain
    one times ``n / (n + c)``, with ``n = left[last history item]`` (:func:`times_left`, needed when a
    smoothing is not 0). One constrained decoding serves every pair (``model.transition_candidates``).
    """
    if not weights or not smoothings:
        raise ValueError("weights and smoothings must each hold at least one candidate")
    if getattr(model.config, "transition_smoothing", 0.0):
        raise ValueError("choose_transition_mixture needs the plain table installed (fit it with smoothing=0)")
    if any(smoothings) and left is None:
        raise ValueError("a smoothing other than 0 needs left (times_left(sources, num_items))")
    # users split across the processes of a multi-process launch, gathered back in order (identical results)
    candidates = map_batches(
        lambda batch: model.transition_candidates(batch, tokenizer, num_beams=num_beams, batch_size=batch_size),
        list(histories), batch_size, desc="transition prior", show_progress=False,
    )
    k = max(20, num_beams)
    lefts = [0] * len(candidates)
    if left is not None:
        code_table = tokenizer.code_table
        for i, history in enumerate(histories):
            known = [int(r) for r in code_table.lookup_indices(list(history)) if r >= 0]
            lefts[i] = int(left[known[-1]]) if known else 0
    table: dict[str, dict[str, float]] = {}
    for c in (float(c) for c in smoothings):
        rows = candidates if not c else [
            [(item, log_p, p * n / (n + c) if n else 0.0) for item, log_p, p in row]
            for row, n in zip(candidates, lefts, strict=True)
        ]
        for w in (w for w in weights if w or not c):  # w = 0 is the model alone whatever c is: once
            ranked = [[item for item, _ in mix_transition_scores(row, float(w))[:k]] for row in rows]
            table[mixture_key(w, c)] = compute_metrics(ranked, targets)
    pairs = [(float(w), float(c)) for c in smoothings for w in weights if w or not c]
    best = max(pairs, key=lambda wc: (table[mixture_key(*wc)][SELECTION_METRIC], -wc[1], -wc[0]))
    return best[0], best[1], table
