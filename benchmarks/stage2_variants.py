"""UNGER Stage II variants side by side: test Recall/NDCG@10/20 of one variant (next to the paper's Beauty
numbers when the data is Beauty).

One process trains one variant (history mode, constrained training, distillation) so that variants can run
side by side, each on its own cores, with identical data, codes, steps and seed; compare their JSON files.

    python benchmarks/stage2_variants.py --data runs/beauty/data \\
        --integrated runs/beauty/stage1/integrated_embeddings.safetensors \\
        --name per_item --config '{"history_mode": "per_item"}' --max-steps 3000 --threads 1

The semantic IDs (residual k-means --levels x --codebook-size of the integrated embeddings + a collision
level, seed 2024) are computed once into WORK/semantic_ids* and shared by every variant (or taken from a
`genrec run` folder with --semantic-ids RUN/semantic_ids). Validation runs on a seeded random sample of
--max-eval-users users (model selection); the test split is always evaluated on every user with --eval-beams
beams (default 20; the paper uses 100 for its tables).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections import Counter
from pathlib import Path

import torch

from genrec.modeling.configuration_unger import UngerConfig
from genrec.trainers.engine.files import resolve_recorded
from genrec.trainers.stages.quantize import quantize_embeddings
from genrec.trainers.stages.stage2 import train_stage2

PAPER = {"recall@10": 0.0939, "recall@20": 0.1289, "ndcg@10": 0.0559, "ndcg@20": 0.0646}


def training_target_counts(data: Path) -> Counter[str]:
    """How often each item is the target of a training row of the prepared dataset ``data``: the popularity the
    Markov floor backs off to (``markov_baseline.MarkovBaseline``), so "most frequent" means one thing."""
    # markov_baseline: the sibling script (benchmarks/ is on sys.path when this one runs)
    from markov_baseline import MarkovBaseline

    from genrec.data_scripts.prepare import load_genrec_dataset

    sequences, _ = load_genrec_dataset(data)
    return MarkovBaseline(sequences["train"]["item_ids"]).popularity


def check_codes_source(sid_dir: Path, codes: dict, integrated: Path) -> None:
    """Refuse a work folder's shared codes that were quantized from other integrated embeddings than ``integrated``
    (two Stage I runs' candidates in one --work-dir would otherwise train on the wrong codes without a word)."""
    made_from = resolve_recorded(codes.get("embeddings", ""), sid_dir).resolve()  # relative to the folder or absolute
    if made_from != integrated.resolve():
        raise SystemExit(
            f"{sid_dir} holds codes quantized from {made_from}, not from --integrated {integrated.resolve()}: give "
            "each Stage I its own --work-dir (or pass its run's codes with --semantic-ids)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset folder (e.g. Beauty's)")
    parser.add_argument("--integrated", required=True, type=Path, help="Stage I integrated embeddings")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/genrec-bench/stage2_variants"))
    parser.add_argument("--name", required=True, help="variant name (output sub-folder)")
    parser.add_argument("--config", default="{}", help="JSON object of UngerConfig overrides")
    parser.add_argument("--no-distillation", action="store_true", help="train without the integrated embeddings")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--max-eval-users", type=int, default=2000)
    parser.add_argument("--train", default="{}", help="JSON object of extra train_stage2 arguments, e.g. "
                        "'{\"lr_schedule\": \"cosine\"}'")
    parser.add_argument("--eval-beams", type=int, default=20, help="beams of validation and test search")
    parser.add_argument("--levels", type=int, default=None,
                        help="residual k-means levels (before the collision level; default 3)")
    parser.add_argument("--codebook-size", type=int, default=None, help="k-means clusters per level (default 256)")
    parser.add_argument("--resolve-collisions", choices=("none", "reassign"), default="none",
                        help="residual k-means: move colliding items to free last-level centroids first")
    parser.add_argument("--collision-order", choices=("input", "popularity"), default="input",
                        help="how the collision level numbers a group's items: in the embeddings' order (the "
                        "default) or most frequent training target first")
    parser.add_argument("--semantic-ids", type=Path, default=None,
                        help="use this quantize folder (e.g. a genrec run's semantic_ids/) instead of quantizing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    quantize_flags = (args.levels is not None or args.codebook_size is not None
                      or args.resolve_collisions != "none" or args.collision_order != "input")
    if args.semantic_ids and quantize_flags:
        parser.error("--levels / --codebook-size / --resolve-collisions / --collision-order choose how to quantize; "
                     "--semantic-ids reuses codes already made: give one or the other")
    args.levels = 3 if args.levels is None else args.levels
    args.codebook_size = 256 if args.codebook_size is None else args.codebook_size
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)

    suffix = ("" if args.levels == 3 else f"_l{args.levels}") + ("" if args.codebook_size == 256 else f"_k{args.codebook_size}")
    suffix += ("" if args.resolve_collisions == "none" else f"_{args.resolve_collisions}") + (
        "" if args.collision_order == "input" else f"_{args.collision_order}")
    sid_dir = args.semantic_ids or args.work_dir / f"semantic_ids{suffix}"
    lock = args.work_dir / f"semantic_ids{suffix}.lock"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if not (sid_dir / "quantize.json").is_file():
        try:
            lock.mkdir()  # one process quantizes; the others wait for its result
            quantize_embeddings(
                args.integrated, sid_dir, num_levels=args.levels, codebook_size=args.codebook_size, seed=args.seed,
                resolve_collisions=args.resolve_collisions, overwrite=True, show_progress=False,
                item_counts=training_target_counts(args.data) if args.collision_order == "popularity" else None,
            )
            lock.rmdir()
        except FileExistsError:
            while not (sid_dir / "quantize.json").is_file():
                time.sleep(2)
    codes = json.loads((sid_dir / "quantize.json").read_text())
    if args.semantic_ids is None:
        check_codes_source(sid_dir, codes, args.integrated)
    print(f"semantic IDs: {codes['codebook_sizes']}, collision rate {codes['collision_rate']:.4f}", flush=True)
    quantized_sizes = codes["diagnostics"]["codebook_sizes"]  # the quantizer's levels, without the collision level

    result = train_stage2(
        args.data, sid_dir / "tokenizer", args.work_dir / "runs" / args.name,
        config=UngerConfig(**json.loads(args.config)),
        integrated_embeddings=None if args.no_distillation else args.integrated,
        max_steps=args.max_steps, warmup_steps=args.warmup_steps, eval_every=args.eval_every,
        max_eval_users=args.max_eval_users, seed=args.seed, show_progress=False, log_with=None,
        eval_beams=args.eval_beams, **json.loads(args.train),
    )
    summary = {
        "variant": args.name, "seed": args.seed, "config": json.loads(args.config), "train": json.loads(args.train),
        "eval_beams": args.eval_beams, "levels": len(quantized_sizes), "codebook_size": quantized_sizes[0],
        "resolve_collisions": args.resolve_collisions,
        "collision_order": args.collision_order, "semantic_ids": str(sid_dir), "distillation": result.distillation,
        "steps": result.global_step, "best_step": result.best_step, "wall_time_s": result.wall_time_s,
        "threads": torch.get_num_threads(), "hardware": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}",
        "validation": result.validation_metrics, "test": result.test_metrics, "paper_test": PAPER,
        "codes": {k: codes[k] for k in ("codebook_sizes", "collision_rate")},
    }
    out = args.work_dir / f"{args.name}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.name}: {result.global_step} steps in {result.wall_time_s:.0f} s")
    print("metric      ours     UNGER paper (Beauty)")
    for key, paper in PAPER.items():
        print(f"{key:10s} {result.test_metrics.get(key, float('nan')):.4f}   {paper:.4f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
