"""The files of a saved TTDS model and where they are: a local folder, or the Hub cache snapshot of a repo id.

A saved :class:`~.modeling_ttds.TTDSForCausalLM` is ``config.json``, the LoRA adapter (``adapter/``) and the
towers (``generators.safetensors``), plus the trained base weights with ``config.train_base``; the base LLM is
referenced by name, never copied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTER_DIR",
    "BASE_WEIGHTS_FILE",
    "GENERATORS_FILE",
    "HUB_KWARGS",
    "TTDS_FILES",
    "pop_hub_kwargs",
    "resolve_ttds_folder",
]

ADAPTER_DIR = "adapter"
GENERATORS_FILE = "generators.safetensors"
#: With ``config.train_base``: the trained base LLM's own weights (every LLM tensor but LoRA's and the new
#: token rows', which the adapter holds), laid over the base loaded by name.
BASE_WEIGHTS_FILE = "base_weights.safetensors"
#: The files a saved TTDS model consists of (the base LLM is referenced by name, never copied).
TTDS_FILES = ("config.json", f"{ADAPTER_DIR}/adapter_config.json", f"{ADAPTER_DIR}/adapter_model.safetensors",
              GENERATORS_FILE)
HUB_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token", "proxies")


def pop_hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pops the Hub download arguments of a ``from_pretrained`` call (``AutoModel*`` passes them along)."""
    return {name: kwargs.pop(name) for name in HUB_KWARGS if kwargs.get(name) is not None}


def resolve_ttds_folder(name_or_path: str | Path, **hub_kwargs: Any) -> Path:
    """The local folder of a saved TTDS model: ``name_or_path`` itself, or the Hub cache snapshot of a repo id.

    A repo id is fetched file by file with ``transformers.utils.cached_file`` (the Hub download every
    ``from_pretrained`` uses: ``HF_ENDPOINT``, cache, offline mode, ``revision``); the files land in one
    snapshot folder with the repo's layout, which is returned. Missing files are a clear error.
    """
    from transformers.utils import cached_file

    directory = Path(name_or_path).expanduser()
    if directory.is_dir():
        for needed in TTDS_FILES:
            if not (directory / needed).is_file():
                raise FileNotFoundError(f"{directory / needed} is missing: {directory} is not a complete saved TTDS model")
        return directory
    name = str(name_or_path)
    if directory.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such folder (and not a Hub repo id); it needs config.json")
    root: Path | None = None
    for needed in TTDS_FILES:
        folder, _, filename = needed.rpartition("/")
        path = cached_file(name, filename, subfolder=folder, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if path is None:
            raise FileNotFoundError(f"the Hub repo {name} has no {needed}: not a saved TTDS model")
        if needed == "config.json":
            root = Path(path).parent
    assert root is not None
    train_base = json.loads((root / "config.json").read_text()).get("train_base")
    if train_base and cached_file(name, BASE_WEIGHTS_FILE, _raise_exceptions_for_missing_entries=False,
                                  **hub_kwargs) is None:
        raise FileNotFoundError(f"the Hub repo {name} has no {BASE_WEIGHTS_FILE} (its config says train_base)")
    return root
