"""Fine-tune a trained UNGER recommender (a run folder or a Hub repo) on a new domain.

:func:`finetune` is what ``genrec finetune`` calls: it reads what ``--from`` holds (one config read,
:func:`~genrec.trainers.jobs.load.identify_model`) and runs :func:`finetune_unger` for an UNGER model, the TTDS
job (:mod:`genrec.trainers.jobs.ttds`) for a TTDS folder or a LLaMA-architecture base.

What transfers and what does not:

* **Transferred**: Stage II's transformer (encoder and decoder layers, positions, layer norms, the
  distillation head, the projection of the history items' integrated embeddings) and the rows of the
  code-token embedding (tied with the output layer) that exist in both vocabularies. Code tokens are per
  level, so the new domain must have the source's code layout: the same number of code positions (semantic
  levels, plus the collision level when the source has one) and the same codebook size per semantic level.
  :func:`finetune_unger` builds the new domain's codes with that layout; :func:`transfer_stage2_weights`
  refuses any other layout with a clear error instead of copying misaligned rows.
* **Not transferred**: everything that describes the source's catalogue (its item codes, its Stage-I
  integrated embeddings, the history-item table and the prefix tree): the new model gets the new domain's.

The new domain's items get codes the way the main job makes them: its own Stage I (collaborative + semantic
fusion on the new interactions) and residual k-means with the source's levels and codebook size. Encoding the
new items with the source's quantizer is not possible in general: that quantizer clusters the source's
Stage-I *integrated* embeddings, which mix in collaborative item-ID embeddings that unseen items do not have,
and the quantizer is not part of a published model repo. The consequence (said in ``docs/finetune.md``): a
code token such as ``<a_12>`` means a different cluster in the new domain, so the code-token rows start from
the source's values but carry no meaning across domains; what can transfer is the sequence model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import recorded_path, write_text_atomic
from genrec.trainers.jobs.output_folder import check_not_inside
from genrec.trainers.stages.weight_transfer import load_source_model, source_architecture

logger = logging.getLogger(__name__)

__all__ = ["finetune", "finetune_unger"]

def finetune(
    dataset: str,
    out_dir: str | Path,
    *,
    source: str | None = None,
    base_model: str | None = None,
    revision: str | None = None,
    data_revision: str | None = None,
    profile: str = "default",
    stage2_steps: int | None = None,
    seed: int = 2024,
    transfer: bool = True,
    overwrite: bool = False,
    dtype: str = "auto",
    config_overrides: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    report_to: str = "auto",
) -> tuple[str, dict[str, Any]]:
    """Fine-tune what ``source`` (or ``base_model``) is on ``dataset``; returns (family, the job's summary).

    * ``source`` an UNGER model (folder or Hub repo at ``revision``): :func:`finetune_unger` (``profile``,
      ``stage2_steps``, ``seed``, ``transfer``, ``overwrite``); family ``"unger"``.
    * ``source`` a TTDS recommender folder: TTDS training that starts from its adapter, token rows and towers;
      ``source`` any other causal LM, or ``base_model``: TTDS-style LoRA fine-tuning of that base
      (:func:`~genrec.trainers.jobs.ttds.run_ttds`: ``dtype``, ``config_overrides``, ``training``); family
      ``"ttds"``.

    ``report_to``: where UNGER's Stage I and II write training logs (``--report-to``, see
    :func:`~genrec.trainers.engine.accelerator.resolve_log_with`); TTDS training writes no tracker logs, so there
    only ``"auto"`` and ``"none"`` are accepted.
    """
    from genrec.trainers.jobs.load import identify_model

    if source and base_model:
        raise ValueError("give --from or --base-model, not both")
    if not (source or base_model):
        raise ValueError("give --from (an UNGER model, a TTDS folder or a LLaMA base) or --base-model (TTDS)")
    model_type = "llama-base" if base_model else identify_model(source, revision, what="--from").model_type
    if model_type == "unger":
        return "unger", finetune_unger(
            source, dataset, out_dir, revision=revision, profile=profile, data_revision=data_revision,
            stage2_steps=stage2_steps, seed=seed, transfer=transfer, overwrite=overwrite, report_to=report_to,
        )
    if not transfer or stage2_steps is not None:
        raise ValueError("--scratch / --stage2-steps apply to UNGER sources only")
    if report_to not in ("auto", "none"):
        raise ValueError(f"--report-to {report_to}: TTDS training writes no tracker logs; --report-to applies to "
                         "UNGER fine-tuning (--from an UNGER model)")
    from genrec.trainers.jobs.ttds import run_ttds

    init_from, base = (source, None) if model_type == "ttds" else (None, source or base_model)
    return "ttds", run_ttds(
        dataset, base, out_dir, dtype=dtype, config_overrides=config_overrides or {}, training=training or {},
        revision=revision, data_revision=data_revision, init_from=init_from,
    )


def _source_code_layout(source: str | Path, revision: str | None) -> tuple[int, int, bool]:
    """(semantic levels, codebook size, has collision level) of the source's code table."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), revision=revision)
    table = getattr(tokenizer, "code_table", None)
    if table is None:
        raise ValueError(f"--from {source}: its tokenizer carries no code table (not a genrec UNGER folder/repo)")
    sizes = list(table.codebook_sizes)[: table.num_semantic_levels]
    if len(set(sizes)) != 1:
        raise ValueError(f"--from {source}: semantic codebook sizes {sizes} differ per level; genrec run quantizes "
                         "with one codebook size for every level")
    return int(table.num_semantic_levels), int(sizes[0]), bool(table.has_collision_level)


def finetune_unger(
    source: str | Path,
    dataset: str,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    data_revision: str | None = None,
    data_source: str | None = None,
    profile: str = "default",
    stage2_steps: int | None = None,
    seed: int = 2024,
    transfer: bool = True,
    overwrite: bool = False,
    show_progress: bool = True,
    report_to: str = "auto",
) -> dict[str, Any]:
    """Fine-tune the UNGER model ``source`` (folder or Hub repo at ``revision``) on ``dataset``, end to end.

    Runs the main job (:func:`~genrec.trainers.jobs.run.run_pipeline`) on ``dataset`` into ``out_dir`` with the
    source's code layout (semantic levels, codebook size, collision level) and the source's Stage II
    architecture; Stage II starts from the source's transferable weights (:func:`~genrec.trainers.stages.weight_transfer.transfer_stage2_weights`).

    Args:
        source: a genrec UNGER run folder / ``save_pretrained`` folder, or a Hub repo id.
        dataset: the new domain (anything ``genrec run --dataset`` accepts: "ml-100k", a folder, a Hub id).
        out_dir: the new run folder (its root becomes the fine-tuned model's folder, with a model card).
        revision: branch, tag or commit of a Hub ``source``.
        data_revision: branch, tag or commit of a Hub ``dataset``.
        data_source: how to read ``dataset`` (default inferred, as in ``genrec run``).
        profile: the main job's profile for Stage I and the Stage II schedule ("default", "quick").
        stage2_steps: Stage II optimiser steps (default: the profile's).
        seed: one seed for every stage.
        transfer: False trains the same architecture on the same codes from a random initialisation (the
            control that measures what the transfer brings).
        overwrite: recompute every stage.
        show_progress: tqdm progress bars.
        report_to: where Stage I and II write training logs (``genrec run --report-to``; in no fingerprint).

    Returns:
        The run summary (``run.json``), with ``finetune`` = {source, revision, transfer, source code layout}
        and ``stages.stage2.transfer`` = the transfer report.
    """
    from genrec.trainers.jobs.profiles import RUN_SUMMARY_FILE, resolve_profile
    from genrec.trainers.jobs.run import run_pipeline
    from genrec.trainers.stages.stage2 import state_digest

    check_not_inside(out_dir, {"--from": source, "--dataset": dataset})  # before anything loads or is written
    source_model = load_source_model(source, revision)
    levels, codebook_size, collision = _source_code_layout(source, revision)
    base = resolve_profile(profile)
    changes: dict[str, Any] = {"stage2_config": source_architecture(source_model.config)}
    if stage2_steps is not None:
        if stage2_steps < 1:
            raise ValueError(f"stage2_steps must be >= 1, got {stage2_steps}")
        changes.update(stage2_max_steps=int(stage2_steps), stage2_epochs=None)
    run_profile = dataclasses.replace(base, **changes)
    logger.info(
        "fine-tuning %s (%d levels x %d%s) on %s%s", source, levels, codebook_size,
        " + collision level" if collision else "", dataset, "" if transfer else " (control: no transfer)",
    )
    summary = run_pipeline(
        dataset, out_dir, source=data_source, num_levels=levels, codebook_size=codebook_size, seed=seed,
        profile=run_profile, overwrite=overwrite, show_progress=show_progress,
        always_append_collision_level=collision, data_revision=data_revision, report_to=report_to,
        init_from=source_model if transfer else None,
        # the weights' digest too: a source folder retrained in place must not reuse this run's Stage II
        init_identity={"source": str(source), "revision": revision, "weights": state_digest(source_model)}
        if transfer else None,
    )
    summary["finetune"] = {
        # a local folder absolute (outside the run folder, which may not hold it), a Hub id as given
        "source": recorded_path(source, out_dir), "revision": revision, "transfer": bool(transfer),
        "source_code_layout": {"semantic_levels": levels, "codebook_size": codebook_size, "collision_level": collision},
    }
    write_text_atomic(Path(out_dir) / RUN_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    _rewrite_card(Path(out_dir), summary)
    return summary


def _rewrite_card(out_dir: Path, summary: dict[str, Any]) -> None:
    """The run folder's model card again, now naming the model it was fine-tuned from."""
    from genrec.model_cards.card import save_model_card
    from genrec.model_cards.run_card import build_run_card
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    config = UngerConfig.from_pretrained(out_dir)
    tokenizer = SemanticIDTokenizer.from_pretrained(str(out_dir))
    save_model_card(out_dir, build_run_card(out_dir, summary, config, tokenizer, repo_id=out_dir.name))
