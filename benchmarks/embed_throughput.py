"""Items per second of the semantic item encoder on ML-100K (1,682 items) and Amazon Beauty (12,101 items).

Why: ``genrec embed`` is the first compute-heavy step of the pipeline; this measures how long it takes on
the machine at hand, per batch size, with the real item texts (default template) of both benchmarks.

Usage::

    python benchmarks/embed_throughput.py                       # default encoder, batch sizes 32 64 128
    python benchmarks/embed_throughput.py --encoder meta-llama/Llama-2-7b-hf --device cuda --dtype bfloat16

The model is loaded once (its load time is printed separately); each (dataset, batch size) cell times
``encode_texts`` over all items after a one-batch warm-up. Beauty is skipped when its file is absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from datasets import Dataset

from genrec.data_scripts.embeddings import (
    default_template,
    encode_texts,
    load_encoder,
    render_item_texts,
    resolve_encoder,
    resolve_pooling,
)

# The benchmark data beside the project (../shared/data), overridable like the tests' GENREC_SHARED_DATA.
SHARED_DATA = Path(
    os.environ.get("GENREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BEAUTY_ITEMS = SHARED_DATA / "amazon-beauty-2014" / "items.jsonl"


def ml100k_items() -> Dataset:
    """ML-100K's items from the ``.item`` file shipped in the recbole wheel (recbole is not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "recbole is not installed: `pip install --no-deps recbole==1.2.1` ships ML-100K."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k" / "ml-100k.item"
    columns: dict[str, list] = {"item_id": [], "title": [], "year": [], "genres": []}
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:4] != ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]:
            raise ValueError(f"{path}: unexpected header {header}")
        for line_no, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4:
                raise ValueError(f"{path}:{line_no}: expected 4 tab-separated fields, got {len(fields)}")
            item_id, title, year, genres = fields
            columns["item_id"].append(item_id)
            columns["title"].append(title)
            columns["year"].append(year)
            columns["genres"].append(genres.split())
    return Dataset.from_dict(columns)


def beauty_items(path: Path) -> Dataset:
    """Amazon Beauty 2014 items from the shared ``items.jsonl`` (item_id, title, brand, categories, ...)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = sorted({k for row in rows for k in row})
    return Dataset.from_dict({k: [row.get(k) for row in rows] for k in keys})


def main() -> None:
    """Run the measurement grid and print one table (and optionally write it as JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--encoder", default=None, help="HF name or folder (default: packaged all-MiniLM-L6-v2)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument(
        "--beauty", type=Path, default=BEAUTY_ITEMS, help="Beauty items.jsonl (skipped if absent)"
    )
    parser.add_argument("--datasets", nargs="+", choices=("ml-100k", "beauty"), default=["ml-100k", "beauty"])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    datasets = {"ml-100k": ml100k_items()} if "ml-100k" in args.datasets else {}
    if "beauty" not in args.datasets:
        pass
    elif args.beauty.is_file():
        datasets["beauty"] = beauty_items(args.beauty)
    else:
        print(f"beauty: skipped ({args.beauty} not found)")

    spec = resolve_encoder(args.encoder)
    pooling = resolve_pooling(spec)
    start = time.perf_counter()
    model, tokenizer = load_encoder(spec, device=args.device, dtype=getattr(torch, args.dtype))
    load_s = time.perf_counter() - start
    device = next(model.parameters()).device
    load_avg = os.getloadavg()
    print(
        f"encoder {spec.name} ({pooling} pooling, {args.dtype}) on {device}, torch threads "
        f"{torch.get_num_threads()}, cpus {os.cpu_count()}, load average {load_avg[0]:.2f}; "
        f"model load {load_s:.2f} s"
    )

    results = []
    for name, items in datasets.items():
        texts = render_item_texts(items, default_template(items.column_names))
        tokens = [len(x) for x in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
        mean_tokens = sum(tokens) / len(tokens)
        for batch_size in args.batch_sizes:
            encode_texts(
                texts[:batch_size],
                model,
                tokenizer,
                pooling=pooling,
                batch_size=batch_size,
                max_length=args.max_length,
                show_progress=False,
            )  # warm-up
            start, cpu_start = time.perf_counter(), time.process_time()
            encode_texts(
                texts,
                model,
                tokenizer,
                pooling=pooling,
                batch_size=batch_size,
                max_length=args.max_length,
                show_progress=False,
            )
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            results.append(
                {
                    "dataset": name,
                    "items": len(texts),
                    "mean_tokens": round(mean_tokens, 1),
                    "batch_size": batch_size,
                    "seconds": round(seconds, 2),
                    "items_per_s": round(len(texts) / seconds, 1),
                    "cpu_seconds": round(cpu_seconds, 2),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                }
            )
            print(f"  {name} batch {batch_size}: {seconds:.2f} s", flush=True)

    # cpu s = CPU time this process used (all its threads); the load average (1 min, read at the end of
    # each cell) shows how busy the machine was: above the core count, other work shared the cores.
    print()
    print(f"| dataset | items | mean tokens | batch | wall s | items/s | cpu s | load avg |  ({device})")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['dataset']} | {r['items']} | {r['mean_tokens']} | {r['batch_size']} | {r['seconds']} "
            f"| {r['items_per_s']} | {r['cpu_seconds']} | {r['load_average_1min']} |"
        )
    if args.json:
        meta = {
            "encoder": spec.name,
            "device": str(device),
            "dtype": args.dtype,
            "load_s": round(load_s, 2),
            "torch_threads": torch.get_num_threads(),
            "load_average": load_avg[0],
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
