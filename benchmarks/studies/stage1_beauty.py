"""UNGER Stage I on Amazon Beauty: training time, validation Recall@10 / NDCG@10, modality balance.

Prepares the Beauty benchmark (``genrec.data_scripts.prepare.prepare_dataset("s3rec", ...)``), embeds the
items with the packaged all-MiniLM-L6-v2 (``embed_dataset``, cached), then trains:

* the default :class:`UngerFusionConfig` (UNGER mode, DIN, hidden 128) — the run the issue times;
* the §4.3 ``concat`` baseline (a collaborative-only DIN whose exported embedding is
  ``[l2norm(PCA(semantic)), l2norm(ID)]``);
* optionally one run per fusion (``--fusions sum gate mlp``) with the same step budget, to choose the
  default fusion on validation Recall@10, and one per ablation mode (``--modes semantic_only``).

and prints the modality balance (``genrec.trainers.analysis.modality_balance``) of the concat embeddings and of the
UNGER integrated embeddings against S (the raw semantic embeddings) and C (the collaborative embeddings
of the ID-only DIN, as in the paper). All metrics are on the *validation* split. Numbers go to stdout and
``<work-dir>/stage1_beauty.json``.

Usage::

    python benchmarks/studies/stage1_beauty.py --work-dir /tmp/genrec-bench/beauty --time-budget-min 20
    python benchmarks/studies/stage1_beauty.py --fusions sum gate mlp --max-steps 400 --skip-default --skip-concat
    python benchmarks/studies/stage1_beauty.py --modes semantic_only --skip-default --skip-concat
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from genrec.data_scripts.embeddings import ItemEmbeddings, embed_dataset
from genrec.data_scripts.prepare import prepare_dataset
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import UngerFusionModel
from genrec.trainers.analysis.modality_balance import modality_balance, plot_embeddings
from genrec.trainers.stages.stage1 import train_stage1

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon-beauty-2014"


def _prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    # A distinctive folder name: datasets 5.2 caches a local dataset folder under its name and card only,
    # so a generic name such as "data" can collide with another prepared dataset's cache entry.
    data = args.work_dir / "amazon-beauty-2014-genrec"
    if not (data / "README.md").is_file():
        print(f"preparing {args.data_dir} -> {data}", flush=True)
        print(prepare_dataset("s3rec", data, path=args.data_dir), flush=True)
    start = time.perf_counter()
    path, emb = embed_dataset(data, show_progress=False)
    print(f"semantic embeddings {tuple(emb.embeddings.shape)} at {path} ({time.perf_counter() - start:.1f} s)")
    return data, path


def _train(name: str, data: Path, semantic: Path, args: argparse.Namespace, **config: Any) -> dict[str, Any]:
    out = args.work_dir / "runs" / name
    kwargs: dict[str, Any] = dict(
        epochs=args.epochs, max_steps=args.max_steps, eval_every=args.eval_every, patience=args.patience,
        time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None, seed=args.seed,
        resume=not args.fresh,
    )
    print(f"\n== {name}: {config or 'default config'}", flush=True)
    result = train_stage1(data, semantic, out, config=UngerFusionConfig(**config), **kwargs)
    row = {
        "run": name, "config": config, "wall_time_s": result.wall_time_s, "steps": result.global_step,
        "epochs": result.epochs, "best_step": result.best_step, "stop_reason": result.stop_reason,
        "validation_recall@10": result.validation_recall_at_10, "validation_ndcg@10": result.validation_ndcg_at_10,
        "validation_recall@20": result.validation_metrics.get("recall@20"),
        "validation_ndcg@20": result.validation_metrics.get("ndcg@20"),
        "embeddings": result.embeddings_path, "best_model": result.best_model_dir,
    }
    print(json.dumps(row, indent=2), flush=True)
    return row


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/genrec-bench/stage1_beauty"))
    parser.add_argument("--epochs", type=int, default=None, help="default: 20 (with early stopping)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None, help="default: once per epoch")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--time-budget-min", type=float, default=None, help="stop each run after this long")
    parser.add_argument("--fusions", nargs="*", default=[], help="also train one run per fusion (sum gate mlp)")
    parser.add_argument("--modes", nargs="*", default=[], help="also train these ablation modes (semantic_only ...)")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also train a config variant, e.g. ln:collaborative_norm=layernorm (values parsed as JSON when they can be)",
    )
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--skip-concat", action="store_true")
    parser.add_argument("--plot", action="store_true", help="write the t-SNE/PCA figures (matplotlib)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "load_avg_at_start": os.getloadavg()},
        "runs": [],
    }
    data, semantic_path = _prepare(args)
    for fusion in args.fusions:
        summary["runs"].append(_train(f"fusion-{fusion}", data, semantic_path, args, fusion=fusion))
    for spec in args.variant:
        name, _, pairs = spec.partition(":")
        overrides = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        summary["runs"].append(_train(f"variant-{name}", data, semantic_path, args,
                                      **{k: _parse(v) for k, v in overrides.items()}))
    for mode in args.modes:
        summary["runs"].append(_train(f"mode-{mode}", data, semantic_path, args, mode=mode))
    if not args.skip_default:
        summary["runs"].append(_train("default", data, semantic_path, args))
    if not args.skip_concat:
        summary["runs"].append(_train("concat", data, semantic_path, args, mode="concat"))

    runs = {row["run"]: row for row in summary["runs"]}
    if "default" in runs and "concat" in runs:
        unger = UngerFusionModel.from_pretrained(runs["default"]["best_model"]).eval()
        concat = UngerFusionModel.from_pretrained(runs["concat"]["best_model"]).eval()
        item_ids = json.loads((Path(runs["concat"]["best_model"]) / "vocabulary.json").read_text())
        semantic = ItemEmbeddings.load(semantic_path).reorder(item_ids).embeddings
        with torch.no_grad():
            collaborative = concat.collaborative_item_embeddings()  # C: the ID-only DIN's embeddings (§4.3)
            fused = {
                "concat": ItemEmbeddings.load(runs["concat"]["embeddings"]).embeddings,
                "unger": ItemEmbeddings.load(runs["default"]["embeddings"]).embeddings,
            }
            own_c = unger.collaborative_item_embeddings()
        balance = {name: modality_balance(f, semantic, collaborative) for name, f in fused.items()}
        balance["unger_vs_own_id_embeddings"] = modality_balance(fused["unger"], semantic, own_c)
        summary["modality_balance"] = balance
        print("\nmodality balance (semantic / collaborative), paper: concat 97.33/2.67, UNGER 59.89/40.11")
        for name, b in balance.items():
            print(f"  {name:28s} {b['semantic']:.2%} / {b['collaborative']:.2%}  "
                  f"(KL_S={b['kl_semantic']:.4f}, KL_C={b['kl_collaborative']:.4f})")
        if args.plot:
            for name, f in fused.items():
                path = plot_embeddings(f, semantic, collaborative, args.work_dir / f"balance_{name}.png",
                                       balance=balance[name], titles=(name, "semantic", "collaborative (DIN)"))
                print(f"  figure: {path}")
    print("\nrun                 time_s  steps  val R@10  val N@10  stop")
    for row in summary["runs"]:
        print(f"{row['run']:18s} {row['wall_time_s']:7.0f} {row['steps']:6d}  {row['validation_recall@10']:.4f}"
              f"    {row['validation_ndcg@10']:.4f}  {row['stop_reason']}")
    (args.work_dir / "stage1_beauty.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
