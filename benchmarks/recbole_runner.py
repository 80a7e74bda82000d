"""Train and test one RecBole 1.2.1 model on genrec's exact split; runs inside RecBole's own environment.

`benchmarks/report.py` exports genrec's train/validation/test ``sequences`` rows to RecBole atomic files
(``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``, columns ``user_id:token``,
``item_id_list:token_seq`` (the history, oldest first, at most 20 items) and ``item_id:token`` (the
target)) and starts this script with the interpreter of ``runs/recbole-venv`` (RecBole 1.2.1 needs
numpy<2 and pandas<2.2, which must not reach genrec's environment). RecBole's ``benchmark_filename``
option makes it read those three files as the already-split data, so every model trains, validates and
tests on exactly the examples genrec's models see; RecBole's own code does everything else (its
default hyper-parameters, early stopping on validation MRR@10 with patience 10, full ranking over the
whole item corpus, best checkpoint reloaded for the test).

    runs/recbole-venv/bin/python benchmarks/recbole_runner.py --data-path runs/recbole-data \\
        --dataset genrec-ml-100k --model SASRec --seed 2024 --out /tmp/sasrec.json

Prints and writes (``--out``) one JSON object: test and best-validation metrics (Recall/NDCG/MRR/HR@10,20,
keys as genrec's ``compute_metrics`` names them), epochs, time to the best validation point, versions.
RecBole's checkpoint (a pickle) lives in a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

KS = (10, 20)
METRIC_NAMES = {"recall": "recall", "ndcg": "ndcg", "mrr": "mrr", "hit": "hr"}


class TimeBudgetExceeded(Exception):
    """Raised from RecBole's end-of-epoch callback when ``--max-minutes`` has passed (after the checkpoint of
    the best epoch so far was saved), to stop training early; the test then uses that checkpoint."""


def patch_numpy_aliases() -> None:
    """Restore the aliases numpy 1.24 removed (``np.float``, ``np.int``, ...) that RecBole 1.2.1 still uses.

    Must run before ``import recbole``. Only names numpy does not define are set (checked through the
    module dict: ``hasattr`` would go through numpy's deprecation ``__getattr__``).
    """
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, value in {
            "float": float, "int": int, "bool": bool, "object": object, "complex": complex, "str": str,
        }.items():
            if name not in np.__dict__:
                setattr(np, name, value)


def genrec_metric_key(recbole_key: str) -> str:
    """``'hit@10'`` -> ``'hr@10'`` (genrec's name); other RecBole keys are already genrec's."""
    name, _, k = recbole_key.partition("@")
    return f"{METRIC_NAMES.get(name, name)}@{k}"


def recbole_config(args: argparse.Namespace, checkpoint_dir: str) -> dict[str, Any]:
    """RecBole settings: our split and metrics; everything else stays at RecBole's (and the model's) defaults."""
    config: dict[str, Any] = {
        "data_path": args.data_path,
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        # Histories and targets share one item index (otherwise item_id_list is remapped on its own).
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": args.max_history,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit"],
        "topk": list(KS),
        "valid_metric": "MRR@10",
        "metric_decimal_place": 8,
        # RecBole 1.2 refuses negative sampling with the CE loss of sequential models; Pop ignores it.
        "train_neg_sample_args": None,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "worker": 0,
        "checkpoint_dir": checkpoint_dir,
        "log_wandb": False,
    }
    config.update(json.loads(args.config))
    return config


def versions() -> dict[str, str]:
    """Versions of this (RecBole) environment."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("recbole", "torch", "numpy", "pandas", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train ``args.model`` with RecBole on the exported split and return its metrics and timings."""
    patch_numpy_aliases()
    import torch

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    start = time.perf_counter()
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(work_dir)  # RecBole writes log/ and log_tensorboard/ into the working directory
    checkpoint_dir = tempfile.mkdtemp(prefix="recbole-ckpt-")
    try:
        config = Config(model=args.model, dataset=args.dataset, config_dict=recbole_config(args, checkpoint_dir))
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        fit_start = time.perf_counter()
        curve: list[dict[str, float]] = []
        best = {"epoch": -1, "score": float("-inf"), "seconds": 0.0}

        def on_epoch(epoch: int, valid_score: float) -> None:
            """Record the validation curve and the time at which the best validation point was reached."""
            seconds = time.perf_counter() - fit_start
            curve.append({"epoch": epoch, "valid_mrr@10": float(valid_score), "seconds": round(seconds, 2)})
            if valid_score > best["score"]:  # RecBole's early_stopping also needs a strict improvement
                best.update(epoch=epoch, score=float(valid_score), seconds=seconds)
            if args.max_minutes and seconds > 60 * args.max_minutes:
                raise TimeBudgetExceeded

        try:
            trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
            epochs_run = len(trainer.train_loss_dict)
            stopped_by = "early_stopping" if epochs_run < trainer.epochs else "epochs"
        except TimeBudgetExceeded:
            stopped_by = f"time_budget ({args.max_minutes:g} min)"
        best_valid = trainer.best_valid_result
        fit_seconds = time.perf_counter() - fit_start
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)

    hyper = {
        key: config[key]
        for key in (
            "epochs", "train_batch_size", "learning_rate", "stopping_step", "valid_metric", "loss_type",
            "hidden_size", "embedding_size", "n_layers", "num_layers", "n_heads", "inner_size",
            "hidden_dropout_prob", "attn_dropout_prob", "dropout_prob", "mask_ratio", "MAX_ITEM_LIST_LENGTH",
        )
        if config[key] is not None
    }
    return {
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "test": {genrec_metric_key(k): float(v) for k, v in test.items()},
        "validation": {genrec_metric_key(k): float(v) for k, v in (best_valid or {}).items()},
        "num_test_users": len(test_data.dataset),
        "num_items": dataset.item_num - 1,  # RecBole's index 0 is padding
        "num_train_rows": len(train_data.dataset),
        "epochs_run": len(trainer.train_loss_dict),
        "stopped_by": stopped_by,
        "best_epoch": best["epoch"],
        "seconds_to_best_validation": round(best["seconds"], 2),
        "fit_seconds": round(fit_seconds, 2),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "threads": torch.get_num_threads(),
        "recbole_config": hyper,
        "validation_curve": curve,
        "versions": versions(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True, help="folder holding DATASET/DATASET.{train,valid,test}.inter")
    parser.add_argument("--dataset", required=True, help="RecBole dataset name (not 'ml-100k': RecBole "
                        "silently swaps that name for its own bundled copy)")
    parser.add_argument("--model", required=True, help="RecBole model class name: SASRec, GRU4Rec, BERT4Rec, Pop")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-history", type=int, default=20, help="MAX_ITEM_LIST_LENGTH (our split's history)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after the epoch at which this much training time has passed (the test uses the "
                        "best validation checkpoint so far); default: RecBole's epochs + early stopping only")
    parser.add_argument("--config", default="{}", help="JSON object of extra RecBole settings")
    parser.add_argument("--work-dir", default=tempfile.gettempdir() + "/recbole-work",
                        help="working directory (RecBole's log/ goes here)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config also parses sys.argv ("--key=value") as settings
    if args.dataset == "ml-100k":
        parser.error("--dataset ml-100k would make RecBole load its bundled copy instead of --data-path")
    args.data_path = str(Path(args.data_path).resolve())  # before run() changes into --work-dir
    if args.out is not None:
        args.out = args.out.resolve()
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
