"""Start a new domain's Stage II from a trained UNGER model: what transfers, checked and copied.

* **Transferred**: Stage II's transformer (encoder and decoder layers, positions, layer norms, the
  distillation head, the projection of the history items' integrated embeddings) and the rows of the
  code-token embedding (tied with the output layer) that exist in both vocabularies. Code tokens are per
  level, so the new domain must have the source's code layout: the same number of code positions (semantic
  levels, plus the collision level when the source has one) and the same codebook size per semantic level;
  :func:`transfer_stage2_weights` refuses any other layout with a clear error instead of copying misaligned rows.
* **Not transferred**: everything that describes the source's catalogue (:data:`PER_DOMAIN_STATE`: its item
  codes, its Stage-I integrated embeddings, the history-item table, the transition prior): the new model keeps
  the new domain's.

The fine-tuning job that uses it (new domain's codes with the source's layout) is
:mod:`genrec.trainers.jobs.finetune`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "PER_DOMAIN_STATE",
    "check_code_layout",
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
