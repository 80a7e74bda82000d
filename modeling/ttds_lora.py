"""LoRA (peft) around the base LLM of a TTDS model, with every added semantic-token row trainable.

peft is imported lazily, where LoRA is created or loaded: it is a dependency of genrec, so the lazy import only
keeps the modeling files loadable as Hub remote code and fails with a clear message if peft is missing.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from torch import nn

from .configuration_ttds import TTDSConfig

__all__ = ["embedding_module_names", "quiet_peft", "require_peft", "wrap_lora"]


def require_peft() -> Any:
    """Imports peft, or explains that LoRA needs it."""
    try:
        import peft
    except ImportError as error:  # pragma: no cover - peft is a declared dependency of genrec
        raise ImportError(
            "TTDSForCausalLM fine-tunes the LLM with LoRA and needs the `peft` package: pip install 'peft>=0.17'"
        ) from error
    return peft


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silences the deprecation warning peft triggers in transformers 5.x (``is_gradient_checkpointing``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def embedding_module_names(base: nn.Module) -> tuple[str, str | None]:
    """Short names of the input embedding and (if untied) the output embedding modules of ``base``."""
    names = {id(module): name for name, module in base.named_modules()}
    inp = base.get_input_embeddings()
    out = base.get_output_embeddings()
    if id(inp) not in names:
        raise ValueError("cannot locate the base model's input embedding module")
    in_name = names[id(inp)].rsplit(".", 1)[-1]
    if out is None or out.weight is inp.weight:
        return in_name, None
    return in_name, names[id(out)].rsplit(".", 1)[-1]


def wrap_lora(base: nn.Module, config: TTDSConfig) -> nn.Module:
    """Wraps ``base`` (already resized) in LoRA with every added token row trainable.

    ``trainable_token_indices`` (not ``modules_to_save``): only the ``vocab_size - base_vocab_size`` new
    rows of the input embedding and of an untied LM head train and are saved (for Llama-2-7B: 2,560 x 4096
    x 2 values instead of two full 32k x 4096 matrices), the original rows stay the base's, and the saved
    rows *replace* the base's rows on load, so the random initialisation of the resized rows never leaks
    into a reloaded model.
    """
    peft = require_peft()
    if config.base_vocab_size is None or config.vocab_size is None:
        raise ValueError("TTDSConfig.base_vocab_size / vocab_size are not set: call extend_tokenizer first")
    new_rows = list(range(config.base_vocab_size, config.vocab_size))
    in_name, out_name = embedding_module_names(base)
    indices = {in_name: new_rows}
    if out_name is not None:
        indices[out_name] = new_rows
    lora_config = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        trainable_token_indices=indices,
        task_type="CAUSAL_LM",
        revision=config.base_model_revision,  # adapter_config.json pins the base (AutoPeftModel reads it)
    )
    with quiet_peft():
        return peft.get_peft_model(base, lora_config)
