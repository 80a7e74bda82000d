"""TTDS training-step cost: the LM loss with logits over every position vs over the answer positions only.

``TTDSForCausalLM.forward(..., return_logits=False)`` (what the trainer uses) applies the LM head only where
the next token is an answer token. A seqrec prompt is ~100-200 tokens and its answer 5 (M codes, the
collision token, eos), so the full path spends most of its vocabulary projection on prompt positions whose
logits nobody reads. This script times forward + backward of both paths side by side in one process on the
same batches (interleaved, after a warm-up), with the tiny LLaMA of ``benchmarks/ttds_ml100k.py`` by default,
and reports the ratio and the loss difference. On a GPU it also reports the peak memory of each path.

Usage::

    python benchmarks/ttds_step_time.py                      # tiny base (hidden 64, BPE 2000), batch 64
    python benchmarks/ttds_step_time.py --hidden-size 256 --num-layers 4 --batch-size 16 --json-out t.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=2000, help="BPE vocabulary of the tiny base")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=160, help="prompt tokens per example")
    parser.add_argument("--answer-length", type=int, default=5, help="answer tokens (M codes + collision + eos)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from genrec.modeling.configuration_ttds import TTDSConfig
    from genrec.modeling.modeling_ttds import TTDSForCausalLM
    from genrec.trainers.ttds import create_tiny_base, template_corpus

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = template_corpus() + [f"Item {i} about {w}" for i in range(200) for w in ("space", "love", "war")]
        base = create_tiny_base(Path(tmp) / "base", corpus, vocab_size=args.vocab_size,
                                hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base))
        config = TTDSConfig(base_model_name_or_path=str(base), num_levels=3, codebook_size=16,
                            num_collision_tokens=256, lora_r=8, lora_alpha=16, train_base=True)
        model = TTDSForCausalLM.from_base(config, tokenizer, seed=0, dtype=torch.float32).to(device)
    model.set_phase("joint")
    model.train()
    gen = torch.Generator().manual_seed(0)
    length = args.prompt_length + args.answer_length
    ids = torch.randint(0, model.config.vocab_size, (args.batch_size, length), generator=gen)
    labels = ids.clone()
    labels[:, : args.prompt_length] = -100
    mask = torch.ones_like(ids)
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)

    def step(return_logits: bool) -> tuple[float, float]:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, labels=labels, return_logits=return_logits)
        out.lm_loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out.lm_loss.detach().item()

    for flag in (True, False):  # warm-up
        step(flag)
    times: dict[str, list[float]] = {"all_positions": [], "answer_positions": []}
    losses: dict[str, float] = {}
    peaks: dict[str, int] = {}
    for _ in range(args.repeats):
        for flag, name in ((True, "all_positions"), (False, "answer_positions")):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds, losses[name] = step(flag)
            times[name].append(seconds)
            if device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated()
    medians = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "median_step_seconds": {k: round(v, 4) for k, v in medians.items()},
        "speedup": round(medians["all_positions"] / medians["answer_positions"], 2),
        "loss_abs_difference": abs(losses["all_positions"] - losses["answer_positions"]),
        "peak_memory_bytes": peaks or None,
        "setup": {**vars(args), "tokens_per_step": args.batch_size * length,
                  "model_vocab": model.config.vocab_size},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "device": str(device),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
