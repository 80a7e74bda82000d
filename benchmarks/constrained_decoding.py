"""Constrained decoding speed: SemanticIDLogitsProcessor vs prefix_allowed_tokens_fn over a Python trie.

Both run side by side in one process on the same code table, inputs and scores, and their results are checked
to be identical (masked scores per call; sequences and sequence scores per beam search). Two measurements:

- per processor call (one decoding step): the mean over the D + 1 steps of a search (depths 0..D-1 and the
  eos step) of the median call time, on prefixes of random items, ``rows = batch x beams``;
- per full beam search: ``generate(num_beams=B, num_return_sequences=B, max_new_tokens=D + 1)`` of a tiny
  random T5 (so that the processor dominates), also without any constraint ("free") for reference.

Tables: ``CodeTable.from_codes`` of N random items with 3 levels x 256 codes (plus the collision level it
appends when two items share a code); the trie is built from the same table's codes. The timed runs of the
implementations alternate (medians reported), so that load on a shared machine hits both alike.

    python benchmarks/constrained_decoding.py          # 10^4 / 10^6 items x batch 1 / 64 x beams 20 / 100
    python benchmarks/constrained_decoding.py --quick  # 10^4 items x batch 1 / 8 x beams 20
    python benchmarks/constrained_decoding.py --device cuda --json results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    PrefixConstrainedLogitsProcessor,
    T5Config,
    T5ForConditionalGeneration,
)

from genrec.modeling.constrained_decoding import SemanticIDLogitsProcessor
from genrec.tokenization.code_table import CodeTable

PAD, EOS, NUM_SPECIALS = 0, 1, 2  # T5-style: pad doubles as the decoder start token
LEVELS, CODEBOOK = 3, 256


@dataclass
class Bench:
    """One code table with both constraint implementations' inputs."""

    table: CodeTable
    token_offsets: list[int]
    vocab_size: int
    trie: dict[int, dict]

    @property
    def depth(self) -> int:
        return self.table.num_levels

    def item_tokens(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.table.codes[rows] + np.asarray(self.token_offsets))


def random_table(num_items: int, seed: int) -> CodeTable:
    """N items with random 3 x 256 semantic codes; CodeTable appends a collision level when codes collide."""
    semantic = np.random.default_rng(seed).integers(0, CODEBOOK, size=(num_items, LEVELS), dtype=np.int64)
    ids = [f"item{i}" for i in range(num_items)]
    return CodeTable.from_codes(ids, semantic, codebook_sizes=[CODEBOOK] * LEVELS)


def python_trie(codes: np.ndarray, token_offsets: list[int]) -> dict[int, dict]:
    """Nested dicts token -> child: what a hand-written prefix_allowed_tokens_fn walks."""
    root: dict[int, dict] = {}
    for code in (codes + np.asarray(token_offsets)).tolist():
        node = root
        for token in code:
            node = node.setdefault(token, {})
    return root


def trie_fn(
    root: dict[int, dict], depth: int, prompt_length: int
) -> Callable[[int, torch.Tensor], list[int]]:
    """The reference ``prefix_allowed_tokens_fn``: children of the prefix, eos after a full (or bad) code."""

    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        prefix = sent[prompt_length:].tolist()
        if len(prefix) >= depth:
            return [EOS]
        node = root
        for token in prefix:
            node = node.get(token)
            if node is None:
                return [EOS]
        return list(node)

    return prefix_allowed_tokens_fn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fns: list[Callable[[], object]], repeats: list[int], device: torch.device
) -> list[tuple[float, object]]:
    """Median wall time (s) of each function over its timed runs, interleaved round by round after one warm-up
    run each, with each function's last result."""
    results = [fn() for fn in fns]
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(max(repeats)):
        for i, fn in enumerate(fns):
            if round_ < repeats[i]:
                start = time.perf_counter()
                results[i] = fn()
                sync(device)
                times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def tiny_t5(vocab_size: int, device: torch.device, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    return T5ForConditionalGeneration(config).eval().to(device)


def measure_calls(
    bench: Bench,
    ours: SemanticIDLogitsProcessor,
    batch: int,
    beams: int,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Mean over the D + 1 steps of the median time per call (s): ours, reference. Raises if they differ."""
    device = torch.device(args.device)
    rows = batch * beams
    reference = PrefixConstrainedLogitsProcessor(trie_fn(bench.trie, bench.depth, 1), beams)
    ours_steps, ref_steps = [], []
    for step in range(bench.depth + 1):
        tokens = bench.item_tokens(rng.integers(0, len(bench.table), size=rows))
        input_ids = torch.cat([torch.full((rows, 1), PAD), tokens[:, :step]], dim=1).to(device)
        scores = torch.log_softmax(torch.randn(rows, bench.vocab_size, device=device), dim=-1)
        (t_ours, got), (t_ref, expected) = timed(
            # the lambdas run inside timed(), within this iteration
            [lambda: ours(input_ids, scores), lambda: reference(input_ids, scores)],  # noqa: B023
            [args.repeats, args.ref_repeats],
            device,
        )
        if not torch.equal(got, expected):
            raise AssertionError(
                f"scores differ: {len(bench.table)} items, batch {batch}, beams {beams}, step {step}"
            )
        ours_steps.append(t_ours)
        ref_steps.append(t_ref)
    return statistics.mean(ours_steps), statistics.mean(ref_steps)


def measure_generate(
    bench: Bench,
    ours: SemanticIDLogitsProcessor,
    model: T5ForConditionalGeneration,
    batch: int,
    beams: int,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> tuple[float, float, float, int]:
    """Median time per beam search (s): unconstrained, ours, reference; and the number of invalid items.
    Raises if ours and the reference differ in sequences or sequence scores."""
    device = torch.device(args.device)
    history = bench.item_tokens(rng.integers(0, len(bench.table), size=batch * args.history))
    history = history.reshape(batch, -1).to(device)
    config = GenerationConfig(
        max_new_tokens=bench.depth + 1,
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
        return_dict_in_generate=True,
        output_scores=True,
    )

    def generate(**kwargs: object) -> object:
        with torch.no_grad():
            return model.generate(input_ids=history, generation_config=config, **kwargs)

    (t_free, _), (t_ours, out_ours), (t_ref, out_ref) = timed(
        [
            generate,
            lambda: generate(logits_processor=[ours]),
            lambda: generate(prefix_allowed_tokens_fn=trie_fn(bench.trie, bench.depth, 1)),
        ],
        [args.gen_repeats] * 3,
        device,
    )
    if not (
        torch.equal(out_ours.sequences, out_ref.sequences)
        and torch.equal(out_ours.sequences_scores, out_ref.sequences_scores)
    ):
        raise AssertionError(f"beams differ: {len(bench.table)} items, batch {batch}, beams {beams}")
    codes = (out_ours.sequences[:, 1 : 1 + bench.depth].cpu() - torch.as_tensor(bench.token_offsets)).numpy()
    invalid = sum(bench.table.item_of(tuple(code)) is None for code in codes.tolist())
    return t_free, t_ours, t_ref, invalid


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    results: list[dict] = []
    for num_items in args.items:
        start = time.perf_counter()
        table = random_table(num_items, args.seed)
        index = table.prefix_index()
        built = time.perf_counter() - start
        sizes = table.codebook_sizes
        token_offsets = [int(x) for x in np.cumsum([NUM_SPECIALS, *sizes[:-1]])]
        vocab_size = token_offsets[-1] + sizes[-1]
        start = time.perf_counter()
        trie = python_trie(table.codes, token_offsets)
        trie_built = time.perf_counter() - start
        bench = Bench(table, token_offsets, vocab_size, trie)
        start = time.perf_counter()
        SemanticIDLogitsProcessor(index, token_offsets, prompt_length=1, eos_token_id=EOS)
        init = time.perf_counter() - start
        print(
            f"\n{num_items:,} items, level sizes {sizes} (D={bench.depth}), vocab {vocab_size}: CodeTable + "
            f"prefix index {built:.1f} s, processor init {init:.2f} s, Python trie {trie_built:.1f} s",
            flush=True,
        )
        model = tiny_t5(vocab_size, device, args.seed)
        rng = np.random.default_rng(args.seed)
        for batch in args.batch:
            for beams in args.beams:
                ours = SemanticIDLogitsProcessor(
                    index, token_offsets, prompt_length=1, eos_token_id=EOS, pad_token_id=PAD, num_beams=beams
                )
                call_ours, call_ref = measure_calls(bench, ours, batch, beams, args, rng)
                gen_free, gen_ours, gen_ref, invalid = measure_generate(
                    bench, ours, model, batch, beams, args, rng
                )
                row = {
                    "items": num_items,
                    "depth": bench.depth,
                    "batch": batch,
                    "beams": beams,
                    "call_ours_ms": call_ours * 1e3,
                    "call_trie_ms": call_ref * 1e3,
                    "call_speedup": call_ref / call_ours,
                    "gen_free_ms": gen_free * 1e3,
                    "gen_ours_ms": gen_ours * 1e3,
                    "gen_trie_ms": gen_ref * 1e3,
                    "gen_speedup": gen_ref / gen_ours,
                    "identical": True,
                    "invalid_items": invalid,
                }
                results.append(row)
                print(format_row(row), flush=True)
    return results


HEADER = (
    f"{'items':>9} {'batch':>5} {'beams':>5} | {'call ours':>10} {'call trie':>10} {'x':>6} | "
    f"{'gen free':>9} {'gen ours':>9} {'gen trie':>9} {'x':>6} | same invalid"
)


def format_row(row: dict) -> str:
    return (
        f"{row['items']:>9,} {row['batch']:>5} {row['beams']:>5} | {row['call_ours_ms']:>8.2f}ms "
        f"{row['call_trie_ms']:>8.2f}ms {row['call_speedup']:>5.1f}x | {row['gen_free_ms']:>7.1f}ms "
        f"{row['gen_ours_ms']:>7.1f}ms {row['gen_trie_ms']:>7.1f}ms {row['gen_speedup']:>5.1f}x | "
        f"{'yes' if row['identical'] else 'NO':>4} {row['invalid_items']:>7}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Constrained decoding: SemanticIDLogitsProcessor vs a trie.")
    parser.add_argument(
        "--quick", action="store_true", help="small grid: 10^4 items, batch 1 and 8, beams 20"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--beams", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--history",
        type=int,
        default=5,
        help="items in each encoder input (kept short: the model should cost little)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of ours per step (median)")
    parser.add_argument(
        "--ref-repeats", type=int, default=3, help="timed calls of the trie reference per step"
    )
    parser.add_argument("--gen-repeats", type=int, default=2, help="timed beam searches per implementation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this json file")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.batch, args.beams = [10_000], [1, 8], [20]
        args.repeats, args.ref_repeats, args.gen_repeats = 5, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU threads; times are "
        "medians, 'call' = mean per decoding step, 'gen' = one full beam search",
        flush=True,
    )
    print(HEADER)
    results = run(args)
    print("\n" + HEADER)
    for row in results:
        print(format_row(row))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
