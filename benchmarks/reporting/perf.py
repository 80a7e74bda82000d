"""Speed, memory and storage rows: their measurement (a script run in a child process) and their tables.

Why a separate kind of row: a quality row is four metrics; a speed or memory row is a small grid (methods x
batch x beams, catalogue sizes, processes), so each kind here declares how it is measured (``compute``: run the
row's command, read the JSON it writes) and how it is shown (``render``: Markdown lines for its section).
They share the quality rows' machinery: a stored JSON per row with command, versions, machine, wall time and
input fingerprint (the scripts, the genrec modules they time, the model folder's files), recomputed only when
stale. Ratios inside a row are always measured side by side in that row's one process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .core import DATASETS, Context, Row, row_prefix
from .store import load_row_json, machine_line, render_command, source_path, work_json_path

SCALING_PLOT = "RESULTS_scaling.png"
PAPER_LATENCY_MS = 19.5  # UNGER paper, Table 4 "Inference Latency (ms)" (device not named)
PAPER_PARAMETERS = 10_249_988  # UNGER paper, Table 4 "Model Parameter"

SECTIONS = {
    "speed": ("Speed", "Milliseconds per recommended user, constrained decoding and catalogue scaling, training time. "
              "Every ratio below was measured side by side in one process (the methods alternate), with one "
              "torch thread; the machine was **shared with other jobs** (see each row's load average), so wall "
              "times are noisy: the CPU time of the process (`time.process_time`) is the steadier number and the "
              "ratios are computed from it."),
    "memory": ("Memory and storage", "Peak resident memory of training and serving (child processes, measured "
               "by `os.wait4`), bytes per item, parameter counts."),
}

# ---- inputs --------------------------------------------------------------------------------------


def _files(ctx: Context, scripts: Sequence[str]) -> dict[str, Path]:
    return {script: ctx.repo / script for script in scripts}


def _model_inputs(row: Row, ctx: Context) -> dict[str, Path] | None:
    """The run folder's files the row reads (``None`` when the folder is not here) plus the row's scripts."""
    folder = source_path(row, ctx)
    names = row.options.get("model_files", ())
    found = {f"model/{name}": folder / name for name in names}
    for pattern in row.options.get("model_globs", ()):
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                found[f"model/{path.relative_to(folder)}"] = path
    if not folder.is_dir() or any(not path.is_file() for path in found.values()):
        return None
    return {**found, **_files(ctx, row.options.get("scripts", ()))}


def _script_inputs(row: Row, ctx: Context) -> dict[str, Path] | None:
    return _files(ctx, row.options.get("scripts", ()))


def _missing_model(row: Row, ctx: Context) -> str:
    return f"the run folder {ctx.rel(source_path(row, ctx))} (or one of its files) is not here"


# ---- compute -------------------------------------------------------------------------------------


def flatten_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Every int/float leaf of nested dicts/lists as ``{"a/b/0/c": value}`` (bools and strings dropped).

    The stored row keeps the script's full JSON under ``details``; these flat numbers are its ``metrics``
    (what ``summarize`` averages and what a diff of two row JSONs shows at a glance).
    """
    out: dict[str, float] = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        if isinstance(data, int | float) and not isinstance(data, bool):
            out[prefix] = float(data)
        return out
    for key, value in items:
        out.update(flatten_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def serving_metrics(details: dict[str, Any]) -> dict[str, float]:
    """``{method/b<batch>/k<k>/ms_cpu|ms_wall: value}`` of a ``serving_speed.py`` result."""
    out = {}
    for cell in details.get("cells", []):
        key = f"{cell['method']}/b{cell['batch']}/k{cell['k']}"
        out[f"{key}/ms_cpu"] = cell["ms_per_user_cpu"]
        out[f"{key}/ms_wall"] = cell["ms_per_user_wall"]
    return out


def compute_script(row: Row, ctx: Context, seed: int | None) -> dict[str, Any]:
    """Run the row's command (a benchmark script that writes ``--json``) in a child process; read its JSON."""
    import time

    command = render_command(row, ctx, seed)
    out = work_json_path(row, ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    log = out.with_suffix(".log")
    env = {**os.environ, "OMP_NUM_THREADS": str(ctx.threads), "MKL_NUM_THREADS": str(ctx.threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = sys.executable  # genrec's interpreter, whatever `python` is on PATH
    print(f"  {command}\n  (log: {ctx.rel(log)})", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run(argv, cwd=ctx.repo, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{command} exited with {proc.returncode}; last lines of {log}:\n{tail}")
    details = json.loads(out.read_text())
    metrics = row.options.get("metrics", flatten_numbers)(details)
    return {"metrics": metrics, "wall_time_s": wall, "details": details}


# ---- rows ----------------------------------------------------------------------------------------

MODEL_FILES = ("config.json", "model.safetensors", "code_table.parquet", "code_table.json", "tokenizer.json",
               "tokenizer_config.json")


def serving_row(data: str, source: str) -> Row:
    """ms per recommended user: UNGER (ours / prefix_allowed_tokens_fn) vs SASRec-shaped top-k."""
    short = row_prefix(data)
    return Row(
        id=f"{short}-speed-serving", title="Milliseconds per recommended user", dataset=data, kind="measured",
        command="python benchmarks/serving_speed.py --model-dir {source} --batch 1 256 --beams 20 100 "
                "--single-users 16 --rounds 2 --threads {threads} --json {json}",
        compute=compute_script, inputs=_model_inputs, missing=_missing_model,
        packages=("genrec", "torch", "transformers"),
        options={"section": "speed", "source": source, "model_files": MODEL_FILES,
                 "model_globs": ("data/sequences/test-*", "data/genrec_dataset.json"),
                 "scripts": ("benchmarks/serving_speed.py", "benchmarks/constrained_decoding.py",
                             "modeling/modeling_unger.py", "modeling/constrained_decoding.py",
                             "modeling/modeling_unger_fusion.py"),
                 "metrics": serving_metrics, "render": render_serving},
        cost="about 5-10 min on one shared CPU thread",
    )


def scaling_row() -> Row:
    """Quantization + constrained decoding from 10^4 to 10^6 synthetic items."""
    return Row(
        id="synthetic-speed-scaling", title="Quantization and constrained decoding vs catalogue size",
        dataset="synthetic", kind="measured",
        command="python benchmarks/scaling.py --sizes 10000 100000 1000000 --single-users 8 --batch 64 "
                "--threads {threads} --json {json}",
        compute=compute_script, inputs=_script_inputs, missing=lambda row, ctx: "scripts missing",
        packages=("genrec", "torch", "transformers", "numpy"),
        options={"section": "speed", "scripts": (
            "benchmarks/scaling.py", "benchmarks/serving_speed.py", "benchmarks/constrained_decoding.py",
            "tokenization/quantizers.py", "tokenization/code_table.py", "modeling/constrained_decoding.py",
            "modeling/modeling_unger.py"), "render": render_scaling},
        cost="about 5 min on one shared CPU thread",
    )


def rss_row(data: str, source: str) -> Row:
    """Peak RSS of a short Stage II training and of serving."""
    short = row_prefix(data)
    return Row(
        id=f"{short}-memory-rss", title="Peak resident memory: training and serving", dataset=data,
        kind="measured",
        command="python benchmarks/memory_storage.py rss --model-dir {source} --steps 200 --users 256 "
                "--threads {threads} --json {json}",
        compute=compute_script, inputs=_model_inputs, missing=_missing_model,
        packages=("genrec", "torch", "transformers", "accelerate"),
        options={"section": "memory", "source": source, "model_files": (*MODEL_FILES, "run.json"),
                 "model_globs": ("data/sequences/*", "data/genrec_dataset.json", "semantic_ids/tokenizer/*",
                                 "stage1/integrated_embeddings.safetensors"),
                 "scripts": ("benchmarks/memory_storage.py", "benchmarks/serving_speed.py",
                             "trainers/stages/stage2.py", "modeling/modeling_unger.py"),
                 "render": render_rss},
        cost="about 5 min on one shared CPU thread",
    )


def storage_row(data: str, source: str) -> Row:
    """Parameter counts and bytes per item of a saved model (no training)."""
    short = row_prefix(data)
    return Row(
        id=f"{short}-storage-params", title="Bytes per item and parameter counts", dataset=data, kind="measured",
        command="python benchmarks/memory_storage.py static --model-dir {source} --json {json}",
        compute=compute_script, inputs=_model_inputs, missing=_missing_model,
        packages=("genrec", "torch", "transformers"),
        options={"section": "memory", "source": source, "model_files": MODEL_FILES,
                 "model_globs": ("stage1/best/model.safetensors",),
                 "scripts": ("benchmarks/memory_storage.py", "modeling/modeling_unger.py",
                             "modeling/configuration_unger.py"),
                 "render": render_storage},
        cost="seconds",
    )


def perf_rows() -> list[Row]:
    """The speed and memory rows of the registry (the finished Beauty and ML-100K default runs, synthetic
    scaling)."""
    source = "../runs/beauty-hie"
    return [serving_row("beauty", source), serving_row("ml-100k", "../runs/ml-new-s2024"), scaling_row(),
            rss_row("beauty", source), storage_row("beauty", source)]


# ---- rendering -----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2f}" if value < 10 else f"{value:.1f}")


def _s(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2f} s" if value < 10 else f"{value:.1f} s")


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.1f}x"


def _provenance(row: Row, ctx: Context, stored: dict[str, Any]) -> list[str]:
    machine = stored.get("machine", {})
    load = machine.get("load_average_at_end")
    wall = stored.get("wall_time_s")
    return ["", f"Row `{row.id}`, measured {stored.get('date', '?')} in {_s(wall)} by "
                f"`{stored.get('command', render_command(row, ctx, None))}` on {machine_line(machine)}"
                + (f"; load average at the end {load} on {machine.get('cpu_count')} CPUs" if load else "")
                + f". Recompute: `python benchmarks/report.py --force {row.id}`."]


def render_serving(row: Row, ctx: Context, stored: dict[str, Any]) -> list[str]:
    """Two tables: UNGER vs SASRec-shaped top-k, and genrec's processor vs prefix_allowed_tokens_fn."""
    d = stored["runs"][-1]["details"]
    cells = {(c["method"], c["batch"], c["k"]): c for c in d.get("cells", [])}
    keys = sorted({(b, k) for _, b, k in cells}, key=lambda t: (t[1], t[0]))
    shape = d.get("sasrec_shape", {})
    name = DATASETS.get(row.dataset, {}).get("name", row.dataset)
    lines = [f"### Milliseconds per recommended user: {name} ({d.get('num_items', 0):,} items)", "",
             f"UNGER: the trained model in `{stored.get('source_path', '?')}` ({d.get('unger_parameters', 0):,} "
             f"parameters, {d.get('code_levels')} code levels {d.get('codebook_sizes')}), `recommend(k=B, "
             f"num_beams=B)`: constrained beam search returning k = B items. SASRec-shaped top-k: genrec's "
             f"`SASRecEncoder` with RecBole's default SASRec shape (hidden {shape.get('hidden_size')}, "
             f"{shape.get('num_layers')} layers, {shape.get('num_heads')} heads, inner "
             f"{shape.get('intermediate_size')}; {d.get('sasrec_parameters', 0):,} parameters with its item table), "
             "`user @ item_table.T` over every item, `topk(k)`; random weights (the cost does not depend on "
             "them). Same test histories (<= 20 items) for both; batch 1 = users one at a time.", "",
             "| Batch | k = beams | UNGER ms/user (CPU) | UNGER ms/user (wall) | SASRec top-k ms/user (CPU) | "
             "SASRec top-k ms/user (wall) | UNGER / SASRec (CPU) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for batch, k in keys:
        u, s = cells.get(("unger", batch, k), {}), cells.get(("sasrec-topk", batch, k), {})
        lines.append(f"| {batch} | {k} | {_ms(u.get('ms_per_user_cpu'))} | {_ms(u.get('ms_per_user_wall'))} | "
                     f"{_ms(s.get('ms_per_user_cpu'))} | {_ms(s.get('ms_per_user_wall'))} | "
                     f"{_ratio(u.get('ms_per_user_cpu'), s.get('ms_per_user_cpu'))} |")
    if row.dataset == "beauty":
        lines += ["", f"*Published* for comparison: the UNGER paper's Table 4 states an inference latency of "
                      f"{PAPER_LATENCY_MS} ms (device, batch and beams not stated; 100 beams in its experiments)."]
    lines += ["", f"### Constrained decoding: `SemanticIDLogitsProcessor` vs `prefix_allowed_tokens_fn`: {name}", "",
              "The same UNGER model and beam search; genrec's processor (tensor prefix index) against "
              "transformers' `prefix_allowed_tokens_fn` walking a Python trie of the same codes (the reference of "
              "`benchmarks/constrained_decoding.py`, which also times single processor calls on 10^4-10^6 "
              "random codes). \"Same items\": share of users whose ranked item lists are identical.", "",
              "| Batch | Beams | genrec processor ms/user (CPU) | prefix_allowed_tokens_fn ms/user (CPU) | "
              "prefix fn / genrec (CPU) | wall: genrec / prefix fn | Same items |",
              "|---:|---:|---:|---:|---:|---|---:|"]
    for batch, k in keys:
        u, p = cells.get(("unger", batch, k), {}), cells.get(("unger-prefix-fn", batch, k), {})
        same = p.get("same_ranked_items_as_unger")
        lines.append(f"| {batch} | {k} | {_ms(u.get('ms_per_user_cpu'))} | {_ms(p.get('ms_per_user_cpu'))} | "
                     f"{_ratio(p.get('ms_per_user_cpu'), u.get('ms_per_user_cpu'))} | "
                     f"{_ms(u.get('ms_per_user_wall'))} / {_ms(p.get('ms_per_user_wall'))} ms | "
                     f"{'–' if same is None else f'{same:.0%}'} |")
    return lines + _provenance(row, ctx, stored)


def render_scaling(row: Row, ctx: Context, stored: dict[str, Any]) -> list[str]:
    """Per catalogue size: quantization, code table, trie, decoding ms/user (both constraints)."""
    d = stored["runs"][-1]["details"]
    sizes = d.get("sizes", [])
    batches = sorted({c["batch"] for s in sizes for c in s.get("decoding", [])})
    beams = next((c["beams"] for s in sizes for c in s.get("decoding", [])), "?")
    lines = ["### Quantization and constrained decoding from 10^4 to 10^6 items (synthetic)", "",
             f"Seeded Gaussian embeddings of width {sizes[0]['dim'] if sizes else '?'} (the Stage-I integrated "
             f"width), genrec's residual k-means ({d.get('quantizer')}), `CodeTable.from_codes` + prefix index, "
             f"and a randomly initialised UNGER of the default Stage II shape decoding {beams} beams over that "
             "code table (20 random history items per user). Seconds are CPU seconds of the one process (wall in "
             "the row's JSON).", "",
             "| Items | Levels | Quantize fit (CPU) | Encode (CPU) | CodeTable + index | Processor init | "
             "Python trie | " + " | ".join(f"genrec b{b} ms/user | prefix fn b{b} ms/user" for b in batches) + " |",
             "|---:|---|---:|---:|---:|---:|---:|" + "---:|---:|" * len(batches)]
    for s in sizes:
        dec = {(c["method"], c["batch"]): c for c in s.get("decoding", [])}
        cells = []
        for b in batches:
            cells += [_ms(dec.get(("unger", b), {}).get("ms_per_user_cpu")),
                      _ms(dec.get(("unger-prefix-fn", b), {}).get("ms_per_user_cpu"))]
        lines.append(f"| {s['items']:,} | {s.get('codebook_sizes')} | {_s(s['quantize_fit_s']['cpu'])} | "
                     f"{_s(s['quantize_encode_s']['cpu'])} | {_s(s['code_table_s']['cpu'])} | "
                     f"{_s(s['processor_init_s']['cpu'])} | {_s(s['python_trie_s']['cpu'])} | "
                     + " | ".join(cells) + " |")
    if (ctx.repo / "benchmarks" / SCALING_PLOT).is_file():
        lines += ["", f"![Quantization and decoding vs catalogue size]({SCALING_PLOT})"]
    return lines + _provenance(row, ctx, stored)


def render_rss(row: Row, ctx: Context, stored: dict[str, Any]) -> list[str]:
    """Peak RSS per child process, with the serving child's phases."""
    d = stored["runs"][-1]["details"]
    train = d.get("train", {}).get("child", {})
    serve = d.get("serve", {}).get("child", {})
    phases = ""
    if "rss_after_data_mib" in serve:
        peak = d.get("serve", {}).get("peak_rss_mib", 0)
        phases = (f"; RSS after imports {serve['rss_after_imports_mib']:.0f} MiB, after reading the test data "
                  f"(this benchmark's input, not serving) {serve['rss_after_data_mib']:.0f} MiB, after "
                  f"`from_pretrained` {serve['rss_after_load_mib']:.0f} MiB: the beam search adds "
                  f"{peak - serve['rss_after_load_mib']:.0f} MiB at its peak")
    what = {
        "import-only": "Python + torch + transformers + genrec imported, nothing loaded (the floor)",
        "serve": f"`from_pretrained` + `recommend` for {serve.get('users', '?')} test users, 20 beams, batch "
                 f"{serve.get('batch_size', '?')}{phases}",
        "train": f"Stage II training, {train.get('steps', '?')} steps at batch {train.get('batch_size', '?')} "
                 f"with the run's config {json.dumps(train.get('stage2_config', {}))}, distillation "
                 f"{train.get('distillation')}, a 256-user validation at the end",
    }
    lines = ["### Peak resident memory (RSS)", "",
             "| Process | Peak RSS | Wall | CPU | What |", "|---|---:|---:|---:|---|"]
    for name in ("import-only", "serve", "train"):
        m = d.get(name)
        if m:
            lines.append(f"| {name} | {m['peak_rss_mib']:.0f} MiB | {_s(m['wall_s'])} | {_s(m['cpu_s'])} | "
                         f"{what[name]} |")
    lines += ["", "A beam search holds, per user and beam, the encoder states and every decoder layer's "
                  "cross-attention keys/values of the history (batch x beams copies), so serving memory grows with "
                  "batch x beams, not with the catalogue; a SASRec-style scorer instead holds a batch x items score "
                  "matrix."]
    return lines + _provenance(row, ctx, stored)


def render_storage(row: Row, ctx: Context, stored: dict[str, Any]) -> list[str]:
    """Bytes per item and the parameter table with the paper's count."""
    d = stored["runs"][-1]["details"]
    b = d.get("bytes_per_item", {})
    code = b.get("code_table", {})
    n = d.get("num_items", 0)
    lines = [f"### Bytes per item ({n:,} items, codes {d.get('codebook_sizes')})", "",
             "| Representation | Bytes per item | Whole catalogue |", "|---|---:|---:|"]
    entries = [("code table, bit-packed (ceil(log2 K) bits per level)", code.get("bit_packed")),
               ("code table, one byte per level (what a uint8 table needs)", code.get("smallest_int_per_level")),
               ("code table, int32 per level (the model's `item_codes` buffer)", code.get("int32_per_level")),
               ("code table parquet file on disk (ids + codes, compressed)", b.get("code_table_parquet_file"))]
    entries += [(f"float32 embedding table, d = {dim}", v) for dim, v in b.get("float32_embedding", {}).items()]
    entries.append(("per-item tensors in the saved UNGER weights file (see below)", b.get("saved_model_per_item_buffers")))
    for label, value in entries:
        if value is not None:
            lines.append(f"| {label} | {value:,.1f} | {value * n / 2**20:,.2f} MiB |")
    buffers = ", ".join(f"`{name}` {v['bytes_per_item']} B" for name, v in d.get("buffers", {}).items()
                        if v.get("bytes_per_item"))
    missing = "" if "item_codes" in d.get("buffers", {}) else (
        " This file has no `item_codes` buffer (it predates it; models saved since carry 16 B per item more, "
        "4 x int32).")
    lines += ["", f"Per-item tensors of the saved weights file: {buffers}.{missing} The two float32 tables of width "
                  "128 are the "
                  "Stage-I integrated embeddings: the distillation targets (training only) and the history-item "
                  "features of the default profile's `history_item_embedding=\"integrated\"` (needed at serving). "
                  "So the default model is not catalogue-free: it carries 512 B per item for serving, plus 512 B of "
                  "training-only targets; the code table itself is 4 bytes per item.", ""]
    params = d.get("parameters", {})
    parts = ("code_embeddings", "lm_head", "encoder_layers", "decoder_layers", "history_items", "distillation",
             "positions_and_norms")
    lines += [f"### Parameters (UNGER paper: {PAPER_PARAMETERS:,})", "",
              "| Configuration | Total | " + " | ".join(p.replace("_", " ") for p in parts) + " | paper / this |",
              "|---|---:|" + "---:|" * len(parts) + "---:|"]
    for label, counts in params.items():
        lines.append(f"| {label} | {counts['total']:,} | " + " | ".join(f"{counts.get(p, 0):,}" for p in parts)
                     + f" | {PAPER_PARAMETERS / counts['total']:.1f}x |")
    stage1 = d.get("stage1_parameters")
    trained = next(iter(params.values()), {}).get("total", 0)
    if stage1:
        lines += ["", f"Stage I of the same run (`stage1/best`: DIN encoder, modality adaptation layer, fusion gate, "
                      f"item table), counted from its weights file: {stage1['trainable']:,} trainable parameters plus "
                      f"a frozen semantic-embedding table of {stage1['frozen']:,} values. Stage I + Stage II: "
                      f"{stage1['trainable'] + trained:,} trainable ({PAPER_PARAMETERS / (stage1['trainable'] + trained):.1f}x "
                      f"below the paper's count), {stage1['total'] + trained:,} with the frozen table."]
    lines += ["", "Configurations of `transformers`' T5 (the backbone most TIGER-style re-implementations use), "
                  "counted by formula (`t5_parameter_count`, checked against the real class in the tests):", "",
              "| T5 configuration | Parameters | paper − this |", "|---|---:|---:|"]
    for label, count in d.get("paper_candidates", {}).items():
        lines.append(f"| {label} | {count:,} | {PAPER_PARAMETERS - count:+,} |")
    lines += ["", f"Why ours is {PAPER_PARAMETERS / max(trained, 1):.0f}x smaller: with Table 4's sizes (d_model 96, "
                  "FFN 256, 6 heads, 1 encoder + 4 decoder layers) the transformer layers hold ~0.59M parameters and "
                  "the code-token tables (input + output, ~1,000 tokens x 96) ~0.15M; nothing in a ~1k-token code "
                  "vocabulary can reach 10.2M. Counts near 10.2M need either a much wider attention (T5's default "
                  "d_kv 64 per head gives 6 x 64 = 384 inner width), more layers, or a large embedding table: an "
                  "untied 32,128-token T5 vocabulary alone is 6.2M at d_model 96, and an item table of 12,101 items "
                  "adds 1.2-1.5M. No combination we tried reproduces 10,249,988 exactly, so the paper's count most "
                  "likely includes such tables (a T5 text vocabulary, item-ID or Stage-I tables) that our model "
                  "does not have; without the authors' code this is an inference, not a finding."]
    return lines + _provenance(row, ctx, stored)


def render_training_time(rows: Sequence[Row], ctx: Context) -> list[str]:
    """Training wall time to the best validation point, from the quality rows' stored JSON (nothing measured)."""
    table = []
    for row in rows:
        if row.section != "quality" or row.kind == "published" or row.options.get("metrics") == "model":
            continue  # a model-alone row is the same run as its default row
        stored = load_row_json(ctx, row.id)
        if not stored:
            continue
        for run in stored["runs"]:
            d = run.get("details", {})
            if "seconds_to_best_validation" in d:  # RecBole
                table.append((row, run, _s(d["seconds_to_best_validation"]), _s(d.get("fit_seconds")),
                              f"epoch {d.get('best_epoch')} of {d.get('epochs_run')} (RecBole's own timer)"))
            elif d.get("stage2_steps"):  # genrec run
                stages = d.get("stage_seconds") or {}
                s2 = stages.get("stage2")
                best, steps = d.get("stage2_best_step"), d["stage2_steps"]
                if s2 is None:
                    table.append((row, run, "–", _s(run.get("wall_time_s")),
                                  "stage timings not in the stored row (`--force` it to re-read run.json)"))
                    continue
                loops = d.get("stage_loop_seconds") or {}  # training loops summed over resumes, when recorded
                earlier = {k: loops[k] if loops.get(k) is not None else v for k, v in stages.items()
                           if k not in ("stage2", "transition_prior", "export")}
                before = sum(v or 0 for v in earlier.values())
                # A stage reused from a sitting that never wrote run.json has no known time (seconds: null): the
                # sum is then a lower bound, said so, never a silent 0.
                unknown = sorted(k for k, v in earlier.items() if v is None)
                bound, note = ("≥ ", f"; unknown time of {', '.join(unknown)} (reused), counted as 0") if unknown \
                    else ("", "")
                if d.get("stage2_best_loop_seconds") is not None:  # exact
                    table.append((row, run, bound + _s(before + d["stage2_best_loop_seconds"]),
                                  _s(run.get("wall_time_s")),
                                  f"stages before Stage II (training loops summed over resumes) + Stage II's loop "
                                  f"time at its best step {best} of {steps} (validation included){note}"))
                    continue
                to_best = before + s2 * best / steps
                reused = " (Stage I reused from another run: 0 s recorded)" if stages.get("stage1") == 0 else ""
                table.append((row, run, f"{bound or '≈ '}{_s(to_best)}", _s(run.get("wall_time_s")),
                              f"all stages before Stage II + Stage II x best step {best} / {steps} steps (uniform "
                              f"step time assumed; validation time included){reused}{note}"))
    if not table:
        return []
    lines = ["### Training wall time to the best validation point", "",
             "From the quality rows' stored JSON (nothing re-measured here); these runs shared their machine "
             "with other jobs, so compare them as orders of magnitude.", "",
             "| Row | Seed | To best validation | Whole run | How |", "|---|---|---:|---:|---|"]
    for row, run, best, whole, how in table:
        lines.append(f"| {row.title} (`{row.id}`) | {run.get('seed') or '–'} | {best} | {whole} | {how} |")
    return lines


def render_sections(rows: Sequence[Row], ctx: Context) -> list[str]:
    """The Speed and Memory and storage sections (empty when no such row is declared)."""
    lines: list[str] = []
    for section, (title, intro) in SECTIONS.items():
        members = [row for row in rows if row.section == section]
        extra = render_training_time(rows, ctx) if section == "speed" and members else []
        if not members:
            continue
        lines += [f"## {title}", "", intro, ""]
        shown = False
        for row in members:
            stored = load_row_json(ctx, row.id)
            render: Callable[[Row, Context, dict[str, Any]], list[str]] | None = row.options.get("render")
            if stored and render:
                lines += render(row, ctx, stored) + [""]
                shown = True
        if extra:
            lines += extra + [""]
            shown = True
        if not shown:
            lines += ["No row measured yet.", ""]
    return lines


def render_scaling_plot(rows: Sequence[Row], ctx: Context, path: Path) -> bool:
    """Two panels vs catalogue size: quantization/table seconds and decoding ms per user (log-log)."""
    row = next((r for r in rows if r.id == "synthetic-speed-scaling"), None)
    stored = load_row_json(ctx, row.id) if row else None
    if not stored:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the scaling plot", file=sys.stderr)
        return False
    sizes = stored["runs"][-1]["details"].get("sizes", [])
    if not sizes:
        return False
    n = [s["items"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("quantize_fit_s", "residual k-means fit"), ("quantize_encode_s", "encode all items"),
                       ("code_table_s", "CodeTable + prefix index"), ("python_trie_s", "Python trie (prefix fn)")):
        left.plot(n, [s[key]["cpu"] for s in sizes], marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="items", ylabel="CPU seconds", title="Building the codes")
    batches = sorted({c["batch"] for s in sizes for c in s.get("decoding", [])})
    for method, style in (("unger", "-"), ("unger-prefix-fn", "--")):
        for b in batches:
            ys = [next((c["ms_per_user_cpu"] for c in s["decoding"] if c["method"] == method and c["batch"] == b),
                       float("nan")) for s in sizes]
            name = "genrec processor" if method == "unger" else "prefix_allowed_tokens_fn"
            right.plot(n, ys, style, marker="o", label=f"{name}, batch {b}")
    right.set(xscale="log", yscale="log", xlabel="items", ylabel="CPU ms per user",
              title="Constrained beam search (UNGER shape, 20 beams)")
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return True
