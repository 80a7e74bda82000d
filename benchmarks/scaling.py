"""Quantization and constrained decoding cost from 10^4 to 10^6 items (synthetic embeddings, one process).

Why: a generative recommender's catalogue-dependent costs are the quantizer (once per catalogue) and the
prefix constraint of the beam search (every request); the transformer itself does not grow with the catalogue.
This script measures how both grow with the number of items N, on synthetic data so that N is free:

1. ``N x --dim`` Gaussian embeddings (seeded; no cluster structure, the worst case for k-means, see
   ``benchmarks/quantize.py``); ``--dim`` 128 is the width of UNGER's Stage-I integrated embeddings, which
   are what genrec quantizes.
2. ``ResidualKMeansQuantizer`` (genrec's default: 3 levels x 256 clusters, k-means on at most 256 points per
   cluster, every item assigned): fit + encode, wall and CPU seconds.
3. ``CodeTable.from_codes`` (+ the collision level) and its prefix index; the Python trie of the same codes.
4. Constrained beam search of an UNGER model of the default Stage II shape (d_model 96, 1 encoder / 4 decoder
   layers, random weights: the cost does not depend on them) over that code table: milliseconds per user at
   batch 1 (``--single-users`` users one by one) and batch ``--batch``, ``--beams`` beams, with genrec's
   ``SemanticIDLogitsProcessor`` and with ``prefix_allowed_tokens_fn`` over the Python trie (the comparison
   of ``benchmarks/serving_speed.py``, here as a function of N). Histories: 20 random items per user.

    python benchmarks/scaling.py --json scaling.json                  # N = 10^4, 10^5, 10^6
    python benchmarks/scaling.py --sizes 10000 30000 --single-users 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from serving_speed import clock, prefix_fn_recommender, since  # a sibling: benchmarks/ is first on sys.path


def measure_size(num_items: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every cost of one catalogue size."""
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
    from genrec.tokenization.code_table import CodeTable
    from genrec.tokenization.quantizers import ResidualKMeansQuantizer
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    row: dict[str, Any] = {"items": num_items, "dim": args.dim}
    x = torch.randn(num_items, args.dim, generator=torch.Generator().manual_seed(args.seed))
    quantizer = ResidualKMeansQuantizer(num_levels=3, codebook_size=256, seed=args.seed)
    t0 = clock()
    quantizer.fit(x, show_progress=False)
    row["quantize_fit_s"] = dict(zip(("wall", "cpu"), since(t0), strict=True))
    t0 = clock()
    codes = quantizer.encode(x)
    row["quantize_encode_s"] = dict(zip(("wall", "cpu"), since(t0), strict=True))
    del x
    t0 = clock()
    table = CodeTable.from_codes([f"item{i}" for i in range(num_items)], np.asarray(codes),
                                 codebook_sizes=[256] * 3)
    table.prefix_index()
    row["code_table_s"] = dict(zip(("wall", "cpu"), since(t0), strict=True))
    row["codebook_sizes"] = list(table.codebook_sizes)
    tokenizer = SemanticIDTokenizer.from_code_table(table)
    torch.manual_seed(args.seed)
    model = UngerForGenerativeRecommendation(UngerConfig.from_tokenizer(tokenizer)).eval()
    t0 = clock()
    model.logits_processor_for(tokenizer, args.beams)
    row["processor_init_s"] = dict(zip(("wall", "cpu"), since(t0), strict=True))
    t0 = clock()
    by_prefix_fn = prefix_fn_recommender(model, tokenizer)
    row["python_trie_s"] = dict(zip(("wall", "cpu"), since(t0), strict=True))
    rng = np.random.default_rng(args.seed)
    ids = table.item_ids
    users = max(args.batch, args.single_users + 1)
    histories = [[ids[j] for j in rng.integers(0, num_items, size=20)] for _ in range(users)]
    methods = {
        "unger": lambda h: model.recommend(h, tokenizer, k=args.beams, num_beams=args.beams, batch_size=len(h),
                                           exclude_history=False),
        "unger-prefix-fn": lambda h: by_prefix_fn(h, args.beams),
    }
    for fn in methods.values():  # warm-up at both batch shapes (the first big batch pays allocations)
        fn(histories[:1])
        fn(histories[:args.batch])
    decoding: list[dict[str, Any]] = []
    for batch, groups in ((1, [[h] for h in histories[1:args.single_users + 1]]), (args.batch, [histories[:args.batch]])):
        for name, fn in methods.items():
            t0 = clock()
            for group in groups:
                fn(group)
            wall, cpu = since(t0)
            count = sum(len(g) for g in groups)
            decoding.append({"method": name, "batch": batch, "beams": args.beams, "users": count,
                             "ms_per_user_wall": 1e3 * wall / count, "ms_per_user_cpu": 1e3 * cpu / count})
            print(f"  {name:16s} batch {batch:4d}: {1e3 * wall / count:8.2f} ms/user wall, "
                  f"{1e3 * cpu / count:8.2f} ms/user CPU", flush=True)
    row["decoding"] = decoding
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--single-users", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        print(f"{size:,} items", flush=True)
        row = measure_size(size, args)
        print(f"  quantize fit {row['quantize_fit_s']['wall']:.1f} s wall / {row['quantize_fit_s']['cpu']:.1f} s "
              f"CPU, code table {row['code_table_s']['wall']:.1f} s, levels {row['codebook_sizes']}", flush=True)
        rows.append(row)
    result = {"sizes": rows, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "quantizer": "residual_kmeans 3 x 256",
              "note": "one timed pass per cell (after one warm-up user)"}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
