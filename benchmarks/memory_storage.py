"""Memory and storage of UNGER: peak RSS of training and serving, bytes per item, parameter counts.

Why: a generative recommender replaces the item-embedding table (d floats per item) by a code table (D small
ints per item) and a transformer whose size does not grow with the catalogue; this script puts numbers on
that claim for a trained model folder, and counts the parameters that the UNGER paper reports (10,249,988).

Modes:

* ``static --model-dir RUN``: in this process, seconds. Parameter counts (by part) of the trained model and of
  the ``default`` / ``paper`` Stage II configurations with and without the distillation head on the same
  catalogue, and of the run's Stage I model (``stage1/best``, from its safetensors header); bytes per item of the code table (bit-packed, one byte per level, the model's int32 buffer, the
  parquet file) vs float32 embedding tables of width 64 / 96 / 128; the per-item buffers the saved model
  carries; HF-T5 configurations near the paper's count (see ``t5_parameter_count``).
* ``rss --model-dir RUN``: peak resident memory of child processes, each measured by ``os.wait4`` (the
  child's own ``ru_maxrss``, nothing else's; the current RSS after each phase is recorded too): ``train`` = a
  short Stage II training (``--steps`` optimiser steps at batch 256 on the run's data, codes and integrated
  embeddings, the run's Stage II config, no test evaluation, a 256-user validation at the end); ``serve`` =
  the test histories read, then ``from_pretrained`` + ``recommend`` for ``--users`` test users with 20 beams;
  ``import-only`` = Python + torch + transformers + genrec imported, nothing loaded (the floor of both).

    python benchmarks/memory_storage.py static --model-dir ../runs/beauty-hie --json storage.json
    python benchmarks/memory_storage.py rss --model-dir ../runs/beauty-hie --steps 200 --json rss.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PAPER_PARAMETERS = 10_249_988  # UNGER paper, Table 4 ("Model Parameter")

# --------------------------------------------------------------------------------------------------
# Pure functions (tested in tests/test_benchmark_footprint.py)
# --------------------------------------------------------------------------------------------------


def packed_bits_per_item(codebook_sizes: Sequence[int]) -> int:
    """Bits of one item's code when every level is stored in ceil(log2 K) bits (K = 1 needs none)."""
    if any(int(k) < 1 for k in codebook_sizes):
        raise ValueError(f"codebook sizes must be >= 1, got {list(codebook_sizes)}")
    return sum(math.ceil(math.log2(int(k))) for k in codebook_sizes)


def code_bytes_per_item(codebook_sizes: Sequence[int]) -> dict[str, float]:
    """Bytes per item of a code table in three layouts: bit-packed, the smallest integer per level, int32."""
    smallest = sum(1 if k <= 2**8 else 2 if k <= 2**16 else 4 for k in codebook_sizes)
    return {"bit_packed": packed_bits_per_item(codebook_sizes) / 8, "smallest_int_per_level": float(smallest),
            "int32_per_level": 4.0 * len(codebook_sizes)}


def embedding_bytes_per_item(dim: int, bytes_per_value: int = 4) -> int:
    """Bytes per item of a dense (num_items, dim) table (float32 by default)."""
    if dim < 1 or bytes_per_value < 1:
        raise ValueError("dim and bytes_per_value must be positive")
    return dim * bytes_per_value


def parameter_breakdown(named_parameters: Mapping[str, int]) -> dict[str, int]:
    """Parameter counts grouped by part of an UNGER model (names as in ``model.named_parameters()``).

    Parts: ``code_embeddings`` (shared input table), ``lm_head``, ``encoder_layers``, ``decoder_layers``,
    ``history_items`` (per-item history embedding or its projection), ``distillation`` (token + projection),
    ``positions_and_norms`` (everything else); ``total`` is their sum.
    """
    parts = dict.fromkeys(("code_embeddings", "lm_head", "encoder_layers", "decoder_layers", "history_items",
                           "distillation", "positions_and_norms"), 0)
    for name, count in named_parameters.items():
        if name.startswith("encoder.embed_tokens"):
            part = "code_embeddings"
        elif name.startswith("lm_head"):
            part = "lm_head"
        elif name.startswith("encoder.layers."):
            part = "encoder_layers"
        elif name.startswith("decoder.layers."):
            part = "decoder_layers"
        elif name.startswith(("encoder.history_item", "encoder.history_items")):
            part = "history_items"
        elif name.startswith("distillation"):
            part = "distillation"
        else:
            part = "positions_and_norms"
        parts[part] += int(count)
    parts["total"] = sum(parts.values())
    return parts


def t5_parameter_count(*, vocab: int, d_model: int, d_kv: int, heads: int, d_ff: int, encoder_layers: int,
                       decoder_layers: int, tied: bool, gated: bool = False, buckets: int = 32) -> int:
    """Parameters of ``transformers.T5ForConditionalGeneration`` for these sizes (no biases, RMS norms).

    Per encoder layer: self-attention (q, k, v, o: 4 x d_model x heads*d_kv), feed-forward (2 or, gated,
    3 x d_model x d_ff) and 2 norms; per decoder layer one more attention and norm; one relative-position
    bias table (buckets x heads) per stack, a final norm per stack, the shared embedding and, untied, a
    separate lm_head (T5 v1.1 in transformers 4.x; transformers 5 always ties T5 unless the attribute is
    overridden, and then also unties the encoder/decoder input tables). Checked against the real class.
    """
    attention = 4 * d_model * heads * d_kv
    ffn = (3 if gated else 2) * d_model * d_ff
    encoder = encoder_layers * (attention + ffn + 2 * d_model) + buckets * heads + d_model
    decoder = decoder_layers * (2 * attention + ffn + 3 * d_model) + buckets * heads + d_model
    return vocab * d_model * (1 if tied else 2) + encoder + decoder


# --------------------------------------------------------------------------------------------------
# static: parameters and bytes per item
# --------------------------------------------------------------------------------------------------


def safetensors_counts(path: Path, frozen: Sequence[str] = ("semantic_table",)) -> dict[str, int]:
    """Element counts of a safetensors file from its header (nothing loaded): ``trainable`` and ``frozen``
    (tensors named in ``frozen``, e.g. Stage I's fixed semantic-embedding table), and their ``total``."""
    from safetensors import safe_open

    counts = {"trainable": 0, "frozen": 0}
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
            size = math.prod(handle.get_slice(name).get_shape())
            counts["frozen" if name in frozen else "trainable"] += size
    counts["total"] = counts["trainable"] + counts["frozen"]
    return counts


def per_item_tensors(path: Path, num_items: int) -> dict[str, dict[str, Any]]:
    """Tensors of a safetensors file whose first dimension is ``num_items``: shape, dtype, bytes per item."""
    from safetensors import safe_open

    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    out: dict[str, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
            piece = handle.get_slice(name)
            shape, dtype = piece.get_shape(), piece.get_dtype()
            if shape and shape[0] == num_items:
                out[name] = {"shape": shape, "dtype": dtype,
                             "bytes_per_item": sizes[dtype] * math.prod(shape[1:])}
    return out


def _count(config: Any) -> dict[str, int]:
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    model = UngerForGenerativeRecommendation(config)
    return parameter_breakdown({n: p.numel() for n, p in model.named_parameters()})


def static(model_dir: Path) -> dict[str, Any]:
    """Parameter counts and bytes per item for the saved model in ``model_dir`` (no training, seconds)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    import genrec  # noqa: F401  (Auto registration)
    from genrec.modeling.configuration_unger import UngerConfig

    hf_logging.set_verbosity_error()
    model = AutoModel.from_pretrained(model_dir)
    config = model.config
    n = config.num_items
    sizes = list(config.codebook_sizes)
    trained = parameter_breakdown({name: p.numel() for name, p in model.named_parameters()})
    base = {k: v for k, v in config.to_dict().items()
            if k not in ("model_type", "transformers_version", "architectures", "dtype")}
    configs: dict[str, dict[str, Any]] = {
        "trained model (default profile: per_item, integrated history, constrained, distillation)": {},
        "default profile, no distillation head": {"distillation_weight": 0.0},
        "default profile, no integrated history, no distillation": {
            "distillation_weight": 0.0, "history_item_embedding": "none"},
    }
    paper_binding = {"num_code_levels": 4, "codebook_sizes": [256] * 4, "code_token_offsets": None,
                     "vocab_size": 4 + 4 * 256, "code_table_hash": None}
    paper = {**paper_binding, "history_mode": "flattened", "history_item_embedding": "none",
             "constrained_training": False}
    configs["paper profile (flattened, 4 levels x 256), distillation head (128)"] = paper
    configs["paper profile, no distillation head"] = {**paper, "distillation_weight": 0.0}
    counts = {}
    for label, overrides in configs.items():
        counts[label] = trained if not overrides else _count(UngerConfig(**{**base, **overrides}))
    candidates = {
        "T5 (HF), Table 4 sizes: d 96, FFN 256, 6 heads x d_kv 16, 1 enc + 4 dec layers, our 1,028-token vocab":
            t5_parameter_count(vocab=1028, d_model=96, d_kv=16, heads=6, d_ff=256, encoder_layers=1,
                               decoder_layers=4, tied=False),
        "T5 (HF), same but d_kv 64 (T5's default), 4 enc + 4 dec layers":
            t5_parameter_count(vocab=1028, d_model=96, d_kv=64, heads=6, d_ff=256, encoder_layers=4,
                               decoder_layers=4, tied=False),
        "T5 (HF), d_kv 64, 4 + 4 layers, t5-small's 32,128-token vocabulary kept (untied)":
            t5_parameter_count(vocab=32128, d_model=96, d_kv=64, heads=6, d_ff=256, encoder_layers=4,
                               decoder_layers=4, tied=False),
        "T5 (HF), d_kv 64, 1 + 4 layers, 32,128-token vocabulary (untied) + item table 12,101 x 128":
            t5_parameter_count(vocab=32128, d_model=96, d_kv=64, heads=6, d_ff=256, encoder_layers=1,
                               decoder_layers=4, tied=False) + n * 128,
    }
    stage1_file = model_dir / "stage1" / "best" / "model.safetensors"
    stage1 = safetensors_counts(stage1_file) if stage1_file.is_file() else None
    table_file = model_dir / "code_table.parquet"
    weights = model_dir / "model.safetensors"
    # what the weights file holds per item (read from its header: a buffer the model would have but an older
    # file lacks, e.g. item_codes, is not counted)
    buffers = per_item_tensors(weights, n) if weights.is_file() else {}
    per_item_buffers = sum(v["bytes_per_item"] for v in buffers.values())
    return {
        "model_dir": str(model_dir), "num_items": n, "codebook_sizes": sizes, "d_model": config.d_model,
        "paper_parameters": PAPER_PARAMETERS, "parameters": counts, "paper_candidates": candidates,
        "stage1_parameters": stage1,
        "bytes_per_item": {
            "code_table": code_bytes_per_item(sizes),
            "code_table_parquet_file": table_file.stat().st_size / n if table_file.is_file() else None,
            "float32_embedding": {str(d): embedding_bytes_per_item(d) for d in (64, 96, 128)},
            "saved_model_per_item_buffers": per_item_buffers,
        },
        "buffers": buffers,
        "model_safetensors_bytes": weights.stat().st_size if weights.is_file() else None,
        "parameter_bytes_float32": 4 * trained["total"],
    }


# --------------------------------------------------------------------------------------------------
# rss: children measured by os.wait4
# --------------------------------------------------------------------------------------------------


def _rss_now_kib() -> int:
    """Current resident set size of this process (KiB) from /proc (0 where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` and return its exit status, its own peak RSS (``ru_maxrss`` from ``os.wait4``, MiB) and its
    wall / user+system CPU seconds; its stdout's last line is parsed as JSON when it is one."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, env=dict(env) if env is not None else None,
                            text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout:
        proc.stdout.close()
    peak_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        report = {"stdout_tail": lines[-5:]}
    return {"returncode": proc.returncode, "peak_rss_mib": peak_kib / 1024, "wall_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime, "child": report}


def _child_imports() -> float:
    """Import what every child imports; returns the RSS after it (MiB)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import genrec  # noqa: F401

    return _rss_now_kib() / 1024


def child_import_only(args: argparse.Namespace) -> dict[str, Any]:
    return {"rss_after_imports_mib": _child_imports()}


def child_serve(args: argparse.Namespace) -> dict[str, Any]:
    """Load the saved folder and recommend for ``args.users`` test users (20 beams, k 20)."""
    imported = _child_imports()
    import torch
    from serving_speed import test_histories  # sibling script (benchmarks/ on sys.path)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    # the test histories first (the dataset is this benchmark's input, not part of serving)
    histories = test_histories(args.model_dir / "data", args.users, 20)
    with_data = _rss_now_kib() / 1024
    model = AutoModel.from_pretrained(args.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    loaded = _rss_now_kib() / 1024
    start = time.perf_counter()
    model.recommend(histories, tokenizer, k=20, num_beams=20, batch_size=args.batch_size, exclude_history=False)
    return {"rss_after_imports_mib": imported, "rss_after_data_mib": with_data, "rss_after_load_mib": loaded,
            "rss_after_recommend_mib": _rss_now_kib() / 1024, "users": len(histories),
            "batch_size": args.batch_size, "beams": 20, "recommend_s": time.perf_counter() - start}


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    """A short Stage II training on the run's data, codes and integrated embeddings (temporary output)."""
    imported = _child_imports()
    import logging

    import torch

    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.trainers.stages.stage2 import train_stage2

    logging.disable(logging.INFO)
    torch.set_num_threads(args.threads)
    run = json.loads((args.model_dir / "run.json").read_text())
    profile = run.get("profile") or {}
    stage2_config = profile.get("stage2_config", {}) if isinstance(profile, dict) else {}
    with tempfile.TemporaryDirectory(prefix="genrec-rss-train-") as tmp:
        start = time.perf_counter()
        result = train_stage2(
            args.model_dir / "data", args.model_dir / "semantic_ids" / "tokenizer", Path(tmp) / "stage2",
            config=UngerConfig(**stage2_config),
            integrated_embeddings=args.model_dir / "stage1" / "integrated_embeddings.safetensors",
            max_steps=args.steps, warmup_steps=min(300, args.steps // 2), eval_every=args.steps,
            max_eval_users=256, evaluate_test=False, log_with=None, show_progress=False, seed=2024,
        )
        wall = time.perf_counter() - start
    return {"rss_after_imports_mib": imported, "steps": result.global_step, "batch_size": 256,
            "stage2_config": stage2_config, "train_s": wall, "distillation": result.distillation}


def rss(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of the import-only, serve and train children."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--model-dir", str(args.model_dir), "--threads", str(args.threads)]
    result: dict[str, Any] = {"threads": args.threads, "python": platform.python_version()}
    for name, extra in (("import-only", []), ("serve", ["--users", str(args.users)]),
                        ("train", ["--steps", str(args.steps)])):
        print(f"{name} ...", file=sys.stderr, flush=True)
        measured = run_child([*me, f"child-{name}", *common, *extra], env)
        if measured["returncode"] != 0:
            raise RuntimeError(f"child {name} exited with {measured['returncode']}: {measured['child']}")
        result[name] = measured
        print(f"{name}: peak RSS {measured['peak_rss_mib']:.0f} MiB, {measured['wall_s']:.0f} s wall, "
              f"{measured['cpu_s']:.0f} s CPU", file=sys.stderr, flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["static", "rss", "child-import-only", "child-serve", "child-train"])
    parser.add_argument("--model-dir", type=Path, required=True, help="a `genrec run` output folder")
    parser.add_argument("--steps", type=int, default=200, help="train: optimiser steps")
    parser.add_argument("--users", type=int, default=256, help="serve: test users recommended for")
    parser.add_argument("--batch-size", type=int, default=256, help="serve: users per beam search")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.mode.startswith("child-"):
        fn = {"child-import-only": child_import_only, "child-serve": child_serve, "child-train": child_train}
        print(json.dumps(fn[args.mode](args)))  # the last stdout line: read by run_child
        return 0
    result = static(args.model_dir) if args.mode == "static" else rss(args)
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
