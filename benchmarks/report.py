"""Side-by-side benchmark report: regenerate ``benchmarks/RESULTS.md`` from one registry of rows, with one command.

    python benchmarks/report.py                       # run stale/missing rows whose inputs exist, then render
    python benchmarks/report.py --list                # every row, its status and its command; runs nothing
    python benchmarks/report.py --only ml100k-pop ml100k-markov
    python benchmarks/report.py --force ml100k-recbole-sasrec
    python benchmarks/report.py --skip 'beauty-recbole-*'   # ids or shell patterns everywhere
    python benchmarks/report.py --render-only         # rewrite RESULTS.md + plot from the stored JSON only

Why: a table of "this model vs that baseline" is only worth something if every number in it was measured on
the same split with the same metrics and can be re-measured by anyone. Each row below (``ROWS``) names its
dataset, the exact command line behind it and its inputs. A row's *input fingerprint* is the SHA-256 of its
command template, the content of its input files (the prepared split, the scripts that compute it) and the
relevant package versions; the row's result lives in ``benchmarks/results/<row_id>.json`` together with that
fingerprint, the command, versions, seed(s), machine, wall time and date. Running the report recomputes only
rows whose JSON is missing or whose fingerprint changed (``--force`` recomputes on demand, ``--only``
restricts what is computed; the rendered report always shows every row). Rows whose inputs are not there
(a dataset that cannot be prepared here, a genrec run that has not finished) are listed as "not run yet"
with the command that produces them; a row whose inputs are gone but whose JSON exists keeps its JSON.

Row kinds:

* ``pop`` / ``markov``: ``benchmarks/markov_baseline.py``'s ``evaluate_baselines`` (called, not copied).
* ``recbole-*``: RecBole 1.2.1 models trained by RecBole's own code on our exact split
  (``benchmarks/recbole_runner.py``, run with the interpreter of a separate environment,
  ``runs/recbole-venv``, that this script creates: RecBole's pins never reach genrec's environment).
* ``genrec-*``: read the result JSON of a ``genrec run`` folder (``run.json``) or of
  ``benchmarks/stage2_variants.py``; the lead's long runs produce them. ``--source ROW=PATH`` points a row
  at another file (remembered in the row's JSON).
* published: numbers copied from a paper, marked "published" with their source; never recomputed.

Datasets are prepared on first use into ``runs/bench-data/`` (``genrec prepare ml-100k`` is offline and
takes seconds; Beauty needs ``../shared/data/amazon-beauty-2014``); ``--ml100k-data`` / ``--beauty-data``
use folders prepared elsewhere (the fingerprint hashes their content, not their path).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
PLOT_NAME = "RESULTS_recall10.png"
REPORT_COMMAND = "python benchmarks/report.py"

QUALITY_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
METRIC_LABELS = {"recall@10": "Recall@10", "recall@20": "Recall@20", "ndcg@10": "NDCG@10", "ndcg@20": "NDCG@20"}

DATASETS: dict[str, dict[str, str]] = {
    "ml-100k": {
        "name": "ML-100K",
        "about": "MovieLens-100K (943 users, 1,682 items), genrec's leave-one-out split: test = each user's last "
                 "item, history <= 20 most recent items, full ranking over every item, 943 test users.",
        "prepare": "genrec prepare ml-100k --out {out}",
    },
    "beauty": {
        "name": "Beauty",
        "about": "Amazon Beauty 2014, S3-Rec's 5-core files (22,363 users, 12,101 items), same protocol: "
                 "test = each user's last item, history <= 20, full ranking, 22,363 test users.",
        "prepare": "genrec prepare s3rec --path {raw} --out {out}",
    },
}

# RecBole's environment. RecBole 1.2.1 asks for numpy<2 (it uses the removed np.float/np.int aliases, which the
# runner re-adds) and pandas<2.2. The usual "setuptools<70" pin is NOT applied: it was for torch<2.2's
# tensorboard shim (`setuptools.distutils`), and torch 2.13 itself requires setuptools>=77, so pip rejects it.
RECBOLE_REQUIREMENTS = ("recbole==1.2.1", "numpy<2", "pandas<2.2", "torch==2.13.0")
RECBOLE_VENV = "runs/recbole-venv"
RECBOLE_EXPORT_FORMAT = "genrec-recbole-export/1: user_id:token, item_id_list:token_seq (history), item_id:token"

UNGER_SOURCE = (
    "Published: UNGER (\"Generative Recommendation with A Unified Code via Semantic and Collaborative Integration\"), "
    "overall-performance table, Beauty column (reading copy `../shared/papers/unger.txt`, whose text calls it Table 3). "
    "Row names as printed there. Rows without \\* are quoted by UNGER from S3-Rec (Zhou et al., 2020) and EAGER "
    "(Wang et al., 2024c); \\* = re-implemented by the UNGER authors. Their split is the same leave-one-out protocol "
    "(history <= 20), but their runs, item text encoder (Llama2-7b) and machine are not ours."
)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """Where things are for one report invocation: dataset folders, row source overrides, environments."""

    repo: Path = REPO
    results_dir: Path = RESULTS_DIR
    data: dict[str, Path] = field(default_factory=dict)
    raw: dict[str, Path] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    threads: int = 1
    max_seeds: int | None = None
    allow_prepare: bool = True

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the repository root when it is inside it (commands stay copy-pasteable)."""
        path = Path(path)
        if not path.is_absolute():
            return str(path)
        # abspath, not resolve(): a venv's bin/python is a symlink that must stay the venv's
        return os.path.relpath(os.path.abspath(path), os.path.abspath(self.repo))


@dataclass(frozen=True)
class Row:
    """One line of the report.

    ``command`` is a template (``{data}``, ``{seed}``, ``{source}``, ``{threads}``, ``{python}`` are filled in
    from the context); the template, not the filled-in paths, enters the fingerprint, so using a dataset folder
    prepared elsewhere with the same content does not recompute anything. ``compute(row, ctx, seed)`` returns a
    dict with ``metrics`` and optionally ``wall_time_s``, ``details``, ``versions``, ``seed``, ``machine``.
    ``inputs(row, ctx)`` maps a stable key to each input file; it returns ``None`` when they are not available
    (then ``missing(row, ctx)`` says why).
    """

    id: str
    title: str
    dataset: str
    kind: str  # "measured" | "read" | "published"
    command: str = ""
    compute: Callable[[Row, Context, int | None], dict[str, Any]] | None = None
    inputs: Callable[[Row, Context], dict[str, Path] | None] | None = None
    missing: Callable[[Row, Context], str] | None = None
    packages: tuple[str, ...] = ()
    fingerprint_extra: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()  # empty: deterministic, one run without a seed
    options: Mapping[str, Any] = field(default_factory=dict)
    published: Mapping[str, float] | None = None
    source: str = ""
    note: str = ""
    produce: str = ""  # for "read" rows: the command that produces the file the row reads
    cost: str = ""  # what a run costs, shown in the "not run yet" list

    @property
    def data_key(self) -> str | None:
        """The dataset folder this row reads (a key of ``DATASETS``), if any."""
        return self.options.get("data")


def _dataset_inputs(ctx: Context, key: str) -> dict[str, Path] | None:
    """The split's parquet files of dataset ``key`` (what every measured row trains and tests on)."""
    folder = ctx.data.get(key)
    if folder is None or not (folder / "sequences").is_dir():
        return None
    files = sorted(p for p in (folder / "sequences").rglob("*") if p.is_file())
    return {f"{key}/sequences/{p.relative_to(folder / 'sequences')}": p for p in files} or None


def _with_scripts(ctx: Context, inputs: dict[str, Path] | None, scripts: Iterable[str]) -> dict[str, Path] | None:
    """``inputs`` plus repository files (by their repository path)."""
    if inputs is None:
        return None
    return {**inputs, **{script: ctx.repo / script for script in scripts}}


def _missing_dataset(row: Row, ctx: Context) -> str:
    key = row.data_key or ""
    raw = ctx.raw.get(key)
    if key == "beauty" and (raw is None or not raw.is_dir()):
        return f"needs the Beauty files at {ctx.rel(raw) if raw else '../shared/data/amazon-beauty-2014'}"
    return f"dataset folder {ctx.rel(ctx.data.get(key, Path('?')))} is not prepared"


# ---- pop / markov --------------------------------------------------------------------------------


def _load_markov_module(ctx: Context) -> Any:
    """``benchmarks/markov_baseline.py`` as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = ctx.repo / "benchmarks" / "markov_baseline.py"
    spec = importlib.util.spec_from_file_location("genrec_bench_markov_baseline", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


_MARKOV_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def compute_markov(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Pop or Markov on the test split via ``evaluate_baselines`` (one call serves both rows of a dataset)."""
    folder = ctx.data[row.data_key]
    key = (str(folder.resolve()), "test")
    if key not in _MARKOV_CACHE:
        _MARKOV_CACHE[key] = _load_markov_module(ctx).evaluate_baselines(folder, "test")
    result = _MARKOV_CACHE[key]
    return {
        "metrics": result[row.options["model"]],
        "wall_time_s": result["wall_time_s"],  # fitting + ranking both baselines (data loading excluded)
        "details": {"num_users": result["num_users"], "split": "test",
                    "wall_time_note": "fit + rank of pop and markov together, data loading excluded"},
    }


def markov_row(data: str, model: str) -> Row:
    """A pop or markov row on dataset ``data``."""
    short = "ml100k" if data == "ml-100k" else data
    title = {"pop": "Most popular (genrec pop)", "markov": "First-order Markov (genrec markov)"}[model]
    return Row(
        id=f"{short}-{model}", title=title, dataset=data, kind="measured",
        command="python benchmarks/markov_baseline.py {data} --split test",
        compute=compute_markov,
        inputs=lambda row, ctx: _with_scripts(
            ctx, _dataset_inputs(ctx, row.data_key), ["benchmarks/markov_baseline.py", "trainers/metrics.py"]),
        missing=_missing_dataset,
        packages=("genrec",),
        options={"data": data, "model": model},
        note="no training; full ranking, nothing masked",
    )


# ---- RecBole -------------------------------------------------------------------------------------


def recbole_python(ctx: Context) -> Path:
    """The interpreter of RecBole's environment."""
    return ctx.repo / RECBOLE_VENV / "bin" / "python"


def ensure_recbole_env(ctx: Context) -> Path:
    """Create (or complete) ``runs/recbole-venv`` with ``RECBOLE_REQUIREMENTS``; returns its interpreter.

    A marker file records the requirements it was built with, so a changed pin reinstalls. The venv is made
    from the base interpreter (not from genrec's venv) so that nothing of genrec's environment leaks in.
    """
    venv = ctx.repo / RECBOLE_VENV
    python = recbole_python(ctx)
    marker = venv / "genrec-bench-requirements.json"
    wanted = {"requirements": list(RECBOLE_REQUIREMENTS)}
    if python.exists() and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return python
    if not python.exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        print(f"creating RecBole's environment {ctx.rel(venv)} ({base} -m venv)", flush=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(RECBOLE_REQUIREMENTS)} into {ctx.rel(venv)}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_REQUIREMENTS], check=True)
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    return python


def recbole_dataset_name(data: str) -> str:
    """RecBole dataset name of our export (never ``ml-100k``: RecBole swaps that for its bundled copy)."""
    return f"genrec-{data}"


def export_recbole(ctx: Context, data: str) -> Path:
    """Write dataset ``data``'s train/validation/test rows as RecBole atomic files; returns the data path.

    One line per genrec example: ``user_id``, ``item_id_list`` (the history, oldest first, space separated)
    and ``item_id`` (the target), in ``<name>/<name>.{train,valid,test}.inter``, which RecBole's
    ``benchmark_filename`` option reads as an already-split dataset. Files are rewritten only when their
    content changes.
    """
    from genrec.data_scripts.prepare import load_genrec_dataset

    name = recbole_dataset_name(data)
    root = ctx.repo / "runs" / "recbole-data"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    sequences, _ = load_genrec_dataset(ctx.data[data])
    for split, suffix in (("train", "train"), ("validation", "valid"), ("test", "test")):
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
        for user, items in zip(sequences[split]["user_id"], sequences[split]["item_ids"], strict=True):
            if not items or len(items) < 2:
                continue
            if any(not item or any(c.isspace() for c in item) for item in items) or any(c.isspace() for c in user):
                raise ValueError(f"{data}: an item or user id contains whitespace; RecBole's token_seq cannot hold it")
            lines.append(f"{user}\t{' '.join(items[:-1])}\t{items[-1]}")
        text = "\n".join(lines) + "\n"
        path = folder / f"{name}.{suffix}.inter"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return root


def compute_recbole(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Export the split, run ``benchmarks/recbole_runner.py`` in RecBole's environment, read its JSON."""
    ensure_recbole_env(ctx)
    export_recbole(ctx, row.data_key)
    work = ctx.repo / "runs" / "recbole-work" / row.id / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    out = work / "result.json"
    out.unlink(missing_ok=True)
    command = render_command(row, ctx, seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(ctx.threads), "MKL_NUM_THREADS": str(ctx.threads),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}
    log = work / "runner.log"
    print(f"  {command}\n  (log: {ctx.rel(log)})", flush=True)
    with log.open("w") as handle:
        proc = subprocess.run(shlex.split(command), cwd=ctx.repo, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out.is_file():
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"recbole_runner exited with {proc.returncode}; last lines of {log}:\n{tail}")
    result = json.loads(out.read_text())
    details = {k: result[k] for k in (
        "model", "dataset", "num_test_users", "num_items", "num_train_rows", "epochs_run", "best_epoch",
        "stopped_by", "seconds_to_best_validation", "fit_seconds", "threads", "parameters", "recbole_config",
        "validation", "validation_curve",
    ) if k in result}
    return {"metrics": result["test"], "wall_time_s": result["wall_time_s"], "details": details,
            "versions": {**result["versions"], "genrec (export)": _version("genrec")}}


def recbole_row(data: str, model: str, *, seeds: tuple[int, ...] = (2024,), max_minutes: float | None = None) -> Row:
    """A RecBole model trained with RecBole's own code on dataset ``data``'s exported split."""
    short = "ml100k" if data == "ml-100k" else data
    budget = f" --max-minutes {max_minutes:g}" if max_minutes else ""
    titles = {"SASRec": "SASRec, CE loss (RecBole 1.2.1)", "GRU4Rec": "GRU4Rec (RecBole 1.2.1)",
              "BERT4Rec": "BERT4Rec (RecBole 1.2.1)", "Pop": "Pop (RecBole 1.2.1)"}
    work = f"runs/recbole-work/{short}-recbole-{model.lower()}/seed{{seed}}"
    note = "RecBole defaults; early stopping on valid MRR@10 (patience 10)"
    if model == "Pop":
        note = ("RecBole's Pop: masks items the user already had as training/validation targets, and counts an item "
                "at most once per training batch of 2048")
    if max_minutes:
        note += f"; time budget {max_minutes:g} min"
    return Row(
        id=f"{short}-recbole-{model.lower()}", title=titles[model], dataset=data, kind="measured",
        command=(f"{{python}} benchmarks/recbole_runner.py --data-path runs/recbole-data --dataset "
                 f"{recbole_dataset_name(data)} --model {model} --seed {{seed}} --threads {{threads}}{budget} "
                 f"--work-dir {work} --out {work}/result.json"),
        compute=compute_recbole,
        inputs=lambda row, ctx: _with_scripts(ctx, _dataset_inputs(ctx, row.data_key), ["benchmarks/recbole_runner.py"]),
        missing=_missing_dataset,
        packages=("genrec",),
        fingerprint_extra={"recbole_env": list(RECBOLE_REQUIREMENTS), "export": RECBOLE_EXPORT_FORMAT},
        seeds=seeds,
        options={"data": data, "model": model, "max_minutes": max_minutes},
        cost=f"up to {max_minutes:g} min per seed on one thread" if max_minutes else "about a minute",
        note=note,
    )


# ---- rows that read a genrec result --------------------------------------------------------------


def source_path(row: Row, ctx: Context) -> Path:
    """The file a "read" row reads: ``--source`` override, else the path its JSON remembers, else the default."""
    if row.id in ctx.sources:
        return ctx.sources[row.id]
    stored = load_row_json(ctx, row.id)
    if stored and stored.get("source_path"):
        remembered = Path(stored["source_path"])
        remembered = remembered if remembered.is_absolute() else ctx.repo / remembered
        if remembered.is_file():
            return remembered
    default = Path(row.options["source"])
    return default if default.is_absolute() else ctx.repo / default


def _source_inputs(row: Row, ctx: Context) -> dict[str, Path] | None:
    path = source_path(row, ctx)
    return {"source": path} if path.is_file() else None


def _missing_source(row: Row, ctx: Context) -> str:
    return f"{ctx.rel(source_path(row, ctx))} does not exist yet"


def compute_genrec_run(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Read a ``genrec run`` folder's ``run.json`` (test metrics, total time, profile)."""
    path = source_path(row, ctx)
    run = json.loads(path.read_text())
    profile = run.get("profile") or {}
    name = profile.get("name") if isinstance(profile, dict) else profile
    if row.options.get("profile") and name != row.options["profile"]:
        raise ValueError(f"{path}: profile {name!r}, but row {row.id} expects {row.options['profile']!r}")
    metrics = run["test_metrics"]
    return {
        "metrics": metrics, "wall_time_s": run.get("total_seconds"), "seed": run.get("seed"),
        "details": {"profile": name, "run_dataset": run.get("dataset"), "model_dir": run.get("model_dir"),
                    "num_users": metrics.get("num_users"), "invalid_rate": metrics.get("invalid_rate"),
                    "eval_beams": profile.get("eval_beams") if isinstance(profile, dict) else None,
                    "stage2_max_steps": profile.get("stage2_max_steps") if isinstance(profile, dict) else None,
                    "stage2_steps": ((run.get("stages") or {}).get("stage2") or {}).get("steps"),
                    "stage2_best_step": ((run.get("stages") or {}).get("stage2") or {}).get("best_step"),
                    "wall_time_note": "the run's total_seconds (all stages, as recorded by genrec run)"},
        "versions_note": "versions of the environment that read run.json (genrec run does not record its own)",
    }


def compute_stage2_variant(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Read a ``benchmarks/stage2_variants.py`` JSON (keys ``test``, ``wall_time_s``, ``variant``)."""
    path = source_path(row, ctx)
    result = json.loads(path.read_text())
    return {
        "metrics": result["test"], "wall_time_s": result.get("wall_time_s"), "seed": row.options.get("seed"),
        "details": {k: result.get(k) for k in ("variant", "steps", "best_step", "eval_beams", "threads", "hardware",
                                                "config", "train", "distillation")},
        "versions_note": "versions of the environment that read the JSON (stage2_variants.py records torch only)",
    }


def genrec_run_row(data: str, profile: str, *, source: str, produce: str) -> Row:
    """UNGER main job (``genrec run``) with ``profile`` on ``data``, read from ``source``/run.json."""
    short = "ml100k" if data == "ml-100k" else data
    return Row(
        id=f"{short}-genrec-{profile}", title=f"genrec UNGER, `{profile}` profile (genrec run)", dataset=data,
        kind="read", command=produce, produce=produce, compute=compute_genrec_run,
        inputs=_source_inputs, missing=_missing_source, options={"source": source, "profile": profile},
        note="constrained beam search over the full corpus",
    )


def stage2_variant_row(data: str, name: str, *, source: str, produce: str) -> Row:
    """One ``benchmarks/stage2_variants.py`` variant on ``data``, read from its JSON."""
    short = "ml100k" if data == "ml-100k" else data
    return Row(
        id=f"{short}-genrec-stage2-{name}", title=f"genrec UNGER Stage II variant `{name}`", dataset=data,
        kind="read", command=produce, produce=produce, compute=compute_stage2_variant,
        inputs=_source_inputs, missing=_missing_source, options={"source": source, "variant": name, "seed": 2024},
    )


# ---- published -----------------------------------------------------------------------------------

# Beauty column of the overall-performance table in ../shared/papers/unger.txt (row names as printed there;
# the superscript * marks baselines the UNGER authors re-implemented, the others are quoted from S3-Rec's and
# EAGER's papers). Recall@10, Recall@20, NDCG@10, NDCG@20.
UNGER_TABLE_BEAUTY: dict[str, tuple[float, float, float, float]] = {
    "GRU4REC": (0.0283, 0.0479, 0.0137, 0.0187),
    "Caser": (0.0347, 0.0556, 0.0176, 0.0229),
    "SASRec": (0.0605, 0.0902, 0.0318, 0.0394),
    "BERT4Rec": (0.0347, 0.0599, 0.0170, 0.0233),
    "HGN": (0.0512, 0.0773, 0.0266, 0.0332),
    "FDSA": (0.0407, 0.0656, 0.0208, 0.0270),
    "S3-Rec": (0.0647, 0.0994, 0.0327, 0.0414),
    "Recorest": (0.0664, 0.0915, 0.0400, 0.0464),
    "TIGER": (0.0617, 0.0924, 0.0339, 0.0417),
    "ColaRec": (0.0524, 0.0807, 0.0263, 0.0335),
    "EAGER": (0.0836, 0.1124, 0.0525, 0.0599),
    "UNGER (Ours)": (0.0939, 0.1289, 0.0559, 0.0646),
}
REIMPLEMENTED_BY_UNGER = {"TIGER", "ColaRec"}


def published_row(name: str, values: tuple[float, float, float, float]) -> Row:
    """A published Beauty number from the UNGER paper's table."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")
    note = "re-implemented by the UNGER authors (\\*)" if name in REIMPLEMENTED_BY_UNGER else ""
    if name == "UNGER (Ours)":
        note = "mean of 5 runs (std 0.00093 / 0.00084 / 0.00037 / 0.00041); Llama2-7b encoder, 100 beams"
    return Row(id=f"beauty-published-{slug}", title=name, dataset="beauty", kind="published",
               published=dict(zip(QUALITY_METRICS, values, strict=True)), source=UNGER_SOURCE, note=note)


def default_rows() -> list[Row]:
    """The registry: every row of RESULTS.md, in declaration order."""
    rows: list[Row] = []
    for data in ("ml-100k", "beauty"):
        rows += [markov_row(data, "pop"), markov_row(data, "markov")]
    rows += [
        recbole_row("ml-100k", "SASRec", seeds=(2024, 2025, 2026), max_minutes=30),
        recbole_row("ml-100k", "GRU4Rec", max_minutes=20),
        recbole_row("ml-100k", "BERT4Rec", max_minutes=30),
        recbole_row("ml-100k", "Pop"),
    ]
    rows += [recbole_row("beauty", m, max_minutes=180 if m != "Pop" else None)
             for m in ("SASRec", "GRU4Rec", "BERT4Rec", "Pop")]
    rows += [
        genrec_run_row("ml-100k", "default", source="runs/ml-100k/run.json",
                       produce="genrec run --dataset ml-100k --out runs/ml-100k"),
        genrec_run_row("ml-100k", "paper", source="runs/ml-100k-paper/run.json",
                       produce="genrec run --dataset ml-100k --profile paper --out runs/ml-100k-paper"),
        genrec_run_row("beauty", "default", source="runs/beauty/run.json",
                       produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --out runs/beauty"),
        genrec_run_row("beauty", "paper", source="runs/beauty-paper/run.json",
                       produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --profile paper "
                               "--out runs/beauty-paper"),
        stage2_variant_row(
            "beauty", "default", source="runs/beauty-var/default.json",
            produce="python benchmarks/stage2_variants.py --data runs/beauty/data --integrated "
                    "runs/beauty/stage1/integrated_embeddings.safetensors --semantic-ids runs/beauty/semantic_ids "
                    "--work-dir runs/beauty-var --name default --max-steps 3000 --threads 1 "
                    "--config '{\"history_mode\": \"per_item\", \"constrained_training\": true}'"),
    ]
    rows += [published_row(name, values) for name, values in UNGER_TABLE_BEAUTY.items()]
    return rows


ROWS = default_rows()


# --------------------------------------------------------------------------------------------------
# Fingerprints, versions, machine
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Row JSON
# --------------------------------------------------------------------------------------------------


def row_json_path(ctx: Context, row_id: str) -> Path:
    return ctx.results_dir / f"{row_id}.json"


def load_row_json(ctx: Context, row_id: str) -> dict[str, Any] | None:
    """A row's stored result, or ``None``."""
    path = row_json_path(ctx, row_id)
    return json.loads(path.read_text()) if path.is_file() else None


def render_command(row: Row, ctx: Context, seed: int | None) -> str:
    """The row's exact command line for ``seed`` in this context."""
    fill = {
        "data": shlex.quote(ctx.rel(ctx.data[row.data_key])) if row.data_key in ctx.data else "DATA",
        "seed": "" if seed is None else str(seed),
        "threads": str(ctx.threads),
        "python": ctx.rel(recbole_python(ctx)),
        "source": ctx.rel(source_path(row, ctx)) if row.kind == "read" else "",
    }
    return row.command.format(**fill) if row.kind != "read" else row.command


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
        if row.kind == "read":
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
        print(f"[{row.id}] " + ", ".join(f"{k} {run['metrics'].get(k, float('nan')):.4f}" for k in QUALITY_METRICS)
              + f" ({run['wall_time_s']:.1f} s)", flush=True)
    return todo


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (atomically: a half-written row must never look finished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def ensure_dataset(ctx: Context, key: str) -> bool:
    """Make sure dataset ``key``'s prepared folder exists, preparing it with ``genrec prepare`` if possible."""
    folder = ctx.data.get(key)
    if folder is None:
        return False
    if (folder / "genrec_dataset.json").is_file() and (folder / "sequences").is_dir():
        return True
    if not ctx.allow_prepare:
        return False
    raw = ctx.raw.get(key)
    if key != "ml-100k" and (raw is None or not raw.is_dir()):
        return False
    command = DATASETS[key]["prepare"].format(out=shlex.quote(str(folder)), raw=shlex.quote(str(raw)))
    print(f"preparing {DATASETS[key]['name']}: {command}", flush=True)
    argv = [sys.executable, "-m", "genrec.cli", *shlex.split(command)[1:], "--overwrite"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(argv, check=True, cwd=ctx.repo)
    return True


# --------------------------------------------------------------------------------------------------
# Status, rendering, plot
# --------------------------------------------------------------------------------------------------


@dataclass
class Status:
    """What the report knows about one row right now."""

    row: Row
    stored: dict[str, Any] | None
    fingerprint: str | None
    reason: str = ""  # why it cannot run here (inputs missing)

    @property
    def stale(self) -> bool:
        return bool(self.stored and self.fingerprint and self.stored.get("fingerprint") != self.fingerprint)

    @property
    def missing_seeds(self) -> list[int]:
        done = {r["seed"] for r in self.stored["runs"]} if self.stored else set()
        return [s for s in self.row.seeds if s not in done]

    def label(self) -> str:
        if self.row.kind == "published":
            return "published"
        if self.stored is None:
            return "not run yet" + (f" ({self.reason})" if self.reason else "")
        if self.stale:
            return "stale (inputs changed)"
        if self.missing_seeds:
            return f"partial: seeds {self.stored.get('seeds_done')} of {list(self.row.seeds)}"
        return "up to date" if self.fingerprint else "stored (inputs not available here to check)"


def row_status(row: Row, ctx: Context) -> Status:
    """Stored JSON + current fingerprint (+ why it cannot run) of ``row``."""
    if row.kind == "published":
        return Status(row, None, None)
    fp = fingerprint(row, ctx)
    reason = "" if fp else (row.missing(row, ctx) if row.missing else "inputs missing")
    return Status(row, load_row_json(ctx, row.id), fp, reason)


def how_to_run(row: Row, ctx: Context) -> str:
    """The command(s) that make a missing row appear."""
    report = f"{REPORT_COMMAND} --only {row.id}"
    if row.kind == "read":
        return f"`{row.produce}`, then `{report}`"
    return f"`{report}`"


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _row_note(status: Status) -> str:
    row, stored = status.row, status.stored
    parts = [row.note] if row.note else []
    if stored and row.kind != "published":
        details = [r.get("details", {}) for r in stored["runs"]]
        if details and "epochs_run" in details[0]:
            epochs = ", ".join(str(d.get("epochs_run")) for d in details)
            best = ", ".join(f"{d.get('best_epoch')} at {_fmt_seconds(d.get('seconds_to_best_validation'))}"
                             for d in details)
            stops = {d.get("stopped_by") for d in details}
            parts.append(f"epochs {epochs} (best {best})" + (f", stopped by {'/'.join(sorted(map(str, stops)))}"
                                                            if stops - {None} else ""))
            for d in details:
                if str(d.get("stopped_by", "")).startswith("time_budget"):
                    patience = (d.get("recbole_config") or {}).get("stopping_step", 10)
                    since = d.get("epochs_run", 0) - 1 - d.get("best_epoch", 0)
                    parts.append(f"validation had not improved for {since} epochs (RecBole stops after "
                                 f"{patience + 1})" if since >= patience else
                                 f"**not converged**: best validation {since} epoch(s) before the budget ran out")
        if details and details[0].get("profile"):
            d = details[0]
            steps = (f"{d['stage2_steps']} Stage II steps (best {d.get('stage2_best_step')})" if d.get("stage2_steps")
                     else f"{d.get('stage2_max_steps')} Stage II steps")
            parts.append(f"{d.get('eval_beams')} beams, {steps}")
        if details and details[0].get("variant"):
            parts.append(f"{details[0].get('steps')} steps, {details[0].get('eval_beams')} beams")
        if row.kind == "read":
            parts.append(f"read from `{stored.get('source_path')}`")
        if status.stale:
            parts.append("**stale: inputs changed since; rerun**")
    return "; ".join(p for p in parts if p)


def render_markdown(rows: Sequence[Row], ctx: Context, plot_name: str | None = PLOT_NAME) -> str:
    """RESULTS.md: one quality table per dataset, the machine(s), the plot and the "not run yet" list."""
    statuses = [row_status(row, ctx) for row in rows]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{REPORT_COMMAND}` from `benchmarks/results/<row>.json` (see `benchmarks/README.md`); do not "
        "edit by hand. Every row that is not marked *published* was measured by the command stored in its JSON "
        "(with its versions, seed, machine, wall time and input fingerprint). Rows are sorted by Recall@10; "
        "\"± x\" is the sample standard deviation over seeds. Wall times are what the row's run took on the "
        "machine named below, which may have been shared with other jobs (see `machine` in the row's JSON): "
        "they are not speed benchmarks.",
        "",
    ]
    machines = {}
    for status in statuses:
        if status.stored and status.row.kind == "measured":
            machines.setdefault(machine_line(status.stored["machine"]), []).append(status.row.id)
    for line, ids in machines.items():
        lines.append(f"**Machine** ({len(ids)} measured rows): {line}.")
    if machines:
        lines.append("")
    datasets = list(dict.fromkeys(row.dataset for row in rows))
    for data in datasets:
        info = DATASETS.get(data, {"name": data, "about": ""})
        table, sources = [], {}
        for status in statuses:
            row, stored = status.row, status.stored
            if row.dataset != data:
                continue
            if row.kind == "published":
                metrics, std, seeds, wall = dict(row.published or {}), {}, "–", "–"
                name = f"{row.title} — *published*"
                label = sources.setdefault(row.source, f"[{len(sources) + 1}]")
                note = "; ".join(p for p in (f"*published* {label}", row.note) if p)
            elif stored:
                metrics, std = stored["metrics"], stored.get("metrics_std", {})
                done = stored.get("seeds_done", [])
                seeds = ", ".join(str(s) for s in done if s is not None) or "–"
                if row.seeds and len(done) < len(row.seeds):
                    seeds += f" ({len(done)} of {len(row.seeds)})"
                wall = _fmt_seconds(stored.get("wall_time_s"))
                name, note = row.title, _row_note(status)
            else:
                continue
            table.append((metrics.get("recall@10", -1.0), row.id, [
                f"{name} (`{row.id}`)", *(_fmt(metrics.get(k), std.get(k)) for k in QUALITY_METRICS), seeds, wall, note,
            ]))
        lines += [f"## {info['name']}", "", info["about"], ""]
        if table:
            lines.append("| Row | " + " | ".join(METRIC_LABELS[k] for k in QUALITY_METRICS) + " | Seeds | Wall time | Notes |")
            lines.append("|---|" + "---:|" * len(QUALITY_METRICS) + "---|---:|---|")
            for _, _, cells in sorted(table, key=lambda t: (-t[0], t[1])):
                lines.append("| " + " | ".join(cells) + " |")
            for text, label in sources.items():
                lines += ["", f"{label} {text}"]
        else:
            lines.append("No row measured yet.")
        lines.append("")
    if plot_name:
        lines += ["## Recall@10", "", f"![Recall@10 per dataset]({plot_name})", ""]
    lines += ["## Not run yet", ""]
    pending = []
    for status in statuses:
        row = status.row
        if row.kind == "published":
            continue
        if status.stored is None:
            why = f" — {status.reason}" if status.reason else ""
            cost = f" ({row.cost})" if row.cost else ""
            pending.append(f"- `{row.id}` ({DATASETS.get(row.dataset, {}).get('name', row.dataset)}): {row.title}{why}. "
                           f"Run: {how_to_run(row, ctx)}{cost}")
        elif status.missing_seeds:
            pending.append(f"- `{row.id}` seeds {', '.join(map(str, status.missing_seeds))}: {row.title}. Run: "
                           f"`{REPORT_COMMAND} --only {row.id}`{f' ({row.cost})' if row.cost else ''}; each seed: "
                           f"`{render_command(row, ctx, status.missing_seeds[0])}`")
    lines += pending or ["Nothing: every declared row has a result."]
    lines.append("")
    return "\n".join(lines)


def render_plot(rows: Sequence[Row], ctx: Context, path: Path) -> bool:
    """Bar chart of Recall@10 per dataset (published rows hatched); ``False`` (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the plot", file=sys.stderr)
        return False
    groups: dict[str, list[tuple[str, float, float, bool]]] = {}
    for row in rows:
        if row.kind == "published":
            value, std, published = (row.published or {}).get("recall@10"), 0.0, True
            label = f"{row.title} (published)"
        else:
            stored = load_row_json(ctx, row.id)
            if not stored or "recall@10" not in stored.get("metrics", {}):
                continue
            value, std, published = stored["metrics"]["recall@10"], stored.get("metrics_std", {}).get("recall@10", 0.0), False
            label = row.title.replace("`", "")
        if value is not None:
            groups.setdefault(DATASETS.get(row.dataset, {}).get("name", row.dataset), []).append((label, value, std, published))
    if not groups:
        return False
    heights = [max(len(v), 1) for v in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 0.32 * sum(heights) + 1.2 * len(groups)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, bars) in zip(axes[:, 0], groups.items(), strict=True):
        bars = sorted(bars, key=lambda b: b[1])
        y = range(len(bars))
        ax.barh(list(y), [b[1] for b in bars], xerr=[b[2] for b in bars],
                color=["#bbbbbb" if b[3] else "#3b75af" for b in bars], edgecolor="black", linewidth=0.4)
        for i, b in enumerate(bars):
            ax.text(b[1], i, f" {b[1]:.4f}", va="center", fontsize=7)
        ax.set_yticks(list(y), [b[0] for b in bars], fontsize=7)
        ax.set_title(f"{name}: test Recall@10 (grey = published)", fontsize=9)
        ax.set_xlim(0, max(b[1] for b in bars) * 1.18)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


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
        plot_name = None
        if plot and render_plot(rows, ctx, markdown_path.parent / PLOT_NAME):
            plot_name = PLOT_NAME
        markdown_path.write_text(render_markdown(rows, ctx, plot_name))
        print(f"wrote {ctx.rel(markdown_path)}" + (f" and {plot_name}" if plot_name else ""), flush=True)
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
        sources=sources, threads=args.threads, max_seeds=args.max_seeds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="ROW_ID", help="compute only these rows (render all)")
    parser.add_argument("--force", nargs="+", default=[], metavar="ROW_ID",
                        help="recompute these rows (alone: only these; with --only: those rows as well)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="ROW_ID",
                        help="do not compute these rows now (e.g. 'beauty-recbole-*', hours on a CPU)")
    parser.add_argument("--list", action="store_true", help="list rows, their status and commands; run nothing")
    parser.add_argument("--render-only", action="store_true", help="only rewrite RESULTS.md and the plot")
    parser.add_argument("--ml100k-data", default="runs/bench-data/ml-100k",
                        help="prepared ML-100K folder (prepared here with `genrec prepare ml-100k` when absent)")
    parser.add_argument("--beauty-data", default="runs/bench-data/beauty",
                        help="prepared Beauty folder (prepared from --beauty-source when absent)")
    parser.add_argument("--beauty-source", default="../shared/data/amazon-beauty-2014",
                        help="S3-Rec layout Beauty files (sequences.txt + items.jsonl)")
    parser.add_argument("--source", action="append", metavar="ROW_ID=PATH",
                        help="file a genrec-* row reads (run.json / stage2 variant JSON); remembered in its JSON")
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


if __name__ == "__main__":
    sys.exit(main())
