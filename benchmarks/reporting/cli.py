"""The report's driver: which rows to (re)compute, the command line, ``main``."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .core import ABLATION_PLOT_NAME, DATASETS, PLOT_NAME, REPO, RESULTS_MD, Context, Row, ensure_dataset
from .perf import SCALING_PLOT, render_scaling_plot
from .render import render_ablation_plot, render_markdown, render_plot, row_status
from .store import compute_row, fingerprint, load_row_json, render_command


def expand_ids(patterns: Iterable[str], ids: Sequence[str]) -> set[str]:
    """Row ids matching ``patterns`` (exact ids or shell patterns); a pattern matching nothing is an error."""
    from fnmatch import fnmatchcase

    found: set[str] = set()
    for pattern in patterns:
        matches = {row_id for row_id in ids if fnmatchcase(row_id, pattern)}
        if not matches:
            raise SystemExit(f"no row matches {pattern!r} (see --list)")
        found |= matches
    return found


def run_report(
    rows: Sequence[Row],
    ctx: Context,
    *,
    only: Iterable[str] | None = None,
    force: Iterable[str] = (),
    skip: Iterable[str] = (),
    render_only: bool = False,
    markdown_path: Path | None = RESULTS_MD,
    plot: bool = True,
) -> dict[str, Any]:
    """Recompute what is stale or missing (within ``only``, minus ``skip``; ``force`` always), then render.

    Without ``only``, every row is considered, unless ``force`` is given: then only the forced rows are.

    Row selections are ids or shell patterns (``'ml100k-*'``).

    Returns ``{"computed": {row_id: seeds}, "failed": {row_id: error}, "skipped": {row_id: reason}}``.
    """
    ids = [row.id for row in rows]
    force = expand_ids(force, ids)
    # --force alone recomputes just those rows (not every other stale row as well)
    everything = set(ids) if not force else set()
    selected = ((expand_ids(only, ids) if only else everything) - expand_ids(skip, ids)) | force
    outcome: dict[str, Any] = {"computed": {}, "failed": {}, "skipped": {}}
    if not render_only:
        for row in rows:
            if row.id not in selected or row.kind == "published" or row.compute is None:
                continue
            if row.data_key:
                ensure_dataset(ctx, row.data_key)
            fp = fingerprint(row, ctx)
            if fp is None:
                reason = row.missing(row, ctx) if row.missing else "inputs missing"
                outcome["skipped"][row.id] = reason
                kept = "keeping its stored result" if load_row_json(ctx, row.id) else "not run yet"
                print(f"[{row.id}] {kept}: {reason}", flush=True)
                continue
            try:
                ran = compute_row(row, ctx, fp, force=row.id in force)
            except Exception as error:  # one failing row must not stop the others
                outcome["failed"][row.id] = f"{type(error).__name__}: {error}"
                print(f"[{row.id}] FAILED: {error}", file=sys.stderr, flush=True)
                traceback.print_exc()
                continue
            if ran:
                outcome["computed"][row.id] = ran
            else:
                print(f"[{row.id}] up to date", flush=True)
    if markdown_path is not None:
        plot_name = ablation_plot_name = None
        if plot and render_plot(rows, ctx, markdown_path.parent / PLOT_NAME):
            plot_name = PLOT_NAME
        if plot and render_ablation_plot(rows, ctx, markdown_path.parent / ABLATION_PLOT_NAME):
            ablation_plot_name = ABLATION_PLOT_NAME
        if plot:
            render_scaling_plot(rows, ctx, markdown_path.parent / SCALING_PLOT)
        markdown_path.write_text(render_markdown(rows, ctx, plot_name, ablation_plot_name))
        plots = [name for name in (plot_name, ablation_plot_name) if name]
        print(f"wrote {ctx.rel(markdown_path)}" + (f" and {', '.join(plots)}" if plots else ""), flush=True)
    return outcome


def print_list(rows: Sequence[Row], ctx: Context) -> None:
    """One block per row: id, dataset, status, command."""
    for row in rows:
        status = row_status(row, ctx)
        print(f"{row.id:34s} {DATASETS.get(row.dataset, {}).get('name', row.dataset):8s} {status.label()}")
        if row.kind != "published":
            seed = row.seeds[0] if row.seeds else None
            print(f"    {render_command(row, ctx, seed)}")


def build_context(args: argparse.Namespace) -> Context:
    """Context from the command line (paths relative to the repository root)."""
    def absolute(path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (REPO / p)

    sources = {}
    for item in args.source or []:
        row_id, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--source expects ROW_ID=PATH, got {item!r}")
        sources[row_id] = absolute(path)
    return Context(
        data={"ml-100k": absolute(args.ml100k_data), "beauty": absolute(args.beauty_data)},
        raw={"beauty": absolute(args.beauty_source)},
        sources=sources, forget_sources=args.forget_sources, threads=args.threads, max_seeds=args.max_seeds,
    )


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """Parse the command line, then list, compute and/or render (``description``: the ``--help`` text)."""
    from .registry import ROWS

    parser = argparse.ArgumentParser(description=description or __doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="ROW_ID", help="compute only these rows (render all)")
    parser.add_argument("--force", nargs="+", default=[], metavar="ROW_ID",
                        help="recompute these rows (alone: only these; with --only: those rows as well)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="ROW_ID",
                        help="do not compute these rows now (e.g. 'beauty-recbole-*', hours on a CPU)")
    parser.add_argument("--list", action="store_true", help="list rows, their status and commands; run nothing")
    parser.add_argument("--render-only", action="store_true", help="only rewrite RESULTS.md and the plots")
    parser.add_argument("--ml100k-data", default="runs/bench-data/ml-100k",
                        help="prepared ML-100K folder (prepared here with `genrec prepare ml-100k` when absent)")
    parser.add_argument("--beauty-data", default="runs/bench-data/beauty",
                        help="prepared Beauty folder (prepared from --beauty-source when absent)")
    parser.add_argument("--beauty-source", default="../shared/data/amazon-beauty-2014",
                        help="S3-Rec layout Beauty files (sequences.txt + items.jsonl)")
    parser.add_argument("--source", action="append", metavar="ROW_ID=PATH",
                        help="file a genrec-* row reads (run.json / stage2 variant JSON); remembered in its JSON; "
                             "ROW_ID@SEED=PATH for a row that reads one run per seed")
    parser.add_argument("--forget-sources", action="store_true",
                        help="ignore the source paths rows remember from earlier --source options (read --source "
                             "and the registry defaults only): use when re-pointing a per-seed row at new runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for measured rows")
    parser.add_argument("--max-seeds", type=int, default=None,
                        help="run at most the first N seeds of multi-seed rows now (the rest stay 'not run yet')")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    ctx = build_context(args)
    if args.list:
        print_list(ROWS, ctx)
        return 0
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    outcome = run_report(ROWS, ctx, only=args.only, force=args.force, skip=args.skip,
                         render_only=args.render_only)
    if outcome["failed"]:
        print(f"failed rows: {', '.join(outcome['failed'])}", file=sys.stderr)
        return 1
    return 0


