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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a `genrec run` folder (or any saved model folder)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: RUN/data)")
    parser.add_argument("--max-users", type=int, default=5000, help="seeded sample of test users (0: all)")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
