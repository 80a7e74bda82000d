"""Where a generative model wins and loses against the first-order Markov chain, user by user.

For a sample of test users, both rank the full corpus (the model by its constrained beam search, the chain by
the counts of ``benchmarks/markov_baseline.py``), and the users are grouped by how often their transition
*last history item -> test target* occurs in the training rows (0, 1, 2, 3-5, 6+). The table shows each
model's Recall@10 per group and how the two models' hits overlap. This is how we found that the code-only
UNGER model under-memorises transitions seen once or twice in training, where the Markov chain is strongest
(docs/journal/2026-12-01-quality.md).

    python benchmarks/studies/markov_gap.py --run runs/beauty --max-users 5000 --json gap.json

A run folder is what ``genrec run`` writes (model + tokenizer at its top, the prepared dataset in ``data/``);
``--data`` points a bare model folder (e.g. a ``stage2_variants.py`` variant's ``best/``) at its dataset.
5,000 Beauty users take ~3 minutes on one CPU core.

Without decoding anything, the same table for **every** test user, at Recall@10 and NDCG@10, from per-user ranks
files that already exist (``genrec evaluate --per-user``, a run's ``stage2/test_ranks.json``,
``markov_baseline.py --per-user``): seconds instead of minutes, and NDCG per group, which the sample table lacks.

    python benchmarks/studies/markov_gap.py --data runs/beauty/data --ranks default=runs/beauty/stage2/test_ranks.json \
        --ranks markov=runs/beauty-floors/markov.json --json gap.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the tools a study reuses
from markov_baseline import MarkovBaseline  # noqa: E402
from paired_compare import load_ranks  # noqa: E402

BUCKETS = ("0", "1", "2", "3-5", "6+")


def _bucket(count: int) -> str:
    return "0" if count == 0 else "1" if count == 1 else "2" if count == 2 else "3-5" if count <= 5 else "6+"


def markov_gap(
    run: Path, *, data: Path | None = None, max_users: int | None = 5000, num_beams: int = 20, k: int = 10
) -> dict[str, Any]:
    """Per-transition-count Recall@k of the run's model and of the Markov chain on the test split."""
    from transformers import AutoModel, AutoTokenizer

    import genrec  # noqa: F401  (registers the Auto classes)
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.evaluator import load_examples

    model = AutoModel.from_pretrained(str(run))
    tokenizer = AutoTokenizer.from_pretrained(str(run))
    data = data or run / "data"
    sequences, _ = load_genrec_dataset(data)
    chain = MarkovBaseline(sequences["train"]["item_ids"])
    examples = load_examples(data, "test", max_history=model.config.max_history_items, max_users=max_users)
    start = time.perf_counter()
    ranked = [
        [item for item, _ in row]
        for row in model.recommend(examples.histories, tokenizer, k=k, num_beams=max(num_beams, k),
                                   exclude_history=False)
    ]
    seconds = time.perf_counter() - start
    users, model_hits, chain_hits = Counter(), Counter(), Counter()
    overlap = Counter()
    for history, target, items in zip(examples.histories, examples.targets, ranked, strict=True):
        group = _bucket(chain.transitions.get(history[-1], Counter()).get(target, 0))
        hit_model, hit_chain = target in items[:k], target in chain.markov(history, k)
        users[group] += 1
        model_hits[group] += hit_model
        chain_hits[group] += hit_chain
        overlap["both" if hit_model and hit_chain else "model_only" if hit_model else "chain_only" if hit_chain
                else "neither"] += 1
    total = sum(users.values())
    return {
        "run": str(run),
        "num_users": total,
        "k": k,
        "num_beams": num_beams,
        "groups": {
            g: {
                "users": users[g],
                "model_recall": model_hits[g] / users[g] if users[g] else None,
                "markov_recall": chain_hits[g] / users[g] if users[g] else None,
            }
            for g in BUCKETS
        },
        "model_recall": sum(model_hits.values()) / total,
        "markov_recall": sum(chain_hits.values()) / total,
        "overlap": dict(overlap),
        "model_seconds": round(seconds, 1),
    }


def gap_from_ranks(data: Path, ranks: dict[str, Path], *, k: int = 10) -> dict[str, Any]:
    """Per-transition-count Recall@k and NDCG@k of each per-user ranks file (name -> file), every test user.

    The users are grouped, as in :func:`markov_gap`, by how often their *last history item -> target* occurs in
    the training rows; every file must rank the same users with the same targets (the test split of ``data``).
    """
    import numpy as np

    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.evaluator import load_examples
    from genrec.trainers.evaluation.metrics import per_user_scores

    if not ranks:
        raise ValueError("give at least one --ranks NAME=FILE")
    sequences, _ = load_genrec_dataset(data)
    chain = MarkovBaseline(sequences["train"]["item_ids"])
    examples = load_examples(data, "test", max_history=None)
    group_of = {
        user: _bucket(chain.transitions.get(history[-1], Counter()).get(target, 0))
        for user, history, target in zip(examples.user_ids, examples.histories, examples.targets, strict=True)
    }
    target_of = dict(zip(examples.user_ids, examples.targets, strict=True))
    order = sorted(group_of)
    per_file: dict[str, dict[str, np.ndarray]] = {}
    for name, path in ranks.items():
        users = load_ranks(path)
        if set(users) != set(group_of):
            raise ValueError(f"{path} ranks {len(users)} users, the test split of {data} has {len(group_of)}: "
                             "give ranks of every test user of this dataset")
        wrong = [u for u, (target, _) in users.items() if target != target_of[u]]
        if wrong:
            raise ValueError(f"{path}: {len(wrong)} users have another target than {data}'s test split "
                             f"(e.g. user {wrong[0]})")
        rank = np.array([users[u][1] for u in order])
        per_file[name] = {"recall": per_user_scores(rank, f"recall@{k}"), "ndcg": per_user_scores(rank, f"ndcg@{k}")}
    groups = np.array([group_of[u] for u in order])
    result: dict[str, Any] = {"data": str(data), "k": k, "num_users": len(order),
                              "ranks": {name: str(path) for name, path in ranks.items()}, "groups": {}}
    for group in (*BUCKETS, "all"):
        mask = np.ones(len(order), bool) if group == "all" else groups == group
        row: dict[str, Any] = {"users": int(mask.sum())}
        for name, scores in per_file.items():
            row[name] = ({f"recall@{k}": float(scores["recall"][mask].mean()),
                          f"ndcg@{k}": float(scores["ndcg"][mask].mean())} if mask.any() else None)
        result["groups"][group] = row
    return result


def _print_ranks_table(result: dict[str, Any]) -> None:
    k, names = result["k"], list(result["ranks"])
    print(f"{'train count of last->target':>28} {'users':>6} " + " ".join(
        f"{name + f' R@{k}':>16} {name + f' N@{k}':>16}" for name in names))
    for group, row in result["groups"].items():
        if row["users"]:
            print(f"{group:>28} {row['users']:>6} " + " ".join(
                f"{row[n][f'recall@{k}']:>16.4f} {row[n][f'ndcg@{k}']:>16.4f}" for n in names))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None,
                        help="a `genrec run` folder (or any saved model folder): decode a sample of test users")
    parser.add_argument("--ranks", action="append", default=[], metavar="NAME=FILE",
                        help="instead of --run: a per-user ranks file of every test user of --data (repeatable)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: RUN/data)")
    parser.add_argument("--max-users", type=int, default=5000, help="seeded sample of test users (0: all)")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.run is None) == (not args.ranks):
        parser.error("give either --run (decode a sample) or --ranks NAME=FILE with --data (every test user)")
    if args.ranks:
        if args.data is None:
            parser.error("--ranks needs --data, the prepared dataset the ranks were computed on")
        pairs = [spec.split("=", 1) for spec in args.ranks]
        if any(len(pair) != 2 or not all(pair) for pair in pairs):
            parser.error(f"--ranks takes NAME=FILE, got {args.ranks}")
        result = gap_from_ranks(args.data, {name: Path(file) for name, file in pairs})
        _print_ranks_table(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
            print("->", args.json)
        return
    result = markov_gap(args.run, data=args.data, max_users=args.max_users or None, num_beams=args.beams)
    print(f"{'train count of last->target':>28} {'users':>6} {'model R@10':>11} {'Markov R@10':>12}")
    for group, row in result["groups"].items():
        if row["users"]:
            print(f"{group:>28} {row['users']:>6} {row['model_recall']:>11.3f} {row['markov_recall']:>12.3f}")
    print(f"{'all':>28} {result['num_users']:>6} {result['model_recall']:>11.4f} {result['markov_recall']:>12.4f}")
    print("hits:", result["overlap"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print("->", args.json)


if __name__ == "__main__":
    main()
