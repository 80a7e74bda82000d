"""Ranking metrics for leave-one-out generative recommendation: the one implementation genrec uses.

Every trainer, the CLI, the benchmarks and the ``evaluate`` metric (``genrec_ranking``) call these
functions, so a number reported anywhere in genrec means the same thing everywhere.

Protocol (the papers'): each user has exactly one held-out target item; the model returns a ranked list of
recommended item ids over the full corpus (``None`` marks a generated code that is not an item). With the
1-based rank ``r`` of the target in the list (``r = 0`` when it is absent from the top K):

- ``recall@K`` = ``hr@K`` = 1 if 1 <= r <= K (identical with one target; both names are reported because
  the papers use both),
- ``ndcg@K`` = 1 / log2(r + 1) if 1 <= r <= K (the ideal DCG of a single relevant item is 1),
- ``mrr@K`` = 1 / r if 1 <= r <= K,

each averaged over users. ``invalid_rate`` is the fraction of returned entries that are not items (it must
read 0 under constrained decoding). A list longer than K is cut at K; a shorter list is never padded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)

__all__ = [
    "DEFAULT_KS", "target_ranks", "metrics_from_ranks", "compute_metrics", "format_metrics", "per_user_scores",
    "paired_bootstrap", "paired_bootstrap_scores",
]


def target_ranks(recommended: Sequence[Sequence[str | None]], targets: Sequence[str]) -> np.ndarray:
    """1-based rank of each user's target in its recommended list, 0 where it is absent."""
    if len(recommended) != len(targets):
        raise ValueError(
            f"got {len(recommended)} recommendation lists for {len(targets)} targets; they must pair up"
        )
    ranks = np.zeros(len(targets), dtype=np.int64)
    for row, (items, target) in enumerate(zip(recommended, targets, strict=True)):
        if target is None:
            raise ValueError(f"target of user #{row} is None: every evaluated user needs a target item")
        for position, item in enumerate(items, start=1):
            if item == target:
                ranks[row] = position
                break
    return ranks


def metrics_from_ranks(ranks: np.ndarray | Sequence[int], ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall/HR, NDCG and MRR at each K from 1-based target ranks (0 = not retrieved)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be one-dimensional, got shape {ranks.shape}")
    if (ranks < 0).any():
        raise ValueError("ranks must be >= 0 (0 means the target was not retrieved)")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    out: dict[str, float] = {}
    n = len(ranks)
    found = ranks > 0
    safe = np.where(found, ranks, 1)
    for k in ks:
        hit = found & (ranks <= k)
        hit_rate = float(hit.sum() / n) if n else 0.0
        out[f"recall@{k}"] = hit_rate
        out[f"hr@{k}"] = hit_rate
        out[f"ndcg@{k}"] = float((hit / np.log2(safe + 1)).sum() / n) if n else 0.0
        out[f"mrr@{k}"] = float((hit / safe).sum() / n) if n else 0.0
    return out


def per_user_scores(ranks: np.ndarray | Sequence[int], metric: str) -> np.ndarray:
    """Each user's contribution to ``metric`` (``hr@K``, ``recall@K``, ``ndcg@K`` or ``mrr@K``): the
    metric is the mean of these, so two models evaluated on the same users can be compared user by user."""
    name, _, cut = metric.partition("@")
    if not cut.isdigit() or int(cut) < 1 or name not in {"hr", "recall", "ndcg", "mrr"}:
        raise ValueError(f"metric must look like hr@10, recall@10, ndcg@10 or mrr@10, got {metric!r}")
    ranks = np.asarray(ranks, dtype=np.int64)
    hit = (ranks > 0) & (ranks <= int(cut))
    safe = np.where(ranks > 0, ranks, 1)
    if name in {"hr", "recall"}:
        return hit.astype(np.float64)
    return hit / (np.log2(safe + 1) if name == "ndcg" else safe)


def paired_bootstrap(
    ranks_a: np.ndarray | Sequence[int],
    ranks_b: np.ndarray | Sequence[int],
    metric: str,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Whether model A's ``metric`` differs from model B's on the same users, beyond the test set's noise.

    Two models' test numbers on a few hundred users move by several hits between seeds and users; the
    difference of their means says little without its spread. Both rank arrays list the same users in
    the same order (1-based target rank, 0 = not retrieved). The users are resampled with replacement
    (paired: one draw picks a user for both models), ``resamples`` times, seeded. Returns the two means, the
    difference ``a - b``, its percentile interval at ``confidence`` and ``share_a_better`` (the fraction
    of resamples in which A's mean is above B's), plus the users where exactly one of them scores (``only_a``,
    ``only_b``: for HR, the discordant pairs of a McNemar test).
    """
    return paired_bootstrap_scores(per_user_scores(ranks_a, metric), per_user_scores(ranks_b, metric), metric,
                                   resamples=resamples, confidence=confidence, seed=seed)


def paired_bootstrap_scores(
    a: np.ndarray,
    b: np.ndarray,
    metric: str,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """:func:`paired_bootstrap` on per-user scores already computed (:func:`per_user_scores`), e.g. each user's
    score averaged over several seeds' models, so that seeds pool without counting a user once per seed."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired comparison needs the same non-empty set of users, got {a.size} and {b.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(resamples) < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    diff = a - b
    rng = np.random.default_rng(seed)
    draws = np.empty(int(resamples))
    chunk = max(1, 2_000_000 // diff.size)  # resamples per draw: ~16 MB of indices whatever the test set's size
    for start in range(0, int(resamples), chunk):
        count = min(chunk, int(resamples) - start)
        picks = rng.integers(0, diff.size, size=(count, diff.size))
        draws[start : start + count] = diff[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return {
        "metric": metric, "num_users": int(diff.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
        "diff": float(diff.mean()), "ci_low": float(low), "ci_high": float(high), "confidence": confidence,
        "share_a_better": float((draws > 0).mean()),
        "only_a": int(((a > 0) & (b == 0)).sum()), "only_b": int(((b > 0) & (a == 0)).sum()),
    }


def compute_metrics(
    recommended: Sequence[Sequence[str | None]],
    targets: Sequence[str],
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """All ranking metrics plus ``invalid_rate`` and ``num_users`` for ranked recommendation lists.

    ``recommended[i]`` is user i's ranked list (best first); entries that are ``None`` are generated codes
    that do not map to an item and count towards ``invalid_rate``.
    """
    ks = list(ks)
    max_k = max(ks) if ks else 0
    cut = [list(items)[:max_k] for items in recommended]
    ranks = target_ranks(cut, targets)
    out = metrics_from_ranks(ranks, ks)
    total = sum(len(items) for items in cut)
    invalid = sum(1 for items in cut for item in items if item is None)
    out["invalid_rate"] = invalid / total if total else 0.0
    out["num_users"] = float(len(targets))
    return out


def format_metrics(metrics: dict[str, float], *, title: str | None = None) -> str:
    """A small fixed-width table (metric rows x cut-off columns) for terminals and logs. The ``hr`` row is left
    out when it equals ``recall`` at every cut-off (leave-one-out: one target per user)."""
    ks = sorted({int(key.split("@")[1]) for key in metrics if "@" in key})
    hr_is_recall = all(metrics.get(f"hr@{k}") == metrics.get(f"recall@{k}") for k in ks)
    names = ["recall", "ndcg", "mrr"] + ([] if hr_is_recall else ["hr"])
    lines = [title] if title else []
    header = "metric".ljust(8) + "".join(f"@{k}".rjust(10) for k in ks)
    lines.append(header)
    for name in names:
        if not any(f"{name}@{k}" in metrics for k in ks):
            continue
        values = "".join(
            (f"{metrics[f'{name}@{k}']:.4f}" if f"{name}@{k}" in metrics else "-").rjust(10) for k in ks
        )
        lines.append(name.ljust(8) + values)
    for extra in ("invalid_rate", "num_users"):
        if extra in metrics:
            value = metrics[extra]
            text = f"{int(value)}" if extra == "num_users" and math.isfinite(value) else f"{value:.4f}"
            lines.append(f"{extra}: {text}")
    return "\n".join(lines)
