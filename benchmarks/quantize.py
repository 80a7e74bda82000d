"""Quantizer benchmark: fit time, memory and code diagnostics of residual k-means (UNGER Algorithm 1).

Cases (each runs in its own Python process so that its peak memory is its own):

* ``random-12101x384``: seeded Gaussian data the size of Amazon Beauty with MiniLM's dimension (no cluster
  structure: a worst case for k-means, which degenerates on isotropic noise at the residual levels).
* ``embeddings``: real item embeddings from a safetensors file (``--embeddings``; the tensor named
  ``embeddings``, the file's only tensor, or ``--key``) — e.g. ``genrec embed`` output for Beauty.
* ``random-<N>x<D>`` for every ``--sizes`` entry (default 10^5 and 10^6 items).

For every case: fit seconds, encode seconds (re-encoding all items), peak resident memory of the process
(``resource.getrusage``; torch allocations are invisible to ``tracemalloc``, which is reported for the
Python heap only), the data's own size, the CPU time next to the wall time (the wall time of a shared
machine depends on its other users; the 1-minute load average is recorded), and the diagnostics table (utilization, entropy, collisions,
residual MSE per level).

Usage::

    python benchmarks/quantize.py                                   # random cases
    python benchmarks/quantize.py --embeddings beauty.safetensors   # + real embeddings
    python benchmarks/quantize.py --sizes 100000 --json-out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import torch


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _load_embeddings(path: str, key: str | None) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        names = list(f.keys())  # noqa: SIM118 - safe_open has no __iter__
        if key is None:
            if "embeddings" in names:
                key = "embeddings"
            elif len(names) == 1:
                key = names[0]
            else:
                raise SystemExit(f"{path} holds tensors {names}; pick one with --key")
        if key not in names:
            raise SystemExit(f"{path} has no tensor {key!r} (it has {names})")
        return f.get_tensor(key).float()


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Fit + encode + diagnostics for one case, in this process."""
    from genrec.tokenization.quantizers import RandomQuantizer, ResidualKMeansQuantizer, RQVAEQuantizer

    torch.set_num_threads(case["threads"]) if case.get("threads") else None
    if case["source"] == "random":
        x = torch.randn(case["n"], case["dim"], generator=torch.Generator().manual_seed(case["seed"]))
    else:
        x = _load_embeddings(case["path"], case.get("key"))
    rss_data = _rss_mb()
    tracemalloc.start()
    kind = case.get("quantizer", "residual_kmeans")
    q: Any
    if kind == "residual_kmeans":
        q = ResidualKMeansQuantizer(
            num_levels=case["levels"],
            codebook_size=case["codebook_size"],
            max_iter=case["max_iter"],
            seed=case["seed"],
            resolve_collisions=case["resolve_collisions"],
            max_points_per_centroid=case["max_points_per_centroid"],
        )
    elif kind == "rqvae":
        q = RQVAEQuantizer(
            num_levels=case["levels"],
            codebook_size=case["codebook_size"],
            epochs=case["rqvae_epochs"],
            seed=case["seed"],
        )
    else:
        q = RandomQuantizer(num_levels=case["levels"], codebook_size=case["codebook_size"], seed=case["seed"])
    t0, c0 = time.perf_counter(), time.process_time()
    q.fit(x, show_progress=False)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    codes = q.encode(x)
    encode_s, encode_cpu = time.perf_counter() - t0, time.process_time() - c0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert torch.equal(codes, q.codes_), "encode(fit data) differs from the fitted codes"
    diag = q.diagnostics(x, codes)
    levels = [
        {k: lv[k] for k in ("fit_points", "n_iter", "converged", "n_reseeded")}
        for lv in q.fit_info.get("levels", [])
    ]
    return {
        "case": case["name"],
        "quantizer": kind,
        "num_items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "fit_seconds": round(fit_s, 2),
        "fit_cpu_seconds": round(fit_cpu, 2),
        "encode_seconds": round(encode_s, 2),
        "encode_cpu_seconds": round(encode_cpu, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "data_mb": round(x.numel() * 4 / 2**20, 1),
        "rss_after_data_mb": round(rss_data, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "python_heap_peak_mb": round(py_peak / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        "levels": levels,
        "num_reassigned": q.fit_info.get("num_reassigned", 0),
        "diagnostics": diag.to_dict(),
        "diagnostics_table": str(diag),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every case in a subprocess, print a report (and write JSON when asked)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", help="safetensors file with real item embeddings (N, D)")
    p.add_argument("--key", help="tensor name inside --embeddings (default: 'embeddings' or the only tensor)")
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="random-data sizes")
    p.add_argument("--dim", type=int, default=384, help="dimension of the random data (MiniLM: 384)")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--max-iter", type=int, default=25)
    p.add_argument("--max-points-per-centroid", type=int, default=256, help="0 = cluster all points")
    p.add_argument("--resolve-collisions", choices=["none", "reassign"], default="none")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument(
        "--skip-beauty-sized-random", action="store_true", help="skip the random 12,101 x 384 case"
    )
    p.add_argument(
        "--compare",
        nargs="*",
        choices=["rqvae", "random"],
        default=[],
        help="also run these quantizers on the Beauty-sized cases (UNGER's section 4.6 ablation)",
    )
    p.add_argument("--rqvae-epochs", type=int, default=50, help="RQ-VAE training epochs for --compare rqvae")
    p.add_argument("--json-out", help="write all results to this JSON file")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case (JSON) and print its result
    args = p.parse_args(argv)

    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0

    common = {
        "levels": args.levels,
        "codebook_size": args.codebook_size,
        "max_iter": args.max_iter,
        "seed": args.seed,
        "resolve_collisions": args.resolve_collisions,
        "max_points_per_centroid": args.max_points_per_centroid or None,
        "threads": args.threads,
        "rqvae_epochs": args.rqvae_epochs,
    }
    cases: list[dict[str, Any]] = []
    if not args.skip_beauty_sized_random:
        cases.append({"name": "random-12101x384", "source": "random", "n": 12_101, "dim": 384, **common})
    if args.embeddings:
        name = f"embeddings:{Path(args.embeddings).name}"
        cases.append({"name": name, "source": "file", "path": args.embeddings, "key": args.key, **common})
    beauty_sized = list(cases)
    for kind in args.compare:
        cases += [{**c, "name": f"{c['name']} [{kind}]", "quantizer": kind} for c in beauty_sized]
    for n in args.sizes:
        cases.append(
            {"name": f"random-{n}x{args.dim}", "source": "random", "n": n, "dim": args.dim, **common}
        )

    print(
        f"# residual k-means {args.levels} x {args.codebook_size}, max_iter {args.max_iter}, "
        f"max_points_per_centroid {common['max_points_per_centroid']}, resolve_collisions "
        f"{args.resolve_collisions}; {platform.processor() or platform.machine()}, torch {torch.__version__}",
        flush=True,
    )
    results = []
    for case in cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"\n## {case['name']}: FAILED\n{proc.stderr[-4000:]}", flush=True)
            results.append({"case": case["name"], "error": proc.stderr[-4000:]})
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        levels_line = ""
        if res["levels"]:
            levels_line = (
                "levels (fit points / Lloyd iterations / converged / re-seeded): "
                + "; ".join(
                    f"{lv['fit_points']}/{lv['n_iter']}/{lv['converged']}/{lv['n_reseeded']}"
                    for lv in res["levels"]
                )
                + "\n"
            )
        print(
            f"\n## {res['case']}: {res['quantizer']}, {res['num_items']} x {res['dim']}\n"
            f"fit {res['fit_seconds']} s wall / {res['fit_cpu_seconds']} s CPU, encode {res['encode_seconds']} s "
            f"wall / {res['encode_cpu_seconds']} s CPU, peak RSS {res['peak_rss_mb']} MiB (data {res['data_mb']} "
            f"MiB, RSS after loading data {res['rss_after_data_mb']} MiB), threads {res['torch_threads']}, "
            f"load average {res['load_average_1min']}\n" + levels_line + res["diagnostics_table"],
            flush=True,
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
