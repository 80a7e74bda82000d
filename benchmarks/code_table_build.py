"""CodeTable build cost: time and peak memory for 10^4 / 10^5 / 10^6 items with 3 levels x 256 codes.

For each size N, random semantic codes (seeded) become a table through ``CodeTable.from_codes`` (collision
level appended when codes collide), then the prefix index, the content hash, a save + load round trip and a
batch of ``items_for_codes`` lookups are timed. Peak memory is measured in a second, separate pass under
``tracemalloc`` (which tracks numpy buffers and Python objects; it slows Python allocations, so the timing pass
runs without it). The item-id list and the code array themselves are inputs and are not counted.

Run ``python benchmarks/code_table_build.py`` (default sizes), ``--sizes 10000 100000`` for a subset,
``--json out.json`` to keep the numbers. Torch runs with ``--threads`` intra-op threads (default 1: the
lookups are tiny and on a shared machine extra threads only add contention).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrec.tokenization.code_table import CodeTable

logger = logging.getLogger("genrec.benchmarks.code_table_build")

LEVELS, CODEBOOK = 3, 256


def make_inputs(num_items: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Seeded random item ids and 3 x 256 semantic codes."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, CODEBOOK, size=(num_items, LEVELS), dtype=np.int64)
    return [f"item{i:07d}" for i in range(num_items)], codes


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def time_once(num_items: int, seed: int, num_queries: int) -> dict[str, float]:
    """Seconds per phase for one fresh table."""
    item_ids, codes = make_inputs(num_items, seed)
    table, t_build = timed(lambda: CodeTable.from_codes(item_ids, codes, codebook_sizes=[CODEBOOK] * LEVELS))
    _, t_prefix = timed(table.prefix_index)
    _, t_hash = timed(lambda: table.content_hash)
    rng = np.random.default_rng(seed + 1)
    rows = rng.integers(0, num_items, size=num_queries)
    queries = torch.from_numpy(table.codes[rows].copy())
    _, t_keys = timed(lambda: table.items_for_codes(queries[:1]))  # first call builds the search keys
    found, t_lookup = timed(lambda: table.items_for_codes(queries))
    if not torch.equal(found, torch.from_numpy(rows)):
        raise AssertionError("items_for_codes returned wrong rows")
    with tempfile.TemporaryDirectory() as folder:
        _, t_save = timed(lambda: table.save(folder))
        loaded, t_load = timed(lambda: CodeTable.load(folder))
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    if loaded.content_hash != table.content_hash:
        raise AssertionError("save/load changed the table")
    return {
        "from_codes_s": t_build,
        "prefix_index_s": t_prefix,
        "content_hash_s": t_hash,
        "lookup_keys_s": t_keys,
        f"items_for_codes_{num_queries}_s": t_lookup,
        "save_s": t_save,
        "load_verify_s": t_load,
        "disk_bytes": float(size),
        "num_levels": float(table.num_levels),
        "collision_rate": table.collision_rate,
    }


def peak_memory(num_items: int, seed: int) -> dict[str, float]:
    """Peak traced bytes of from_codes, and of prefix_index on the built table (inputs excluded)."""
    item_ids, codes = make_inputs(num_items, seed)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        table = CodeTable.from_codes(item_ids, codes, codebook_sizes=[CODEBOOK] * LEVELS)
        current, peak = tracemalloc.get_traced_memory()
        build_peak, table_bytes = peak - base, current - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        index = table.prefix_index()
        current, peak = tracemalloc.get_traced_memory()
        prefix_peak, index_bytes = peak - base, current - base
    finally:
        tracemalloc.stop()
    assert sum(t.numel() for t in index.values()) > num_items
    return {
        "from_codes_peak_bytes": float(build_peak),
        "table_resident_bytes": float(table_bytes),
        "prefix_index_peak_bytes": float(prefix_peak),
        "prefix_index_resident_bytes": float(index_bytes),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per size (median reported)")
    parser.add_argument("--queries", type=int, default=100_000, help="codes per items_for_codes batch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    results: dict[str, dict[str, float]] = {}
    for n in args.sizes:
        runs = [time_once(n, args.seed + r, args.queries) for r in range(args.repeats)]
        row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        row.update(peak_memory(n, args.seed))
        row["peak_bytes_per_item"] = max(row["from_codes_peak_bytes"], row["prefix_index_peak_bytes"]) / n
        results[str(n)] = row
        print(
            f"N={n:>9,d}  D={int(row['num_levels'])}  collisions={row['collision_rate']:.2%}  "
            f"from_codes={row['from_codes_s']:.3f}s  prefix_index={row['prefix_index_s']:.3f}s  "
            f"hash={row['content_hash_s']:.3f}s  save={row['save_s']:.3f}s  load+verify={row['load_verify_s']:.3f}s  "
            f"lookup({args.queries:,})={row[f'items_for_codes_{args.queries}_s']:.3f}s  "
            f"peak: from_codes={row['from_codes_peak_bytes'] / 2**20:.1f} MiB "
            f"prefix_index={row['prefix_index_peak_bytes'] / 2**20:.1f} MiB "
            f"({row['peak_bytes_per_item']:.0f} B/item)  disk={row['disk_bytes'] / 2**20:.1f} MiB",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
