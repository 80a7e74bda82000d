"""The ``genrec`` verbs as functions: each calls the library and returns the text the verb prints.

One function per verb of the command line (``genrec.commands.<verb>`` parses the flags and calls it): the main job
(:func:`run`, :func:`transition_prior`), its steps one at a time (:func:`prepare`, :func:`embed`,
:func:`quantize`, :func:`stage1`, :func:`train`), using a trained model of any family (:func:`evaluate`,
:func:`recommend`, through :func:`~genrec.trainers.jobs.load.load_recommender`), :func:`finetune` and
:func:`push`. Heavy imports stay inside the functions: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import write_text_atomic
from genrec.trainers.stages.stage2_defaults import (
    PAPER_BATCH_SIZE,
    PAPER_LR,
    PAPER_MAX_STEPS,
    PAPER_WARMUP_STEPS,
)

__all__ = [
    "TRAIN_DEFAULTS", "embed", "end_command", "evaluate", "finetune", "prepare", "push", "quantize", "recommend",
    "recommend_dataset", "run", "stage1", "train", "transition_prior",
]

#: ``genrec train``'s schedule defaults: the paper's Stage II recipe (UNGER §4.1.3).
TRAIN_DEFAULTS = {
    "max_steps": PAPER_MAX_STEPS, "warmup_steps": PAPER_WARMUP_STEPS, "batch_size": PAPER_BATCH_SIZE, "lr": PAPER_LR,
}


def _lines(*lines: str) -> str:
    return "\n".join(lines)


def end_command(*, completed: bool) -> None:
    """What every verb does on its way out: under ``accelerate launch`` / ``torchrun``, close the process group
    while the interpreter is still alive (:func:`~genrec.trainers.engine.processes.end_processes`; a process that
    exits with a live gloo group can abort in its teardown after its work is done)."""
    from genrec.trainers.engine.processes import end_processes

    end_processes(completed=completed)


# ---------------------------------------------------------------------------------------------- the main job


def modality_files(values: Sequence[str]) -> dict[str, str]:
    """``["image=img.safetensors", ...]`` -> ``{"image": "img.safetensors"}`` (ValueError on a bad entry)."""
    files: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--modality {value!r}: expected NAME=FILE, e.g. image=image_embeddings.safetensors")
        if name in files:
            raise ValueError(f"--modality {name!r} given twice")
        files[name] = path
    return files


def run(
    dataset: str, out: Path, *, source: str | None = None, encoder: str | None = None, max_history: int = 20,
    levels: int | None = None, codebook_size: int = 256, seed: int = 2024, profile: str = "default",
    overwrite: bool = False, revision: str | None = None, model: str = "unger", modality: Sequence[str] = (),
    decode_modality: str = "collaborative", mask_probability: float = 0.0, stage2_steps: int | None = None,
    history_feed: str = "item_sum", until: str | None = None, mixed_precision: str = "no", report_to: str = "auto",
) -> str:
    """``genrec run``: :func:`~genrec.trainers.jobs.run.run_pipeline`; per stage its time and folder, then the
    test metrics (``modality``: ``NAME=FILE`` entries, see :func:`modality_files`). A ``dataset`` that is no known
    name, folder or Hub id fails at once, before torch loads and before ``out`` is touched."""
    from genrec.trainers.jobs.profiles import infer_source

    if source is None:
        infer_source(dataset)  # ValueError naming the closest known name (run_pipeline infers it again)
    from genrec.trainers.jobs.run import run_pipeline
    from genrec.trainers.jobs.run_report import format_run_report

    summary = run_pipeline(
        dataset, out, source=source, encoder=encoder, max_history=max_history, num_levels=levels,
        codebook_size=codebook_size, seed=seed, profile=profile, overwrite=overwrite, data_revision=revision,
        model=model, modalities=modality_files(modality), decode_modality=decode_modality,
        mask_probability=mask_probability, stage2_max_steps=stage2_steps, history_feed=history_feed, until=until,
        mixed_precision=mixed_precision, report_to=report_to,
    )
    return format_run_report(summary, out, dataset=dataset)


def transition_prior(run_dir: Path, *, smoothing: str | float | None = None) -> str:
    """``genrec transition-prior``: :func:`~genrec.trainers.jobs.run.add_transition_prior` (``smoothing``: a
    c >= 0, ``"auto"`` to choose it on validation with the weight, or None for what the run's profile says);
    the model's test metrics alone and with the prior."""
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.jobs.run import add_transition_prior
    from genrec.trainers.stages.transition_smoothing import smoothing_candidates

    smoothings = None if smoothing is None else smoothing_candidates(smoothing)
    summary = add_transition_prior(run_dir, smoothings=smoothings)
    prior = summary["transition_prior"]
    chosen = f"w = {prior['weight']}" + (f", c = {prior['smoothing']}" if prior.get("smoothing") else "")
    return _lines(
        f"transition prior: {chosen} over {prior['num_transitions']} training pairs",
        format_metrics(summary["model_test_metrics"], title="test, the model alone"),
        format_metrics(summary["test_metrics"], title=f"test, with the transition prior ({chosen})"),
    )


# ---------------------------------------------------------------------------------------------- its steps


def prepare(
    source: str, out: Path, *, path: str | None = None, reviews: Path | None = None, meta: Path | None = None,
    max_history: int = 20, kcore: int = 5, overwrite: bool = False, on_error: str = "raise",
    revision: str | None = None,
) -> str:
    """``genrec prepare``: :func:`~genrec.data_scripts.prepare.prepare_dataset`; its report."""
    from genrec.data_scripts.prepare import prepare_dataset

    report = prepare_dataset(
        source, out, path=path, reviews=reviews, meta=meta, max_history=max_history, kcore=kcore,
        overwrite=overwrite, on_error=on_error, revision=revision,
    )
    return _lines(str(report), f"wrote {out}")


def embed(
    data: str, *, out: Path | None = None, encoder: str | None = None, template: str | None = None,
    pooling: str = "auto", batch_size: int = 64, max_length: int = 128, device: str | None = None,
    revision: str | None = None, encoder_revision: str | None = None,
) -> str:
    """``genrec embed``: :func:`~genrec.data_scripts.embeddings.embed_dataset`; items x dims, file, seconds.

    Under ``accelerate launch`` the items are split across the processes and gathered in catalogue order; the
    main process writes the file (the same file and cache key as one process)."""
    from genrec.data_scripts.embeddings import embed_dataset
    from genrec.modeling.packaged_bases import encoder_arguments
    from genrec.trainers.engine.processes import is_main_process, map_batches, wait_for_everyone

    start = time.perf_counter()
    encoder, pooling = encoder_arguments(encoder, pooling)  # a packaged LLaMA's name -> its GGUF file
    path, emb = embed_dataset(
        data, out=out, encoder=encoder, template=template, pooling=pooling, batch_size=batch_size,
        max_length=max_length, device=device, revision=revision, encoder_revision=encoder_revision,
        map_batches=map_batches, write=is_main_process(),
    )
    wait_for_everyone()
    seconds = time.perf_counter() - start
    n, dim = emb.embeddings.shape
    return f"{n} items x {dim} dims -> {path} ({seconds:.1f} s)"


def quantize(
    embeddings: Path, out: Path, *, method: str = "residual_kmeans", levels: int = 3, codebook_size: int = 256,
    seed: int = 2024, resolve_collisions: str = "none", always_append_collision_level: bool = False,
    overwrite: bool = False,
) -> str:
    """``genrec quantize``: :func:`~genrec.trainers.stages.quantize.quantize_embeddings`; the code layout."""
    from genrec.trainers.stages.quantize import quantize_embeddings

    result = quantize_embeddings(
        embeddings, out, method=method, num_levels=levels, codebook_size=codebook_size, seed=seed,
        resolve_collisions=resolve_collisions, always_append_collision_level=always_append_collision_level,
        overwrite=overwrite,
    )
    return (
        f"{result.num_items} items -> {result.num_levels} levels {result.codebook_sizes}, "
        f"collision rate {result.collision_rate:.4f} (largest group {result.max_collision_group}), "
        f"fit {result.fit_seconds:.1f} s -> {result.tokenizer_dir}"
    )


def stage1(
    data: str, embeddings: Path, out: Path, *, mode: str = "unger", fusion: str | None = None,
    encoder: str = "din", config: Mapping[str, Any] | None = None, epochs: int | None = None,
    max_steps: int | None = None, patience: int = 5, time_budget_min: float | None = None,
    mixed_precision: str = "no", seed: int = 2024, restart: bool = False, data_revision: str | None = None,
    report_to: str = "auto",
) -> str:
    """``genrec stage1``: :func:`~genrec.trainers.stages.stage1.train_stage1` with an ``UngerFusionConfig`` of
    ``mode``, ``encoder``, ``fusion`` (None: the config's) and the ``config`` overrides; the best step.
    ``report_to``: the trackers of ``OUT/logs`` (checked before ``out`` is made)."""
    from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
    from genrec.trainers.engine.accelerator import resolve_log_with
    from genrec.trainers.stages.stage1 import train_stage1

    resolve_log_with(report_to)  # a tracker that is not installed fails here, before anything is written

    values = {"mode": mode, "collaborative_encoder": encoder, **(config or {})}
    if fusion:
        values["fusion"] = fusion
    result = train_stage1(
        data, embeddings, out, config=UngerFusionConfig(**values), epochs=epochs, max_steps=max_steps,
        patience=patience, time_budget_s=time_budget_min * 60 if time_budget_min else None,
        mixed_precision=mixed_precision, seed=seed, resume=not restart, data_revision=data_revision,
        log_with=report_to,
    )
    return (
        f"stage1: {result.global_step} steps in {result.wall_time_s:.0f} s ({result.stop_reason}); best step "
        f"{result.best_step}: validation Recall@10 {result.validation_recall_at_10:.4f}, "
        f"NDCG@10 {result.validation_ndcg_at_10:.4f} -> {result.embeddings_path}"
    )


def train(
    data: str, tokenizer: str, out: Path, *, integrated_embeddings: Path | None = None,
    history_mode: str | None = None, constrained_training: bool = False, distillation_weight: float | None = None,
    config: Mapping[str, Any] | None = None, max_steps: int = PAPER_MAX_STEPS,
    warmup_steps: int = PAPER_WARMUP_STEPS, batch_size: int = PAPER_BATCH_SIZE, lr: float = PAPER_LR,
    eval_every: int | None = None, eval_beams: int = 20, max_eval_users: int | None = None,
    patience: int | None = None, mixed_precision: str = "no", seed: int = 2024, restart: bool = False,
    data_revision: str | None = None, report_to: str = "auto",
) -> str:
    """``genrec train``: :func:`~genrec.trainers.stages.stage2.train_stage2` with an ``UngerConfig`` of the
    ``config`` overrides and the flags that are set; the best step and its test metrics. ``report_to``: the
    trackers of ``OUT/logs`` (checked before anything loads)."""
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.trainers.engine.accelerator import resolve_log_with
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.stages.stage2 import train_stage2

    resolve_log_with(report_to)  # a tracker that is not installed fails here, before anything is written

    values = dict(config or {})
    if history_mode:
        values["history_mode"] = history_mode
    if constrained_training:
        values["constrained_training"] = True
    if distillation_weight is not None:
        values["distillation_weight"] = distillation_weight
    result = train_stage2(
        data, tokenizer, out, config=UngerConfig(**values), integrated_embeddings=integrated_embeddings,
        max_steps=max_steps, warmup_steps=warmup_steps, batch_size=batch_size, lr=lr, eval_every=eval_every,
        eval_beams=eval_beams, max_eval_users=max_eval_users, patience=patience, mixed_precision=mixed_precision,
        seed=seed, resume=not restart, data_revision=data_revision, log_with=report_to,
    )
    return _lines(
        f"stage2: {result.global_step} steps in {result.wall_time_s:.0f} s; best step {result.best_step}",
        format_metrics(result.test_metrics, title=f"test ({result.best_model_dir})"),
    )


# ---------------------------------------------------------------------------------------------- trained models


def evaluate(
    model: str, data: str, *, split: str = "test", k_values: Sequence[int] = (1, 5, 10, 20), num_beams: int = 20,
    batch_size: int = 256, max_users: int | None = None, out: Path | None = None, per_user: bool = False,
    revision: str | None = None, transition_weight: float | None = None, data_revision: str | None = None,
) -> str:
    """``genrec evaluate``: the model of any family (:func:`~genrec.trainers.jobs.load.load_recommender`) on
    ``split`` of ``data``, whose catalogue must be the model's; the metric table (and the result JSON at
    ``out``, written atomically; ``per_user``: with each user's target rank)."""
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.jobs.load import load_recommender

    if per_user and out is None:
        raise ValueError("--per-user writes the ranks into the --out JSON; give --out too")
    if out is not None:
        check_output_file(out)  # before the evaluation, not after it
    recommender = load_recommender(model, revision, transition_weight=transition_weight)
    sequences, items = load_genrec_dataset(data, revision=data_revision)
    recommender.check_catalogue(items["item_id"], where=f"dataset {data}")
    result = recommender.evaluate(
        sequences, split, k_values=k_values, num_beams=num_beams, batch_size=batch_size, max_users=max_users,
        per_user=per_user,
    )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(result, indent=2) + "\n")  # never a half-written report, nor a .tmp
    return format_metrics(result["metrics"], title=f"{split} ({model})")


def check_output_file(out: Path, example: str = "eval.json") -> None:
    """Refuse ``out`` as a file to write before any work is done: a folder, a path through a file, or a folder
    genrec cannot write into (``IsADirectoryError`` / ``NotADirectoryError`` / ``PermissionError``); ``example``:
    the file name the message suggests inside a folder given as ``out``."""
    out = Path(out)
    if out.is_dir():
        suffix = Path(example).suffix.lstrip(".")
        kind = {"json": "JSON", "": "output"}.get(suffix, suffix)
        raise IsADirectoryError(f"--out {out} is a folder: give the path of the {kind} file to write, e.g. {out / example}")
    parent = out.parent.absolute()
    existing = next(folder for folder in (parent, *parent.parents) if folder.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: cannot write into {existing}")
    if out.exists() and not os.access(out, os.W_OK):
        raise PermissionError(f"--out {out}: the file is read-only")


def recommend(
    model: str, history: Sequence[str], *, k: int = 10, num_beams: int | None = None, on_unknown: str = "raise",
    as_json: bool = False, revision: str | None = None, transition_weight: float | None = None,
    exclude_history: bool = True,
) -> str:
    """``genrec recommend --history``: the top-``k`` next items for one history (oldest first) by the model of any
    family; one ``item_id<TAB>score`` line per item, best first (``as_json``: a JSON list). ``exclude_history``
    (default True): the history's own items are not recommended. ``k`` above the catalogue is a ``ValueError``."""
    from genrec.trainers.jobs.load import load_recommender

    recommender = load_recommender(model, revision, transition_weight=transition_weight)
    _check_k(k, recommender.num_items)
    (ranked,) = recommender.recommend([history], k=k, num_beams=num_beams, on_unknown=on_unknown,
                                      exclude_history=exclude_history)
    if not ranked:
        if exclude_history and len(set(history)) >= recommender.num_items:
            raise ValueError("the history holds every item of the catalogue: nothing is left to recommend "
                             "(--no-exclude-history keeps the history's items)")
        raise ValueError(f"none of the history's item ids is known to the model: {history}")
    if as_json:
        return json.dumps([{"item_id": item, "score": score} for item, score in ranked])
    return _lines(*(f"{item}\t{score:.4f}" for item, score in ranked))


def _check_k(k: int, num_items: int) -> None:
    """``-k`` must be a positive int and at most the catalogue size (a larger one used to be capped silently)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"-k must be a positive number of items, got {k!r}")
    if k > num_items:
        raise ValueError(f"-k {k} is more than the catalogue's {num_items} items")


def recommend_dataset(
    model: str, data: str, out: Path, *, split: str = "test", k: int = 10, num_beams: int | None = None,
    batch_size: int | None = None, on_unknown: str = "raise", revision: str | None = None,
    data_revision: str | None = None, transition_weight: float | None = None, exclude_history: bool = True,
    show_progress: bool = True,
) -> str:
    """``genrec recommend --data``: batch inference, the top-``k`` of every user (row) of ``split`` of a prepared
    dataset (:func:`~genrec.trainers.jobs.batch_recommend.recommend_split`: history = the row without its last
    item, as evaluation reads it) written atomically to the parquet file ``out`` (columns user, rank, item,
    score; an existing file is replaced, as ``genrec evaluate --out`` does). The dataset's catalogue must be the
    model's. ``batch_size`` default: 256 users for UNGER models, 8 prompts for TTDS. Under ``accelerate launch``
    the users are split across the processes and the main process writes the file. Returns a one-line summary."""
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.jobs.batch_recommend import recommend_split, write_topk_parquet
    from genrec.trainers.jobs.load import load_recommender

    out = Path(out)
    check_output_file(out, example="topk.parquet")  # before any work, not after it
    start = time.perf_counter()
    recommender = load_recommender(model, revision, transition_weight=transition_weight)
    _check_k(k, recommender.num_items)
    sequences, items = load_genrec_dataset(data, revision=data_revision)
    if split not in sequences:
        raise ValueError(f"dataset {data} has no split {split!r} (splits: {list(sequences)})")
    recommender.check_catalogue(items["item_id"], where=f"dataset {data}")
    if batch_size is None:
        batch_size = 8 if recommender.family == "ttds" else 256
    result = recommend_split(
        recommender, sequences[split], k=k, num_beams=num_beams, batch_size=batch_size, on_unknown=on_unknown,
        exclude_history=exclude_history, desc=f"recommend {split}", show_progress=show_progress,
    )
    write_topk_parquet(out, result)
    seconds = time.perf_counter() - start
    skipped = (f"; {result.num_skipped_no_history} rows without a history item left out"
               if result.num_skipped_no_history else "")
    return (f"{len(result.users)} users of {split} x top {k} ({result.num_rows} rows) -> {out} "
            f"({seconds:.1f} s{skipped})")


def finetune(
    dataset: str, out: Path, *, source: str | None = None, base_model: str | None = None,
    revision: str | None = None, data_revision: str | None = None, profile: str = "default",
    stage2_steps: int | None = None, scratch: bool = False, seed: int = 2024, overwrite: bool = False,
    dtype: str = "auto", config: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
    report_to: str = "auto",
) -> str:
    """``genrec finetune``: :func:`~genrec.trainers.jobs.finetune.finetune` (UNGER or TTDS, by what ``source``
    is); UNGER: the test metrics and the model folder; TTDS: the metrics per split (JSON)."""
    from genrec.trainers.engine.accelerator import resolve_log_with
    from genrec.trainers.jobs.finetune import finetune as finetune_any

    resolve_log_with(report_to)  # a tracker that is not installed fails here, before any model loads

    family, summary = finetune_any(
        dataset, out, source=source, base_model=base_model, revision=revision, data_revision=data_revision,
        profile=profile, stage2_steps=stage2_steps, seed=seed, transfer=not scratch, overwrite=overwrite,
        dtype=dtype, config_overrides=dict(config or {}), training=dict(training or {}), report_to=report_to,
    )
    if family == "unger":
        from genrec.trainers.evaluation.metrics import format_metrics

        what = "from scratch (control)" if scratch else f"fine-tuned from {source}"
        return _lines(
            format_metrics(summary["test_metrics"], title=f"test metrics ({dataset}, {what})"), f"model: {out}"
        )
    from genrec.trainers.ttds import summarize_metrics

    return json.dumps({split: summarize_metrics(m) for split, m in summary["metrics"].items()}, indent=2)


def push(
    folder: Path, repo_id: str, *, dataset: bool = False, private: bool = False, revision: str | None = None,
    dataset_repo: str | None = None, with_embeddings: bool = False, code_table: Path | None = None,
    no_code_table: bool = False, echo: Callable[[str], None] = print,
) -> str:
    """``genrec push``: a run / model folder (:func:`~genrec.trainers.jobs.push.push_run_folder`) or, with
    ``dataset``, a prepared dataset folder with its model's code table as a config; the commit's URL.
    ``echo`` receives what is said before the upload (the code table it adds)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if dataset:
        from genrec.data_scripts.prepare import push_dataset_folder
        from genrec.trainers.jobs.push import code_table_config_operations, find_run_code_table

        source = None if no_code_table else (code_table or find_run_code_table(folder))
        extra = [] if source is None else code_table_config_operations(folder, source, repo_id=repo_id)
        if source is not None:
            echo(f"adding the code table of {source} as the `code_table` config")
        url = push_dataset_folder(
            folder, repo_id, private=private, include_embeddings=with_embeddings, extra_operations=extra
        )
    else:
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: push a run folder or a best/ folder")
        from genrec.trainers.jobs.push import push_run_folder

        url = push_run_folder(folder, repo_id, private=private, revision=revision, dataset_repo=dataset_repo)
    return str(url)
