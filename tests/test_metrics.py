"""The single ranking-metric implementation, checked by hand, and its `evaluate` wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.trainers.metrics import compute_metrics, format_metrics, metrics_from_ranks, target_ranks


def test_hand_checked_values() -> None:
    recommended = [["a", "b", "c"], ["x", None, "y"], ["q", "r", "s"]]
    targets = ["b", "y", "zzz"]
    ranks = target_ranks(recommended, targets)
    assert ranks.tolist() == [2, 3, 0]
    m = compute_metrics(recommended, targets, ks=[1, 2, 3])
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["hr@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert m["invalid_rate"] == pytest.approx(1 / 9)
    assert m["num_users"] == 3


def test_list_is_cut_at_largest_k() -> None:
    m = compute_metrics([["a", "b", "t"]], ["t"], ks=[2])
    assert m["recall@2"] == 0.0


def test_metrics_from_ranks_validates() -> None:
    with pytest.raises(ValueError):
        metrics_from_ranks(np.array([-1]))
    with pytest.raises(ValueError):
        metrics_from_ranks(np.array([1]), ks=[0])
    with pytest.raises(ValueError, match="pair up"):
        target_ranks([["a"]], ["a", "b"])


def test_format_metrics_table() -> None:
    text = format_metrics(compute_metrics([["a"]], ["a"], ks=[1, 10]), title="test")
    assert "recall" in text and "@10" in text and "1.0000" in text


def test_evaluate_metric_matches_library() -> None:
    from genrec.trainers.metrics_evaluate import load_ranking_metric

    metric = load_ranking_metric()
    predictions = [["a", "b", None], ["c", "d", "e"]]
    references = ["b", "e"]
    got = metric.compute(predictions=predictions, references=references, ks=[1, 3])
    assert got == compute_metrics(predictions, references, ks=[1, 3])
