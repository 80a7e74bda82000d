"""Quality rows (Recall/NDCG on a leave-one-out split): pop/markov, RecBole models, genrec runs, published.

Each factory returns a ``Row`` whose ``compute`` measures (or reads) its metrics; ``registry.default_rows``
lists them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .core import (
    QUALITY_METRICS,
    RECBOLE_VENV,
    REPO,
    Context,
    Row,
    _dataset_inputs,
    _missing_dataset,
    _with_scripts,
    recbole_python,
    row_prefix,
)
from .store import _version, available_seeds, render_command, source_path

# RecBole's environment. RecBole 1.2.1 asks for numpy<2 (it uses the removed np.float/np.int aliases, which the
# runner re-adds) and pandas<2.2. The usual "setuptools<70" pin is NOT applied: it was for torch<2.2's
# tensorboard shim (`setuptools.distutils`), and torch 2.13 itself requires setuptools>=77, so pip rejects it.
RECBOLE_REQUIREMENTS = ("recbole==1.2.1", "numpy<2", "pandas<2.2", "torch==2.13.0")
# installed beside them, outside the rows' fingerprints (they store a resumable run's state, they do not change a
# figure): recbole_runner.py --state-dir writes safetensors, never RecBole's pickled checkpoints
RECBOLE_TOOLS = ("safetensors",)
RECBOLE_EXPORT_FORMAT = "genrec-recbole-export/1: user_id:token, item_id_list:token_seq (history), item_id:token"

UNGER_SOURCE = (
    "Published: UNGER (\"Generative Recommendation with A Unified Code via Semantic and Collaborative Integration\"), "
    "overall-performance table, Beauty column (reading copy `../shared/papers/unger.txt`, whose text calls it Table 3). "
    "Row names as printed there. Rows without \\* are quoted by UNGER from S3-Rec (Zhou et al., 2020) and EAGER "
    "(Wang et al., 2024c); \\* = re-implemented by the UNGER authors. Their split is the same leave-one-out protocol "
    "(history <= 20), but their runs, item text encoder (Llama2-7b) and machine are not ours."
)


# ---- pop / markov --------------------------------------------------------------------------------


def _load_bench_module(repo: Path, script: str) -> Any:
    """``repo/benchmarks/<script>`` as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = repo / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(f"genrec_bench_{path.stem}", path)
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
        _MARKOV_CACHE[key] = _load_bench_module(ctx.repo, "markov_baseline.py").evaluate_baselines(folder, "test")
    result = _MARKOV_CACHE[key]
    return {
        "metrics": result[row.options["model"]],
        "wall_time_s": result["wall_time_s"],  # fitting + ranking both baselines (data loading excluded)
        "details": {"num_users": result["num_users"], "split": "test",
                    "wall_time_note": "fit + rank of pop and markov together, data loading excluded"},
    }


def markov_row(data: str, model: str) -> Row:
    """A pop or markov row on dataset ``data``."""
    short = row_prefix(data)
    title = {"pop": "Most popular (genrec pop)", "markov": "First-order Markov (genrec markov)"}[model]
    return Row(
        id=f"{short}-{model}", title=title, dataset=data, kind="measured",
        command="python benchmarks/markov_baseline.py {data} --split test",
        compute=compute_markov,
        inputs=lambda row, ctx: _with_scripts(
            ctx, _dataset_inputs(ctx, row.data_key), ["benchmarks/markov_baseline.py", "trainers/evaluation/metrics.py"]),
        missing=_missing_dataset,
        packages=("genrec",),
        options={"data": data, "model": model},
        note="no training; full ranking, nothing masked",
    )


# ---- RecBole -------------------------------------------------------------------------------------

def ensure_recbole_env(ctx: Context) -> Path:
    """Create (or complete) ``runs/recbole-venv`` with ``RECBOLE_REQUIREMENTS``; returns its interpreter.

    A marker file records the requirements it was built with, so a changed pin reinstalls. The venv is made
    from the base interpreter (not from genrec's venv) so that nothing of genrec's environment leaks in.
    """
    venv = ctx.repo / RECBOLE_VENV
    python = recbole_python(ctx)
    marker = venv / "genrec-bench-requirements.json"
    wanted = {"requirements": [*RECBOLE_REQUIREMENTS, *RECBOLE_TOOLS]}
    if python.exists() and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return python
    if not python.exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        print(f"creating RecBole's environment {ctx.rel(venv)} ({base} -m venv)", flush=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(wanted['requirements'])} into {ctx.rel(venv)}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted["requirements"]], check=True)
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
    with log.open("a") as handle:  # appended: a resumed run keeps the log of its earlier sittings
        handle.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n")
        handle.flush()
        proc = subprocess.run(shlex.split(command), cwd=ctx.repo, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out.is_file():
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"recbole_runner exited with {proc.returncode}; last lines of {log}:\n{tail}")
    result = json.loads(out.read_text())
    details = {k: result[k] for k in (
        "model", "dataset", "num_test_users", "num_items", "num_train_rows", "epochs_run", "best_epoch",
        "stopped_by", "sittings", "seconds_to_best_validation", "fit_seconds", "threads", "parameters",
        "recbole_config", "validation", "validation_curve",
    ) if k in result}
    # a resumed run's last sitting is a fraction of its cost: its time is then the training of every sitting
    wall = result["fit_seconds"] if result.get("sittings", 1) > 1 else result["wall_time_s"]
    return {"metrics": result["test"], "wall_time_s": wall, "details": details,
            "versions": {**result["versions"], "genrec (export)": _version("genrec")}}


def recbole_row(
    data: str, model: str, *, seeds: tuple[int, ...] = (2024,), max_minutes: float | None = None, label: str = "",
    use_gpu: bool = False,
) -> Row:
    """A RecBole model trained with RecBole's own code on dataset ``data``'s exported split. ``label``: a second
    row of the same model (id suffix), e.g. ``converged`` (no time cap, and resumable: its state goes to the run's
    ``state/`` folder after every epoch, and the same report command started again continues it, so that hours
    of a CPU may span sittings); ``use_gpu``: RecBole trains on a GPU when there is one (RecBole falls back to
    the CPU)."""
    short = row_prefix(data)
    budget = f" --max-minutes {max_minutes:g}" if max_minutes else ""
    row_id = f"{short}-recbole-{model.lower()}" + (f"-{label}" if label else "")
    work = f"runs/recbole-work/{row_id}/seed{{seed}}"
    if label == "converged":
        budget += f" --state-dir {work}/state"
    if use_gpu:
        budget += """ --config '{{"use_gpu": true}}'"""  # doubled: the command is a format template
    titles = {"SASRec": "SASRec, CE loss (RecBole 1.2.1)", "GRU4Rec": "GRU4Rec (RecBole 1.2.1)",
              "BERT4Rec": "BERT4Rec (RecBole 1.2.1)", "Pop": "Pop (RecBole 1.2.1)"}
    note = "RecBole defaults; early stopping on valid MRR@10 (patience 10)"
    if model == "Pop":
        note = ("RecBole's Pop: masks items the user already had as training/validation targets, and counts an item "
                "at most once per training batch of 2048")
    if max_minutes:
        note += f"; time budget {max_minutes:g} min"
    elif label == "converged":
        note += "; no time budget: trained until its early stopping fired (resumable across sittings)"
    return Row(
        id=row_id, title=titles[model] + (f", {label}" if label else ""), dataset=data, kind="measured",
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
        cost=f"up to {max_minutes:g} min per seed on one thread" if max_minutes
        else "until early stopping: hours on a CPU (benchmarks/quality_gpu.sh sasrec on a GPU)" if label == "converged"
        else "about a minute",
        note=note,
    )


# ---- rows that read a genrec result --------------------------------------------------------------


def _source_inputs(row: Row, ctx: Context) -> dict[str, Path] | None:
    if "seed_sources" in row.options:
        found = {f"source@{seed}": source_path(row, ctx, seed) for seed in available_seeds(row, ctx)}
        return found or None
    path = source_path(row, ctx)
    return {"source": path} if path.is_file() else None


def _missing_source(row: Row, ctx: Context) -> str:
    if "seed_sources" in row.options:
        return " and ".join(f"{ctx.rel(source_path(row, ctx, s))}" for s in row.seeds) + " do not exist yet"
    return f"{ctx.rel(source_path(row, ctx))} does not exist yet"


def compute_genrec_run(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Read a ``genrec run`` folder's ``run.json`` (test metrics, total time, profile)."""
    per_seed = "seed_sources" in row.options
    path = source_path(row, ctx, seed if per_seed else None)
    run = json.loads(path.read_text())
    if per_seed and run.get("seed") != seed:
        raise ValueError(f"{path}: a run with seed {run.get('seed')}, but row {row.id} reads it as seed {seed}")
    profile = run.get("profile") or {}
    name = profile.get("name") if isinstance(profile, dict) else profile
    if row.options.get("profile") and name != row.options["profile"]:
        raise ValueError(f"{path}: profile {name!r}, but row {row.id} expects {row.options['profile']!r}")
    if run.get("stopped_after"):
        raise ValueError(f"{path}: a run stopped after {run['stopped_after']} (--until), it has no test metrics")
    _check_stage2_length(path, profile, name)
    if _is_current_profile_row(row):
        _check_current_profile(path, profile, name)
    stages = {name: stage or {} for name, stage in (run.get("stages") or {}).items()}
    stage1, stage2 = stages.get("stage1", {}), stages.get("stage2", {})
    resumed_from = stage2.get("resumed_from")
    # run.json's paths are relative to the run folder (older run.json: absolute, which the join keeps)
    stage2_result = path.parent / (stage2.get("path") or "") / "stage2_result.json"
    if resumed_from is None and stage2.get("path") and stage2_result.is_file():  # run.json older than the field
        resumed_from = json.loads(stage2_result.read_text()).get("resumed_from")
    prior = run.get("transition_prior") or {}
    if row.options.get("metrics") == "model":  # the model alone: a run without a prior has nothing else
        metrics = run.get("model_test_metrics") or run["test_metrics"]
        prior_weight = None
    else:
        metrics = run["test_metrics"]
        prior_weight = prior.get("weight")
    # a resumed run's total_seconds is its last invocation's; every stage records the time it took when it ran
    wall = run.get("total_seconds")
    stage_total = sum(float(stage.get("seconds") or 0.0) for stage in stages.values())
    summed = wall is not None and stage_total > float(wall) + 1.0
    return {
        "metrics": metrics, "wall_time_s": round(stage_total, 2) if summed else wall, "seed": run.get("seed"),
        "details": {"profile": name, "run_dataset": run.get("dataset"), "model_dir": run.get("model_dir"),
                    "transition_weight": prior_weight,
                    "transition_smoothing": prior.get("smoothing") if prior_weight is not None else None,
                    "wall_time_from_stages": summed, "last_invocation_seconds": wall if summed else None,
                    "num_users": metrics.get("num_users"), "invalid_rate": metrics.get("invalid_rate"),
                    "eval_beams": profile.get("eval_beams") if isinstance(profile, dict) else None,
                    "test_beams": profile.get("test_beams") if isinstance(profile, dict) else None,
                    "stage2_max_steps": profile.get("stage2_max_steps") if isinstance(profile, dict) else None,
                    "stage2_steps": stage2.get("steps"),
                    "stage2_best_step": stage2.get("best_step"),
                    "stage_seconds": {name: stage.get("seconds") for name, stage in stages.items()},
                    "stage1_steps": stage1.get("steps"),
                    "stage1_best_step": stage1.get("best_step"),
                    "stage_loop_seconds": {name: stage["loop_seconds"] for name, stage in stages.items()
                                           if stage.get("loop_seconds") is not None},
                    "stage2_best_loop_seconds": stage2.get("best_loop_seconds"),
                    "stage2_resumed_from": resumed_from,
                    "wall_time_note": "the run's total_seconds (all stages, as recorded by genrec run; a resumed "
                                      "run's covers its last invocation only)"},
        "versions_note": "versions of the environment that read run.json (genrec run does not record its own)",
    }


def _check_stage2_length(path: Path, profile: Any, name: str | None) -> None:
    """A profile row shows runs of that profile's Stage II length only: a run cut with ``--stage2-steps`` (its
    profile then records ``stage2_epochs`` None and the given steps) is refused instead of averaged in."""
    from genrec.trainers.jobs.profiles import PROFILES

    shipped = PROFILES.get(name or "")
    if shipped is None or not isinstance(profile, dict) or "stage2_max_steps" not in profile:
        return
    length = (profile.get("stage2_epochs"), profile.get("stage2_max_steps"))
    if length != (shipped.stage2_epochs, shipped.stage2_max_steps):
        raise ValueError(
            f"{path}: Stage II length (epochs, steps) {length}, but the {name!r} profile's is "
            f"{(shipped.stage2_epochs, shipped.stage2_max_steps)}: a run made with --stage2-steps is not a "
            f"{name!r}-profile run")


def _is_current_profile_row(row: Row) -> bool:
    """A row of the profile as genrec ships it today (no version label in its id, see :func:`genrec_run_row`)."""
    return row.id in (genrec_run_row_id(row.dataset, row.options.get("profile"), model_alone=alone)
                      for alone in (False, True))


def _check_current_profile(path: Path, profile: Any, name: str | None) -> None:
    """A row of today's profile shows runs of today's profile only: a run made by an earlier version of it (the
    default of 2026-12-06 had Stage II dropout 0.1; a run recorded before a field existed used that field's
    default, e.g. the plain prior before ``transition_smoothing``) belongs in a row labelled with that version."""
    from dataclasses import MISSING, asdict, fields

    from genrec.trainers.jobs.profiles import PROFILES, PipelineProfile

    shipped = PROFILES.get(name or "")
    if shipped is None or not isinstance(profile, dict):
        return
    today = asdict(shipped)
    before = {f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
              for f in fields(PipelineProfile) if f.default is not MISSING or f.default_factory is not MISSING}
    recorded = {key: profile.get(key, before.get(key, today[key])) for key in today}
    differ = sorted(key for key, value in recorded.items() if today[key] != value)
    if differ:
        raise ValueError(
            f"{path}: made by another version of the {name!r} profile ({', '.join(differ)} differ from today's: "
            + "; ".join(f"{key} {recorded[key]!r} vs {today[key]!r}" for key in differ)
            + "): give the run a labelled row (genrec_run_row(label=...)) or rerun it")


PAIRED_METRICS = ("recall@10", "ndcg@10")


def stored_ranks_path(ctx: Context, row_id: str) -> Path:
    """Where the report keeps a row's per-user test ranks (``results/ranks/<row>.json``), so that a paired
    comparison with it survives the run folder that wrote them."""
    return ctx.results_dir / "ranks" / f"{row_id}.json"


def _reference_row_id(row: Row) -> str:
    variant, reference = row.options["variant"], row.options["reference"]
    return row.id[: -len(variant)] + reference


def _ranks_files(row: Row, ctx: Context) -> tuple[Path, Path] | None:
    """An ablation arm's and its reference arm's per-user test ranks, when both exist: each from its run folder
    (``W/runs/NAME/test_ranks.json``, written by Stage II) or, when that is gone, from the copy the report kept
    when it last computed the row (:func:`stored_ranks_path`)."""
    reference = row.options.get("reference")
    if not reference or reference == row.options.get("variant"):
        return None
    runs = source_path(row, ctx).parent / "runs"
    found = []
    for run_name, row_id in ((row.options["variant"], row.id), (reference, _reference_row_id(row))):
        candidates = (runs / run_name / "test_ranks.json", stored_ranks_path(ctx, row_id))
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def _ablation_inputs(row: Row, ctx: Context) -> dict[str, Path] | None:
    inputs = _source_inputs(row, ctx)
    files = _ranks_files(row, ctx)
    if inputs is None or files is None:
        return inputs
    return {**inputs, "ranks": files[0], "reference_ranks": files[1]}


def _keep_ranks(row: Row, ctx: Context) -> None:
    """Copy the row's per-user ranks from its run folder into ``results/ranks/`` (the run folder may not last)."""
    if "variant" not in row.options:
        return
    ranks = source_path(row, ctx).parent / "runs" / row.options["variant"] / "test_ranks.json"
    if ranks.is_file():
        kept = stored_ranks_path(ctx, row.id)
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(ranks.read_bytes())


def compute_stage2_variant(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Read a ``benchmarks/stage2_variants.py`` JSON (keys ``test``, ``wall_time_s``, ``variant``); an ablation
    arm with per-user ranks beside its reference's also gets the paired difference (``paired_compare.py``)."""
    per_seed = "seed_sources" in row.options
    path = source_path(row, ctx, seed if per_seed else None)
    result = json.loads(path.read_text())
    if per_seed and result.get("seed", seed) != seed:  # JSON files before 2026-12-06 do not record their seed
        raise ValueError(f"{path}: a variant trained with seed {result['seed']}, but row {row.id} reads it as seed {seed}")
    details = {k: result.get(k) for k in ("variant", "steps", "best_step", "eval_beams", "threads", "hardware",
                                          "config", "train", "distillation", "semantic_ids")}
    if row.options.get("reference"):  # an ablation arm or its reference: keep the ranks it will be paired by
        _keep_ranks(row, ctx)
    files = _ranks_files(row, ctx)
    if files is not None:
        compare = _load_bench_module(REPO, "paired_compare.py").compare  # the script of this checkout
        paired = compare(files[0], files[1], list(PAIRED_METRICS))
        details["paired_vs_reference"] = {"reference": row.options["reference"],
                                          "comparisons": paired["comparisons"]}
    return {
        "metrics": result["test"], "wall_time_s": result.get("wall_time_s"),
        "seed": seed if per_seed else row.options.get("seed"), "details": details,
        "versions_note": "versions of the environment that read the JSON (stage2_variants.py records torch only)",
    }


def compute_stage1_retriever(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Read a ``benchmarks/stage1_retriever.py --json`` result (keys ``metrics``, ``num_users``, ``stage1``)."""
    path = source_path(row, ctx)
    result = json.loads(path.read_text())
    if result.get("split", "test") != "test":
        raise ValueError(f"{path}: {result.get('split')} metrics, but row {row.id} shows the test split")
    metrics = result["metrics"]
    return {
        "metrics": metrics, "wall_time_s": result.get("wall_time_s"), "seed": row.options.get("seed"),
        "details": {"stage1": result.get("stage1"), "data": result.get("data"), "num_users": result.get("num_users"),
                    "wall_time_note": "ranking the test users only (Stage I's training is the run's)"},
        "versions_note": "versions of the environment that read the JSON",
    }


def stage1_retriever_row(data: str, run: str, *, label: str = "", label_text: str = "") -> Row:
    """UNGER Stage I's fusion model (DIN over integrated item embeddings) as a retriever on its own: one dot
    product per item, full ranking. Read from the ``--json`` of ``benchmarks/stage1_retriever.py`` on the
    default profile's run folder ``run`` (seed 2024; ``label`` / ``label_text``: a variant's run, id suffix and
    words in the title)."""
    short = row_prefix(data)
    source = f"{run}/stage1_retriever.json"
    produce = f"python benchmarks/stage1_retriever.py --run {run} --json {source}"
    version = f", {label_text}" if label_text else ""
    return Row(
        id=f"{short}-genrec-stage1-retriever" + (f"-{label}" if label else ""),
        title=f"genrec UNGER Stage I alone (DIN retriever over the integrated item embeddings){version}",
        dataset=data, kind="read", command=produce, produce=produce, compute=compute_stage1_retriever,
        inputs=_source_inputs, missing=_missing_source, options={"source": source, "seed": 2024},
        note=("that run's" if label else "the default profile's") + " Stage I (seed 2024); full-softmax ranking over "
             "every item, no codes, "
             "no beam search; wall time: ranking the test users only",
    )


def genrec_run_row_id(data: str, profile: str | None, *, label: str = "", model_alone: bool = False) -> str:
    """The id of :func:`genrec_run_row`'s row (``label``: an earlier version of the profile)."""
    short = row_prefix(data)
    return f"{short}-genrec-{profile}" + (f"-{label}" if label else "") + ("-model-alone" if model_alone else "")


def genrec_run_row(
    data: str, profile: str, *, produce: str, source: str | None = None, seed_sources: dict[int, str] | None = None,
    model_alone: bool = False, label: str = "", label_text: str = "",
) -> Row:
    """UNGER main job (``genrec run``) with ``profile`` on ``data``, read from ``source``/run.json — or, with
    ``seed_sources`` (seed -> run.json), one run per seed, shown as mean ± std over the seeds that finished
    (``produce`` may then hold ``{seed}``). ``model_alone``: the run's ``model_test_metrics`` (the generative
    model without the transition prior that the default profile mixes in). ``label`` / ``label_text``: a row of
    an earlier version of the profile kept beside the current one (id suffix, words in the title)."""
    options: dict[str, Any] = {"profile": profile}
    if model_alone:
        options["metrics"] = "model"
    if seed_sources:
        options["seed_sources"] = dict(seed_sources)
    else:
        options["source"] = source
    what = ", the model alone (no transition prior)" if model_alone else ""
    version = f" {label_text}" if label_text else ""
    # the `tiger` profile trains TIGER (no Stage I, no distillation, no prior): its rows say so
    family = "TIGER (RQ-VAE codes of the text embeddings, no prior)" if profile.startswith("tiger") else "UNGER"
    return Row(
        id=genrec_run_row_id(data, profile, label=label, model_alone=model_alone),
        title=f"genrec {family}, `{profile}` profile{version} (genrec run){what}",
        dataset=data, kind="read", command=produce, produce=produce, compute=compute_genrec_run,
        inputs=_source_inputs, missing=_missing_source, options=options,
        seeds=tuple(seed_sources) if seed_sources else (),
        note="constrained beam search over the full corpus",
    )


def stage2_variant_row(
    data: str, name: str, *, produce: str, source: str | None = None, seed_sources: dict[int, str] | None = None,
    what: str | None = None,
) -> Row:
    """One ``benchmarks/stage2_variants.py`` variant on ``data``, read from its JSON (``what``: in words) — or,
    with ``seed_sources`` (seed -> JSON), one variant run per seed shown as mean ± std (``produce`` may then
    hold ``{seed}``); a single ``source`` is seed 2024's."""
    short = row_prefix(data)
    title = f"genrec UNGER Stage II variant `{name}`" + (f": {what}" if what else "")
    options: dict[str, Any] = {"variant": name}
    if seed_sources:
        options["seed_sources"] = dict(seed_sources)
    else:
        options.update(source=source, seed=2024)
    return Row(
        id=f"{short}-genrec-stage2-{name}", title=title, dataset=data,
        kind="read", command=produce, produce=produce, compute=compute_stage2_variant,
        inputs=_source_inputs, missing=_missing_source, options=options,
        seeds=tuple(seed_sources) if seed_sources else (),
    )


def stage2_ablation_rows() -> list[Row]:
    """Stage II ablations measured with ``benchmarks/stage2_variants.py`` on the default's codes and seed (2024).

    Each row reads the variant's JSON; its command is the one that made it (the run folder paths are the
    documented ``runs/<data>`` ones; ``--source ROW=PATH`` points a row at the real file).
    """
    data_dirs = {"ml-100k": "runs/ml-100k-s2024", "beauty": "runs/beauty"}
    steps = {"ml-100k": 6080, "beauty": 8224}
    eval_users = {"ml-100k": "", "beauty": " --max-eval-users 5000"}
    variants = {  # data -> name -> (what, config overrides beyond per_item + constrained training)
        "ml-100k": {
            "default-nodistill": ("code-only history, no distillation (λ = 0)", {"distillation_weight": 0.0}),
            "hie-id": ("learned item-ID history embedding", {"history_item_embedding": "id"}),
            "new-drop01": ("code-only history, dropout 0.1", {"dropout": 0.1, "attention_dropout": 0.1}),
            "hie-l01-enc4-drop01": ("integrated history, λ = 0.1, 4 encoder layers, dropout 0.1",
                                    {"history_item_embedding": "integrated", "distillation_weight": 0.1,
                                     "encoder_layers": 4, "dropout": 0.1}),
        },
        "beauty": {
            "default-nodistill": ("code-only history, no distillation (λ = 0)", {"distillation_weight": 0.0}),
            "hie-id": ("learned item-ID history embedding", {"history_item_embedding": "id"}),
            "hie-integrated-l01": ("integrated history (the default's Stage II), λ = 0.1",
                                   {"history_item_embedding": "integrated", "distillation_weight": 0.1}),
            "hie-l01-enc4-drop01": ("integrated history, λ = 0.1, 4 encoder layers, dropout 0.1",
                                    {"history_item_embedding": "integrated", "distillation_weight": 0.1,
                                     "encoder_layers": 4, "dropout": 0.1}),
        },
    }
    rows = []
    for data, named in variants.items():
        run = data_dirs[data]
        for name, (what, overrides) in named.items():
            config = json.dumps({"history_mode": "per_item", "constrained_training": True, **overrides})
            produce = (f"python benchmarks/stage2_variants.py --data {run}/data --integrated "
                       f"{run}/stage1/integrated_embeddings.safetensors --semantic-ids {run}/semantic_ids "
                       f"--work-dir runs/{data}-var --name {name} --max-steps {steps[data]}{eval_users[data]} --threads 1 "
                       f"--config '{config}' --train '{{\"lr_schedule\": \"cosine\"}}'")
            rows.append(stage2_variant_row(data, name, source=f"runs/{data}-var/{name}.json", produce=produce,
                                           what=what))
    return rows


ABLATION_ARMS = {  # benchmarks/code_ablations.sh's arms: name -> what changes against its reference
    "abl-default": "the default pipeline (reference of the arms on the first base)",
    "abl-codes-random": "random codes instead of residual k-means (same Stage I)",
    "abl-codes-rqvae": "RQ-VAE codes instead of residual k-means (same Stage I)",
    "abl-no-align": "Stage I without the cross-modality alignment loss",
    "abl-unconstrained": "plain (unconstrained) softmax training in Stage II",
    "abl-nodistill": "Stage II without distillation (λ = 0)",
    "abl-default-b2": "the default pipeline on the second base (reference of semantic-only, collaborative-only, "
                      "concat)",
    "abl-semantic-only": "semantic-only Stage I embedding (no collaborative half)",
    "abl-collaborative-only": "collaborative-only Stage I embedding (item ids alone)",
    "abl-concat": "concatenated semantic + collaborative embedding (no fusion, no alignment)",
    "abl-default-s2025": "the default pipeline, seed 2025 on a base of seed 2025 (reference of the seed-2025 arm)",
    "abl-collaborative-only-s2025": "collaborative-only Stage I embedding, seed 2025 (the seed-2024 arm again)",
}
# The arms ran on two BASE folders built by the same command in two sessions (the first one's folder did not
# survive its machine): Stage I is not bit-identical across them (Stage I retriever test Recall@20 0.1813 vs
# 0.1771, equal Recall@10), so each arm is paired with the default pipeline on its own base.
SECOND_BASE_ARMS = ("abl-semantic-only", "abl-collaborative-only", "abl-concat")


def _ablation_reference(name: str) -> str:
    if name.endswith("-s2025"):
        return "abl-default-s2025"
    if name == "abl-default-b2" or name in SECOND_BASE_ARMS:
        return "abl-default-b2"
    return "abl-default"


def code_ablation_rows(steps: int = 1500) -> list[Row]:
    """The ablations of ``benchmarks/code_ablations.sh`` on ML-100K (seed 2024, ``steps`` Stage II steps each):
    shown in their own table, since they are compared with their own reference arm at equal steps."""
    rows = []
    for name, what in ABLATION_ARMS.items():
        arm = "abl-default" if name == "abl-default-b2" else name.removesuffix("-s2025")
        seed = 2025 if name.endswith("-s2025") else 2024
        produce = (f"BASE=runs/ml-100k-s2024 W=runs/ml-100k-abl STEPS={steps} benchmarks/code_ablations.sh  "
                   f"# arm {arm}")
        if seed == 2025:
            produce = (f"genrec run --dataset ml-100k --seed 2025 --until quantize --out runs/ml-100k-base-s2025 && "
                       f"BASE=runs/ml-100k-base-s2025 W=runs/ml-100k-abl-s2025 SEED=2025 STEPS={steps} ARMS={arm} "
                       f"benchmarks/code_ablations.sh  # then rename its JSON and runs/ folder to {name}")
        elif _ablation_reference(name) == "abl-default-b2":
            produce = (f"genrec run --dataset ml-100k --seed 2024 --until quantize --out runs/ml-100k-base2 && "
                       f"BASE=runs/ml-100k-base2 W=runs/ml-100k-abl-b2 STEPS={steps} ARMS={arm} "
                       f"benchmarks/code_ablations.sh")
            if name == "abl-default-b2":
                produce += "  # then rename its JSON and runs/ folder to abl-default-b2"
        row = stage2_variant_row("ml-100k", name, source=f"runs/ml-100k-abl/{name}.json", produce=produce,
                                 what=f"{what}; {steps} Stage II steps")
        rows.append(replace(row, inputs=_ablation_inputs,
                            options={**row.options, "group": "ablations", "reference": _ablation_reference(name),
                                     "seed": seed}))
    return rows


def beauty_code_source_rows(steps: int = 3000) -> list[Row]:
    """Beauty: collaborative-only codes against the default's fused codes (the ML-100K ablation that stood out at
    one seed), ``steps`` Stage II steps each on one Stage I base, paired user by user."""
    arms = {"abl-default": "the default pipeline (reference)",
            "abl-collaborative-only": ABLATION_ARMS["abl-collaborative-only"]}
    rows = []
    for name, what in arms.items():
        produce = ("genrec run --dataset ../shared/data/amazon-beauty-2014 --seed 2024 --until quantize --out "
                   f"runs/beauty-s2024 && BASE=runs/beauty-s2024 W=runs/beauty-abl STEPS={steps} ARMS={name} "
                   "benchmarks/code_ablations.sh")
        row = stage2_variant_row("beauty", name, source=f"runs/beauty-abl/{name}.json", produce=produce,
                                 what=f"{what}; {steps} Stage II steps")
        rows.append(replace(row, inputs=_ablation_inputs,
                            options={**row.options, "group": "code source", "reference": "abl-default"}))
    return rows


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


TIGER_SOURCE = (
    "Published: TIGER (Rajput et al., \"Recommender Systems with Generative Retrieval\", NeurIPS 2023), Table 2, "
    "Beauty (it reports @5 and @10 only). The UNGER paper's own re-implementation of TIGER is its row above."
)


def tiger_published_row() -> Row:
    """TIGER's own Beauty figures (its paper reports Recall and NDCG at 5 and 10; the @10 ones are quoted)."""
    return Row(id="beauty-published-tiger-paper", title="TIGER, its own paper", dataset="beauty", kind="published",
               published={"recall@10": 0.0648, "ndcg@10": 0.0384}, source=TIGER_SOURCE,
               note="Recall@5 0.0454, NDCG@5 0.0321 in the same table")


def published_row(name: str, values: tuple[float, float, float, float]) -> Row:
    """A published Beauty number from the UNGER paper's table."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")
    note = "re-implemented by the UNGER authors (\\*)" if name in REIMPLEMENTED_BY_UNGER else ""
    if name == "UNGER (Ours)":
        note = "mean of 5 runs (std 0.00093 / 0.00084 / 0.00037 / 0.00041); Llama2-7b encoder, 100 beams"
    return Row(id=f"beauty-published-{slug}", title=name, dataset="beauty", kind="published",
               published=dict(zip(QUALITY_METRICS, values, strict=True)), source=UNGER_SOURCE, note=note)


