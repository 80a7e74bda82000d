"""Most-popular and first-order Markov baselines on a prepared genrec dataset: the floor every model must clear.

Both are fitted on the ``train`` rows of the ``sequences`` config only (exactly the examples Stage II trains
on) and rank the full corpus for every user of the evaluated split, scored by genrec's own
``compute_metrics`` (the numbers mean what every other genrec number means):

* **pop**: items by how often they are a training target.
* **markov**: for the last history item ``i``, the items that followed ``i`` in the training rows by count
  (ties: more popular first, then item id), then the remaining items by popularity (back-off).

    python benchmarks/markov_baseline.py runs/ml-100k/data --json markov_ml100k.json
    python benchmarks/markov_baseline.py runs/beauty/data --split validation
    python benchmarks/markov_baseline.py runs/ml-100k/data --per-user runs/floors   # + floors/{pop,markov}.json

``--per-user DIR`` writes each user's target rank per baseline in ``genrec evaluate --per-user``'s format, so
``benchmarks/paired_compare.py`` can say whether a model clears the floor beyond the test set's noise.

A few seconds on Beauty (22,363 users, 12,101 items) on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrec.trainers.evaluation.metrics import compute_metrics

KS = (1, 5, 10, 20)


class MarkovBaseline:
    """Popularity and first-order transition counts of the training rows (history + target per row)."""

    def __init__(self, train_sequences: Sequence[Sequence[str]]) -> None:
        self.popularity: Counter[str] = Counter()
        self.transitions: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for seq in train_sequences:
            if not seq:
                continue
            self.popularity[seq[-1]] += 1
            if len(seq) >= 2:
                self.transitions[seq[-2]][seq[-1]] += 1
        self._by_popularity = sorted(self.popularity, key=lambda item: (-self.popularity[item], item))

    def most_popular(self, k: int) -> list[str]:
        """The ``k`` most frequent training targets."""
        return self._by_popularity[:k]

    def markov(self, history: Sequence[str], k: int) -> list[str]:
        """Top ``k`` next items after ``history[-1]`` (popularity back-off when it has fewer successors)."""
        followers = self.transitions.get(history[-1]) if history else None
        ranked = (
            sorted(followers, key=lambda item: (-followers[item], -self.popularity[item], item))[:k]
            if followers else []
        )
        if len(ranked) < k:
            seen = set(ranked)
            ranked += [item for item in self._by_popularity[: k + len(seen)] if item not in seen][: k - len(ranked)]
        return ranked


def evaluate_baselines(
    data: str | Path, split: str = "test", k: int = max(KS), *, per_user: bool = False
) -> dict[str, Any]:
    """Fit both baselines on ``data``'s train rows and score them on ``split`` (full ranking).

    ``per_user``: the result also holds ``per_user`` (``{"pop": ..., "markov": ...}``, each user's target rank
    as :func:`genrec.trainers.evaluation.evaluator.per_user_ranks` records it).
    """
    from genrec.data_scripts.prepare import load_genrec_dataset

    sequences, _ = load_genrec_dataset(data)
    start = time.perf_counter()
    baseline = MarkovBaseline(sequences["train"]["item_ids"])
    table = sequences[split]
    users = table["user_id"] if "user_id" in table.column_names else [str(i) for i in range(len(table))]
    kept = [(str(user), seq) for user, seq in zip(users, table["item_ids"], strict=True)
            if seq is not None and len(seq) >= 2]
    rows = [seq for _, seq in kept]
    targets = [seq[-1] for seq in rows]
    pop = [baseline.most_popular(k)] * len(rows)
    markov = [baseline.markov(seq[:-1], k) for seq in rows]
    extra: dict[str, Any] = {}
    if per_user:
        from genrec.trainers.evaluation.evaluator import per_user_ranks

        ids = [user for user, _ in kept]
        extra["per_user"] = {"pop": per_user_ranks(ids, pop, targets, k),
                             "markov": per_user_ranks(ids, markov, targets, k)}
    return {
        "data": str(data),
        "split": split,
        "num_users": len(rows),
        "pop": compute_metrics(pop, targets, ks=KS),
        "markov": compute_metrics(markov, targets, ks=KS),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="a folder written by `genrec prepare` (or a genrec run's data/ folder)")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--per-user", type=Path, default=None, metavar="DIR",
                        help="write DIR/pop.json and DIR/markov.json: each user's target rank (paired_compare.py)")
    args = parser.parse_args()
    result = evaluate_baselines(args.data, args.split, per_user=args.per_user is not None)
    per_user = result.pop("per_user", None)
    if per_user is not None:
        from genrec.trainers.evaluation.evaluator import write_per_user_ranks

        args.per_user.mkdir(parents=True, exist_ok=True)
        for name, ranks in per_user.items():
            write_per_user_ranks(args.per_user / f"{name}.json", model=name, split=args.split,
                                 metrics=result[name], per_user=ranks, data=str(args.data))
    print(f"{args.data} ({args.split}, {result['num_users']} users, full corpus):")
    print("model    " + "  ".join(f"{m:>9s}" for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")))
    for name in ("pop", "markov"):
        metrics = result[name]
        print(f"{name:8s} " + "  ".join(f"{metrics[m]:9.4f}" for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
