"""Training, evaluation and packaging of the TTDS-style LLM recommender (paper Sec. 4, 5.1).

What this module adds around :class:`~genrec.modeling.modeling_ttds.TTDSForCausalLM`:

* **Data -> instruction examples** (:class:`TTDSData`): from a genrec dataset (``sequences`` train /
  validation / test, ``items`` with text fields, optionally ``users`` with profile fields) it builds the
  paper's fine-tuning tasks, each with several instruction templates (:data:`TASK_TEMPLATES`):
  ``seqrec`` (next item from a history, with the user's tokens), ``next_user`` (next user from an item's
  chronological user sequence, Sec. 4.2.4), ``user_text`` (the user's next review / search query, from a
  ``review`` / ``query`` column of the sequences when the dataset has one; skipped and logged otherwise),
  ``item2tokens`` / ``tokens2item`` (item text <-> item tokens). Item texts come from
  ``genrec.data_scripts.embeddings.render_item_texts``; user texts are the user's profile fields when a
  ``users`` table exists, followed by the titles of the user's most recent training items (the paper's
  user content is reviews / queries / profile; without them the history titles are the user's text).
* **Dynamic code tables** (:class:`CodeState`): item and user codes are the towers' codes of the current
  LLM representations, made unique by the shared ``CodeTable`` (always with the collision level, so every
  code has ``M + 1`` tokens and the LLM never sees the code length change), recomputed every
  ``code_update_steps`` joint steps; prompts are rendered from the current tables at batch time.
* **Training** (:class:`TTDSTrainer`): Accelerate (``genrec.trainers.engine.accelerator``), AdamW, warm-up of
  the generators with the LLM frozen (lr 1e-3), then joint training (lr 5e-4) with
  ``L = L_LLM + alpha (L_ID + beta L_Token)``; activation checkpointing and bf16 where available; resumable
  checkpoints holding only what trains (LoRA, new token rows, towers) plus optimiser/scheduler/RNG and the
  current code tables.
* **Inference and packaging** (:class:`TTDSRecommender`): constrained beam search over item codes (left
  padded prompts, the shared ``SemanticIDLogitsProcessor``), item ids via ``CodeTable.items_for_codes``,
  full-corpus HR/NDCG via the shared ``compute_metrics``; ``save_pretrained`` / ``from_pretrained`` of
  model + adapter + tokenizer + both code tables (hash-checked against the model config).

The LLM path lives in :mod:`genrec.trainers.ttds`, one module per idea: ``args`` (arguments, run-folder
layout), ``data`` (tasks from a dataset), ``prompts`` (templates, rendering, collator), ``codes`` (dynamic code
tables), ``code_updates``, ``recommender`` (inference, save / load), ``trainer`` (the training loop), ``tiny``
(tiny bases); its ``__init__`` names the public parts. This module is the job: ``run_ttds``, its card and the
``python -m genrec.trainers.jobs.ttds`` entry point.
"""


from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.modeling.packaged_bases import base_load_arguments, packaged_base
from genrec.modeling.tokenization_ttds import extend_tokenizer
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.evaluation.evaluator import write_per_user_ranks
from genrec.trainers.jobs.output_folder import check_not_inside
from genrec.trainers.ttds import (
    ITEM_TABLE_DIR,
    TRAINING_SUMMARY,
    TTDSData,
    TTDSTrainer,
    TTDSTrainingArguments,
    attach_reviews,
    iter_sizes,
    resolve_recommender_folder,
    summarize_metrics,
)

logger = logging.getLogger(__name__)

__all__ = ["main", "run_ttds", "with_reviews", "write_ttds_card"]


# ------------------------------------------------------------------------------------------------ job


def run_ttds(
    dataset: str | Path,
    base_model: str | None,
    output_dir: str | Path,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    dtype: str | None = "auto",
    users: Any = None,
    eval_splits: Sequence[str] = ("validation", "test"),
    revision: str | None = None,
    data_revision: str | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """One TTDS job: dataset folder / Hub id + base LLM name -> trained, saved and evaluated recommender.

    ``dataset`` is a genrec dataset (``load_genrec_dataset``, at ``data_revision`` for a Hub id);
    ``base_model`` any LLaMA-architecture causal LM (Hub name or folder, at ``revision``, recorded in the config
    and the adapter so that reloading uses the same base). ``init_from`` (instead of ``base_model``): a saved
    TTDS recommender (folder or Hub id at ``revision``) to continue from on a new domain: its LoRA adapter,
    token rows and towers are the starting point; the codebooks are re-initialised on the new domain's items
    (k-means over the transferred towers' representations, as for a fresh run) so that the codes cover the new
    catalogue. ``config_overrides`` go to :class:`TTDSConfig` (fresh runs only), ``training`` to
    :class:`TTDSTrainingArguments`. ``dtype="auto"``: bf16 weights on a bf16-capable GPU, else float32.
    The recommender is saved to ``output_dir/final`` with a model card (``README.md``); the summary (losses,
    code statistics, metrics per split, timings) to ``output_dir/ttds_training.json`` and returned; each
    evaluated user's target rank to ``output_dir/{split}_ranks.json`` (the format of ``genrec evaluate
    --per-user``, for paired comparisons of two runs). Test-split numbers are the ones to report; validation
    numbers are labelled as such.
    """
    from transformers import AutoTokenizer

    from genrec.data_scripts.dataset_loading import check_trainable
    from genrec.data_scripts.prepare import load_genrec_dataset

    if (base_model is None) == (init_from is None):
        raise ValueError("run_ttds needs exactly one of base_model (a fresh run) or init_from (a saved TTDS model)")
    # the output folder is never the dataset or the model it reads, nor around them
    check_not_inside(output_dir, {"--dataset": dataset, "--from": init_from, "--base-model": base_model})
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sequences, items = load_genrec_dataset(dataset, revision=data_revision)
    check_trainable(sequences, str(dataset))
    args = TTDSTrainingArguments(output_dir=str(output_dir), **dict(training or {}))
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if init_from is not None:
        if config_overrides:
            raise ValueError("config overrides apply to a fresh run; a model continued from init_from keeps its config")
        folder = resolve_recommender_folder(init_from, revision=revision)
        model = TTDSForCausalLM.from_pretrained(folder, dtype=torch_dtype, is_trainable=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        extend_tokenizer(tokenizer, model.config)  # verifies the saved tokenizer has every semantic token
        model.train()
        base_model = model.config.base_model_name_or_path
    else:
        name_or_path, tokenizer_kwargs = base_load_arguments(base_model, {"revision": revision})
        # a packaged base ("smollm2-135m") reads its tokenizer from the same GGUF file as its weights
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **tokenizer_kwargs)
        config = TTDSConfig(
            base_model_name_or_path=base_model, base_model_revision=revision, **dict(config_overrides or {})
        )
        model = TTDSForCausalLM.from_base(config, tokenizer, dtype=torch_dtype, seed=args.seed)
    if torch.cuda.is_available() and args.cpu is not True:
        model.to("cuda")
    if "user_text" in args.tasks:
        sequences = with_reviews(dataset, sequences, data_revision)
    data = TTDSData.from_datasets(
        sequences, items, users=users, tasks=args.tasks, user_tower=model.config.user_tower,
        item_text_template=args.item_text_template, user_text_max_items=args.user_text_max_items,
        max_history=args.max_history, max_examples_per_task=args.max_examples_per_task, seed=args.seed,
    )
    logger.info("TTDS data: %s", dict(iter_sizes(data)))
    trainer = TTDSTrainer(model, tokenizer, data, args)
    summary = trainer.train()
    recommender = trainer.recommender()
    final_dir = output_dir / "final"
    recommender.save_pretrained(final_dir)
    summary["metrics"] = {}
    for split in eval_splits:
        if split not in sequences:
            continue
        t0 = time.perf_counter()
        metrics = recommender.evaluate(
            sequences[split], ks=args.ks, num_beams=args.num_beams, batch_size=args.eval_batch_size,
            template=args.eval_template, max_users=args.max_eval_users, per_user=True,
        )
        metrics["eval_seconds"] = time.perf_counter() - t0
        # each user's target rank, in `genrec evaluate --per-user`'s format (benchmarks/paired_compare.py)
        per_user = metrics.pop("per_user")
        write_per_user_ranks(output_dir / f"{split}_ranks.json", model=str(final_dir), split=split,
                             metrics=metrics, per_user=per_user)
        summary["metrics"][split] = metrics
        logger.info("%s: %s", split, summarize_metrics(metrics, args.ks))
    summary.update({
        "dataset": str(dataset), "dataset_revision": data_revision, "base_model": base_model,
        "base_model_revision": model.config.base_model_revision,
        "init_from": str(init_from) if init_from is not None else None, "dtype": str(torch_dtype),
        "mixed_precision": args.resolved_mixed_precision(), "config": model.config.to_dict(),
        "training_arguments": asdict(args), "total_seconds": time.perf_counter() - start,
        "item_code_table": recommender.item_table.stats(),
    })
    if recommender.user_table is not None:
        summary["user_code_table"] = recommender.user_table.stats()
    summary.update(_card_inputs(sequences, recommender.item_table, dataset))
    text = json.dumps(summary, indent=2, default=str) + "\n"
    (output_dir / TRAINING_SUMMARY).write_text(text)
    (final_dir / TRAINING_SUMMARY).write_text(text)  # travels with the model (genrec push rewrites its paths)
    write_ttds_card(final_dir, summary)
    return summary


def with_reviews(dataset: str | Path, sequences: Any, revision: str | None) -> Any:
    """``sequences`` with the review texts of the dataset's ``reviews`` config (Amazon), for the review task;
    unchanged, with a log line saying the task is skipped, when the dataset has none (ML-100K)."""
    from genrec.data_scripts.dataset_loading import load_optional_config

    if any(c in sequences["train"].column_names for c in ("review", "query")):
        return sequences
    reviews = load_optional_config(dataset, "reviews", revision=revision)
    if reviews is None:
        logger.info("dataset %s has no 'reviews' config (no review text, e.g. ML-100K): the review task "
                    "(user_text) is skipped", dataset)
        return sequences
    logger.info("review task: %d reviews from the dataset's 'reviews' config", reviews.num_rows)
    return attach_reviews(sequences, reviews)


def _card_inputs(sequences: Any, item_table: CodeTable, dataset: str | Path) -> dict[str, Any]:
    """What the model card needs beyond the metrics: a real history for the snippet and the data's source."""
    history: list[str] = []
    if "test" in sequences and len(sequences["test"]):
        row = [str(i) for i in sequences["test"][0]["item_ids"][:-1]]
        history = [i for i in row if i in item_table][-3:]
    source = None
    report = Path(str(dataset)) / "genrec_dataset.json"
    if report.is_file():
        source = json.loads(report.read_text()).get("source")
    return {"example_history": history, "dataset_source": source}


def write_ttds_card(
    directory: str | Path, summary: Mapping[str, Any], *, repo_id: str | None = None, revision: str | None = None,
    dataset_repo: str | None = None,
) -> Path:
    """Write ``directory/README.md``, the model card of the recommender saved there, from its ``summary``.

    ``repo_id`` defaults to the folder's name (``genrec push`` regenerates the card for the repo id); the
    snippet's history is ``summary["example_history"]`` (real item ids of the first test user).
    """
    from genrec.model_cards.card import save_model_card
    from genrec.model_cards.ttds_card import build_ttds_card

    directory = Path(directory)
    config = TTDSConfig.from_pretrained(directory)
    table = CodeTable.load(directory / ITEM_TABLE_DIR)
    packaged = packaged_base(config.base_model_name_or_path) if config.base_model_sha256 else None
    card = build_ttds_card(
        summary, config, table, repo_id=repo_id or directory.name, revision=revision,
        history=summary.get("example_history") or None, dataset_source=summary.get("dataset_source"),
        dataset_repo=dataset_repo,
        packaged_base=(packaged.origin, packaged.install_command) if packaged is not None else None,
    )
    return save_model_card(directory, card)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m genrec.trainers.jobs.ttds --dataset DIR --base-model NAME --output-dir DIR [options]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Train and evaluate a TTDS-style LLM recommender.")
    parser.add_argument("--dataset", required=True, help="genrec dataset folder or Hub id")
    parser.add_argument("--base-model", required=True, help="LLaMA-architecture causal LM (Hub name or folder)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--config", default="{}", help="JSON object of TTDSConfig overrides")
    parser.add_argument("--training", default="{}", help="JSON object of TTDSTrainingArguments overrides")
    parsed = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    summary = run_ttds(parsed.dataset, parsed.base_model, parsed.output_dir, dtype=parsed.dtype,
                       config_overrides=json.loads(parsed.config), training=json.loads(parsed.training))
    print(json.dumps({split: summarize_metrics(m) for split, m in summary["metrics"].items()}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
