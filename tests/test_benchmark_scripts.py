"""benchmarks/: every script is listed in benchmarks/README.md and imports (its sibling imports resolve)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"
SCRIPTS = sorted(p for p in [*BENCH.glob("*.py"), *BENCH.glob("*.sh"), *(BENCH / "studies").glob("*")] if p.is_file())


def test_every_script_is_listed_in_the_readme() -> None:
    readme = (BENCH / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w.]+)`", readme, flags=re.MULTILINE))
    assert {p.name for p in SCRIPTS} <= listed, sorted({p.name for p in SCRIPTS} - listed)
    assert listed <= {p.name for p in SCRIPTS}, sorted(listed - {p.name for p in SCRIPTS})  # no stale rows


def test_reporting_is_a_package() -> None:
    assert (BENCH / "reporting" / "__init__.py").is_file()


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".py"], ids=lambda p: str(p.relative_to(BENCH)))
def test_script_imports(benchmark_script, script: Path) -> None:
    module = benchmark_script(str(script.relative_to(BENCH)), f"genrec_bench_import_{script.stem}")
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


@pytest.mark.parametrize("flag", [["--levels", "4"], ["--codebook-size", "64"], ["--resolve-collisions", "reassign"],
                                  ["--collision-order", "popularity"]])
def test_stage2_variants_refuses_quantize_flags_beside_given_codes(benchmark_script, monkeypatch, capsys, flag) -> None:
    """Codes given with --semantic-ids are used as they are, so a flag that chooses how to quantize would be ignored."""
    module = benchmark_script("stage2_variants.py", "genrec_bench_stage2_variants_args")
    monkeypatch.setattr("sys.argv", ["stage2_variants.py", "--data", "d", "--integrated", "i", "--name", "n",
                                     "--semantic-ids", "runs/x/semantic_ids", *flag])
    with pytest.raises(SystemExit) as exc:
        module.main()
    assert exc.value.code == 2
    assert "--semantic-ids reuses codes already made" in capsys.readouterr().err
