"""The distribution: one `genrec` namespace from the design card's top-level folders, cheap to import."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

TOP_LEVEL = ["modeling", "tokenization", "trainers", "data_scripts", "model_cards"]
# every folder with an __init__.py below the top-level folders is a package of the wheel (trainers/engine, ...)
SUBPACKAGES = sorted(
    path.parent.relative_to(REPO_ROOT).as_posix().replace("/", ".")
    for top in TOP_LEVEL for path in (REPO_ROOT / top).rglob("__init__.py")
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("genrec-*.whl")
    return wheel


def test_wheel_maps_top_level_folders_into_one_namespace(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "genrec/__init__.py" in names and "genrec/cli.py" in names
    assert {"trainers", "trainers.jobs", "tokenization.quantizers"} <= set(SUBPACKAGES)
    verbs = sorted(p.name for p in (REPO_ROOT / "genrec" / "commands").glob("*.py"))
    assert verbs and all(f"genrec/commands/{name}" in names for name in verbs), "genrec/commands/ missing from the wheel"
    for sub in SUBPACKAGES:
        folder = sub.replace(".", "/")
        assert f"genrec/{folder}/__init__.py" in names, f"{folder}/ missing from the wheel"
        modules = {p.name for p in (REPO_ROOT / folder).glob("*.py")}
        missing = sorted(m for m in modules if f"genrec/{folder}/{m}" not in names)
        assert not missing, f"{folder}/: {missing} missing from the wheel"
    assert not any(name.startswith(("tests/", "benchmarks/", "modeling/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "genrec = genrec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports_subpackages(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (
        "import genrec, importlib\n"
        f"mods = [importlib.import_module('genrec.' + s) for s in {SUBPACKAGES!r}]\n"
        "print(genrec.__file__); print('\\n'.join(m.__file__ for m in mods))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(target), "PATH": ""},
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    files = result.stdout.split()
    assert len(files) == 1 + len(SUBPACKAGES)
    assert all(f.startswith(str(target)) for f in files), files


def test_import_genrec_is_lazy() -> None:
    """`import genrec` must not pull torch / transformers (it is what keeps it well under 2 s)."""
    code = (
        "import sys, genrec\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == ""


def test_public_names_resolve() -> None:
    import genrec

    assert genrec.compute_metrics.__module__ == "genrec.trainers.evaluation.metrics"
    with pytest.raises(AttributeError, match="no attribute"):
        genrec.does_not_exist  # noqa: B018
