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

``--state-dir DIR`` makes the run resumable, for a training that outlasts one sitting (a converged Beauty
SASRec is hours of a CPU): after every epoch the model, the optimizer, both random generators and the early
stopping counters go to ``DIR/last.safetensors`` + ``DIR/state.json`` (and the best epoch's weights to
``DIR/best.safetensors``), each written to a temporary name and renamed, so a run killed at any point leaves the
last complete epoch. The same command started again continues from the epoch after it (the shuffling and the
dropout draws continue where they stopped), and the test uses ``best.safetensors``: with a state folder no
pickle is written or read. ``--max-minutes`` then counts the training time of all sittings together.
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


STATE_VERSION = 1


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_training_state(folder: Path, model, optimizer, generator, meta: dict[str, Any], *, best: bool) -> None:
    """Write one finished epoch: weights, optimizer moments, random states (safetensors) and ``meta`` (json).

    ``best``: this epoch is the best so far; its weights also become ``best.safetensors``. The json goes last,
    so it never names an epoch whose tensors are not on disk yet.
    """
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in weights.items()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in optim["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = generator.get_state()
    _atomic_write(folder / "last.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    if best:
        _atomic_write(folder / "best.safetensors", lambda tmp: save_file(weights, str(tmp)))
    record = {"version": STATE_VERSION, **meta, "optimizer_param_groups": optim["param_groups"],
              "optimizer_scalars": scalars}
    _atomic_write(folder / "state.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))


def load_training_state(folder: Path, model, optimizer, generator) -> dict[str, Any] | None:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer`` and ``generator``; returns the
    saved ``meta`` (``None`` when ``folder`` holds no state). A state of another version, or weights that do not
    fit ``model``, is an error rather than a silent fresh start."""
    import torch
    from safetensors.torch import load_file

    state_file = folder / "state.json"
    if not state_file.is_file():
        return None
    record = json.loads(state_file.read_text())
    if record.get("version") != STATE_VERSION:
        raise ValueError(f"{state_file}: state version {record.get('version')!r}, this runner writes "
                         f"{STATE_VERSION}; start in an empty --state-dir")
    tensors = load_file(str(folder / "last.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    for index, values in record["optimizer_scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": per_param, "param_groups": record["optimizer_param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.loader"])
    return {k: v for k, v in record.items() if k not in ("version", "optimizer_param_groups", "optimizer_scalars")}


def load_best_weights(folder: Path, model) -> None:
    """Load ``best.safetensors`` (the best validation epoch of a resumable run) into ``model``."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(folder / "best.safetensors")), strict=True)


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

        state_dir = Path(args.state_dir) if args.state_dir else None
        curve: list[dict[str, float]] = []
        best = {"epoch": -1, "score": float("-inf"), "seconds": 0.0}
        earlier_seconds = 0.0  # training time of earlier sittings of a resumed run
        stopped_by = None
        sittings = 1
        if state_dir is not None:
            saved = load_training_state(state_dir, model, trainer.optimizer, train_data.generator)
            if saved is not None:
                trainer.start_epoch = saved["epoch"] + 1
                trainer.cur_step = saved["cur_step"]
                trainer.best_valid_score = saved["best_valid_score"]
                trainer.best_valid_result = saved["best_valid_result"]
                trainer.train_loss_dict = {int(k): v for k, v in saved["train_loss"].items()}
                curve, best = saved["curve"], saved["best"]
                earlier_seconds = saved["fit_seconds"]
                # an early stop (RecBole's own rule on the saved counter) is final; a run that used up its epochs
                # goes on if the cap was raised since (RecBole's loop starts at start_epoch)
                stopped_by = "early_stopping" if trainer.cur_step > trainer.stopping_step else None
                sittings = saved["sittings"] + 1
                print(f"resuming from {state_dir} after epoch {saved['epoch']} "
                      f"({earlier_seconds / 60:.1f} min of training so far)", flush=True)
        fit_start = time.perf_counter() - earlier_seconds

        def on_epoch(epoch: int, valid_score: float) -> None:
            """Record the validation curve and the time at which the best validation point was reached."""
            seconds = time.perf_counter() - fit_start
            curve.append({"epoch": epoch, "valid_mrr@10": float(valid_score), "seconds": round(seconds, 2)})
            if valid_score > best["score"]:
                best.update(epoch=epoch, score=float(valid_score), seconds=seconds)
            if state_dir is not None:
                meta = {"epoch": epoch, "cur_step": trainer.cur_step, "best_valid_score": trainer.best_valid_score,
                        "best_valid_result": dict(trainer.best_valid_result or {}),
                        "train_loss": {str(k): float(v) for k, v in trainer.train_loss_dict.items()},
                        "curve": curve, "best": best, "fit_seconds": seconds, "sittings": sittings}
                # RecBole's own checkpoint rule (a tie counts): the epoch whose weights its test would reload
                save_training_state(state_dir, model, trainer.optimizer, train_data.generator, meta,
                                    best=trainer.cur_step == 0)
            if args.max_minutes and seconds > 60 * args.max_minutes:
                raise TimeBudgetExceeded

        if stopped_by is None:
            try:
                trainer.fit(train_data, valid_data, saved=state_dir is None, show_progress=False,
                            callback_fn=on_epoch)
                stopped_by = "early_stopping" if len(trainer.train_loss_dict) < trainer.epochs else "epochs"
            except TimeBudgetExceeded:
                stopped_by = f"time_budget ({args.max_minutes:g} min)"
        best_valid = trainer.best_valid_result
        fit_seconds = time.perf_counter() - fit_start
        if state_dir is not None:
            load_best_weights(state_dir, model)
            test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        else:
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
        "sittings": sittings,
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
    parser.add_argument("--state-dir", default=None,
                        help="make the run resumable: each epoch's state goes here (safetensors + json) and the "
                        "same command started again continues after the last finished epoch")
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
    if args.state_dir is not None:
        args.state_dir = str(Path(args.state_dir).resolve())
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
