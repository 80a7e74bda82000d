"""Is model A ahead of model B beyond the test set's noise? A paired bootstrap over the same test users.

Reads two ``genrec evaluate --per-user --out FILE`` results (UNGER or TTDS, the same split of the same
dataset), pairs them user by user, and for every metric gives both means, the difference A - B with its
95 % interval (users resampled with replacement, one draw for both models), the share of resamples in
which A is ahead, and the users only one of them hits. On ML-100K's 943 test users a difference of a few
hits at HR@10 is inside the noise; this is what says so.

    genrec evaluate --model RUN_A/final --data DATA --beams 10 --k 1 5 10 --per-user --out a.json
    genrec evaluate --model RUN_B/final --data DATA --beams 10 --k 1 5 10 --per-user --out b.json
    python benchmarks/paired_compare.py a.json b.json --metrics hr@1 hr@5 hr@10 ndcg@5 ndcg@10 --json out.json

Several seeds of a model pool into one comparison: ``--also-a`` (``--also-b``) adds the other seeds' files of A
(B); each user's score is then the mean over that model's files, and the users are resampled as before. On
ML-100K one seed's interval is about ±0.023 Recall@10; three seeds pooled narrow it to what the seed-averaged
model can show, without counting a user three times.

    python benchmarks/paired_compare.py s2024.json markov.json --also-a s2025.json s2026.json --metrics recall@10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from genrec.trainers.evaluation.metrics import paired_bootstrap_scores, per_user_scores


def load_ranks(path: Path) -> dict[str, tuple[str, int]]:
    """user id -> (target, rank) from a ``genrec evaluate --per-user`` JSON."""
    result = json.loads(Path(path).read_text())
    per_user = result.get("per_user")
    if not per_user:
        raise ValueError(f"{path} has no per-user ranks: write it with `genrec evaluate --per-user --out {path}`")
    users, targets, ranks = per_user["user_id"], per_user["target"], per_user["rank"]
    if not len(users) == len(targets) == len(ranks):
        raise ValueError(f"{path}: per_user columns of different lengths ({len(users)}, {len(targets)}, {len(ranks)})")
    if len(set(users)) != len(users):
        raise ValueError(f"{path}: a user appears twice in per_user")
    return {u: (t, int(r)) for u, t, r in zip(users, targets, ranks, strict=True)}


def compare(
    a: Path, b: Path, metrics: list[str], *, resamples: int = 10_000, seed: int = 0, common_users: bool = False,
    also_a: list[Path] | None = None, also_b: list[Path] | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of each metric between the two result files (same users and targets required, or with
    ``common_users`` the users both files rank: a model evaluated on a subset against a baseline on all).
    ``also_a`` / ``also_b``: further files of the same model (other seeds); each user's score is then the mean
    over that model's files (one file is its own mean, so a plain comparison is the one-seed case)."""
    pooled = bool(also_a or also_b)
    if pooled and common_users:
        raise ValueError("--common-users and several seeds per model do not combine: evaluate every seed on "
                         "the whole split")
    files_a, files_b = [a, *(also_a or [])], [b, *(also_b or [])]
    ranks = {path: load_ranks(path) for path in [*files_a, *files_b]}
    if common_users:
        shared = set(ranks[a]) & set(ranks[b])
        if not shared:
            raise ValueError(f"{a} and {b} rank no user in common")
        ranks = {path: {u: r for u, r in ranked.items() if u in shared} for path, ranked in ranks.items()}
    users = sorted(ranks[a])
    for path, ranked in ranks.items():
        _check_same_split(a, ranks[a], path, ranked)

    def mean_scores(files: list[Path], metric: str) -> np.ndarray:
        return np.mean([per_user_scores([ranks[f][u][1] for u in users], metric) for f in files], axis=0)

    comparisons = [paired_bootstrap_scores(mean_scores(files_a, m), mean_scores(files_b, m), m,
                                           resamples=resamples, seed=seed) for m in metrics]
    if not pooled:
        return {"a": str(a), "b": str(b), "resamples": resamples, "seed": seed, "comparisons": comparisons}
    return {"a": [str(f) for f in files_a], "b": [str(f) for f in files_b], "resamples": resamples, "seed": seed,
            "pooled": "each user's score is the mean over the model's files (seeds)", "comparisons": comparisons}


def _check_same_split(
    reference: Path, expected: dict[str, tuple[str, int]], path: Path, ranked: dict[str, tuple[str, int]]
) -> None:
    """``path`` must rank the users of ``reference`` with the same targets: pairing users of two splits (or a
    subset written with ``--max-users``) would compare different questions."""
    if set(ranked) != set(expected):
        only = sorted(set(ranked) ^ set(expected))
        raise ValueError(f"{path} and {reference} rank different users ({len(only)} differ, e.g. {only[:5]}): "
                         "evaluate every file on the same split without --max-users")
    wrong = [u for u in sorted(expected) if ranked[u][0] != expected[u][0]]
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} users have different targets than in {reference} (e.g. user "
                         f"{wrong[0]}): they were not evaluated on the same split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="model A's `genrec evaluate --per-user` JSON")
    parser.add_argument("b", type=Path, help="model B's, on the same split")
    parser.add_argument("--metrics", nargs="+", default=["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--also-a", type=Path, nargs="+", default=None, metavar="FILE",
                        help="A's other seeds on the same split: each user's score is A's mean over its files")
    parser.add_argument("--also-b", type=Path, nargs="+", default=None, metavar="FILE", help="the same for B")
    parser.add_argument("--common-users", action="store_true",
                        help="pair only the users both files rank (e.g. a model evaluated on its first N test users "
                             "against a baseline's file for the whole split); the count is printed")
    args = parser.parse_args()
    result = compare(args.a, args.b, args.metrics, resamples=args.resamples, seed=args.seed,
                     common_users=args.common_users, also_a=args.also_a, also_b=args.also_b)
    print(f"A = {args.a}\nB = {args.b}\n{result['comparisons'][0]['num_users']} paired users, "
          f"{args.resamples} bootstrap resamples")
    print(f"{'metric':<9}{'A':>8}{'B':>8}{'A - B':>9}   95 % interval      P(A > B)  only A  only B")
    for c in result["comparisons"]:
        print(f"{c['metric']:<9}{c['mean_a']:>8.4f}{c['mean_b']:>8.4f}{c['diff']:>+9.4f}   "
              f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]  {c['share_a_better']:>8.3f}  {c['only_a']:>6}  {c['only_b']:>6}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
