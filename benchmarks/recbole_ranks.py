"""Each test user's target rank under a trained RecBole model, in ``genrec evaluate --per-user``'s layout.

RecBole reports means; ``benchmarks/paired_compare.py`` needs every user's rank to say whether genrec and a
RecBole baseline differ beyond the test set's noise (means and their standard errors cannot: the two models
are scored on the same users). This reloads the best weights of a resumable ``recbole_runner.py --state-dir``
run (``best.safetensors``, the epoch whose weights that run tested), scores the test split through RecBole's
own full-ranking step (``Trainer._full_sort_batch_eval``: padding and, where RecBole has one, the history
mask) and takes the top ``k`` with ``torch.topk`` as RecBole's collector does, so the ranks give back the
run's own test metrics (checked: ``--expect`` compares them with the run's result JSON and fails on a
difference). Runs in RecBole's environment, like the runner:

    runs/recbole-venv/bin/python benchmarks/recbole_ranks.py --data-path runs/recbole-data \\
        --dataset genrec-beauty --model SASRec --seed 2024 \\
        --state-dir runs/recbole-work/beauty-recbole-sasrec-converged/seed2024/state \\
        --expect runs/recbole-work/beauty-recbole-sasrec-converged/seed2024/result.json \\
        --out benchmarks/results/ranks/beauty-recbole-sasrec-converged.json

Give it the arguments the run was trained with (``--config``, ``--max-history``): they rebuild the same
dataset and model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_runner import (  # noqa: E402  (the runner's own settings, so that the dataset and model match)
    KS,
    load_best_weights,
    patch_numpy_aliases,
    recbole_config,
)


def first_hit_ranks(scores, positive_rows, positive_items, k: int):
    """1-based rank of each row's positive item in its top ``k`` by ``torch.topk`` (0 when absent): RecBole's
    collector takes the same ``topk``, so ties fall the same way and the ranks reproduce its metrics."""
    import torch

    _, top = torch.topk(scores, k, dim=-1)
    hits = torch.zeros_like(scores, dtype=torch.bool)
    hits[positive_rows, positive_items] = True
    found = torch.gather(hits, 1, top)
    if (hits.sum(dim=1) != 1).any():
        raise ValueError("every test row must have exactly one target (genrec's leave-one-out split)")
    return torch.where(found.any(dim=1), found.int().argmax(dim=1) + 1, torch.zeros_like(found[:, 0], dtype=torch.long))


def metrics_from_ranks(ranks: list[int]) -> dict[str, float]:
    """Recall (= HR) and NDCG at RecBole's cut-offs from one-target ranks (0 = not in the top max(KS))."""
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = sum(1 for r in ranks if 0 < r <= k) / len(ranks)
        out[f"ndcg@{k}"] = sum(1 / math.log2(r + 1) for r in ranks if 0 < r <= k) / len(ranks)
    return out


def ranks(args: argparse.Namespace) -> dict[str, Any]:
    """Rebuild the run's dataset and model, load its best weights and rank every test user's target."""
    patch_numpy_aliases()
    import torch

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(work_dir)
    config = Config(model=args.model, dataset=args.dataset,
                    config_dict=recbole_config(args, str(work_dir / "checkpoints")))  # nothing is saved there
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_best_weights(Path(args.state_dir), model)
    model.eval()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.tot_item_num = test_data._dataset.item_num
    user_field, item_field = dataset.uid_field, dataset.iid_field
    users: list[str] = []
    targets: list[str] = []
    found: list[int] = []
    with torch.no_grad():
        for batch in test_data:
            interaction, scores, positive_rows, positive_items = trainer._full_sort_batch_eval(batch)
            batch_ranks = first_hit_ranks(scores, positive_rows, positive_items, max(KS))
            order = torch.argsort(positive_rows)  # one target per row: the targets in row order
            users += [str(u) for u in dataset.id2token(user_field, interaction[user_field].cpu().numpy())]
            targets += [str(t) for t in dataset.id2token(item_field, positive_items[order].cpu().numpy())]
            found += batch_ranks.tolist()
    return {"model": f"RecBole {args.model} ({args.state_dir_given})", "split": "test", "metrics": metrics_from_ranks(found),
            "per_user": {"user_id": users, "target": targets, "rank": found, "k": max(KS)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True, help="the runner's --data-path")
    parser.add_argument("--dataset", required=True, help="the runner's --dataset")
    parser.add_argument("--model", required=True, help="the runner's --model (SASRec, GRU4Rec, BERT4Rec)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-history", type=int, default=20)
    parser.add_argument("--config", default="{}", help="the runner's --config")
    parser.add_argument("--state-dir", required=True, help="the run's --state-dir (holds best.safetensors)")
    parser.add_argument("--expect", type=Path, default=None,
                        help="the run's result JSON: fail unless the ranks give back its test metrics")
    parser.add_argument("--work-dir", default=tempfile.gettempdir() + "/recbole-ranks")
    parser.add_argument("--out", type=Path, required=True, help="where the per-user ranks JSON goes")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config also parses sys.argv
    args.data_path = str(Path(args.data_path).resolve())
    args.state_dir_given = args.state_dir  # recorded as given: no machine's absolute path in a committed file
    args.state_dir = str(Path(args.state_dir).resolve())
    args.out = args.out.resolve()
    expect = json.loads(args.expect.read_text())["test"] if args.expect else None
    if not (Path(args.state_dir) / "best.safetensors").is_file():
        parser.error(f"{args.state_dir} has no best.safetensors: give the --state-dir of a finished resumable run")
    result = ranks(args)
    state = json.loads((Path(args.state_dir) / "state.json").read_text())
    result["training"] = {"epochs_run": state["epoch"] + 1, "best_epoch": state["best"]["epoch"],
                          "best_valid_mrr@10": state["best"]["score"], "fit_seconds": round(state["fit_seconds"], 1)}
    if expect is not None:
        wrong = {key: (value, expect.get(key)) for key, value in result["metrics"].items()
                 if expect.get(key) is None or abs(value - expect[key]) > 1e-6}
        if wrong:
            raise SystemExit(f"the ranks do not give back the run's test metrics (ours, the run's): {wrong}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result) + "\n")
    print(json.dumps(result["metrics"], indent=2), f"\n{len(result['per_user']['rank'])} users -> {args.out}")


if __name__ == "__main__":
    main()
