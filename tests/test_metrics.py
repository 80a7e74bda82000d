"""The single ranking-metric implementation, checked by hand, and its `evaluate` wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.trainers.evaluation.metrics import (
    compute_metrics,
    format_metrics,
    metrics_from_ranks,
    paired_bootstrap,
    per_user_scores,
    target_ranks,
)


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
    # leave-one-out: hr@K is recall@K, so the table does not repeat it; a table where they differ keeps it
    assert "\nhr" not in text
    differing = {"recall@10": 0.2, "hr@10": 0.3, "ndcg@10": 0.1}
    assert "\nhr" in format_metrics(differing)


def test_evaluate_metric_matches_library() -> None:
    from genrec.trainers.evaluation.metric_loader import load_ranking_metric

    metric = load_ranking_metric()
    predictions = [["a", "b", None], ["c", "d", "e"]]
    references = ["b", "e"]
    got = metric.compute(predictions=predictions, references=references, ks=[1, 3])
    assert got == compute_metrics(predictions, references, ks=[1, 3])


def test_per_user_scores_average_to_the_metrics() -> None:
    ranks = np.array([0, 1, 3, 12, 7, 0, 2])
    metrics = metrics_from_ranks(ranks, ks=(1, 5, 10))
    for name in ("hr@1", "hr@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10"):
        assert per_user_scores(ranks, name).mean() == pytest.approx(metrics[name]), name
    with pytest.raises(ValueError, match="hr@10"):
        per_user_scores(ranks, "precision@10")


def test_paired_bootstrap_separates_a_real_difference_from_noise() -> None:
    rng = np.random.default_rng(0)
    b = np.where(rng.random(900) < 0.10, rng.integers(1, 11, 900), 0)  # HR@10 about 0.10
    same = paired_bootstrap(b, b, "hr@10", resamples=2000)
    assert same["diff"] == 0.0 and same["ci_low"] == same["ci_high"] == 0.0 and same["share_a_better"] == 0.0
    better = b.copy()
    better[np.flatnonzero(b == 0)[:60]] = 1  # A also finds 60 more targets, at rank 1
    ahead = paired_bootstrap(better, b, "ndcg@10", resamples=2000)
    assert ahead["diff"] > 0 and ahead["ci_low"] > 0 and ahead["share_a_better"] == 1.0
    assert ahead["only_a"] == 60 and ahead["only_b"] == 0
    noisy = b.copy()  # one more hit, one fewer: inside the noise
    noisy[np.flatnonzero(b == 0)[0]], noisy[np.flatnonzero(b > 0)[0]] = 1, 0
    level = paired_bootstrap(noisy, b, "hr@10", resamples=2000, seed=3)
    assert level["ci_low"] < 0 < level["ci_high"]
    assert paired_bootstrap(better, b, "ndcg@10", resamples=2000) == ahead  # seeded
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap(b, b[:-1], "hr@10")
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(b, b, "hr@10", resamples=0)
