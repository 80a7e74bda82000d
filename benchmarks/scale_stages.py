"""The main job's stages on synthetic catalogues of 10^4, 10^5 and 10^6 items: time, throughput, peak RSS.

For each catalogue size (``benchmarks/synthetic_catalogue.py``: Zipf popularity, topic-following sequences,
~40-word item texts, ~10 interactions per item) every stage runs in its **own child process**, through
genrec's library functions, so that the peak RSS recorded for it (``os.wait4``'s ``ru_maxrss``) is that
stage's alone:

* ``build``: write the S3-Rec layout (``write_synthetic``).
* ``prepare``: ``prepare_dataset("s3rec", ...)``.
* ``embed``: ``embed_items`` with the packaged all-MiniLM-L6-v2 on a seeded sample of ``--embed-sample`` item
  texts (items/s; the full catalogue's time is extrapolated from it); the later stages read **random
  embeddings of the encoder's shape** (N x 384, float32, written by this stage), since embedding 10^6 texts
  takes hours on a 2-core CPU.
* ``stage1_full`` / ``stage1_sampled``: ``train_stage1`` for ``--steps`` optimiser steps with the default
  ``UngerFusionConfig`` and ``loss_type="full"`` / ``"sampled"`` (``num_negatives`` 1024); s/step is the
  median time between consecutive steps (the first step and the last, which also validates on
  ``--eval-examples`` rows and exports every item's integrated embedding, are left out); ``seconds`` is the
  whole call (data loading, steps, validation, export).
* ``quantize``: ``quantize_embeddings`` (residual k-means, 3 levels x 256) of Stage I's integrated
  embeddings (the sampled run's, else the full run's).
* ``stage2_full`` / ``stage2_sampled``: ``train_stage2`` for ``--steps`` steps with the default profile's
  ``stage2_config`` (per_item history + integrated history embeddings, constrained training, 4 encoder
  layers, distillation weight 0.1) and ``distillation_negatives`` None (InfoNCE over all N integrated
  embeddings) / ``--negatives``; validation at the last step on ``--stage2-eval-users`` users, no test.
* ``evaluate``: the Stage II model's ``recommend`` (constrained beam search, batch 256) on the first
  ``--eval-users`` test users at 20 and 100 beams (users/s).
* ``export``: ``save_pretrained`` of model + tokenizer, then ``from_pretrained`` of both (seconds, folder MiB).

Results (seconds, s/step, items/s, users/s, peak RSS MiB, or the error / the memory cap that stopped a stage)
go to one JSON (``--json``, default ``benchmarks/results/scale_stages.json``, rewritten after every stage, so a
stopped run keeps what it measured); ``--render`` writes the "Scale" section (table, growth ratios, plot
``RESULTS_scale.png`` when matplotlib is installed) into ``benchmarks/RESULTS.md`` and
``benchmarks/results/scale_stages.md``. A child whose resident memory passes ``--max-rss-gib`` is killed and
recorded as such (this machine is shared: 24 GiB in all); one past ``--stage-timeout`` likewise.

    python benchmarks/scale_stages.py --sizes 10000 100000 --render          # ~15 min on 2 cores
    python benchmarks/scale_stages.py --sizes 1000000 --stages build prepare stage1_sampled --render
    python benchmarks/scale_stages.py --render-only                          # the Markdown from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = ("build", "prepare", "embed", "stage1_full", "stage1_sampled", "quantize", "stage2_full",
          "stage2_sampled", "evaluate", "export")
DEFAULT_JSON = HERE / "results" / "scale_stages.json"
RESULTS_MD = HERE / "RESULTS.md"
PLOT_NAME = "RESULTS_scale.png"
BEGIN, END = "<!-- scale_stages.py: begin -->", "<!-- scale_stages.py: end -->"
EMBED_DIM = 384  # all-MiniLM-L6-v2
# the default profile's Stage II architecture (trainers/jobs/profiles.py)
STAGE2_CONFIG = {
    "history_mode": "per_item", "constrained_training": True, "history_item_embedding": "integrated",
    "encoder_layers": 4, "dropout": 0.1, "distillation_weight": 0.1,
}


# ------------------------------------------------------------------------------------------------ children


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepClock:
    """A training callback: the wall time of every optimiser step's end."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, state: Any) -> None:
        self.times.append(time.perf_counter())

    def seconds_per_step(self) -> float | None:
        # intervals between steps 1..n-1: the first step (warm-up of the loop) and the last (validation,
        # checkpoint, export) are not in any of them
        gaps = [b - a for a, b in zip(self.times[:-1], self.times[1:], strict=False)][:-1]
        return statistics.median(gaps) if gaps else None


def _paths(work: Path) -> dict[str, Path]:
    return {
        "raw": work / "raw", "data": work / "data", "emb": work / "embeddings" / "random-384.safetensors",
        "stage1_full": work / "stage1_full", "stage1_sampled": work / "stage1_sampled", "sid": work / "semantic_ids",
        "stage2_full": work / "stage2_full", "stage2_sampled": work / "stage2_sampled", "export": work / "export",
    }


def _stage2_dir(p: dict[str, Path]) -> Path:
    for name in ("stage2_sampled", "stage2_full"):
        if (p[name] / "best" / "config.json").is_file():
            return p[name] / "best"
    raise FileNotFoundError("no finished Stage II run (stage2_sampled or stage2_full) to evaluate / export")


def _test_histories(data: Path, users: int) -> list[list[str]]:
    from genrec.data_scripts.dataset_loading import load_config

    test = load_config(str(data), "sequences")["test"]
    rows = test.select(range(min(users, len(test))))["item_ids"]
    return [list(r[:-1]) for r in rows if len(r) >= 2]


def run_stage(stage: str, n_items: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One stage in this (child) process; returns its measurements."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    p = _paths(work)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    if stage == "build":
        sys.path.insert(0, str(HERE))
        from synthetic_catalogue import write_synthetic

        write_synthetic(p["raw"], n_items, seed=args.seed)
        out["raw_mib"] = round(sum(f.stat().st_size for f in p["raw"].iterdir()) / 2**20, 1)
    elif stage == "prepare":
        from genrec.data_scripts.prepare import prepare_dataset

        report = prepare_dataset("s3rec", p["data"], path=p["raw"], overwrite=True)
        info = json.loads((p["data"] / "genrec_dataset.json").read_text()) if (
            p["data"] / "genrec_dataset.json").is_file() else {}
        out["report"] = {k: v for k, v in (info or {}).items() if isinstance(v, int | float | str)} or str(report)[:400]
    elif stage == "embed":
        from genrec.data_scripts.dataset_loading import load_config
        from genrec.data_scripts.embedding_cache import embed_items
        from genrec.data_scripts.item_embeddings import ItemEmbeddings

        items = load_config(str(p["data"]), "items")["train"]
        ids = [str(i) for i in items["item_id"]]
        sample = min(args.embed_sample, len(items))
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(items), size=sample, replace=False))
        subset = items.select(chosen.tolist())
        t0 = time.perf_counter()
        embed_items(items.select(range(min(8, len(items)))), show_progress=False)  # warm-up: the encoder's load
        out["warmup_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        embed_items(subset, show_progress=False)
        seconds = time.perf_counter() - t0
        out.update(sample_items=sample, sample_seconds=round(seconds, 2), items_per_s=round(sample / seconds, 1),
                   extrapolated_full_seconds=round(len(items) * seconds / sample, 1), items=len(items))
        vectors = torch.from_numpy(np.random.default_rng(args.seed).standard_normal(
            (len(ids), EMBED_DIM), dtype=np.float32))
        ItemEmbeddings(ids, vectors, {"encoder": "random-normal", "dim": str(EMBED_DIM)}).save(p["emb"])
        out["later_stages_read"] = f"random normal embeddings {len(ids)} x {EMBED_DIM}"
    elif stage in ("stage1_full", "stage1_sampled"):
        from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
        from genrec.trainers.stages.stage1 import train_stage1

        loss = stage.split("_")[1]
        extra = {"num_negatives": args.negatives} if loss == "sampled" else {}
        clock = StepClock()
        shutil.rmtree(p[stage], ignore_errors=True)
        result = train_stage1(
            p["data"], p["emb"], p[stage], config=UngerFusionConfig(loss_type=loss, **extra), max_steps=args.steps,
            warmup_steps=0, patience=None, eval_every=args.steps, max_eval_examples=args.eval_examples,
            log_with=None, show_progress=False, seed=args.seed, callbacks=[clock],
        )
        out.update(loss_type=loss, steps=result.global_step, s_per_step=clock.seconds_per_step(),
                   batch_size=256, **({"num_negatives": args.negatives} if extra else {}))
    elif stage == "quantize":
        from genrec.trainers.stages.quantize import quantize_embeddings

        source = next((p[s] for s in ("stage1_sampled", "stage1_full")
                       if (p[s] / "integrated_embeddings.safetensors").is_file()), None)
        if source is None:
            raise FileNotFoundError("no Stage I integrated embeddings to quantize")
        result = quantize_embeddings(source / "integrated_embeddings.safetensors", p["sid"], num_levels=3,
                                     codebook_size=256, seed=args.seed, overwrite=True, show_progress=False)
        out.update(from_stage=source.name, fit_seconds=result.fit_seconds, collision_rate=result.collision_rate,
                   codebook_sizes=list(result.codebook_sizes), max_collision_group=result.max_collision_group)
    elif stage in ("stage2_full", "stage2_sampled"):
        from genrec.modeling.configuration_unger import UngerConfig
        from genrec.trainers.stages.stage2 import train_stage2

        negatives = args.negatives if stage.endswith("sampled") else None
        integrated = next(p[s] / "integrated_embeddings.safetensors" for s in ("stage1_sampled", "stage1_full")
                          if (p[s] / "integrated_embeddings.safetensors").is_file())
        clock = StepClock()
        shutil.rmtree(p[stage], ignore_errors=True)
        result = train_stage2(
            p["data"], p["sid"] / "tokenizer", p[stage],
            config=UngerConfig(**STAGE2_CONFIG, distillation_negatives=negatives), integrated_embeddings=integrated,
            max_steps=args.steps, warmup_steps=0, eval_every=args.steps, max_eval_users=args.stage2_eval_users,
            evaluate_test=False, log_with=None, show_progress=False, seed=args.seed, callbacks=[clock],
        )
        out.update(distillation_negatives=negatives, steps=result.global_step, s_per_step=clock.seconds_per_step(),
                   batch_size=256)
    elif stage == "evaluate":
        from genrec.trainers.jobs.transition import load_best_model

        model, tokenizer = load_best_model(_stage2_dir(p))
        model.eval()
        histories = _test_histories(p["data"], args.eval_users)
        for beams in (20, 100):
            t0 = time.perf_counter()
            with torch.no_grad():
                model.recommend(histories, tokenizer, k=20, num_beams=beams, exclude_history=False)
            seconds = time.perf_counter() - t0
            out[f"users_per_s_{beams}"] = round(len(histories) / seconds, 2)
            out[f"seconds_{beams}"] = round(seconds, 2)
        out["users"] = len(histories)
    elif stage == "export":
        from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
        from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
        from genrec.trainers.jobs.transition import load_best_model

        model, tokenizer = load_best_model(_stage2_dir(p))
        shutil.rmtree(p["export"], ignore_errors=True)
        t0 = time.perf_counter()
        model.save_pretrained(p["export"])
        tokenizer.save_pretrained(str(p["export"]))
        out["save_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        reloaded = UngerForGenerativeRecommendation.from_pretrained(p["export"])
        SemanticIDTokenizer.from_pretrained(str(p["export"]))
        out["reload_seconds"] = round(time.perf_counter() - t0, 2)
        out["parameters"] = sum(t.numel() for t in reloaded.parameters())
        files = [f for f in p["export"].rglob("*") if f.is_file()]
        out["folder_mib"] = round(sum(f.stat().st_size for f in files) / 2**20, 2)
        out["largest_files_mib"] = {f.name: round(f.stat().st_size / 2**20, 2) for f in
                                    sorted(files, key=lambda f: -f.stat().st_size)[:4]}
    else:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["child_peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return out


# ------------------------------------------------------------------------------------------------ parent


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(stage: str, n_items: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``stage`` in a child process under the memory cap and time limit; its record."""
    result_file = work / "stage_results" / f"{stage}.json"
    log_file = work / "logs" / f"{stage}.log"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--child-items", str(n_items),
           "--child-work", str(work), "--child-result", str(result_file), *args.child_args]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    cap_mib = args.max_rss_gib * 1024
    killed = None
    max_seen = 0.0
    with log_file.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mib(proc.pid)
            max_seen = max(max_seen, rss)
            if rss > cap_mib:
                killed = f"killed: resident memory {rss / 1024:.1f} GiB passed the {args.max_rss_gib} GiB cap"
            elif time.perf_counter() - start > args.stage_timeout:
                killed = f"killed: still running after {args.stage_timeout} s (--stage-timeout)"
            if killed:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    wall = time.perf_counter() - start
    record: dict[str, Any] = {"wall_seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if killed:
        record.update(ok=False, error=killed, peak_rss_mib=round(max(max_seen, usage.ru_maxrss / 1024), 1))
    elif os.waitstatus_to_exitcode(status) != 0 or not result_file.is_file():
        tail = log_file.read_text(errors="replace").strip().splitlines()[-6:]
        record.update(ok=False, error=f"exit {os.waitstatus_to_exitcode(status)}: " + " | ".join(tail)[-800:])
    else:
        record.update(ok=True, **json.loads(result_file.read_text()))
    return record


def run_inline(stage: str, n_items: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``--in-process`` (tests): the stage in this process; its peak RSS is then this process's so far."""
    import torch

    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        record = {"ok": True, **run_stage(stage, n_items, work, args)}
    except Exception as error:  # noqa: BLE001 - recorded, as a child's failure is
        record = {"ok": False, "error": f"{type(error).__name__}: {error}"[-800:]}
    finally:
        torch.set_num_threads(threads)
    record.update(wall_seconds=round(time.perf_counter() - start, 2), peak_rss_mib=round(_peak_rss_mib(), 1),
                  in_process=True)
    return record


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"sizes": {}}


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def _merge(path: Path, results: dict[str, Any], n: int, entry: dict[str, Any]) -> dict[str, Any]:
    """Write this size's entry into the JSON as it is now on disk (another call may be measuring another size)."""
    current = _load(path)
    current.update({k: v for k, v in results.items() if k != "sizes"})
    current.setdefault("sizes", {})[str(n)] = entry
    _save(path, current)
    return current


# ------------------------------------------------------------------------------------------------ report


def _cell(rec: dict[str, Any] | None, key: str, fmt: str = "{:.3g}") -> str:
    if rec is None:
        return "not run"
    if not rec.get("ok"):
        return "**failed**"
    value = rec.get(key)
    return "–" if value is None else fmt.format(value)


ROWS: list[tuple[str, str, str, str]] = [
    # label, stage, key, format
    ("build: s", "build", "seconds", "{:.1f}"),
    ("prepare: s", "prepare", "seconds", "{:.1f}"),
    ("embed: items/s (sample)", "embed", "items_per_s", "{:.0f}"),
    ("embed: s for every item (extrapolated)", "embed", "extrapolated_full_seconds", "{:,.0f}"),
    ("Stage I full softmax: s/step", "stage1_full", "s_per_step", "{:.3f}"),
    ("Stage I full softmax: s (call)", "stage1_full", "seconds", "{:.1f}"),
    ("Stage I sampled (1024): s/step", "stage1_sampled", "s_per_step", "{:.3f}"),
    ("Stage I sampled (1024): s (call)", "stage1_sampled", "seconds", "{:.1f}"),
    ("quantize: s", "quantize", "seconds", "{:.1f}"),
    ("Stage II distillation full: s/step", "stage2_full", "s_per_step", "{:.3f}"),
    ("Stage II distillation full: s (call)", "stage2_full", "seconds", "{:.1f}"),
    ("Stage II distillation sampled (1024): s/step", "stage2_sampled", "s_per_step", "{:.3f}"),
    ("Stage II distillation sampled (1024): s (call)", "stage2_sampled", "seconds", "{:.1f}"),
    ("evaluate: users/s, 20 beams", "evaluate", "users_per_s_20", "{:.1f}"),
    ("evaluate: users/s, 100 beams", "evaluate", "users_per_s_100", "{:.1f}"),
    ("export: save s", "export", "save_seconds", "{:.2f}"),
    ("export: reload s", "export", "reload_seconds", "{:.2f}"),
    ("export: folder MiB", "export", "folder_mib", "{:.1f}"),
]


def _growth(values: dict[int, float]) -> str:
    sizes = sorted(v for v in values if values[v])
    parts = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        parts.append(f"x{values[b] / values[a]:.1f}")
    return ", ".join(parts) if parts else "–"


def render(results: dict[str, Any], plot: bool = True) -> str:
    sizes = sorted(int(s) for s in results["sizes"])
    recs = {n: results["sizes"][str(n)]["stages"] for n in sizes}
    head = "| | " + " | ".join(f"{n:,} items" for n in sizes) + " | growth per x10 items |"
    steps = "/".join(sorted({str(results["sizes"][str(n)].get("settings", results.get("settings", {})).get("steps", "?"))
                             for n in sizes}))
    prepared = {n: recs[n].get("prepare", {}).get("report", {}) for n in sizes}
    lines = [
        "## Scale", "",
        "`benchmarks/scale_stages.py`: the main job's stages on synthetic catalogues (`synthetic_catalogue.py`: Zipf "
        "popularity, topic-following sequences, ~40-word texts, ~10 interactions per item), each stage in its own "
        "child process through genrec's library functions, one torch thread "
        f"({results.get('machine', {}).get('cpus', '?')}-CPU machine, no GPU). s/step: median over "
        f"{steps}-step runs (batch 256; first and last step left out). "
        "Embedding is timed on a sample of item texts with the packaged all-MiniLM-L6-v2 and extrapolated; "
        "**every later stage reads random embeddings of the encoder's shape** (N x 384). Evaluation: "
        f"`recommend` (constrained beam search, batch 256) on {results.get('settings', {}).get('eval_users', '?')} "
        "test users. Peak RSS is each stage's child process's (`ru_maxrss`).", "",
        head, "|---|" + "---|" * len(sizes) + "---|",
    ]
    for key in ("items", "users", "interactions"):
        lines.append(f"| prepared {key} | " + " | ".join(
            f"{prepared[n][key]:,}" if isinstance(prepared[n], dict) and key in prepared[n] else "–" for n in sizes)
            + " | |")
    for label, stage, key, fmt in ROWS:
        cells = [_cell(recs[n].get(stage), key, fmt) for n in sizes]
        values = {n: recs[n][stage][key] for n in sizes if recs[n].get(stage, {}).get("ok")
                  and isinstance(recs[n][stage].get(key), int | float)}
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_growth(values)} |")
    lines += ["", "Peak RSS per stage (MiB):", "", head, "|---|" + "---|" * len(sizes) + "---|"]
    for stage in STAGES:
        cells = [_cell(recs[n].get(stage), "peak_rss_mib", "{:,.0f}") for n in sizes]
        values = {n: recs[n][stage]["peak_rss_mib"] for n in sizes if recs[n].get(stage, {}).get("ok")}
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {_growth(values)} |")
    failures = [(n, s, r["error"]) for n in sizes for s, r in recs[n].items() if not r.get("ok")]
    missing = [(n, s) for n in sizes for s in STAGES if s not in recs[n]]
    if failures:
        lines += ["", "Stopped stages:", ""] + [f"- {n:,} items, `{s}`: {e}" for n, s, e in failures]
    if missing:
        lines += ["", "Not measured (did not fit the session's time): " + ", ".join(
            f"{n:,}/`{s}`" for n, s in missing) + "."]
    notes = results.get("notes")
    if notes:
        lines += ["", notes]
    if plot and _plot(results, HERE / PLOT_NAME):
        lines += ["", f"![Scale: seconds per step and peak RSS per stage]({PLOT_NAME})"]
    raw_data = HERE / "results" / "amazon_scale.md"  # written by hand from amazon_scale.py's JSON; kept verbatim
    if raw_data.is_file():
        lines += ["", raw_data.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    sizes = sorted(int(s) for s in results["sizes"])
    recs = {n: results["sizes"][str(n)]["stages"] for n in sizes}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage, key, label in [("stage1_full", "s_per_step", "Stage I full s/step"),
                              ("stage1_sampled", "s_per_step", "Stage I sampled s/step"),
                              ("stage2_full", "s_per_step", "Stage II distill full s/step"),
                              ("stage2_sampled", "s_per_step", "Stage II distill sampled s/step"),
                              ("prepare", "seconds", "prepare s"), ("quantize", "seconds", "quantize s"),
                              ("export", "reload_seconds", "reload s")]:
        xs = [n for n in sizes if recs[n].get(stage, {}).get("ok") and recs[n][stage].get(key)]
        if xs:
            left.plot(xs, [recs[n][stage][key] for n in xs], marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds", title="time")
    left.legend(fontsize=7)
    for stage in STAGES:
        xs = [n for n in sizes if recs[n].get(stage, {}).get("ok")]
        if xs:
            right.plot(xs, [recs[n][stage]["peak_rss_mib"] for n in xs], marker="o", label=stage)
    right.set(xscale="log", yscale="log", xlabel="items", ylabel="MiB", title="peak RSS per stage")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_markdown(results: dict[str, Any], results_md: Path, fragment: Path, plot: bool = True) -> None:
    section = render(results, plot=plot)
    fragment.write_text(section)
    block = f"{BEGIN}\n{section}{END}\n"
    text = results_md.read_text() if results_md.is_file() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1].lstrip("\n")
    elif "\n## Not run yet" in text:
        before, after = text.split("\n## Not run yet", 1)
        text = before.rstrip("\n") + "\n\n" + block + "\n## Not run yet" + after
    else:
        text = text.rstrip("\n") + "\n\n" + block
    results_md.write_text(text)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--work", type=Path, default=Path("runs/scale-stages"), help="catalogues and stage outputs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per Stage I / II run")
    parser.add_argument("--negatives", type=int, default=1024, help="sampled softmax / distillation negatives")
    parser.add_argument("--embed-sample", type=int, default=1000, help="item texts embedded to time the encoder")
    parser.add_argument("--eval-examples", type=int, default=256, help="Stage I validation rows")
    parser.add_argument("--stage2-eval-users", type=int, default=64, help="Stage II validation users")
    parser.add_argument("--eval-users", type=int, default=256, help="users of the evaluate stage")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rss-gib", type=float, default=18.0, help="kill a stage whose RSS passes this")
    parser.add_argument("--stage-timeout", type=float, default=1800.0, help="kill a stage running longer (s)")
    parser.add_argument("--render", action="store_true", help="write the Scale section into RESULTS.md")
    parser.add_argument("--render-only", action="store_true", help="only render the JSON into RESULTS.md")
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--clean", action="store_true", help="delete each size's catalogue and stage outputs after it")
    parser.add_argument("--in-process", action="store_true",
                        help="run the stages in this process (tests: fast, but peak RSS is no longer per stage)")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--child-items", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        record = run_stage(args.child, args.child_items, args.child_work, args)
        args.child_result.write_text(json.dumps(record, indent=2, default=str) + "\n")
        return 0

    fragment = args.json.with_suffix(".md")
    if args.render_only:
        write_markdown(_load(args.json), args.results_md, fragment, plot=not args.no_plot)
        return 0
    args.child_args = [f"--steps={args.steps}", f"--negatives={args.negatives}", f"--embed-sample={args.embed_sample}",
                       f"--eval-examples={args.eval_examples}", f"--stage2-eval-users={args.stage2_eval_users}",
                       f"--eval-users={args.eval_users}", f"--threads={args.threads}", f"--seed={args.seed}"]
    results = _load(args.json)
    results["settings"] = {k: v for k, v in vars(args).items() if k in (
        "steps", "negatives", "embed_sample", "eval_examples", "stage2_eval_users", "eval_users", "threads", "seed",
        "max_rss_gib")}
    results["stage2_config"] = STAGE2_CONFIG
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    for n in args.sizes:
        work = args.work / f"n{n}"
        entry = results["sizes"].setdefault(str(n), {"stages": {}})
        entry["settings"] = results["settings"]  # this size's (a later call may measure another size otherwise)
        for stage in args.stages:
            print(f"[scale] {n:,} items: {stage} ...", flush=True)
            record = run_inline(stage, n, work, args) if args.in_process else run_child(stage, n, work, args)
            record["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
            entry["stages"][stage] = record
            results = _merge(args.json, results, n, entry)
            print(f"[scale] {n:,} items: {stage}: " + json.dumps(
                {k: record.get(k) for k in ("ok", "seconds", "s_per_step", "peak_rss_mib", "error") if k in record}),
                flush=True)
        if (work / "raw" / "sequences.txt").is_file():
            entry["users"] = sum(1 for _ in (work / "raw" / "sequences.txt").open())
            results = _merge(args.json, results, n, entry)
        if args.clean:
            shutil.rmtree(work, ignore_errors=True)
    if args.render:
        write_markdown(results, args.results_md, fragment, plot=not args.no_plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
