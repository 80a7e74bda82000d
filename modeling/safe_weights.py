"""Model weights from safetensors only: a folder whose weights are pickle files is refused, never loaded.

``transformers`` falls back to ``pytorch_model.bin`` (a ``torch.save`` pickle) when a folder has no
``model.safetensors``; even through ``torch.load(weights_only=True)`` that is a pickle parser reading an
untrusted file, and a payload it blocks surfaces as an ``UnpicklingError`` traceback. genrec's models therefore
load with ``use_safetensors=True`` and check a local folder first, so that a folder with only ``.bin`` / ``.pt``
weights gets one ``ValueError`` that says how to convert it. An explicit ``use_safetensors=False`` from a caller
is the caller's choice (the conversion recipe uses it, in an environment that trusts the file); genrec itself
never passes it.

Imports only the standard library, so ``modeling/`` stays loadable as Hub remote code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PICKLE_WEIGHT_SUFFIXES", "SafetensorsOnlyMixin", "conversion_hint", "refuse_pickle_weights",
           "load_base_llm", "reword_missing_safetensors", "safetensors_only"]

#: Suffixes of ``torch.save`` / pickle weight files.
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: Pickles a trainer leaves beside weights that are not weights (they do not make a folder "pickle-only").
_NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "scaler", "rng_state", "random_states")


def conversion_hint(folder: str | Path) -> str:
    """How to turn a folder of pickle weights into safetensors, where the file is trusted."""
    return (
        f"convert them in an environment you trust: `model = AutoModel.from_pretrained({str(folder)!r}, "
        f"use_safetensors=False)` then `model.save_pretrained({str(folder)!r}, safe_serialization=True)`"
    )


def _pickle_weights(folder: Path) -> list[str]:
    """Names of pickle weight files in ``folder`` when it holds no safetensors weights ([] otherwise)."""
    names = [path.name for path in folder.iterdir() if path.is_file()]
    if any(name.endswith((".safetensors", ".safetensors.index.json")) for name in names):
        return []
    return sorted(
        name for name in names
        if name.endswith(PICKLE_WEIGHT_SUFFIXES) and not name.startswith(_NOT_WEIGHTS)
    )


def refuse_pickle_weights(name_or_path: Any, *, subfolder: str = "") -> None:
    """``ValueError`` when ``name_or_path`` is a local folder whose weights are only pickle files (``.bin``,
    ``.pt``, ...); nothing for a folder with safetensors weights, a Hub repo id or anything else."""
    try:
        folder = Path(str(name_or_path)).expanduser() / (subfolder or "")
        if not folder.is_dir():
            return
        pickles = _pickle_weights(folder)
    except OSError:  # unreadable: let the loader report it
        return
    if pickles:
        raise ValueError(
            f"{folder} holds its weights only as pickle files ({', '.join(pickles[:3])}), which genrec never "
            f"loads (it reads safetensors only); {conversion_hint(folder)}"
        )


def safetensors_only(name_or_path: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load ``name_or_path`` from safetensors only.

    Sets ``use_safetensors=True`` (unless the caller passed ``False`` explicitly) and refuses a local folder of
    pickle weights first. A GGUF file (``gguf_file=``) is no pickle and is left alone.
    """
    kwargs = dict(kwargs)
    if kwargs.get("gguf_file") or kwargs.get("use_safetensors") is False:
        return kwargs
    refuse_pickle_weights(name_or_path, subfolder=kwargs.get("subfolder") or "")
    kwargs["use_safetensors"] = True
    return kwargs


def reword_missing_safetensors(error: OSError, name_or_path: Any) -> OSError:
    """transformers' "no file named model.safetensors ... do not set use_safetensors=True" (a Hub repo with only
    pickle weights) as an error that says genrec's rule and the fix; other errors (and any error about a local
    folder, which :func:`refuse_pickle_weights` has already looked into) unchanged."""
    text = str(error)
    if Path(str(name_or_path)).expanduser().is_dir() or "safetensors" not in text or ("use_safetensors" not in text and "no file named" not in text.lower()):
        return error
    return OSError(
        f"{name_or_path} has no safetensors weights (model.safetensors), and genrec never loads pickle weights "
        f"(pytorch_model.bin, .pt); {conversion_hint(name_or_path)}"
    )


def load_base_llm(auto_class: Any, name_or_path: Any, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(name_or_path, **kwargs)`` (e.g. ``AutoModelForCausalLM``) from safetensors (or
    GGUF) only: what genrec loads a base LLM or any other third-party model with."""
    kwargs = safetensors_only(name_or_path, kwargs)
    try:
        return auto_class.from_pretrained(name_or_path, **kwargs)
    except OSError as error:
        reworded = reword_missing_safetensors(error, name_or_path)
        if reworded is error:
            raise
        raise reworded from None


class SafetensorsOnlyMixin:
    """``from_pretrained`` for genrec's ``PreTrainedModel`` classes: safetensors only (see the module docstring).

    Put it before ``PreTrainedModel`` in the bases; ``AutoModel.from_pretrained`` goes through it too.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        kwargs = safetensors_only(pretrained_model_name_or_path, kwargs)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)  # type: ignore[misc]
        except OSError as error:
            reworded = reword_missing_safetensors(error, pretrained_model_name_or_path)
            if reworded is error:
                raise
            raise reworded from None
