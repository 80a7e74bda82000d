"""The main job: one dataset through every genrec stage into one run folder.

prepare -> embed -> Stage I (integrated embeddings) -> quantize (semantic IDs of the integrated embeddings)
-> Stage II (generative recommender with distillation) -> test evaluation -> export. The TIGER profiles
(``tiger``, ``tiger-paper``) skip Stage I: they quantize the text embeddings and train Stage II without distillation.

This module only sequences library calls; each stage's logic lives in its own module. Stages already
present in the run folder are reused (and interrupted trainings resume from their checkpoints) when they
were made with the same settings and inputs, so running the same command again continues where it stopped
instead of starting over. Each stage records a fingerprint of its settings and inputs in
``fingerprints/<stage>.json`` before it starts (:mod:`genrec.trainers.jobs.fingerprints`); a stage whose
fingerprint differs (another ``--levels``, ``--codebook-size``, ``--max-history``, ``--profile``, ``--seed``,
encoder, or changed input files), and every stage downstream of it, is deleted and recomputed, with a log
line naming the difference.

The run folder's root is a ``save_pretrained`` folder of the final model (``config.json``,
``model.safetensors``, tokenizer files, ``code_table.parquet``/``.json``, ``README.md`` model card), so
``AutoModel.from_pretrained(run_dir)`` and ``AutoTokenizer.from_pretrained(run_dir)`` load it after
``import genrec``. The stages' own outputs sit in sub-folders: ``data/``, ``stage1/``, ``semantic_ids/``,
``stage2/``; derived artefacts such as the semantic embeddings live in ``embeddings/`` (never inside the
dataset folder, which is pushed as is); ``run.json`` sums the run up. The folder is self-contained: every path
that ``run.json`` and the stages' own records (``stage1_result.json``, ``quantize.json``, ``stage2_result.json``,
``test_ranks.json``, Stage I's embeddings metadata) hold is relative to the file that holds it
(:mod:`genrec.trainers.engine.files`), so that a copied or moved run folder reruns, exports and pushes its own
model, and two identical runs in two folders write the same bytes. The export writes the root all or nothing
(:mod:`genrec.trainers.jobs.export_root`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import modified_time, resolve_recorded
from genrec.trainers.engine.processes import (
    is_main_process,
    map_batches,
    num_processes,
    on_main_process,
    wait_for_everyone,
)
from genrec.trainers.jobs.export_root import staged_export
from genrec.trainers.jobs.fingerprints import (
    EMBEDDINGS_DIR,
    FINGERPRINT_FORMAT,
    SEMANTIC_EMBEDDINGS_FILE,
    adopt_legacy_run,
    prepare_fingerprint,
    quantize_fingerprint,
    stage1_fingerprint,
    stage2_fingerprint,
)
from genrec.trainers.jobs.ledger import FINGERPRINT_DIR, StageLedger, settings_digest
from genrec.trainers.jobs.output_folder import locked, owned_output_folder
from genrec.trainers.jobs.profiles import (
    MODEL_FAMILIES,
    RUN_SUMMARY_FILE,
    SAMPLED_LOSS_ABOVE_ITEMS,
    STOP_STAGES,
    PipelineProfile,
    for_catalogue,
    infer_source,
    resolve_profile,
)
from genrec.trainers.jobs.run_context import RunContext, first_stage_finished
from genrec.trainers.jobs.run_mscgrec import MODALITY_TABLES_DIR
from genrec.trainers.jobs.transition import load_best_model, transition_stage_into_summary

logger = logging.getLogger(__name__)



def prepare_and_embed(
    context: RunContext,
    dataset: str,
    *,
    source: str,
    max_history: int,
    encoder: str | None,
    data_revision: str | None,
) -> None:
    """Stages 1-2 of every model family: the prepared dataset (``out_dir/data``) and the semantic (text)
    embeddings (``out_dir/embeddings``). Records both in the run's summary and sets ``context.emb_path``,
    ``context.emb`` and the upstream fingerprint digests (``prepare``, ``embeddings``) later stages hold."""
    from genrec.data_scripts.embeddings import embed_dataset
    from genrec.data_scripts.prepare import prepare_dataset
    from genrec.modeling.packaged_bases import encoder_arguments

    data_dir = context.data_dir
    # 1. prepare (reused while the input files' contents, the source and max_history are the same)
    start = time.perf_counter()
    prepare_settings = prepare_fingerprint(dataset, source, max_history)
    if data_revision is not None:
        prepare_settings["revision"] = data_revision
    context.ledger.claim("prepare", prepare_settings, [data_dir])
    prepared_before = first_stage_finished(context.out_dir)

    def prepare() -> None:  # the main process prepares; the others read the folder afterwards
        if not prepared_before:
            path = None if source == "ml-100k" and dataset.lower().startswith(("ml", "movielens")) else dataset
            report = prepare_dataset(
                source, data_dir, path=path, max_history=max_history, overwrite=True, revision=data_revision
            )
            headline, *details = str(report).splitlines()
            logger.info("prepared %s", headline)
            for line in details:  # what was skipped or counted, when anything was ("skipped: nothing" is not news)
                if line != "skipped: nothing" and not line.startswith("counts: "):
                    logger.info("prepare: %s", line)
        else:
            logger.info("reusing the prepared dataset in %s", data_dir)

    on_main_process(prepare)
    context.record_stage("prepare", start, reused=prepared_before, path=data_dir)

    # 2. semantic embeddings: a derived artefact of the run (never written into the dataset folder, which
    #    is pushed as is); the file carries its own content key (encoder + template + items), checked on reuse
    start = time.perf_counter()
    embeddings_file = context.embeddings_dir / SEMANTIC_EMBEDDINGS_FILE
    embedded_before = modified_time(embeddings_file)
    encoder, pooling = encoder_arguments(encoder)  # a packaged LLaMA's name (smollm2-135m) -> its GGUF file
    emb_path, emb = embed_dataset(  # items split across the processes of a launch; the main process writes
        data_dir, out=embeddings_file, encoder=encoder, pooling=pooling,
        show_progress=context.show_progress, map_batches=map_batches, write=is_main_process(),
    )
    wait_for_everyone()
    reused = embedded_before is not None and modified_time(embeddings_file) == embedded_before
    context.record_stage("embed", start, reused=reused, path=Path(emb_path), items=int(emb.embeddings.shape[0]),
                         dim=int(emb.embeddings.shape[1]))
    context.emb_path, context.emb = Path(emb_path), emb
    context.upstream = {"prepare": settings_digest(prepare_settings), "embeddings": emb.metadata.get("cache_key")}


def run_pipeline(
    dataset: str,
    out_dir: str | Path,
    *,
    source: str | None = None,
    encoder: str | None = None,
    max_history: int = 20,
    num_levels: int | None = None,
    codebook_size: int = 256,
    seed: int = 2024,
    profile: str | PipelineProfile = "default",
    overwrite: bool = False,
    show_progress: bool = True,
    always_append_collision_level: bool = False,
    data_revision: str | None = None,
    init_from: Any = None,
    init_identity: dict[str, Any] | None = None,
    model: str = "unger",
    modalities: Mapping[str, str | Path] | None = None,
    decode_modality: str = "collaborative",
    mask_probability: float = 0.0,
    stage2_max_steps: int | None = None,
    history_feed: str = "item_sum",
    until: str | None = None,
    mixed_precision: str = "no",
    report_to: str | list[str] | None = "auto",
) -> dict[str, Any]:
    """Run the main job on ``dataset`` into ``out_dir``; return (and write to ``run.json``) its summary.

    Args:
        dataset: "ml-100k" (embedded, no network), a folder in the S3-Rec layout, a raw MovieLens folder, or
            a dataset in genrec's layout (folder or Hub id).
        out_dir: the run folder (created; stages found there are reused when their fingerprint matches).
        source: how to read ``dataset`` (default: inferred, see :func:`infer_source`).
        encoder: semantic text encoder (default: the packaged all-MiniLM-L6-v2).
        max_history: history items kept per example.
        num_levels, codebook_size: residual k-means semantic IDs (plus a collision level where needed);
            ``num_levels`` defaults to the profile's (3; the paper profile's cluster depth is 4).
        seed: one seed for every stage.
        profile: "default", "long", "quick" (CI smoke run), "paper", or a :class:`PipelineProfile`.
        overwrite: recompute every stage (deletes the stages' folders first).
        show_progress: tqdm progress bars.
        always_append_collision_level: give every item a collision code, even without collisions (so that the
            code layout matches a source model's when fine-tuning, :mod:`genrec.trainers.jobs.finetune`).
        data_revision: branch, tag or commit of a Hub ``dataset`` (recorded in the prepare fingerprint).
        init_from: start Stage II from this trained UNGER model's transferable weights (a model object, a
            folder or a Hub id; see :func:`genrec.trainers.stages.weight_transfer.transfer_stage2_weights`).
        init_identity: what ``init_from`` is (e.g. its repo id and revision), recorded in Stage II's fingerprint.
        model: ``"unger"`` (the stages above) or ``"mscgrec"`` (per-modality codes: Stage I trained on item ids
            alone for the collaborative modality, the text embeddings for the text modality, each quantized on
            its own; Stage II is MSCGRec, see :mod:`genrec.trainers.jobs.run_mscgrec`).
        modalities: MSCGRec only: extra modalities, name -> per-item embedding file (``ItemEmbeddings``
            safetensors keyed by this dataset's item ids; items the file lacks miss that modality).
        decode_modality: MSCGRec only: the modality whose codes the model generates (paper: collaborative).
        mask_probability: MSCGRec only: chance that one modality of a history item is masked in training.
        history_feed: MSCGRec only: ``"item_sum"`` (one encoder position per history item) or ``"stacked"``
            (the paper's: one position per code of every modality, with relative position biases).
        stage2_max_steps: Stage II length in optimiser steps instead of the profile's (for comparisons at equal
            steps; recorded in Stage II's fingerprint as the profile's ``stage2_max_steps``); the warm-up is
            capped at a tenth of it and validation runs at least at the end.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` for Stage I and II training (a GPU's; recorded in
            their fingerprints when not ``"no"``).
        until: stop after this stage (one of :data:`STOP_STAGES`: ``"embed"``, ``"stage1"``, ``"quantize"``):
            the run folder then holds the prepared data, text embeddings, integrated embeddings or code table
            (what ablations, the Stage I retriever and code-table users need) without training Stage II;
            ``run.json`` records ``stopped_after`` and has no test metrics. A later call without ``until``
            reuses those stages and goes on.
        report_to: where Stage I and II write training logs (``genrec run --report-to``): ``"auto"`` (TensorBoard
            when installed), ``"none"``, ``"all"`` or tracker names (see
            :func:`~genrec.trainers.engine.accelerator.resolve_log_with`; a tracker that is not installed fails
            before any stage runs). In no fingerprint: it changes no result.

    Returns:
        The summary: per-stage seconds and outputs, Stage I validation metrics, Stage II validation and test
        metrics (``summary["test_metrics"]``) and the exported model folder (``summary["model_dir"]``). Every
        path in it is relative to ``out_dir`` (``"."``: the folder itself; see :mod:`genrec.trainers.engine.files`),
        so that the folder can be copied or moved: join it to ``out_dir`` to use it.
    """
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.trainers.engine.accelerator import resolve_log_with
    from genrec.trainers.stages.quantize import check_quantizer_settings, quantize_embeddings
    from genrec.trainers.stages.stage2 import train_stage2

    run_profile = resolve_profile(profile)
    log_with = resolve_log_with(report_to)
    if until is not None and until not in STOP_STAGES:
        raise ValueError(f"until={until!r}: choose one of {list(STOP_STAGES)} (or None to run every stage)")
    if until == "stage1" and not run_profile.stage1:
        raise ValueError(f"until='stage1': the {run_profile.name!r} profile has no Stage I (it quantizes the text "
                         "embeddings); stop after 'embed' or 'quantize'")
    if until not in (None, "embed") and model == "mscgrec":
        raise ValueError(f"until={until!r} is an UNGER stage; an MSCGRec run can stop after 'embed'")
    if stage2_max_steps is not None:
        if stage2_max_steps < 1:
            raise ValueError(f"stage2_max_steps must be >= 1, got {stage2_max_steps}")
        run_profile = replace(
            run_profile, stage2_max_steps=stage2_max_steps, stage2_epochs=None,
            # the profile's warm-up, but at most a tenth of the run (a short run would otherwise be all warm-up)
            stage2_warmup_steps=min(run_profile.stage2_warmup_steps, stage2_max_steps // 10),
            stage2_eval_every=min(run_profile.stage2_eval_every or stage2_max_steps, stage2_max_steps),
        )
    if model not in MODEL_FAMILIES:
        raise ValueError(f"unknown model {model!r}; choose one of {list(MODEL_FAMILIES)}")
    if model != "mscgrec" and (
        modalities or mask_probability or decode_modality != "collaborative" or history_feed != "item_sum"
    ):
        raise ValueError(
            "modalities, decode_modality, mask_probability and history_feed are MSCGRec settings (model='mscgrec')"
        )
    if model == "mscgrec" and init_from is not None:
        raise ValueError("init_from (fine-tuning) is not available for MSCGRec runs")
    num_levels = run_profile.num_levels if num_levels is None else num_levels
    check_quantizer_settings(num_levels, codebook_size)  # before any stage trains, not after Stage I
    if model == "unger":  # a profile's Stage II network that cannot be built fails now, not after Stage I
        UngerConfig(**run_profile.stage2_config)
    # the run folder is genrec's or refused, and never the dataset or the model it reads (nor around them)
    inputs = {"--dataset": dataset, **({"--from": init_from} if isinstance(init_from, str | Path) else {})}
    # absolute: every path recorded in the folder is written relative to it (a copied or moved folder reruns)
    # Under a multi-process launch (accelerate launch / torchrun) the main process claims, locks and writes the
    # shared stages (prepare, quantize, transition-prior record, export, run.json); embedding and every
    # evaluation are split across the processes; Stage I and II train data-parallel.
    if model == "mscgrec" and num_processes() > 1:
        raise ValueError("an MSCGRec run is one process (launch `genrec run --model mscgrec` without accelerate)")
    with owned_output_folder(out_dir, job="run", inputs=inputs, keep_on_failure=first_stage_finished) as out_dir:
        source = source or infer_source(dataset)
        data_dir, stage1_dir, sid_dir, stage2_dir = (out_dir / name for name in ("data", "stage1", "semantic_ids", "stage2"))
        emb_dir = out_dir / EMBEDDINGS_DIR
        ledger = StageLedger(out_dir)

        def start_afresh_or_adopt() -> None:
            if overwrite:
                stage_folders = (stage1_dir, sid_dir, stage2_dir, out_dir / MODALITY_TABLES_DIR)
                for folder in (data_dir, emb_dir, *stage_folders, out_dir / FINGERPRINT_DIR):
                    shutil.rmtree(folder, ignore_errors=True)
            adopt_legacy_run(out_dir, ledger)

        on_main_process(start_afresh_or_adopt)
        context = RunContext(out_dir, ledger, seed, show_progress=show_progress, log_with=log_with, summary={
            "dataset": dataset, "source": source, "profile": asdict(run_profile), "seed": seed,
            "num_levels": num_levels, "codebook_size": codebook_size, "max_history": max_history,
            "encoder": encoder, "stages": {},
            **({"dataset_revision": data_revision} if data_revision else {}),
            **({"model": model} if model != "unger" else {}),
        })
        context.load_previous()
        prepare_and_embed(context, dataset, source=source, max_history=max_history, encoder=encoder,
                          data_revision=data_revision)
        if until == "embed":
            return _stopped(context, until)
        if model == "mscgrec":
            from genrec.trainers.jobs.run_mscgrec import run_mscgrec_stages

            run_mscgrec_stages(
                context, run_profile, num_levels=num_levels, codebook_size=codebook_size, modalities=modalities or {},
                decode_modality=decode_modality, mask_probability=mask_probability, history_feed=history_feed,
            )
            context.record(model_dir=context.relative(out_dir))
            return context.write_summary()

        # large catalogues train with sampled losses unless the profile says otherwise (the threshold is measured)
        run_profile, switched = for_catalogue(run_profile, len(context.emb))
        if switched:
            logger.info("catalogue of %d items (> %d): %s (set loss_type / distillation_negatives in a profile to "
                        "choose)", len(context.emb), SAMPLED_LOSS_ABOVE_ITEMS, "; ".join(switched))
            context.record(profile=asdict(run_profile), sampled_losses=switched)

        # 3. Stage I: integrated embeddings (every profile but the TIGER ones)
        if run_profile.stage1:
            stage1_settings, integrated = _run_stage1(context, run_profile, mixed_precision)
            quantize_input, quantize_upstream = integrated, {"stage1_digest": settings_digest(stage1_settings)}
        else:  # TIGER: the text embeddings are quantized themselves; Stage II trains without distillation
            def drop_stage1() -> None:  # a Stage I left by an earlier run with another profile is not this run's
                if stage1_dir.exists():
                    logger.warning("the %s profile has no Stage I: removing %s (an earlier run's)",
                                   run_profile.name, stage1_dir)
                    shutil.rmtree(stage1_dir)

            on_main_process(drop_stage1)
            ledger.claim("stage1", {"format": FINGERPRINT_FORMAT, "stage1": False, **context.upstream}, [stage1_dir])
            integrated = None
            quantize_input = context.emb_path
            quantize_upstream = {"stage1_digest": None, "embeddings": context.upstream["embeddings"]}
        if until == "stage1":
            return _stopped(context, until)

        # 4. semantic IDs of the integrated (tiger: text) embeddings (quantize.json is written last: it marks a finished stage)
        start = time.perf_counter()
        quantize_settings = quantize_fingerprint(
            num_levels, codebook_size, seed, **quantize_upstream, method=run_profile.quantizer,
            quantizer_config=run_profile.quantizer_config,
        )
        if always_append_collision_level:  # only then: run folders made without the option keep their fingerprint
            quantize_settings["always_append_collision_level"] = True
        ledger.claim("quantize", quantize_settings, [sid_dir])

        def quantize() -> dict[str, Any]:  # the main process quantizes; the others read the code table after
            if not (sid_dir / "quantize.json").is_file():
                return quantize_embeddings(
                    quantize_input, sid_dir, method=run_profile.quantizer, num_levels=num_levels,
                    codebook_size=codebook_size, seed=seed, quantizer_config=run_profile.quantizer_config,
                    overwrite=True, show_progress=show_progress,
                    always_append_collision_level=always_append_collision_level,
                ).summary()
            logger.info("reusing the semantic IDs in %s", sid_dir)
            return json.loads((sid_dir / "quantize.json").read_text())

        quantize_reused = (sid_dir / "quantize.json").is_file()
        quantized = on_main_process(quantize)
        context.record_stage("quantize", start, reused=quantize_reused, path=sid_dir / "tokenizer",
                             codebook_sizes=quantized["codebook_sizes"], collision_rate=quantized["collision_rate"])
        if until == "quantize":
            return _stopped(context, until)

        # 5. Stage II + test evaluation (resumes from its checkpoints; a finished run is reused)
        start = time.perf_counter()
        stage2_settings = stage2_fingerprint(run_profile, seed, settings_digest(quantize_settings))
        if mixed_precision != "no":
            stage2_settings["mixed_precision"] = mixed_precision
        if init_from is not None:
            stage2_settings["init_from"] = init_identity or {"source": str(init_from)}
        ledger.claim("stage2", stage2_settings, [stage2_dir])
        stage2_result_file = stage2_dir / "stage2_result.json"
        stage2_reused = stage2_result_file.is_file()
        if stage2_reused:
            logger.info("reusing Stage II in %s", stage2_dir)
            stage2 = json.loads(stage2_result_file.read_text())
        else:
            stage2 = train_stage2(
                data_dir, sid_dir / "tokenizer", stage2_dir, config=UngerConfig(**run_profile.stage2_config),
                integrated_embeddings=integrated, max_steps=run_profile.stage2_max_steps,
                epochs=run_profile.stage2_epochs,
                warmup_steps=run_profile.stage2_warmup_steps, eval_every=run_profile.stage2_eval_every,
                patience=run_profile.stage2_patience, eval_beams=run_profile.eval_beams,
                test_beams=run_profile.test_beams, lr_schedule=run_profile.stage2_lr_schedule, lr=run_profile.stage2_lr,
                max_eval_users=run_profile.max_eval_users, seed=seed, show_progress=show_progress,
                init_from=init_from, mixed_precision=mixed_precision, log_with=log_with,
            ).to_dict()
        entry = context.record_stage("stage2", start, reused=stage2_reused, **{
            "path": stage2_dir,
            "steps": stage2["global_step"],
            "best_step": stage2["best_step"],
            "loop_seconds": stage2.get("loop_seconds"),  # summed over resumes (seconds: this invocation only)
            "best_loop_seconds": stage2.get("best_loop_seconds"),
            # a checkpoint of this run (stage2_result.json records it relative to stage2/, older ones absolute)
            "resumed_from": context.relative(resolve_recorded(stage2["resumed_from"], stage2_dir))
            if stage2.get("resumed_from") else None,
        })
        if stage2.get("transfer"):
            entry["transfer"] = stage2["transfer"]
        context.record(validation_metrics=stage2["validation_metrics"], test_metrics=stage2["test_metrics"])
        context.stage2_digest = settings_digest(stage2_settings)
        context.best_dir = stage2_dir / "best"  # where stage2_result.json's best_model_dir points (a copied run too)

        # 6. the transition prior: training-row transition counts mixed into recommend(), weight chosen on
        #    validation; test metrics with it become the run's, the model's own are kept beside them. Stage II's
        #    best model is loaded once, for this step and the export.
        best_model, tokenizer = load_best_model(context.best_dir)
        if run_profile.transition_prior:
            transition_stage_into_summary(context, best_model, tokenizer, asdict(run_profile))

        # 7. export: the run folder's root is the model's save_pretrained folder, with its model card
        start = time.perf_counter()

        def export() -> dict[str, Any]:
            export_run_model(best_model, tokenizer, context.best_dir, out_dir, dataset=dataset, summary=context.summary)
            # an export of a run whose every stage was reused rewrites the same model: it keeps its recorded time
            context.record_stage("export", start, reused=not context.computed, path=out_dir)
            context.record(model_dir=context.relative(out_dir))
            return context.write_summary()

        return on_main_process(export)


def _run_stage1(context: RunContext, run_profile: PipelineProfile, mixed_precision: str) -> tuple[dict[str, Any], Path]:
    """Stage I (integrated embeddings; resumes from its checkpoints, a finished run is reused): returns its
    fingerprint settings and the integrated embeddings file."""
    from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
    from genrec.trainers.stages.stage1 import train_stage1

    ledger, seed, show_progress, log_with = context.ledger, context.seed, context.show_progress, context.log_with
    data_dir, stage1_dir = context.data_dir, context.out_dir / "stage1"
    start = time.perf_counter()
    stage1_settings = stage1_fingerprint(run_profile, seed, context.upstream)
    if mixed_precision != "no":  # only then: runs made in full precision keep their fingerprint
        stage1_settings["mixed_precision"] = mixed_precision
    ledger.claim("stage1", stage1_settings, [stage1_dir])
    stage1_result_file = stage1_dir / "stage1_result.json"
    stage1_reused = stage1_result_file.is_file() and (stage1_dir / "integrated_embeddings.safetensors").is_file()
    if stage1_reused:
        logger.info("reusing Stage I in %s", stage1_dir)
        stage1 = json.loads(stage1_result_file.read_text())
    else:
        stage1 = train_stage1(
            data_dir, context.emb_path, stage1_dir, config=UngerFusionConfig(**run_profile.stage1_config),
            epochs=run_profile.stage1_epochs, max_steps=run_profile.stage1_max_steps,
            patience=run_profile.stage1_patience, max_eval_examples=run_profile.stage1_max_eval_examples,
            seed=seed, show_progress=show_progress, mixed_precision=mixed_precision, log_with=log_with,
        ).to_dict()
    context.record_stage("stage1", start, reused=stage1_reused, **{
        "path": stage1_dir,
        "steps": stage1["global_step"],
        "best_step": stage1["best_step"],
        "loop_seconds": stage1.get("loop_seconds"),  # summed over resumes (seconds: this invocation only)
        "best_loop_seconds": stage1.get("best_loop_seconds"),
        "validation_recall@10": stage1["validation_recall_at_10"],
        "validation_ndcg@10": stage1["validation_ndcg_at_10"],
    })
    return stage1_settings, stage1_dir / "integrated_embeddings.safetensors"


def _stopped(context: RunContext, stage: str) -> dict[str, Any]:
    """Finish a run that ``until`` stopped after ``stage``: its ``run.json`` says so and holds no test metrics
    (a finished run's ``run.json`` in the same folder is kept: its stages were only reused)."""
    context.record(stopped_after=stage)
    run_file = context.out_dir / RUN_SUMMARY_FILE
    finished = run_file.is_file() and "test_metrics" in json.loads(run_file.read_text())
    if finished:
        context.summary["total_seconds"] = round(time.perf_counter() - context.started, 2)
    else:
        on_main_process(context.write_summary)
    logger.info("stopped after %s as asked (until=%r): %s holds the stages so far", stage, stage, context.out_dir)
    return context.summary


def add_transition_prior(
    run_dir: str | Path, *, smoothings: Sequence[float] | None = None, show_progress: bool = True,
) -> dict[str, Any]:
    """Give a finished ``genrec run`` folder (of any genrec version) the transition prior, in place.

    The prior is fitted on the run's training rows, its weight (and, with ``smoothings`` other than ``(0,)``,
    its additive smoothing c among them; None: what the run's profile records, the plain prior for a profile
    recorded before ``transition_smoothing`` existed) chosen on validation with the run's own validation sizes, test
    evaluated with it; the model at the folder's root is re-exported with the prior installed and ``run.json``
    gains ``transition_prior`` and ``model_test_metrics`` (``test_metrics`` become the mixture's). Stage II is
    not touched. Returns the updated summary.
    """
    run_dir = Path(run_dir)
    summary_file = run_dir / RUN_SUMMARY_FILE
    if not summary_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no {RUN_SUMMARY_FILE}: not a finished `genrec run` folder")
    with locked(run_dir, job="transition-prior"):
        return _add_transition_prior_locked(run_dir, json.loads(summary_file.read_text()), show_progress,
                                            smoothings)


def _add_transition_prior_locked(
    run_dir: Path, summary: dict[str, Any], show_progress: bool, smoothings: Sequence[float] | None,
) -> dict[str, Any]:
    # the run folder's own Stage II (a copied or moved run folder records another folder's path)
    best_dir = run_dir / "stage2" / "best"
    if not (best_dir / "config.json").is_file():
        raise FileNotFoundError(f"Stage II's best model is not in {best_dir}")
    # A folder made before fingerprints existed keeps having none: a fingerprint folder would stop a later
    # `genrec run` from adopting its legacy stages (it would recompute them).
    ledger = StageLedger(run_dir) if (run_dir / FINGERPRINT_DIR).is_dir() else None
    recorded = ledger.recorded("stage2") if ledger else None
    context = RunContext(run_dir, ledger, int(summary.get("seed", 0)), show_progress=show_progress, summary=summary,
                         stage2_digest=settings_digest(recorded or summary["stages"]["stage2"]), best_dir=best_dir)
    best_model, tokenizer = load_best_model(best_dir)
    transition_stage_into_summary(context, best_model, tokenizer, summary.get("profile", {}), smoothings=smoothings)
    start = time.perf_counter()
    if "mscgrec" in summary:
        from genrec.trainers.jobs.run_mscgrec import (
            BUILT_IN_MODALITIES,
            export_mscgrec_model,
            modality_tokenizer_dirs,
        )

        mscgrec = summary["mscgrec"]
        names = [*BUILT_IN_MODALITIES, *mscgrec.get("extra_modality_files", {})]
        export_mscgrec_model(best_model, tokenizer, best_dir, run_dir, modality_tokenizer_dirs(run_dir, names),
                             mscgrec["decode_modality"], summary=summary)
    else:
        export_run_model(best_model, tokenizer, best_dir, run_dir, dataset=summary["dataset"], summary=summary)
    context.record_stage("export", start, path=run_dir)
    return context.write_summary(total=False)


def export_run_model(
    model: Any, tokenizer: Any, best_dir: Path, out_dir: Path, *, dataset: str, summary: dict[str, Any],
) -> None:
    """Save Stage II's best model (as loaded by :func:`~genrec.trainers.jobs.transition.load_best_model`, with
    the transition prior installed when the run has one, so that its ``recommend`` ranks as the run's test
    metrics were measured) + tokenizer (+ code table) into ``out_dir`` with a model card, all or nothing
    (:func:`~genrec.trainers.jobs.export_root.staged_export`: a failed export leaves the previous root as it was).

    Records the machine in ``summary["hardware"]``; the card (``genrec.model_cards.run_card``) names the
    run folder by its own name in the usage snippet (``genrec push`` rewrites it with the repo id); the
    training curve comes from Stage II's log beside ``best_dir``.
    """
    from genrec.model_cards.card import save_model_card
    from genrec.model_cards.run_card import (
        build_run_card,
        describe_hardware,
        stage2_log_history,
        write_training_curve,
    )

    summary["hardware"] = describe_hardware()
    with staged_export(out_dir) as staging:  # the root's previous files stay until every new one is written
        model.save_pretrained(staging)
        tokenizer.save_pretrained(str(staging))
        curve = write_training_curve(staging, stage2_log_history(best_dir.parent))
        card = build_run_card(out_dir, {**summary, "dataset": dataset}, model.config, tokenizer,
                              repo_id=out_dir.name, training_curve=curve is not None)
        save_model_card(staging, card)
