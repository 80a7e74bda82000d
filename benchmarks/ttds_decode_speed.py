"""TTDS constrained beam search: the prompt run once per history (shared by its beams) vs once per beam.

transformers' beam search expands every prompt to ``num_beams`` rows before its first forward pass, so a
history's prompt (~60-200 tokens) is run ``num_beams`` times although every beam starts from it.
``TTDSForCausalLM.generate_item_codes(share_prompt=True)`` (the default) runs it once and repeats its key/value
cache for the beams. This script times both on the same batches of test users of a saved TTDS model
(interleaved, batch by batch, after a warm-up batch), and reports users/s, the ratio and how many users got a
different top-k (expected: none; the scores agree up to float rounding).

    python benchmarks/ttds_decode_speed.py --model RUN/final --data DATA --users 48 --beams 10 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved TTDS folder (TTDSRecommender.save_pretrained)")
    parser.add_argument("--data", required=True, help="the genrec dataset it was trained on")
    parser.add_argument("--split", default="test")
    parser.add_argument("--users", type=int, default=48, help="first N users of the split")
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.ttds import TTDSRecommender
    from genrec.trainers.ttds.prompts import pad_left

    recommender = TTDSRecommender.from_pretrained(args.model)
    recommender.model.eval()
    sequences, _ = load_genrec_dataset(args.data)
    split = sequences[args.split]
    rows = list(zip(split["user_id"][: args.users], split["item_ids"][: args.users], strict=True))
    prompts = recommender.prompts([[str(i) for i in s[:-1]] for _, s in rows], [str(u) for u, _ in rows])
    prefix_index = recommender.item_table.prefix_index()
    tok = recommender.tokenizer
    batches = [pad_left(prompts[s : s + args.batch_size], tok.pad_token_id)
               for s in range(0, len(prompts), args.batch_size)]

    def search(ids: torch.Tensor, mask: torch.Tensor, share: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
        start = time.perf_counter()
        codes, scores = recommender.model.generate_item_codes(
            ids, mask, prefix_index, num_beams=args.beams, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, share_prompt=share)
        return codes, scores, time.perf_counter() - start

    search(*batches[0], True), search(*batches[0], False)  # warm-up
    seconds = {"shared": 0.0, "per_beam": 0.0}
    differing, max_score_diff = 0, 0.0
    for ids, mask in batches:
        shared = search(ids, mask, True)
        per_beam = search(ids, mask, False)
        seconds["shared"] += shared[2]
        seconds["per_beam"] += per_beam[2]
        differing += int((shared[0] != per_beam[0]).flatten(1).any(1).sum())
        max_score_diff = max(max_score_diff, float((shared[1] - per_beam[1]).abs().max()))
    n = len(prompts)
    report = {
        "users": n, "beams": args.beams, "batch_size": args.batch_size,
        "mean_prompt_tokens": round(sum(len(p) for p in prompts) / n, 1),
        "users_per_second": {k: round(n / v, 3) for k, v in seconds.items()},
        "speedup": round(seconds["per_beam"] / seconds["shared"], 2),
        "users_with_a_different_top_k": differing, "max_abs_score_difference": max_score_diff,
        "model": args.model, "base": recommender.model.config.base_model_name_or_path,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
