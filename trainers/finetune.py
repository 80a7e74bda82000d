"""Fine-tune a trained UNGER recommender (a run folder or a Hub repo) on a new domain.

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

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "PER_DOMAIN_STATE",
    "finetune_unger",
    "load_source_model",
    "source_architecture",
    "transfer_stage2_weights",
]

#: State-dict entries that describe the source's catalogue, never copied (suffixes of the full names).
PER_DOMAIN_STATE = (
    "item_codes",
    "integrated_embeddings",
    "history_item_keys",
    "history_item_rows",
    "history_item_features",
    "history_item_ids.weight",  # history_item_embedding="id": one row per item of the source catalogue
    "transition_indptr", "transition_targets", "transition_probs",
)
#: Config fields bound to one code table / one Stage-I export (set from the new domain).
_BINDING_FIELDS = frozenset({
    "vocab_size", "num_code_levels", "codebook_sizes", "code_token_offsets", "code_table_hash", "num_items",
    "integrated_dim", "integrated_embeddings_hash",
    "num_transitions", "transition_weight",  # the transition prior: fitted on each domain's own training rows
})
_BOOKKEEPING = frozenset({
    "model_type", "transformers_version", "architectures", "_name_or_path", "auto_map", "torch_dtype", "dtype",
    "genrec_version", "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id",
    "is_encoder_decoder", "tie_word_embeddings", "use_cache", "output_hidden_states", "output_attentions",
    "return_dict", "chunk_size_feed_forward", "problem_type", "id2label", "label2id",
})


def load_source_model(source: str | Path, revision: str | None = None) -> Any:
    """The UNGER model of ``source`` (a folder or a Hub repo id, at ``revision``); ``ValueError`` for other models."""
    from transformers import PretrainedConfig

    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    values, _ = PretrainedConfig.get_config_dict(str(source), revision=revision)
    if values.get("model_type") != UngerConfig.model_type:
        raise ValueError(
            f"--from {source} is a {values.get('model_type')!r} model, not a genrec UNGER model (model_type "
            f"{UngerConfig.model_type!r})"
        )
    config = UngerConfig.from_pretrained(str(source), revision=revision)
    return UngerForGenerativeRecommendation.from_pretrained(str(source), config=config, revision=revision)


def source_architecture(config: Any) -> dict[str, Any]:
    """The source config's hyper-parameters that define the transferable network (code binding left out).

    A source trained without distillation (``integrated_dim`` 0) gives ``distillation_weight`` 0, so that the
    new model, which the main job hands Stage-I embeddings, gets no distillation head the source lacks.
    """
    values = config.to_dict()
    arch = {k: v for k, v in values.items() if k not in _BINDING_FIELDS and k not in _BOOKKEEPING}
    if not values.get("integrated_dim"):
        arch["distillation_weight"] = 0.0
    return arch


def _level_rows(config: Any) -> list[tuple[int, int]]:
    """(first token id, codebook size) of each code position."""
    return [(int(o), int(k)) for o, k in zip(config.code_token_offsets, config.codebook_sizes, strict=True)]


def _copy_vocab_rows(target: torch.Tensor, source: torch.Tensor, target_config: Any, source_config: Any) -> int:
    """Copy the special-token rows and, per code position, the rows of the codes both vocabularies have."""
    specials = min(int(target_config.code_token_offsets[0]), int(source_config.code_token_offsets[0]))
    target[:specials] = source[:specials]
    copied = specials
    for (t_off, t_k), (s_off, s_k) in zip(_level_rows(target_config), _level_rows(source_config), strict=True):
        n = min(t_k, s_k)
        target[t_off:t_off + n] = source[s_off:s_off + n]
        copied += n
    return copied


def check_code_layout(target_config: Any, source_config: Any, *, has_collision_level: bool | None = None) -> None:
    """Raise ``ValueError`` unless the new domain's code layout lets the source's code-token rows line up.

    Same number of code positions; same codebook size at every semantic position (the last position, when it
    is the collision level, may differ: it is as large as the largest group of items sharing a semantic code
    in each catalogue).
    """
    t_sizes, s_sizes = list(target_config.codebook_sizes), list(source_config.codebook_sizes)
    if len(t_sizes) != len(s_sizes):
        raise ValueError(
            f"code layout mismatch: the source model has {len(s_sizes)} code positions {s_sizes}, the new "
            f"domain's code table {len(t_sizes)} {t_sizes}; quantize the new domain with the source's levels "
            "(and always_append_collision_level when the source has a collision level)"
        )
    semantic = len(s_sizes) - 1 if has_collision_level else len(s_sizes)
    if t_sizes[:semantic] != s_sizes[:semantic]:
        raise ValueError(
            f"code layout mismatch: semantic codebook sizes {t_sizes[:semantic]} (new domain) vs "
            f"{s_sizes[:semantic]} (source); quantize the new domain with the source's codebook size"
        )


@torch.no_grad()
def transfer_stage2_weights(
    model: torch.nn.Module, source: torch.nn.Module, *, has_collision_level: bool | None = None
) -> dict[str, Any]:
    """Copy what transfers from ``source`` (a trained UNGER model) into ``model`` (bound to the new domain).

    Per-domain state (:data:`PER_DOMAIN_STATE`) is kept as the new model has it; the token embedding (tied
    with ``lm_head``) gets the rows of the codes both vocabularies have; every other tensor must have the same
    shape in both models (same architecture), else ``ValueError`` names the first that differs.

    Returns a report: tensors copied whole, vocabulary rows copied / total, entries kept per domain.
    """
    check_code_layout(model.config, source.config, has_collision_level=has_collision_level)
    target_state = model.state_dict()
    source_state = source.state_dict()
    copied: list[str] = []
    kept: list[str] = []
    vocab_rows = 0
    missing = sorted(set(target_state) - set(source_state))
    trainable_missing = [k for k in missing if not k.endswith(PER_DOMAIN_STATE)]
    if trainable_missing:
        raise ValueError(
            f"the source model lacks {trainable_missing[:5]}: its architecture differs from the new model's "
            "(e.g. another history_item_embedding or history_mode)"
        )
    for name, tensor in target_state.items():
        if name.endswith(PER_DOMAIN_STATE):
            kept.append(name)
            continue
        if name == "lm_head.weight" and getattr(model.config, "tie_word_embeddings", True):
            continue  # tied with the token embedding, copied there
        value = source_state[name]
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            vocab_rows = _copy_vocab_rows(tensor, value.to(tensor.dtype), model.config, source.config)
            copied.append(name)
            continue
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(
                f"{name}: shape {tuple(value.shape)} in the source model, {tuple(tensor.shape)} in the new one; the "
                "architecture must be the source's (for the integrated-embedding projection: the same Stage I width)"
            )
        tensor.copy_(value.to(tensor.dtype))
        copied.append(name)
    report = {
        "tensors_copied": len(copied),
        "vocab_rows_copied": vocab_rows,
        "vocab_size": int(model.config.vocab_size),
        "per_domain_kept": kept,
    }
    logger.info(
        "transferred %d tensors from the source model (%d of %d vocabulary rows); kept per-domain: %s",
        len(copied), vocab_rows, model.config.vocab_size, ", ".join(kept) or "none",
    )
    return report


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
) -> dict[str, Any]:
    """Fine-tune the UNGER model ``source`` (folder or Hub repo at ``revision``) on ``dataset``, end to end.

    Runs the main job (:func:`~genrec.trainers.pipeline.run_pipeline`) on ``dataset`` into ``out_dir`` with the
    source's code layout (semantic levels, codebook size, collision level) and the source's Stage II
    architecture; Stage II starts from the source's transferable weights (:func:`transfer_stage2_weights`).

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

    Returns:
        The run summary (``run.json``), with ``finetune`` = {source, revision, transfer, source code layout}
        and ``stages.stage2.transfer`` = the transfer report.
    """
    from genrec.trainers.pipeline import RUN_SUMMARY_FILE, _profile, run_pipeline
    from genrec.trainers.stage2 import state_digest

    source_model = load_source_model(source, revision)
    levels, codebook_size, collision = _source_code_layout(source, revision)
    base = _profile(profile)
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
        always_append_collision_level=collision, data_revision=data_revision,
        init_from=source_model if transfer else None,
        # the weights' digest too: a source folder retrained in place must not reuse this run's Stage II
        init_identity={"source": str(source), "revision": revision, "weights": state_digest(source_model)}
        if transfer else None,
    )
    summary["finetune"] = {
        "source": str(source), "revision": revision, "transfer": bool(transfer),
        "source_code_layout": {"semantic_levels": levels, "codebook_size": codebook_size, "collision_level": collision},
    }
    (Path(out_dir) / RUN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
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
