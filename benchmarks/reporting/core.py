"""The report's data model: paths, datasets, the ``Context`` of one invocation and the ``Row`` declaration.

Every other module of the report builds on these: quality/perf rows declare ``Row`` objects, ``store`` turns a
row into a fingerprint and a stored JSON, ``render`` into Markdown. Nothing here imports genrec or torch.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
PLOT_NAME = "RESULTS_recall10.png"
ABLATION_PLOT_NAME = "RESULTS_ablations_recall10.png"

#: The rows of the main Recall@10 plot (``PLOT_NAME``), per dataset, top to bottom, with their short bar labels:
#: genrec's current default (with and without the transition prior), the strongest learned baseline, the two
#: floors and, where the UNGER paper published the dataset, its figure. Every other row stays in the tables;
#: the Stage II variants and ablations have their own plot (``ABLATION_PLOT_NAME``).
HEADLINE_ROWS: dict[str, tuple[tuple[str, str], ...]] = {
    "ml-100k": (
        ("ml100k-genrec-default", "genrec default + prior"),
        ("ml100k-genrec-default-model-alone", "genrec default, model alone"),
        ("ml100k-recbole-sasrec", "SASRec (RecBole)"),
        ("ml100k-markov", "1st-order Markov"),
        ("ml100k-pop", "Most popular"),
    ),
    "beauty": (
        ("beauty-genrec-default-2026-12-02", "genrec long + prior"),
        ("beauty-genrec-default-2026-12-02-model-alone", "genrec long, model alone"),
        ("beauty-recbole-sasrec-converged", "SASRec (RecBole), converged"),
        ("beauty-markov", "1st-order Markov"),
        ("beauty-pop", "Most popular"),
        ("beauty-published-unger-ours", "UNGER paper (published)"),
    ),
}
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
    "synthetic": {
        "name": "synthetic",
        "about": "Seeded synthetic embeddings and codes (catalogue sizes that no prepared dataset has).",
        "prepare": "",
    },
}

def row_prefix(data: str) -> str:
    """The dataset part of a row id: ``ml-100k`` -> ``ml100k`` (ids predate the hyphenated key), others as given."""
    return "ml100k" if data == "ml-100k" else data


# RecBole's environment lives here (not in quality.py) because every command template may name its
# interpreter ({python}).
RECBOLE_VENV = "runs/recbole-venv"


@dataclass
class Context:
    """Where things are for one report invocation: dataset folders, row source overrides, environments."""

    repo: Path = REPO
    results_dir: Path = RESULTS_DIR
    data: dict[str, Path] = field(default_factory=dict)
    raw: dict[str, Path] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    forget_sources: bool = False  # ignore the source paths rows remember (the run moved, or a new default)
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



    @property
    def section(self) -> str:
        """Where RESULTS.md shows the row: ``quality`` (default), ``speed`` or ``memory`` (``options``)."""
        return self.options.get("section", "quality")


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



def recbole_python(ctx: Context) -> Path:
    """The interpreter of RecBole's environment."""
    return ctx.repo / RECBOLE_VENV / "bin" / "python"


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

