"""Strict type checks for config fields, with errors that name the field.

``int(4.5)`` is 4 and ``[int(k) for k in "4,5"]`` fails with "invalid literal for int() with base 10: ','":
the first silently builds another model than the config file says, the second does not say which field is
wrong. Configs therefore read their numeric and boolean fields through these helpers, which accept only
values of the right JSON type (an int for an int field, a number for a float field, a bool for a flag) and
raise ``ValueError("UngerConfig.num_attention_heads must be an int, got 4.5 (float)")`` otherwise.

A misspelled key (``d_modle``) would otherwise become a stray attribute of the config while the model is
built with the default: :func:`reject_unknown_keys` refuses keys that are neither the config's own fields
nor ``transformers``' (those of ``PretrainedConfig``, present and past, which every ``config.json`` carries),
naming the closest valid key.

Only the standard library is used, so ``modeling/`` stays importable as Hub remote code.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["TRANSFORMERS_CONFIG_KEYS", "as_bool", "as_float", "as_int", "as_int_list", "as_optional_int",
           "config_fields", "reject_unknown_keys"]

#: Keys that ``transformers``' ``PretrainedConfig`` writes into or accepts from a ``config.json`` (transformers
#: 5 and the 4.x releases older files may come from: bookkeeping, output switches, token ids, the generation
#: parameters once stored in model configs), plus genrec's own bookkeeping. A genrec config passes them to
#: ``PretrainedConfig`` untouched; fields of ``PretrainedConfig`` (a dataclass in transformers 5) are added
#: at run time.
TRANSFORMERS_CONFIG_KEYS = frozenset({
    # bookkeeping
    "_name_or_path", "name_or_path", "model_type", "transformers_version", "architectures", "auto_map",
    "_commit_hash", "genrec_version", "torch_dtype", "dtype", "_attn_implementation", "_attn_implementation_autoset",
    "_attn_implementation_internal", "attn_implementation", "_experts_implementation",
    "_experts_implementation_internal", "experts_implementation", "per_layer_config", "tie_last_hidden_states",
    # outputs and structure
    "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
    "pruned_heads", "tie_word_embeddings", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder", "use_cache",
    # tasks and tokens
    "finetuning_task", "id2label", "label2id", "num_labels", "problem_type", "tokenizer_class", "prefix",
    "task_specific_params", "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
    # generation parameters (kept in model configs before GenerationConfig)
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
    "encoder_repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "assistant_confidence_threshold", "assistant_lookbehind", "num_assistant_tokens",
    "num_assistant_tokens_schedule", "target_lookbehind",
})

_BASE_CONFIG_NAMES = ("PretrainedConfig", "PreTrainedConfig")


def config_fields(config_class: type) -> set[str]:
    """The keyword arguments of ``config_class``'s own ``__init__`` and of every genrec config class it derives
    from (up to ``transformers``' ``PretrainedConfig``), plus its ``attribute_map`` aliases."""
    names: set[str] = set(getattr(config_class, "attribute_map", {}) or {})
    for klass in config_class.__mro__:
        if klass.__name__ in _BASE_CONFIG_NAMES or klass is object:
            break
        if "__init__" not in klass.__dict__:
            continue
        for parameter in inspect.signature(klass.__dict__["__init__"]).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.add(parameter.name)
    names.discard("self")
    return names


def _transformers_fields(config_class: type) -> set[str]:
    """Fields of ``transformers``' ``PretrainedConfig`` dataclass (transformers 5) that ``config_class`` has."""
    try:
        return {f.name for f in dataclasses.fields(config_class)}
    except TypeError:  # not a dataclass (older transformers)
        return set()


def reject_unknown_keys(config: Any, keys: Iterable[str], *, also_known: Iterable[str] = ()) -> None:
    """``ValueError`` naming the first of ``keys`` that ``config``'s class does not know, and the closest valid key.

    ``keys`` are what reached the ``**kwargs`` of a genrec config's ``__init__`` (its own fields are named
    parameters, so they never do): transformers' keys (:data:`TRANSFORMERS_CONFIG_KEYS`, ``PretrainedConfig``'s
    dataclass fields) and ``also_known`` (names of earlier genrec versions) pass; anything else is a typo or a
    field of another model (``config.json`` and ``--config`` are checked alike).
    """
    cls = type(config)
    unknown = sorted(
        set(keys) - TRANSFORMERS_CONFIG_KEYS - _transformers_fields(cls) - set(also_known) - config_fields(cls)
    )
    if not unknown:
        return
    own = sorted(config_fields(cls))
    key = unknown[0]
    close = difflib.get_close_matches(key, own, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(own)}"
    more = f" (and {len(unknown) - 1} more unknown: {unknown[1:4]})" if len(unknown) > 1 else ""
    raise ValueError(f"{cls.__name__}: unknown config key {key!r}{more}; {hint}")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_int(owner: str, name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int when it is one (bools and floats, even 4.0, are refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}.{name} must be an int, got {_describe(value)}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {number}")
    return number


def as_optional_int(owner: str, name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """None, or ``value`` checked by :func:`as_int`."""
    return None if value is None else as_int(owner, name, value, minimum=minimum)


def as_float(
    owner: str, name: str, value: Any, *, minimum: float | None = None, above: float | None = None
) -> float:
    """``value`` as a float when it is a real number (bools and strings refused); ``>= minimum``, ``> above``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}.{name} must be a number, got {_describe(value)}")
    number = float(value)
    if number != number:  # NaN
        raise ValueError(f"{owner}.{name} must be a number, got NaN")
    if minimum is not None and number < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {number}")
    if above is not None and number <= above:
        raise ValueError(f"{owner}.{name} must be > {above}, got {number}")
    return number


def as_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` when it is a bool (``"false"`` or 0 would otherwise read as True or pass unnoticed)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be true or false, got {_describe(value)}")
    return value


def as_int_list(
    owner: str, name: str, value: Any, *, length: int | None = None, minimum: int | None = None
) -> list[int]:
    """``value`` as a list of ints (a list or tuple of ints; a string such as "4,5" is refused)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{owner}.{name} must be a list of ints, got {_describe(value)}")
    numbers_ = [as_int(owner, f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value)]
    if length is not None and len(numbers_) != length:
        raise ValueError(f"{owner}.{name} must hold {length} ints, got {len(numbers_)}: {numbers_}")
    return numbers_
