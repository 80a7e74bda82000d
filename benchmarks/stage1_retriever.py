"""UNGER Stage I's fusion model used as a retriever on its own: full-corpus test metrics of its user vector
against every item's integrated embedding (one dot product per item), next to the first-order Markov floor.

Stage I trains a next-item predictor (DIN over integrated item embeddings, full softmax over the items); the
generative Stage II is built on its codes. Its own test ranking tells how much of the Stage II gap is the
generative decoding rather than the embedding. The split and the metrics are genrec's (the test split, every
user with a history, Recall/NDCG at 1/5/10/20).

    python benchmarks/stage1_retriever.py --run runs/beauty            # a `genrec run` folder
    python benchmarks/stage1_retriever.py --stage1 S1/best --data DATA --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from genrec.modeling.modeling_unger_fusion import UngerFusionModel
from genrec.trainers.stages.stage1 import VOCABULARY_FILE, evaluate_ranking, load_stage1_data


def evaluate_stage1(stage1_best: Path, data: Path, split: str = "test") -> dict:
    """Test (or validation) metrics of a Stage I ``best/`` folder on the prepared dataset ``data``."""
    model = UngerFusionModel.from_pretrained(stage1_best).eval()
    dataset = load_stage1_data(data, max_history=model.config.max_history_items, splits=(split,))
    if json.loads((stage1_best / VOCABULARY_FILE).read_text()) != list(dataset.item_ids):
        raise ValueError(f"{stage1_best} was trained on another item vocabulary than {data}'s")
    start = time.perf_counter()
    with torch.no_grad():
        metrics = evaluate_ranking(model, DataLoader(dataset.splits[split], batch_size=512))
    return {
        "stage1": str(stage1_best), "data": str(data), "split": split,
        "num_users": len(dataset.splits[split]), "metrics": metrics,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a `genrec run` folder (uses RUN/stage1/best and RUN/data)")
    parser.add_argument("--stage1", type=Path, help="a Stage I best/ folder")
    parser.add_argument("--data", type=Path, help="the prepared dataset it was trained on")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if args.run:
        args.stage1, args.data = args.stage1 or args.run / "stage1" / "best", args.data or args.run / "data"
    if not (args.stage1 and args.data):
        parser.error("give --run, or --stage1 and --data")
    result = evaluate_stage1(args.stage1, args.data, args.split)
    metrics = result["metrics"]
    print(f"Stage I retriever, {args.split} ({result['num_users']} users, full corpus): "
          + ", ".join(f"{k} {metrics[k]:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
