"""The package's layers import only downwards; this test fails the moment one does not.

Layers, bottom up (DESIGN.md): ``modeling`` and ``tokenization`` (each self-contained: a saved model folder
carries the modeling files as remote code, so they may import only their own siblings), ``data_scripts``,
``model_cards``, ``trainers``, and the CLI in the package root (``genrec/``). ``genrec._version`` imports
nothing and may be read from any layer but ``modeling``.

Inside ``trainers/`` the rooms are layered too: ``engine`` (the loop) -> ``evaluation`` -> ``stages`` / ``ttds``
-> ``jobs`` (what the CLI calls) -> ``analysis`` (studies of finished run folders). Across the whole package
there is no import cycle (function-level imports included) and no module imports another subpackage's
underscore names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
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
    "genrec": {"_version", "_auto_registration", "data_scripts", "model_cards", "modeling", "tokenization", "trainers",
               "cli", "cli_errors", "commands"},
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
    sample.write_text("from genrec.trainers.stages.stage2 import train_stage2\nfrom genrec import __version__\n"
                      "from ..modeling import modeling_unger\nfrom .base import Quantizer\n")
    assert genrec_imports(sample, ("genrec", "data_scripts")) == {"trainers", "__version__", "modeling", "data_scripts"}
    assert genrec_imports(sample, ("genrec", "tokenization", "quantizers")) == {"trainers", "__version__", "tokenization"}
    assert set(ALLOWED) >= SUBPACKAGES


# trainers/ room -> the other rooms it may import
TRAINER_ROOMS: dict[str, set[str]] = {
    "engine": set(),
    "evaluation": {"engine"},
    "stages": {"engine", "evaluation"},
    "ttds": {"engine", "evaluation"},
    "jobs": {"engine", "evaluation", "stages", "ttds"},
    "analysis": {"engine", "evaluation", "stages", "ttds", "jobs"},
}
PACKAGE_FOLDERS = {"genrec": "genrec", **{name: f"genrec.{name}" for name in SUBPACKAGES}}


def package_modules() -> dict[str, Path]:
    """Every module of the installed namespace, dotted name -> file (``genrec.trainers.jobs.run`` -> ...)."""
    modules = {}
    for folder, dotted in PACKAGE_FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join([dotted, *parts])] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every genrec import of ``path`` at any depth."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "genrec":
                for alias in node.names:
                    yield target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "genrec":
                    yield alias.name, None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the genrec modules it imports (``from pkg import submodule`` counts as the submodule)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, set())
        for target, name in imported_names(module, path):
            sub = f"{target}.{name}"
            edges.add(sub if sub in modules else target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(package_modules()))
    assert not cycles, f"import cycles (function-level imports included): {cycles}"


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def subpackage_of(module: str) -> str:
    """``genrec.trainers.jobs.run`` -> ``genrec.trainers.jobs`` (a package is its own subpackage)."""
    return module if package_modules().get(module, Path()).name == "__init__.py" else module.rsplit(".", 1)[0]


def test_no_module_imports_another_subpackages_private_names() -> None:
    modules = package_modules()
    wrong = []
    for module, path in modules.items():
        for target, name in imported_names(module, path):
            private = bool(name) and name.startswith("_") and not name.startswith("__")
            if private and f"{target}.{name}" not in modules and subpackage_of(target) != subpackage_of(module):
                wrong.append(f"{module} imports {target}.{name}")
    assert not wrong, wrong


@pytest.mark.parametrize("room", sorted(TRAINER_ROOMS))
def test_trainer_rooms_import_only_downwards(room: str) -> None:
    wrong = []
    for path in sorted((ROOT / "trainers" / room).rglob("*.py")):
        module = ".".join(["genrec", *path.relative_to(ROOT).with_suffix("").parts])
        for target, _ in imported_names(module, path):
            parts = target.split(".")
            other = parts[2] if parts[:2] == ["genrec", "trainers"] and len(parts) > 2 else room
            if other != room and other not in TRAINER_ROOMS[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, f"trainers/{room} may import only {sorted(TRAINER_ROOMS[room])}: {wrong}"


def test_trainers_has_no_loose_modules() -> None:
    """Every trainers module lives in a room; the package's own __init__ is only its map."""
    loose = sorted(p.name for p in (ROOT / "trainers").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"trainers/ modules outside a room: {loose}"
    rooms = {p.parent.name for p in (ROOT / "trainers").glob("*/__init__.py")}
    assert rooms == set(TRAINER_ROOMS)


# ------------------------------------------------------------------------------------------------ the CLI

# What a CLI module (genrec/cli*.py) may import from genrec: the jobs (everything a verb runs), the studies of
# trained models (trainers/analysis: the room above jobs, since its studies read the run folders jobs write; the
# ``balance`` and ``shapley`` verbs call it), the version, and its sibling CLI modules.
CLI_MAY_IMPORT = ("genrec.trainers.jobs", "genrec.trainers.analysis", "genrec._version", "genrec.cli",
                  "genrec.commands")


def cli_modules() -> dict[str, Path]:
    """``genrec.cli``, ``genrec.cli_errors`` and every verb module of ``genrec/commands/``."""
    modules = {f"genrec.{path.stem}": path for path in sorted((ROOT / "genrec").glob("cli*.py"))}
    for path in sorted((ROOT / "genrec" / "commands").glob("*.py")):
        modules["genrec.commands" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return modules


def cli_imports_outside_jobs(module: str, path: Path) -> list[str]:
    """The genrec modules ``path`` imports (at any depth) that a CLI module may not use."""
    modules = package_modules()
    wrong = []
    for target, name in imported_names(module, path):
        full = f"{target}.{name}" if name and f"{target}.{name}" in modules else target
        if not full.startswith(CLI_MAY_IMPORT):
            wrong.append(full)
    return sorted(set(wrong))


@pytest.mark.parametrize("module", sorted(cli_modules()))
def test_cli_uses_only_the_jobs(module: str) -> None:
    """The CLI is parsing + one module per verb: it reaches the library only through trainers/jobs (and the
    studies in trainers/analysis), never modeling, tokenization, data_scripts, stages, ttds or evaluation."""
    wrong = cli_imports_outside_jobs(module, cli_modules()[module])
    assert not wrong, f"{module} imports {wrong}; a CLI module may import only {CLI_MAY_IMPORT}"


def test_every_verb_has_its_module() -> None:
    """One module per verb: ``genrec/commands/<verb>.py`` with ``add_parser`` and ``run``; the parser lists each."""
    from genrec.cli import VERB_MODULES, build_parser

    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    assert {m.__name__.removeprefix("genrec.commands.").replace("_", "-") for m in VERB_MODULES} == verbs
    on_disk = {p.stem.replace("_", "-") for p in (ROOT / "genrec" / "commands").glob("*.py") if p.stem != "__init__"}
    assert on_disk == verbs  # no verb module the parser does not list
    for module in VERB_MODULES:
        assert callable(module.add_parser) and callable(module.run), module.__name__


def test_the_cli_checker_sees_a_library_import(tmp_path: Path) -> None:
    sample = tmp_path / "cli_sample.py"
    sample.write_text("import genrec\nfrom genrec.commands import HelpFormatter\nfrom genrec.trainers.jobs.verbs import run\n"
                      "def run(args):\n    from genrec.modeling.configuration_unger import UngerConfig\n")
    assert cli_imports_outside_jobs("genrec.cli_sample", sample) == ["genrec", "genrec.modeling.configuration_unger"]
