"""Does the transition prior lose less on never-seen pairs when a rarely-left item's counts are trusted less?

The prior of ``genrec run`` mixes ``(1 - w) p_model + w count(last -> item) / n(last)`` with one ``w`` chosen on
validation (``genrec.trainers.stages.transition_prior``). Per train count of the test user's *last item ->
target* pair (``benchmarks/studies/markov_gap.py``), that mixture wins the 8.6 % of Beauty users whose pair was
seen and costs the 91 % whose pair was never seen (Recall@10 0.0395 -> 0.0151 there): the last item's successors
fill the top of every list, the more so the fewer times the item was left (``n(last) = 1`` gives its one
successor probability 1). This measures the additive-smoothing family

    p = (1 - w) p_model + w count(last -> item) / (n(last) + c)

(``c = 0`` is today's prior; ``c > 0`` moves mass from items left a few times back to the model), with
``(w, c)`` chosen on the same validation users by the same NDCG@10, and writes both choices' test ranks
(``genrec evaluate --per-user``'s layout) for ``benchmarks/paired_compare.py``. One decoding per split serves
every ``(w, c)`` (the candidates: the model's beams plus the last item's successors, as the prior's own).

    python benchmarks/studies/transition_smoothing.py --run runs/beauty-z --json smoothing.json \\
        --ranks-dir runs/smoothing
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

KEYS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def rank_candidates(candidates: list[tuple[str, float, float]], weight: float, scale: float) -> list[str]:
    """Items by ``(1 - w) p_model + w p_transition * scale``, best first (``scale = n / (n + c)``): the product's
    mixture (``mix_transition_scores``) on rescaled transition probabilities."""
    from genrec.modeling.transition_prior import mix_transition_scores

    scaled = [(item, log_p, p_trans * scale) for item, log_p, p_trans in candidates]
    return [item for item, _ in mix_transition_scores(scaled, weight)]


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModel, AutoTokenizer

    import genrec  # noqa: F401  (registers the Auto classes)
    from genrec.trainers.engine.processes import map_batches
    from genrec.trainers.evaluation.evaluator import load_examples, per_user_ranks, write_per_user_ranks
    from genrec.trainers.evaluation.metrics import compute_metrics
    from genrec.trainers.stages.transition_prior import (
        SELECTION_METRIC,
        TRANSITION_WEIGHTS,
        times_left,
        training_transitions,
    )
    from genrec.trainers.stages.transition_smoothing import (
        TRANSITION_SMOOTHINGS as SMOOTHING,  # the product's grid
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a `genrec run` folder")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: RUN/data)")
    parser.add_argument("--max-validation-users", type=int, default=5000,
                        help="seeded sample of validation users that choose (w, c), as the prior's own (0: all)")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--ranks-dir", type=Path, default=None, help="write both choices' test ranks here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = AutoModel.from_pretrained(str(args.run))
    tokenizer = AutoTokenizer.from_pretrained(str(args.run))
    data = args.data or args.run / "data"
    sources, targets = training_transitions(tokenizer, data)
    model.set_transition_prior(sources, targets)
    left = times_left(sources, len(tokenizer.code_table))  # n(last): how often each row was left in training
    table = tokenizer.code_table
    k = max(20, args.beams)
    grid = [(float(w), c) for w in TRANSITION_WEIGHTS if w > 0 for c in SMOOTHING]
    splits: dict[str, Any] = {}
    for split in ("validation", "test"):
        cap = args.max_validation_users if split == "validation" else 0
        examples = load_examples(data, split, max_history=model.config.max_history_items, max_users=cap or None)
        candidates = map_batches(
            lambda batch: model.transition_candidates(batch, tokenizer, num_beams=args.beams),
            list(examples.histories), 256, desc=f"candidates ({split})", show_progress=True,
        )
        n_last = []
        for history in examples.histories:
            known = [int(r) for r in table.lookup_indices(list(history)) if r >= 0]
            n_last.append(int(left[known[-1]]) if known else 0)
        rankings = {}
        for w, c in [(0.0, 0.0), *grid]:
            rankings[(w, c)] = [rank_candidates(row, w, n / (n + c) if n else 0.0)[:k]
                                for row, n in zip(candidates, n_last, strict=True)]
        splits[split] = {"examples": examples, "rankings": rankings,
                         "metrics": {f"{w}/{c}": compute_metrics(r, examples.targets) for (w, c), r in rankings.items()}}
        print(f"{split}: {len(examples.targets)} users, {time.perf_counter() - start:.0f} s", flush=True)
    valid = splits["validation"]["metrics"]
    plain = max((w for w, _ in grid), key=lambda w: (valid[f"{w}/0.0"][SELECTION_METRIC], -w))
    smoothed = max(grid, key=lambda wc: (valid[f"{wc[0]}/{wc[1]}"][SELECTION_METRIC], -wc[1], -wc[0]))
    chosen = {"plain (c = 0)": (plain, 0.0), "smoothed": smoothed, "model alone": (0.0, 0.0)}
    test = splits["test"]
    print(f"{'':>34} " + " ".join(f"{key:>9}" for key in KEYS) + "   validation " + SELECTION_METRIC)
    for name, (w, c) in chosen.items():
        metrics = test["metrics"][f"{w}/{c}"]
        print(f"{f'{name}: w = {w}, c = {c}':>34} " + " ".join(f"{metrics[key]:>9.4f}" for key in KEYS)
              + f"   {valid[f'{w}/{c}'][SELECTION_METRIC]:.4f}")
    result = {
        "run": str(args.run), "beams": args.beams, "smoothing": list(SMOOTHING), "weights": list(TRANSITION_WEIGHTS),
        "selection_metric": SELECTION_METRIC, "validation_users": len(splits["validation"]["examples"].targets),
        "test_users": len(test["examples"].targets),
        "chosen": {name: {"weight": w, "c": c, "test": test["metrics"][f"{w}/{c}"],
                          "validation": valid[f"{w}/{c}"]} for name, (w, c) in chosen.items()},
        "validation": valid, "test": test["metrics"], "seconds": round(time.perf_counter() - start, 1),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("->", args.json)
    if args.ranks_dir:
        args.ranks_dir.mkdir(parents=True, exist_ok=True)
        examples = test["examples"]
        for name, (w, c) in (("plain", (plain, 0.0)), ("smoothed", smoothed)):
            write_per_user_ranks(args.ranks_dir / f"{name}.json", model=str(args.run), split="test",
                                 metrics=test["metrics"][f"{w}/{c}"], transition_weight=w, smoothing=c,
                                 per_user=per_user_ranks(examples.user_ids, test["rankings"][(w, c)], examples.targets,
                                                         k))
        print("->", args.ranks_dir)


if __name__ == "__main__":
    main()
