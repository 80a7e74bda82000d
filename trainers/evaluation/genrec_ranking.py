"""The ``genrec_ranking`` metric for the Hugging Face ``evaluate`` library.

Load it offline with ``genrec.trainers.evaluation.metric_loader.load_ranking_metric()`` (or
``evaluate.load(<path of this file>)``). It delegates to :mod:`genrec.trainers.evaluation.metrics`, so it computes
exactly what genrec's trainers, CLI and benchmarks report.
"""

from __future__ import annotations

import datasets
import evaluate

from genrec.trainers.evaluation.metrics import DEFAULT_KS, compute_metrics

_DESCRIPTION = """Leave-one-out full-corpus ranking metrics for generative recommendation: Recall@K, HR@K,
NDCG@K, MRR@K and the invalid-item rate (generated codes that are not items)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked recommendation lists (item id strings, best first; None for invalid codes).
    references: list of target item ids, one per user.
    ks: cut-offs (default 1, 5, 10, 20).
Returns:
    dict with recall@K, hr@K, ndcg@K, mrr@K for every K, invalid_rate and num_users.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenrecRanking(evaluate.Metric):
    """Ranking metrics over generated recommendation lists (see module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("string")), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, ks=DEFAULT_KS):  # noqa: D401 - evaluate's signature
        return compute_metrics(predictions, references, ks=ks)
