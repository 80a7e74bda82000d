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


def fit_transition_prior(model: Any, tokenizer: Any, data_dir: str | Path, *, weight: float | None = None) -> int:
    """Install the training rows' transition counts of ``data_dir`` in ``model``; returns the pairs stored."""
    from genrec.data_scripts.prepare import load_genrec_dataset

    sequences, _ = load_genrec_dataset(data_dir)
    sources, targets = transition_pairs(sequences["train"]["item_ids"][:], tokenizer)
    model.set_transition_prior(sources, targets, weight=weight)
    return int(model.config.num_transitions)


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
    if not weights:
        raise ValueError("weights must hold at least one candidate weight")
    # users split across the processes of a multi-process launch, gathered back in order (identical results)
    candidates = map_batches(
        lambda batch: model.transition_candidates(batch, tokenizer, num_beams=num_beams, batch_size=batch_size),
        list(histories), batch_size, desc="transition prior", show_progress=False,
    )
    k = max(20, num_beams)
    table: dict[str, dict[str, float]] = {}
    for w in weights:
        ranked = [[item for item, _ in mix_transition_scores(row, float(w))[:k]] for row in candidates]
        table[str(float(w))] = compute_metrics(ranked, targets)
    best = max((float(w) for w in weights), key=lambda w: (table[str(w)][SELECTION_METRIC], -w))
    return best, table
