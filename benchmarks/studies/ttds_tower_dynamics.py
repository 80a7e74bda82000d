"""TTDS tower dynamics in the warm-up phase on ML-100K: how many item codes change, and how the collision
rate moves, while the towers train with the LLM frozen (so the inputs X are fixed and every change comes from
the towers themselves). This is the measurement behind the collapse fixes of docs/ttds.md (interpretation 8).

Usage (reuses the data and tiny base of ``benchmarks/ttds_ml100k.py --work-dir W``; ~20 s per setting)::

    python benchmarks/studies/ttds_tower_dynamics.py --work-dir W                                  # defaults
    python benchmarks/studies/ttds_tower_dynamics.py --work-dir W --lr 1e-3 \\
        --config '{"dm_vae_token_loss": "literal", "codebook_update": "gradient", "normalize_latent": false,
                   "tower_reconstruction_weight": 0}' --margin 0 --no-reset                # the old towers

Prints one line per ``--every`` steps: collision rate, fraction of codes changed since the last line (all
levels, and per level), the latents' spread (mean per-feature std) and the losses.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True, help="work dir of benchmarks/ttds_ml100k.py (data + tiny base)")
    parser.add_argument("--config", default="{}", help="JSON of TTDSConfig overrides")
    parser.add_argument("--lr", type=float, default=1e-4, help="towers' LR (the token rows train at 1e-3)")
    parser.add_argument("--margin", type=float, default=0.2, help="code_update_margin at each measurement")
    parser.add_argument("--no-reset", action="store_true", help="no dead-code reset at each measurement")
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--every", type=int, default=15)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.modeling.configuration_ttds import TTDSConfig
    from genrec.modeling.modeling_ttds import TTDSForCausalLM
    from genrec.trainers.ttds import TTDSData, TTDSTrainer, TTDSTrainingArguments, build_code_table
    from genrec.trainers.ttds.code_updates import compute_tower_codes

    torch.set_num_threads(1)
    work = Path(args.work_dir)
    base = str(work / "tiny-llama")
    sequences, items = load_genrec_dataset(work / "data")
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = TTDSConfig(base_model_name_or_path=base, num_levels=3, codebook_size=16, num_collision_tokens=256,
                        lora_r=8, lora_alpha=16, user_tower=False, **json.loads(args.config))
    model = TTDSForCausalLM.from_base(config, tokenizer, seed=0, dtype=torch.float32)
    data = TTDSData.from_datasets(sequences, items, tasks=("item2tokens",), user_tower=False)
    trainer = TTDSTrainer(model, tokenizer, data, TTDSTrainingArguments(
        output_dir=str(work / "tower_dynamics"), seed=0, warmup_steps=args.steps, max_steps=0,
        alignment_batch_size=16, encode_batch_size=128))
    x = compute_tower_codes(model, trainer.renderer, "item", batch_size=128, pad_token_id=tokenizer.pad_token_id,
                            representations=True)
    tower = model.item_generator
    tower.init_codebooks(x, seed=0)
    model.set_phase("warmup")
    towers = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("item_generator.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("item_generator.")]
    optimizer = torch.optim.AdamW([{"params": rest, "lr": 1e-3}, {"params": towers, "lr": args.lr}],
                                  weight_decay=0.01)

    def stats(codes: torch.Tensor, previous: torch.Tensor) -> dict:
        table = build_code_table(data.item_ids, codes, config, "item")
        return {"collision_rate": round(table.collision_rate, 3),
                "changed": round(float((codes != previous).any(1).float().mean()), 3),
                "changed_per_level": [round(float((codes[:, m] != previous[:, m]).float().mean()), 2)
                                      for m in range(codes.shape[1])],
                "latent_spread": round(float(tower.encode(x).std(0).mean()), 3)}

    previous = tower.quantize(x)
    print(json.dumps({"step": 0, **stats(previous, previous)}), flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        out = model(**trainer._warmup_batch(step, torch.device("cpu")))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(rest + towers, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.every == 0:
            with torch.no_grad():
                if not args.no_reset:
                    tower.reset_dead_codes(x, seed=step)
                codes = tower.quantize(x, previous=previous, margin=args.margin)
            losses = {k: round(float(getattr(out, k)), 3) for k in ("id_loss", "token_loss", "reconstruction_loss")}
            print(json.dumps({"step": step, **stats(codes, previous), **losses,
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)
            previous = codes


if __name__ == "__main__":
    main()
