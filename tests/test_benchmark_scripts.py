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


def test_profile_variant_changes_named_fields_only_and_refuses_unknown_ones(benchmark_script, tmp_path) -> None:
    """A candidate profile is the named profile with the given fields changed and a name that says which."""
    from genrec.trainers.jobs.profiles import PROFILES

    module = benchmark_script("profile_variant.py", "genrec_bench_profile_variant")
    profile = module.changed_profile("default", {"stage1_epochs": 30})
    assert profile.stage1_epochs == 30
    assert profile.name == "default+stage1_epochs=30"
    assert profile.stage2_config == PROFILES["default"].stage2_config and profile.stage2_lr == PROFILES["default"].stage2_lr
    with pytest.raises(SystemExit, match="unknown PipelineProfile field"):
        module.changed_profile("default", {"stage1_epoch": 30})
    with pytest.raises(SystemExit, match="stage2_lr"):  # the profile's own checks apply to the new values
        module.changed_profile("default", {"stage2_lr": 0})
    source = tmp_path / "run"
    for folder in ("data", "embeddings", "fingerprints", "stage1"):
        (source / folder).mkdir(parents=True)
        (source / folder / "x.json").write_text("{}")
    (source / "fingerprints" / "prepare.json").write_text('{"p": 1}')
    module.reuse_inputs(source, tmp_path / "out")
    copied = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert copied == ["data/x.json", "embeddings/x.json", "fingerprints/prepare.json"]  # nothing of Stage I or later
    with pytest.raises(SystemExit, match="not a finished run folder"):
        module.reuse_inputs(tmp_path / "nowhere", tmp_path / "out2")


def test_stage2_variants_refuses_shared_codes_of_other_integrated_embeddings(benchmark_script, tmp_path) -> None:
    """A work folder's codes are reused only for the integrated embeddings they were quantized from."""
    module = benchmark_script("stage2_variants.py", "genrec_bench_stage2_variants_codes")
    sid = tmp_path / "semantic_ids"
    sid.mkdir()
    mine, other = tmp_path / "a" / "integrated.safetensors", tmp_path / "b" / "integrated.safetensors"
    module.check_codes_source(sid, {"embeddings": str(mine)}, mine)  # absolute record (older quantize.json)
    module.check_codes_source(sid, {"embeddings": "../a/integrated.safetensors"}, mine)  # relative to the folder
    with pytest.raises(SystemExit, match="give each Stage I its own --work-dir"):
        module.check_codes_source(sid, {"embeddings": str(mine)}, other)
