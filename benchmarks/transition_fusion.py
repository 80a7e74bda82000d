"""Does interpolating the generative model with first-order transition counts close the Markov gap?

docs/quality.md found that the generative model and the first-order Markov chain hit different users: the
model wins on the ~91 % of Beauty test users whose transition *last item -> target* never occurred in
training, the chain wins where it occurred one to five times (the model does not memorise rare pairs through
their codes). This script measures the classic remedy, linear interpolation of the two next-item
distributions::

    p(item | history) = (1 - w) * p_model(item | history) + w * count(last -> item) / count(last -> *)

Candidates are the model's beams plus the chain's successors of the last history item; the model's
probability of a successor that no beam reached is computed exactly (``score_items``: teacher forcing with
the same constrained softmax as the beams). ``w`` is chosen on the validation split (by NDCG@10, the metric
where the chain led) and then applied once to the test split; ``w = 0`` is the model alone and is reported
beside it, with the chain, on the same users.

    python benchmarks/transition_fusion.py --run runs/beauty --max-users 0 --json fusion.json

A run folder is what ``genrec run`` writes (model + tokenizer + ``data/``). 22,363 Beauty users per split take
a few CPU minutes per split at 20 beams.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markov_baseline import MarkovBaseline  # noqa: E402

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def candidate_scores(
    model: Any, tokenizer: Any, histories: Sequence[Sequence[str]], chain: MarkovBaseline, *, beams: int,
    successors: int, batch_size: int = 256,
) -> list[dict[str, tuple[float, float]]]:
    """Per history: {item: (model log-probability, transition probability)} over beams + chain successors."""
    ranked = model.recommend(histories, tokenizer, k=beams, num_beams=beams, batch_size=batch_size)
    rows: list[dict[str, tuple[float, float]]] = []
    missing: list[list[str]] = []
    for history, beam in zip(histories, ranked, strict=True):
        followers = chain.transitions.get(history[-1], {})
        total = sum(followers.values())
        top = sorted(followers, key=lambda item: (-followers[item], -chain.popularity[item], item))[:successors]
        row = {item: (score, followers.get(item, 0) / total if total else 0.0) for item, score in beam}
        missing.append([item for item in top if item not in row])
        for item in missing[-1]:
            row[item] = (math.nan, followers[item] / total)
        rows.append(row)
    extra = model.score_items(histories, tokenizer, missing, batch_size=batch_size)
    for row, items, scores in zip(rows, missing, extra, strict=True):
        for item, score in zip(items, scores or [], strict=True):
            row[item] = (float(score), row[item][1])
    return rows


def fuse(rows: Sequence[dict[str, tuple[float, float]]], weight: float, k: int = 20) -> list[list[str]]:
    """Top-``k`` items per row by ``(1 - weight) * p_model + weight * p_transition``."""
    out = []
    for row in rows:
        scored = sorted(row, key=lambda item: -((1 - weight) * math.exp(row[item][0]) + weight * row[item][1]))
        out.append(scored[:k])
    return out


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModel, AutoTokenizer

    import genrec  # noqa: F401  (registers the Auto classes)
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation import load_examples
    from genrec.trainers.metrics import compute_metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a `genrec run` folder (or any saved model folder)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: RUN/data)")
    parser.add_argument("--max-users", type=int, default=0, help="seeded sample of test users (0: all)")
    parser.add_argument("--max-validation-users", type=int, default=5000,
                        help="seeded sample of validation users that choose w (0: all)")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--successors", type=int, default=20, help="chain successors added as candidates")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = AutoModel.from_pretrained(str(args.run))
    tokenizer = AutoTokenizer.from_pretrained(str(args.run))
    data = args.data or args.run / "data"
    sequences, _ = load_genrec_dataset(data)
    chain = MarkovBaseline(sequences["train"]["item_ids"])
    result: dict[str, Any] = {"run": str(args.run), "beams": args.beams, "successors": args.successors}
    per_split: dict[str, dict[str, Any]] = {}
    for split in ("validation", "test"):
        cap = args.max_validation_users if split == "validation" else args.max_users
        examples = load_examples(data, split, max_history=model.config.max_history_items, max_users=cap or None)
        rows = candidate_scores(model, tokenizer, examples.histories, chain, beams=args.beams,
                                successors=args.successors)
        per_split[split] = {
            "users": len(examples.targets),
            "weights": {str(w): compute_metrics(fuse(rows, w), examples.targets) for w in WEIGHTS},
            "markov": compute_metrics([chain.markov(h, 20) for h in examples.histories], examples.targets),
        }
        print(f"{split}: {len(examples.targets)} users, {time.perf_counter() - start:.0f} s", flush=True)
    best = max(WEIGHTS, key=lambda w: per_split["validation"]["weights"][str(w)]["ndcg@10"])
    result.update(per_split=per_split, chosen_weight=best, seconds=round(time.perf_counter() - start, 1))
    keys = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
    print(f"{'':>30} " + " ".join(f"{k:>9}" for k in keys))
    for split in ("validation", "test"):
        rows_out = {"model alone (w=0)": per_split[split]["weights"]["0.0"],
                    f"model + transitions (w={best})": per_split[split]["weights"][str(best)],
                    "first-order Markov": per_split[split]["markov"]}
        for name, metrics in rows_out.items():
            print(f"{split[:4] + ' ' + name:>30} " + " ".join(f"{metrics[k]:>9.4f}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print("->", args.json)


if __name__ == "__main__":
    main()
