"""Does interpolating the generative model with first-order transition counts close the Markov gap?

docs/journal/2026-12-01-quality.md found that the generative model and the first-order Markov chain hit
different users: the model wins on the ~91 % of Beauty test users whose transition *last item -> target* never
occurred in training, the chain wins where it occurred one to five times (the model does not memorise rare
pairs through their codes). This script measures the classic remedy, linear interpolation of the two next-item
distributions::

    p(item | history) = (1 - w) * p_model(item | history) + w * count(last -> item) / count(last -> *)

This is what ``genrec run`` (default profile) and ``genrec transition-prior RUN`` do, with every weight's
test metrics shown as well (``genrec.trainers.stages.transition_prior``; candidates are the model's beams plus the
last item's successors, whose model probability is computed exactly by ``score_items``). ``w`` is chosen
on the validation split (by NDCG@10, the metric where the chain led); its test row is the one to quote,
the other weights' test rows show how flat the optimum is. ``w = 0`` is the model alone (on the larger
candidate set, which can rank a little better than the plain beam search), beside the chain, same users.

    python benchmarks/studies/transition_fusion.py --run runs/beauty --max-users 0 --json fusion.json

A run folder is what ``genrec run`` writes (model + tokenizer + ``data/``). 22,363 Beauty users per split take
a few CPU minutes per split at 20 beams.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the tools a study reuses
from markov_baseline import MarkovBaseline  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModel, AutoTokenizer

    import genrec  # noqa: F401  (registers the Auto classes)
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.evaluator import load_examples
    from genrec.trainers.evaluation.metrics import compute_metrics
    from genrec.trainers.stages.transition_prior import (
        SELECTION_METRIC,
        TRANSITION_WEIGHTS,
        choose_transition_weight,
        fit_transition_prior,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a `genrec run` folder (or any saved model folder)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: RUN/data)")
    parser.add_argument("--max-users", type=int, default=0, help="seeded sample of test users (0: all)")
    parser.add_argument("--max-validation-users", type=int, default=5000,
                        help="seeded sample of validation users that choose w (0: all)")
    parser.add_argument("--beams", type=int, default=20)
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
    pairs = fit_transition_prior(model, tokenizer, data)
    result: dict[str, Any] = {"run": str(args.run), "beams": args.beams, "num_transitions": pairs}
    per_split: dict[str, dict[str, Any]] = {}
    for split in ("validation", "test"):
        cap = args.max_validation_users if split == "validation" else args.max_users
        examples = load_examples(data, split, max_history=model.config.max_history_items, max_users=cap or None)
        _, table = choose_transition_weight(model, tokenizer, examples.histories, examples.targets,
                                            num_beams=args.beams)
        per_split[split] = {
            "users": len(examples.targets),
            "weights": table,
            "markov": compute_metrics([chain.markov(h, 20) for h in examples.histories], examples.targets),
        }
        print(f"{split}: {len(examples.targets)} users, {time.perf_counter() - start:.0f} s", flush=True)
    best = max(TRANSITION_WEIGHTS, key=lambda w: (per_split["validation"]["weights"][str(w)][SELECTION_METRIC], -w))
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
