"""benchmarks/memory_storage.py and the speed/memory rows of benchmarks/reporting: the pure functions.

Bytes per item, parameter counting (checked against real modules: a miscount of either would put a wrong
number in RESULTS.md) and the rendering of the new report sections from stored JSON. Nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def footprint(benchmark_script) -> Any:
    return benchmark_script("memory_storage.py", "genrec_bench_memory_storage")


@pytest.fixture(scope="module")
def report(benchmark_script) -> Any:
    return benchmark_script("report.py", "genrec_benchmark_report_perf")


def test_code_bytes_per_item(footprint: Any) -> None:
    # Beauty's default run: 3 x 256 semantic levels + a collision level of 9 -> 8 + 8 + 8 + 4 bits
    assert footprint.packed_bits_per_item([256, 256, 256, 9]) == 28
    assert footprint.code_bytes_per_item([256, 256, 256, 9]) == {
        "bit_packed": 3.5, "smallest_int_per_level": 4.0, "int32_per_level": 16.0}
    assert footprint.packed_bits_per_item([1, 2, 3]) == 0 + 1 + 2  # a size-1 level needs no bit
    assert footprint.code_bytes_per_item([257, 70000])["smallest_int_per_level"] == 2 + 4
    with pytest.raises(ValueError):
        footprint.packed_bits_per_item([256, 0])
    assert footprint.embedding_bytes_per_item(96) == 384
    assert footprint.embedding_bytes_per_item(128, bytes_per_value=2) == 256


def _tiny_unger(**overrides: Any) -> Any:
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    config = UngerConfig(num_code_levels=3, codebook_sizes=[8, 8, 2], num_items=50, d_model=16, ffn_dim=32,
                         num_attention_heads=2, decoder_layers=2, **overrides)
    return UngerForGenerativeRecommendation(config)


def test_parameter_breakdown_sums_to_the_model(footprint: Any) -> None:
    for overrides in ({}, {"integrated_dim": 12}, {"integrated_dim": 12, "history_item_embedding": "integrated"}):
        model = _tiny_unger(**overrides)
        parts = footprint.parameter_breakdown({n: p.numel() for n, p in model.named_parameters()})
        assert parts["total"] == sum(p.numel() for p in model.parameters())
        assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
        vocab = model.config.vocab_size
        assert parts["code_embeddings"] == parts["lm_head"] == vocab * 16
        # distillation token (d) + projection (d x integrated_dim + bias) only with a distillation head
        assert parts["distillation"] == (16 + 16 * 12 + 12 if "integrated_dim" in overrides else 0)
        assert parts["history_items"] == (12 * 16 if "history_item_embedding" in overrides else 0)
        assert parts["encoder_layers"] > 0 and parts["decoder_layers"] > parts["encoder_layers"]


@pytest.mark.parametrize("gated", [False, True])
def test_t5_parameter_count_matches_transformers(footprint: Any, gated: bool) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    sizes = {"vocab": 37, "d_model": 12, "d_kv": 5, "heads": 3, "d_ff": 20, "encoder_layers": 1,
             "decoder_layers": 2}
    config = T5Config(vocab_size=37, d_model=12, d_kv=5, num_heads=3, d_ff=20, num_layers=1, num_decoder_layers=2,
                      feed_forward_proj="gated-gelu" if gated else "relu")
    real = sum(p.numel() for p in T5ForConditionalGeneration(config).parameters())  # tied (T5's default)
    assert footprint.t5_parameter_count(**sizes, tied=True, gated=gated) == real
    # untied = one more vocab x d_model table (a separate lm_head, T5 v1.1 as in transformers 4.x)
    untied = footprint.t5_parameter_count(**sizes, tied=False, gated=gated)
    assert untied - real == 37 * 12


def test_flatten_numbers_and_serving_metrics(report: Any) -> None:
    from reporting import perf

    flat = perf.flatten_numbers({"a": 1, "b": {"c": [2.5, "x", True]}, "d": None})
    assert flat == {"a": 1.0, "b/c/0": 2.5}
    details = {"cells": [{"method": "unger", "batch": 1, "k": 20, "ms_per_user_cpu": 3.0, "ms_per_user_wall": 4.0}]}
    assert perf.serving_metrics(details) == {"unger/b1/k20/ms_cpu": 3.0, "unger/b1/k20/ms_wall": 4.0}


def test_perf_rows_are_declared_and_rendered_from_their_json(report: Any, tmp_path: Path) -> None:
    from reporting import perf

    rows = [row for row in report.ROWS if row.section != "quality"]
    assert {row.section for row in rows} == set(perf.SECTIONS)
    for row in rows:
        assert "{json}" in row.command and callable(row.options["render"]) and row.cost
    serving = next(row for row in rows if row.id == "beauty-speed-serving")
    ctx = report.Context(repo=tmp_path, results_dir=tmp_path / "results")
    cells = [
        {"method": m, "batch": 1, "k": 20, "ms_per_user_cpu": cpu, "ms_per_user_wall": cpu * 2,
         **({"same_ranked_items_as_unger": 1.0} if m == "unger-prefix-fn" else {})}
        for m, cpu in (("unger", 30.0), ("unger-prefix-fn", 60.0), ("sasrec-topk", 1.5))
    ]
    stored = {"row": serving.id, "runs": [{"seed": None, "details": {"cells": cells, "num_items": 100}}], "wall_time_s": 5.0,
              "machine": {"cpu": "TestCPU", "cpu_count": 2, "threads": 1}, "command": "python x.py", "date": "d"}
    report.write_json(ctx.results_dir / f"{serving.id}.json", stored)
    text = report.render_markdown([serving], ctx, plot_name=None)
    assert "## Speed" in text and "## Memory and storage" not in text
    table = [line for line in text.splitlines() if line.startswith("| 1 | 20 |")]
    assert "| 20.0x |" in table[0]  # UNGER / SASRec CPU: 30 / 1.5
    assert "| 2.0x |" in table[1] and "| 100% |" in table[1]  # prefix fn / genrec: 60 / 30
    assert "TestCPU" in text and "--force beauty-speed-serving" in text
    # quality-only registries render no perf section at all (the existing RESULTS.md stays byte-identical)
    quality = [row for row in report.ROWS if row.section == "quality"][:2]
    assert "## Speed" not in report.render_markdown(quality, ctx, plot_name=None)


def test_training_time_section_uses_stored_stage_seconds(report: Any, tmp_path: Path) -> None:
    from reporting import perf

    row = next(row for row in report.ROWS if row.id == "beauty-genrec-default-2026-12-02")
    ctx = report.Context(repo=tmp_path, results_dir=tmp_path / "results")
    details = {"stage2_steps": 1000, "stage2_best_step": 250, "stage_seconds": {
        "prepare": 1.0, "embed": 2.0, "stage1": 7.0, "quantize": 0.0, "stage2": 400.0, "export": 5.0}}
    report.write_json(ctx.results_dir / f"{row.id}.json", {"runs": [{"seed": 2024, "details": details,
                                                                     "wall_time_s": 415.0}]})
    lines = perf.render_training_time([row], ctx)
    line = next(line for line in lines if row.id in line)
    assert "≈ 110.0 s" in line  # 1 + 2 + 7 + 0 + 400 x 250 / 1000
    # a stage reused without its time (seconds: null) makes the figure a lower bound that says so, not a silent 0
    details["stage_seconds"]["stage1"] = None
    report.write_json(ctx.results_dir / f"{row.id}.json", {"runs": [{"seed": 2024, "details": details,
                                                                     "wall_time_s": 415.0}]})
    line = next(line for line in perf.render_training_time([row], ctx) if row.id in line)
    assert "≥ 103.0 s" in line and "≈" not in line and "unknown time of stage1" in line
    details["stage2_best_loop_seconds"] = 50.0  # the exact path bounds the same way
    report.write_json(ctx.results_dir / f"{row.id}.json", {"runs": [{"seed": 2024, "details": details,
                                                                     "wall_time_s": 415.0}]})
    line = next(line for line in perf.render_training_time([row], ctx) if row.id in line)
    assert "≥ 53.0 s" in line and "unknown time of stage1" in line


def test_safetensors_counts_split_the_frozen_table(footprint: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"semantic_table": torch.zeros(7, 5), "encoder.w": torch.zeros(3, 4), "b": torch.zeros(2)}, str(path))
    assert footprint.safetensors_counts(path) == {"trainable": 14, "frozen": 35, "total": 49}
    assert footprint.safetensors_counts(path, frozen=())["frozen"] == 0
    per_item = footprint.per_item_tensors(path, 7)  # tensors whose first dimension is the catalogue
    assert per_item == {"semantic_table": {"shape": [7, 5], "dtype": "F32", "bytes_per_item": 20}}


def test_run_child_reports_the_childs_own_peak_rss(footprint: Any) -> None:
    # the child writes 120 MiB (touched pages, not a lazily zeroed mapping) and prints a JSON last line
    code = "import json; b = b'x' * (120 * 2**20); print('noise'); print(json.dumps({'n': len(b)}))"
    measured = footprint.run_child([sys.executable, "-c", code])
    assert measured["returncode"] == 0 and measured["child"] == {"n": 120 * 2**20}
    assert 120 <= measured["peak_rss_mib"] < 1024
    failed = footprint.run_child([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed["returncode"] == 3 and failed["child"] == {}
