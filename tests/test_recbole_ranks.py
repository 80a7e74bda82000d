"""benchmarks/recbole_ranks.py: a RecBole run's per-user test ranks must give back RecBole's own metrics.

RecBole itself runs only in its own environment (the real check is the script's ``--expect`` on a finished run);
here the rank extraction is checked against RecBole's metric formulas on scores full of ties.
"""

from __future__ import annotations

import math

import pytest
import torch


def _recbole_metrics(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor, k: int) -> dict[str, float]:
    """RecBole 1.2.1's collector (topk, then the positive matrix gathered at the top-k) and its Recall / NDCG."""
    _, top = torch.topk(scores, 20, dim=-1)
    positive = torch.zeros_like(scores, dtype=torch.int)
    positive[rows, items] = 1
    pos_index = torch.gather(positive, 1, top)[:, :k].double()
    pos_len = positive.sum(dim=1).double()
    recall = (pos_index.sum(dim=1) / pos_len).mean().item()
    dcg = (pos_index / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))).sum(dim=1)
    idcg = torch.tensor([sum(1 / math.log2(i + 2) for i in range(min(int(n), k))) for n in pos_len])
    return {f"recall@{k}": recall, f"ndcg@{k}": (dcg / idcg).mean().item()}


def test_ranks_reproduce_recboles_metrics_under_ties(benchmark_script) -> None:
    script = benchmark_script("recbole_ranks.py")
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (200, 40), generator=generator).float()  # a few distinct values: ties everywhere
    scores[:, 0] = -math.inf  # RecBole's padding item
    rows = torch.arange(200)
    items = torch.randint(1, 40, (200,), generator=generator)
    ranks = script.first_hit_ranks(scores, rows, items, 20).tolist()
    assert any(r == 0 for r in ranks) and any(r == 1 for r in ranks)  # both cases occur
    ours = script.metrics_from_ranks(ranks)
    for k in (10, 20):
        for key, value in _recbole_metrics(scores, rows, items, k).items():
            assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_a_row_without_exactly_one_target_is_refused(benchmark_script) -> None:
    script = benchmark_script("recbole_ranks.py")
    scores = torch.rand(3, 25)
    with pytest.raises(ValueError, match="exactly one target"):
        script.first_hit_ranks(scores, torch.tensor([0, 0, 1]), torch.tensor([3, 4, 5]), 20)  # row 2 has none
