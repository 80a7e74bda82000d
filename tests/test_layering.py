"""The package's layers import only downwards; this test fails the moment one does not.

Layers, bottom up (DESIGN.md): ``modeling`` and ``tokenization`` (each self-contained: a saved model folder
carries the modeling files as remote code, so they may import only their own siblings), ``data_scripts``,
``model_cards``, ``trainers``, and the CLI in the package root (``genrec/``). ``genrec._version`` imports
nothing and may be read from any layer but ``modeling``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer folder -> genrec sub-packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "modeling": set(),
    "tokenization": {"_version"},
    "data_scripts": {"_version"},
    "model_cards": {"_version", "data_scripts"},
    "trainers": {"_version", "data_scripts", "model_cards", "modeling", "tokenization"},
    "genrec": {"_version", "data_scripts", "model_cards", "modeling", "tokenization", "trainers", "cli", "cli_errors",
               "cli_models"},
}
SUBPACKAGES = {"modeling", "tokenization", "data_scripts", "model_cards", "trainers"}


def genrec_imports(path: Path, package: tuple[str, ...] = ("genrec", "sample")) -> set[str]:
    """The genrec modules a file imports, as the first name after ``genrec.``; relative imports are resolved
    against ``package`` (the file's package, e.g. ``("genrec", "tokenization", "quantizers")``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                names = [".".join(base + [node.module])] if node.module else [
                    ".".join(base + [alias.name]) for alias in node.names
                ]
            elif node.module == "genrec":
                names = [f"genrec.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "genrec":
                found.add(parts[1] if len(parts) > 1 else "")
    return found


def package_of(layer: str, path: Path) -> tuple[str, ...]:
    """The dotted package a file of ``layer`` belongs to (``modeling/x.py`` -> genrec.modeling)."""
    inner = path.relative_to(ROOT / layer).parent.parts
    return ("genrec",) if layer == "genrec" else ("genrec", layer, *inner)


def layer_files() -> list[tuple[str, Path]]:
    return [(layer, path) for layer in ALLOWED for path in sorted((ROOT / layer).rglob("*.py"))]


@pytest.mark.parametrize(("layer", "path"), layer_files(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_layers_import_only_downwards(layer: str, path: Path) -> None:
    imported = genrec_imports(path, package_of(layer, path))
    if layer == "genrec":
        return  # the package root and CLI may use every layer (its own lazy exports included)
    allowed = ALLOWED[layer] | {layer}
    wrong = sorted(name or "genrec (the package root)" for name in imported - allowed)
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports {wrong}; {layer} may import only {sorted(allowed)}"


def test_modeling_files_use_only_relative_sibling_imports() -> None:
    """Remote code: the modeling files must import each other with single-dot imports, nothing of genrec."""
    for path in sorted((ROOT / "modeling").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                pytest.fail(f"{path.name}: '{'.' * node.level}{node.module}' reaches outside modeling/")
            if isinstance(node, ast.ImportFrom | ast.Import) and not getattr(node, "level", 0):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(str(n).split(".")[0] == "genrec" for n in names), f"{path.name} imports {names}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule is live: an upward import in a sample file is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("from genrec.trainers.stage2 import train_stage2\nfrom genrec import __version__\n"
                      "from ..modeling import modeling_unger\nfrom .base import Quantizer\n")
    assert genrec_imports(sample, ("genrec", "data_scripts")) == {"trainers", "__version__", "modeling", "data_scripts"}
    assert genrec_imports(sample, ("genrec", "tokenization", "quantizers")) == {"trainers", "__version__", "tokenization"}
    assert set(ALLOWED) >= SUBPACKAGES
