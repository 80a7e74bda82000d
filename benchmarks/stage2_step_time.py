"""UNGER Stage II training-step time: ``history_mode="flattened"`` vs ``"per_item"``, side by side.

One training step = forward + backward + Adam step of ``UngerForGenerativeRecommendation`` with the paper's
Table 4 architecture (d_model 96, FFN 256, 6 heads, 1 encoder / 4 decoder layers, ReLU, dropout 0) at batch
256, on a synthetic code table shaped like the paper's Beauty run: 12,101 items, 3 semantic levels x 256
codes plus a collision level (D = 4 code tokens per item, vocabulary 4 + 4 x 256 = 1,028 minus unused
collision codes), histories of ``--history`` items (default 20, the cap; the flattened encoder then reads
80 positions, the per-item encoder 20). Variants: L_rec only, with the distillation loss (full-corpus
InfoNCE against 12,101 x 128 integrated embeddings) and with constrained training. Optionally also the
constrained beam search of ``recommend`` (``--generate``: 20 beams, top 20).

The timed runs of the two modes alternate step by step (medians reported), so that load on a shared machine
hits both alike. Timings depend on the machine and its load: report them with the printed thread count.

    python benchmarks/stage2_step_time.py                       # 30 timed steps per variant
    python benchmarks/stage2_step_time.py --steps 10 --generate --json stage2_step_time.json
    python benchmarks/stage2_step_time.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

MODES = ("flattened", "per_item")


def build_tokenizer(num_items: int, seed: int) -> SemanticIDTokenizer:
    """Random 3 x 256 semantic codes + the collision level (always present: D = 4)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(num_items, 3))
    ids = [f"item{i}" for i in range(num_items)]
    table = CodeTable.from_codes(ids, codes, codebook_sizes=[256] * 3, always_append=True)
    return SemanticIDTokenizer.from_code_table(table)


def make_batch(tok: SemanticIDTokenizer, batch: int, history: int, seed: int, device: str) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ids = tok.code_table.item_ids
    histories = [[ids[j] for j in rng.integers(0, len(ids), size=history)] for _ in range(batch)]
    targets = [ids[j] for j in rng.integers(0, len(ids), size=batch)]
    enc = tok.encode_history(histories)
    return {
        "input_ids": enc["input_ids"].to(device),
        "attention_mask": enc["attention_mask"].to(device),
        "labels": tok.encode_targets(targets).to(device),
        "target_item_indices": torch.from_numpy(tok.code_table.lookup_indices(targets)).to(device),
        "histories": histories,  # type: ignore[dict-item]
    }


def build_model(
    tok: SemanticIDTokenizer, mode: str, variant: str, integrated_dim: int, device: str
) -> tuple[UngerForGenerativeRecommendation, torch.optim.Optimizer]:
    distill = variant == "distillation"
    config = UngerConfig.from_tokenizer(
        tok,
        history_mode=mode,
        integrated_dim=integrated_dim if distill else 0,
        constrained_training=variant == "constrained",
    )
    torch.manual_seed(0)
    model = UngerForGenerativeRecommendation(config)
    if distill:
        model.set_integrated_embeddings(torch.randn(config.num_items, integrated_dim))
    if config.constrained_training:
        model.set_prefix_index(tok.code_table.prefix_index(), tok.code_token_offsets)
    model.to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-7)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_step(model: UngerForGenerativeRecommendation, optimizer: torch.optim.Optimizer, batch: dict, device: str) -> float:
    inputs = {k: v for k, v in batch.items() if k != "histories"}
    if not model.config.uses_distillation:
        inputs.pop("target_item_indices")
    sync(device)
    start = time.perf_counter()
    out = model(**inputs)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=12101)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--integrated-dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode and variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", default="rec,distillation,constrained")
    parser.add_argument("--generate", action="store_true", help="also time recommend(k=20, num_beams=20)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = build_tokenizer(args.items, seed=0)
    batch = make_batch(tok, args.batch, args.history, seed=1, device=args.device)
    report: dict = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "items": args.items,
        "code_levels": tok.num_code_levels,
        "vocab_size": len(tok),
        "batch": args.batch,
        "history_items": args.history,
        "encoder_positions": {"flattened": args.history * tok.num_code_levels, "per_item": args.history},
        "train_step_s": {},
    }
    print(
        f"device={args.device} threads={report['torch_threads']} items={args.items} D={tok.num_code_levels} "
        f"vocab={len(tok)} batch={args.batch} history={args.history}",
        flush=True,
    )
    for variant in args.variants.split(","):
        models = {mode: build_model(tok, mode, variant, args.integrated_dim, args.device) for mode in MODES}
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for step in range(args.warmup + args.steps):
            for mode in MODES:  # alternate, so that load hits both alike
                elapsed = train_step(*models[mode], batch, args.device)
                if step >= args.warmup:
                    times[mode].append(elapsed)
        row = {}
        for mode in MODES:
            row[mode] = {
                "median": statistics.median(times[mode]),
                "min": min(times[mode]),
                "max": max(times[mode]),
                "steps": len(times[mode]),
            }
        row["flattened_over_per_item"] = row["flattened"]["median"] / row["per_item"]["median"]
        report["train_step_s"][variant] = row
        print(
            f"train step [{variant:>12}]  flattened {row['flattened']['median']:.3f} s   per_item "
            f"{row['per_item']['median']:.3f} s   ratio {row['flattened_over_per_item']:.2f}x",
            flush=True,
        )
    if args.generate:
        report["recommend_s"] = {}
        models = {mode: build_model(tok, mode, "rec", args.integrated_dim, args.device)[0] for mode in MODES}
        times = {mode: [] for mode in MODES}
        for _ in range(3):
            for mode in MODES:
                sync(args.device)
                start = time.perf_counter()
                models[mode].recommend(batch["histories"], tok, k=20, num_beams=20, batch_size=args.batch,
                                       exclude_history=False)
                sync(args.device)
                times[mode].append(time.perf_counter() - start)
        for mode in MODES:
            report["recommend_s"][mode] = statistics.median(times[mode][1:])
        print(
            f"recommend {args.batch} users x 20 beams: flattened {report['recommend_s']['flattened']:.3f} s   "
            f"per_item {report['recommend_s']['per_item']:.3f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
