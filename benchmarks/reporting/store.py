"""Fingerprints, versions, machine description and the stored row JSON (``benchmarks/results/<row>.json``).

A row reruns only when the SHA-256 of its command template, input files and package versions changed; each
computed seed is appended to the row's JSON at once, so an interrupted multi-seed row resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import statistics
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .core import DATASETS, QUALITY_METRICS, REPORT_COMMAND, Context, Row, recbole_python


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def fingerprint_payload(row: Row, ctx: Context) -> dict[str, Any] | None:
    """What a row's result depends on (``None`` when its inputs are not available here)."""
    inputs = row.inputs(row, ctx) if row.inputs else {}
    if inputs is None or any(not path.is_file() for path in inputs.values()):
        return None
    return {
        "command": row.command,
        "inputs": {key: sha256_file(path) for key, path in sorted(inputs.items())},
        "packages": {name: _version(name) for name in row.packages},
        "extra": dict(row.fingerprint_extra),
    }


def fingerprint(row: Row, ctx: Context) -> str | None:
    """SHA-256 of :func:`fingerprint_payload` (stable JSON), or ``None`` when the inputs are missing."""
    payload = fingerprint_payload(row, ctx)
    if payload is None:
        return None
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def genrec_versions() -> dict[str, str]:
    """Versions of this (genrec) environment."""
    return {"python": platform.python_version(),
            **{name: _version(name) for name in ("genrec", "torch", "transformers", "datasets", "numpy")}}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict[str, Any]:
    """The machine a row was measured on."""
    uname = os.uname()
    return {
        "platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "threads": threads,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # > cpu_count: other jobs shared the CPUs
        "uname": {"sysname": uname.sysname, "nodename": uname.nodename, "release": uname.release,
                  "version": uname.version, "machine": uname.machine},
    }


def machine_line(machine: Mapping[str, Any]) -> str:
    """One human line naming a machine."""
    uname = machine.get("uname", {})
    return (f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} CPUs ({machine.get('threads', '?')} "
            f"thread(s) used), {uname.get('sysname', '')} {uname.get('release', '')} {uname.get('machine', '')}, "
            f"no GPU").replace("  ", " ")


def row_json_path(ctx: Context, row_id: str) -> Path:
    return ctx.results_dir / f"{row_id}.json"


def load_row_json(ctx: Context, row_id: str) -> dict[str, Any] | None:
    """A row's stored result, or ``None``."""
    path = row_json_path(ctx, row_id)
    return json.loads(path.read_text()) if path.is_file() else None


def source_path(row: Row, ctx: Context, seed: int | None = None) -> Path:
    """The file a "read" row reads: ``--source`` override, else the path its JSON remembers, else the default.

    A row that reads one run per seed (option ``seed_sources``: seed -> path) is asked per seed; its overrides
    are ``--source ROW_ID@SEED=PATH``. Without a seed it answers for its first seed. ``--forget-sources`` skips
    the remembered paths: a per-seed row re-pointed at a new set of runs must not keep an old seed's path that
    no ``--source`` replaced (it would mix two runs' seeds in one mean).
    """
    if "seed_sources" in row.options:
        seed = row.seeds[0] if seed is None else seed
        key = f"{row.id}@{seed}"
        if key in ctx.sources:
            return ctx.sources[key]
        stored = None if ctx.forget_sources else load_row_json(ctx, row.id)
        remembered = ((stored or {}).get("source_paths") or {}).get(str(seed))
        if remembered:
            path = Path(remembered) if Path(remembered).is_absolute() else ctx.repo / remembered
            if path.exists():
                return path
        default = Path(row.options["seed_sources"][seed])
        return default if default.is_absolute() else ctx.repo / default
    if row.id in ctx.sources:
        return ctx.sources[row.id]
    stored = None if ctx.forget_sources else load_row_json(ctx, row.id)
    if stored and stored.get("source_path"):
        remembered = Path(stored["source_path"])
        remembered = remembered if remembered.is_absolute() else ctx.repo / remembered
        if remembered.exists():  # a file, or the folder a speed/memory row measures
            return remembered
    default = Path(row.options["source"])
    return default if default.is_absolute() else ctx.repo / default


def available_seeds(row: Row, ctx: Context) -> list[int]:
    """Seeds of a per-seed "read" row whose run file exists here (the others stay "not run yet")."""
    return [seed for seed in row.seeds if source_path(row, ctx, seed).is_file()]


def work_json_path(row: Row, ctx: Context) -> Path:
    """Where a measuring script writes its raw JSON for the report to read (``runs/bench-work/<row>.json``)."""
    return ctx.repo / "runs" / "bench-work" / f"{row.id}.json"


def render_command(row: Row, ctx: Context, seed: int | None) -> str:
    """The row's exact command line for ``seed`` in this context."""
    fill = {
        "data": shlex.quote(ctx.rel(ctx.data[row.data_key])) if row.data_key in ctx.data else "DATA",
        "seed": "" if seed is None else str(seed),
        "threads": str(ctx.threads),
        "python": ctx.rel(recbole_python(ctx)),
        "source": ctx.rel(source_path(row, ctx)) if row.kind == "read" or "source" in row.options else "",
        "json": ctx.rel(work_json_path(row, ctx)),
    }
    if row.kind == "read":
        return row.command.replace("{seed}", fill["seed"]) if "seed_sources" in row.options else row.command
    return row.command.format(**fill)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def summarize(stored: dict[str, Any]) -> None:
    """Fill the row-level ``metrics`` (mean over seeds), ``metrics_std`` and ``wall_time_s`` from ``runs``."""
    runs = stored["runs"]
    keys = [k for k in runs[0]["metrics"] if all(isinstance(r["metrics"].get(k), int | float) for r in runs)]
    stored["metrics"], stored["metrics_std"] = {}, {}
    for key in keys:
        mean, std = _mean_std([r["metrics"][key] for r in runs])
        stored["metrics"][key] = mean
        if std is not None:
            stored["metrics_std"][key] = std
    if not stored["metrics_std"]:
        del stored["metrics_std"]
    walls = [r["wall_time_s"] for r in runs if r.get("wall_time_s") is not None]
    stored["wall_time_s"] = round(statistics.fmean(walls), 2) if walls else None
    stored["seeds_done"] = [r["seed"] for r in runs]


def compute_row(row: Row, ctx: Context, fp: str, *, force: bool) -> list[int | None]:
    """Run the seeds of ``row`` that are missing or stale; write its JSON after each. Returns the seeds run."""
    stored = load_row_json(ctx, row.id)
    if force or stored is None or stored.get("fingerprint") != fp:
        stored = None
    seeds: list[int | None] = list(row.seeds) if row.seeds else [None]
    if ctx.max_seeds is not None and row.seeds:
        seeds = seeds[: max(ctx.max_seeds, 1)]
    if "seed_sources" in row.options:  # a read row: only the seeds whose run has finished
        finished = set(available_seeds(row, ctx))
        seeds = [seed for seed in seeds if seed in finished]
    done = {r["seed"] for r in stored["runs"]} if stored else set()
    todo = [s for s in seeds if s not in done] if row.seeds else ([] if stored else [None])
    for seed in todo:
        print(f"[{row.id}] computing" + (f" (seed {seed})" if seed is not None else ""), flush=True)
        start = time.perf_counter()
        result = row.compute(row, ctx, seed)
        wall = result.get("wall_time_s")
        run = {
            "seed": result.get("seed", seed),
            "command": render_command(row, ctx, seed),
            "metrics": {k: float(v) for k, v in result["metrics"].items() if isinstance(v, int | float)},
            "wall_time_s": round(float(wall), 2) if wall is not None else round(time.perf_counter() - start, 2),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "details": result.get("details", {}),
        }
        if stored is None:
            stored = {"row": row.id, "title": row.title, "dataset": DATASETS.get(row.dataset, {}).get("name", row.dataset),
                      "kind": row.kind, "command": run["command"], "command_template": row.command,
                      "report_command": f"{REPORT_COMMAND} --force {row.id}", "fingerprint": fp,
                      "fingerprint_inputs": fingerprint_payload(row, ctx), "seeds": list(row.seeds), "runs": []}
        if "seed_sources" in row.options:
            stored.setdefault("source_paths", {})[str(seed)] = ctx.rel(source_path(row, ctx, seed))
            stored["source_path"] = stored["source_paths"][str(stored["runs"][0]["seed"] if stored["runs"] else seed)]
        elif row.kind == "read" or "source" in row.options:
            stored["source_path"] = ctx.rel(source_path(row, ctx))
        stored["runs"] = [r for r in stored["runs"] if r["seed"] != run["seed"]] + [run]
        stored["seed"] = stored["runs"][0]["seed"]
        stored["versions"] = result.get("versions") or genrec_versions()
        if result.get("versions_note"):
            stored["versions_note"] = result["versions_note"]
        stored["machine"] = result.get("machine") or machine_info(ctx.threads)
        stored["date"] = run["date"]
        summarize(stored)
        write_json(row_json_path(ctx, row.id), stored)
        if row.section == "quality":
            summary = ", ".join(f"{k} {run['metrics'].get(k, float('nan')):.4f}" for k in QUALITY_METRICS)
        else:
            summary = f"{len(run['metrics'])} measurements stored"
        print(f"[{row.id}] {summary} ({run['wall_time_s']:.1f} s)", flush=True)
    return todo


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (atomically: a half-written row must never look finished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
