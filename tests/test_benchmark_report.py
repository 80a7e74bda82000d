"""benchmarks/report.py: input fingerprints, reruns only of stale rows, and the rendered RESULTS.md.

The report module is loaded by path (benchmarks/ is not a package). The rows here are tiny fakes whose
"command" is a Python function, so nothing trains and nothing needs RecBole or the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def report(benchmark_script) -> Any:
    return benchmark_script("report.py", "genrec_benchmark_report")



def _today(name: str) -> dict:
    """A run.json's profile as today's genrec records it (every field of the shipped profile)."""
    from dataclasses import asdict

    from genrec.trainers.jobs.profiles import PROFILES

    return asdict(PROFILES[name])

def _fake_row(report: Any, input_file: Path, calls: list[int | None], *, row_id: str = "toy-row",
              seeds: tuple[int, ...] = ()) -> Any:
    """A row whose computation is a cheap Python function that records its calls."""

    def compute(row: Any, ctx: Any, seed: int | None) -> dict[str, Any]:
        calls.append(seed)
        base = len(input_file.read_text()) / 100
        return {"metrics": {"recall@10": base + (seed or 0) / 1000, "recall@20": 0.2, "ndcg@10": 0.05,
                            "ndcg@20": 0.06}}

    return report.Row(
        id=row_id, title="Toy model", dataset="toy", kind="measured", command="python -c 'toy' --seed {seed}",
        compute=compute, inputs=lambda row, ctx: {"toy/input.txt": input_file} if input_file.is_file() else None,
        missing=lambda row, ctx: f"{input_file.name} is missing", seeds=seeds,
    )


def _ctx(report: Any, tmp_path: Path, **kwargs: Any) -> Any:
    return report.Context(repo=tmp_path, results_dir=tmp_path / "results", **kwargs)


def test_fingerprint_changes_with_input_content_only(report: Any, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("first version")
    row = _fake_row(report, data, [])
    ctx = _ctx(report, tmp_path)

    first = report.fingerprint(row, ctx)
    assert first is not None and first == report.fingerprint(row, ctx)
    data.write_text("first version")  # rewritten, same bytes: same fingerprint
    assert report.fingerprint(row, ctx) == first
    data.write_text("second version")
    assert report.fingerprint(row, ctx) != first
    data.unlink()
    assert report.fingerprint(row, ctx) is None  # inputs missing: cannot run here


def test_fingerprint_includes_the_command(report: Any, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("x")
    row = _fake_row(report, data, [])
    other = report.Row(**{**row.__dict__, "command": row.command + " --extra"})
    ctx = _ctx(report, tmp_path)
    assert report.fingerprint(row, ctx) != report.fingerprint(other, ctx)


def test_up_to_date_row_is_not_recomputed(report: Any, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("abc")
    calls: list[int | None] = []
    rows = [_fake_row(report, data, calls)]
    ctx = _ctx(report, tmp_path)
    md = tmp_path / "RESULTS.md"

    first = report.run_report(rows, ctx, markdown_path=md, plot=False)
    assert calls == [None] and first["computed"] == {"toy-row": [None]}
    stored = json.loads((ctx.results_dir / "toy-row.json").read_text())
    for key in ("row", "command", "metrics", "versions", "seed", "machine", "wall_time_s", "date", "fingerprint"):
        assert key in stored, key
    assert stored["machine"]["cpu_count"] and "sysname" in stored["machine"]["uname"]
    assert stored["metrics"]["recall@10"] == pytest.approx(0.03)

    second = report.run_report(rows, ctx, markdown_path=md, plot=False)
    assert calls == [None] and second["computed"] == {}  # fingerprint unchanged: nothing ran

    data.write_text("abcd")  # input changed: the row reruns
    report.run_report(rows, ctx, markdown_path=md, plot=False)
    assert calls == [None, None]
    assert json.loads((ctx.results_dir / "toy-row.json").read_text())["metrics"]["recall@10"] == pytest.approx(0.04)

    report.run_report(rows, ctx, markdown_path=md, plot=False, force=["toy-row"])  # on demand
    assert len(calls) == 3


def test_only_restricts_computation(report: Any, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("abc")
    calls_a: list[int | None] = []
    calls_b: list[int | None] = []
    rows = [_fake_row(report, data, calls_a, row_id="row-a"), _fake_row(report, data, calls_b, row_id="row-b")]
    report.run_report(rows, _ctx(report, tmp_path), only=["row-b"], markdown_path=None)
    assert calls_a == [] and calls_b == [None]
    with pytest.raises(SystemExit):
        report.run_report(rows, _ctx(report, tmp_path), only=["nope"], markdown_path=None)
    report.run_report(rows, _ctx(report, tmp_path), skip=["row-*"], markdown_path=None)
    assert calls_a == [] and calls_b == [None]
    report.run_report(rows, _ctx(report, tmp_path), only=["row-*"], markdown_path=None)
    assert calls_a == [None] and calls_b == [None]  # row-b is up to date
    data.write_text("changed")  # both stale now, but --force alone recomputes only the forced row
    report.run_report(rows, _ctx(report, tmp_path), force=["row-a"], markdown_path=None)
    assert calls_a == [None, None] and calls_b == [None]


def test_seeds_are_resumable_and_averaged(report: Any, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("abc")
    calls: list[int | None] = []
    rows = [_fake_row(report, data, calls, seeds=(1, 2, 3))]
    md = tmp_path / "RESULTS.md"

    report.run_report(rows, _ctx(report, tmp_path, max_seeds=1), markdown_path=md, plot=False)
    assert calls == [1]
    text = md.read_text()
    assert "`toy-row` seeds 2, 3" in text  # the missing seeds are listed as not run yet

    report.run_report(rows, _ctx(report, tmp_path), markdown_path=md, plot=False)
    assert calls == [1, 2, 3]  # only the missing seeds ran
    stored = json.loads((tmp_path / "results" / "toy-row.json").read_text())
    assert stored["seeds_done"] == [1, 2, 3]
    assert stored["metrics"]["recall@10"] == pytest.approx(0.032)
    assert stored["metrics_std"]["recall@10"] == pytest.approx(0.001)
    assert "0.0320 ± 0.0010" in md.read_text()


def test_genrec_runs_are_read_per_seed_as_they_finish(report: Any, tmp_path: Path) -> None:
    """A main-job row with one run folder per seed shows the seeds whose run.json exists, then all of them."""

    def finish(seed: int, recall: float) -> None:
        folder = tmp_path / "runs" / f"ml-s{seed}"
        folder.mkdir(parents=True)
        metrics = {"recall@10": recall, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.07, "num_users": 9}
        (folder / "run.json").write_text(json.dumps(
            {"seed": seed, "profile": _today("default"), "test_metrics": metrics, "total_seconds": 60.0}))

    row = report.genrec_run_row(
        "ml-100k", "default", seed_sources={s: f"runs/ml-s{s}/run.json" for s in (1, 2, 3)},
        produce="genrec run --dataset ml-100k --seed {seed} --out runs/ml-s{seed}",
    )
    md = tmp_path / "RESULTS.md"
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    assert not (tmp_path / "results" / f"{row.id}.json").exists()  # no run has finished: not run yet
    assert "runs/ml-s1/run.json" in md.read_text()
    finish(1, 0.10)
    finish(2, 0.12)
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    stored = json.loads((tmp_path / "results" / f"{row.id}.json").read_text())
    assert stored["seeds_done"] == [1, 2] and stored["metrics"]["recall@10"] == pytest.approx(0.11)
    assert "genrec run --dataset ml-100k --seed 3 --out runs/ml-s3" in md.read_text()  # the missing seed's command
    finish(3, 0.14)
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    stored = json.loads((tmp_path / "results" / f"{row.id}.json").read_text())
    assert stored["seeds_done"] == [1, 2, 3] and stored["metrics"]["recall@10"] == pytest.approx(0.12)
    assert stored["source_paths"] == {str(s): f"runs/ml-s{s}/run.json" for s in (1, 2, 3)}
    # a run folder whose run.json holds another seed is refused, not averaged in
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(
        {"seed": 7, "profile": {"name": "default"}, "test_metrics": {"recall@10": 0.5}, "total_seconds": 1.0}))
    with pytest.raises(ValueError, match="seed 7"):
        report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    # a run cut with --stage2-steps, or stopped with --until, is not a default-profile run
    cut = {"seed": 3, "profile": {"name": "default", "stage2_epochs": None, "stage2_max_steps": 1},
           "test_metrics": {"recall@10": 0.5}, "total_seconds": 1.0}
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(cut))
    with pytest.raises(ValueError, match="--stage2-steps"):
        report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(
        {"seed": 3, "profile": {"name": "default"}, "stopped_after": "quantize", "total_seconds": 1.0}))
    with pytest.raises(ValueError, match="stopped after quantize"):
        report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    # a run of an earlier version of the profile (the default of 2026-12-06: Stage II dropout 0.1) is refused by
    # today's row and read by a row labelled with that version
    from dataclasses import asdict

    from genrec.trainers.jobs.profiles import PROFILES

    older = asdict(PROFILES["default"])
    older["stage2_config"] = {**older["stage2_config"], "dropout": 0.1}
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(
        {"seed": 3, "profile": older, "test_metrics": {"recall@10": 0.5}, "total_seconds": 1.0}))
    with pytest.raises(ValueError, match="another version of the 'default' profile .stage2_config"):
        report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    labelled = report.genrec_run_row("ml-100k", "default", label="2026-12-06", label_text="of 2026-12-06",
                                     seed_sources={3: "runs/ml-s3/run.json"}, produce="genrec run --seed {seed}")
    assert report.compute_genrec_run(labelled, _ctx(report, tmp_path), 3)["metrics"]["recall@10"] == 0.5
    # a run recorded before a profile field existed used that field's default: the plain prior before the default
    # profile chose its smoothing (transition_smoothing "auto") is another version too
    before_smoothing = {k: v for k, v in asdict(PROFILES["default"]).items() if k != "transition_smoothing"}
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(
        {"seed": 3, "profile": before_smoothing, "test_metrics": {"recall@10": 0.5}, "total_seconds": 1.0}))
    with pytest.raises(ValueError, match="transition_smoothing 0.0 vs 'auto'"):
        report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    stages = {"stage1": {"seconds": 300.0}, "stage2": {"seconds": 600.0}, "transition_prior": {"seconds": 60.0}}
    (tmp_path / "runs" / "ml-s3" / "run.json").write_text(json.dumps(
        {"seed": 3, "profile": asdict(PROFILES["default"]), "test_metrics": {"recall@10": 0.5}, "total_seconds": 1,
         "stages": stages}))
    read = report.compute_genrec_run(row, _ctx(report, tmp_path), 3)
    assert read["metrics"]["recall@10"] == 0.5
    # resumed (only the last invocation's 1 s in total_seconds): the wall time is every stage's own time summed
    assert read["wall_time_s"] == 960.0 and read["details"]["last_invocation_seconds"] == 1


def test_stage2_variant_rows_are_read_per_seed(report: Any, tmp_path: Path) -> None:
    """A Stage II variant measured on several seeds' runs is one row: mean ± std of the seeds whose JSON exists;
    a JSON that records another seed is refused (older JSONs record none and are taken as the row says)."""
    row = report.stage2_variant_row(
        "ml-100k", "deep", seed_sources={s: f"runs/v-{s}/deep.json" for s in (1, 2)},
        produce="python benchmarks/stage2_variants.py --data runs/d{seed}/data --seed {seed} --name deep")

    def finish(seed: int, recall: float, recorded: int | None) -> None:
        out = tmp_path / "runs" / f"v-{seed}" / "deep.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        metrics = {"recall@10": recall, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.07}
        out.write_text(json.dumps({"variant": "deep", "test": metrics, "wall_time_s": 9.0,
                                   **({} if recorded is None else {"seed": recorded})}))

    md = tmp_path / "RESULTS.md"
    finish(1, 0.10, None)
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    assert "python benchmarks/stage2_variants.py --data runs/d2/data --seed 2 --name deep" in md.read_text()
    finish(2, 0.14, 2)
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    stored = json.loads((tmp_path / "results" / f"{row.id}.json").read_text())
    assert stored["seeds_done"] == [1, 2] and stored["metrics"]["recall@10"] == pytest.approx(0.12)
    finish(2, 0.14, 7)
    with pytest.raises(ValueError, match="seed 7"):
        report.compute_stage2_variant(row, _ctx(report, tmp_path), 2)


def test_stage1_retriever_row_reads_the_scripts_json(report: Any, tmp_path: Path) -> None:
    """The Stage I retriever row is "not run yet" until stage1_retriever.py's JSON exists, then shows its test
    metrics; validation metrics are refused (the table is test-split only)."""
    row = report.stage1_retriever_row("ml-100k", "runs/ml")
    md = tmp_path / "RESULTS.md"
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    assert "python benchmarks/stage1_retriever.py --run runs/ml --json runs/ml/stage1_retriever.json" in md.read_text()
    assert not (tmp_path / "results" / f"{row.id}.json").exists()
    metrics = {"recall@10": 0.09, "recall@20": 0.18, "ndcg@10": 0.04, "ndcg@20": 0.06}
    out = tmp_path / "runs" / "ml" / "stage1_retriever.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"split": "test", "metrics": metrics, "num_users": 9, "wall_time_s": 0.5}))
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    stored = json.loads((tmp_path / "results" / f"{row.id}.json").read_text())
    assert stored["metrics"]["recall@10"] == pytest.approx(0.09) and "0.0900" in md.read_text()
    out.write_text(json.dumps({"split": "validation", "metrics": metrics}))
    with pytest.raises(ValueError, match="validation"):
        report.compute_stage1_retriever(row, _ctx(report, tmp_path), None)


def test_ablation_rows_show_the_paired_difference_to_their_reference(report: Any, tmp_path: Path) -> None:
    """An ablation arm whose Stage II wrote test_ranks.json beside the reference's shows A - reference with its
    bootstrap interval, and says whether it is beyond the noise."""
    rows = {row.options["variant"]: row for row in report.code_ablation_rows()}
    arm, ref = rows["abl-codes-random"], rows["abl-default"]
    work = tmp_path / "runs" / "ml-100k-abl"
    users = [str(u) for u in range(300)]
    for name, hits in (("abl-default", 30), ("abl-codes-random", 90)):
        metrics = {"recall@10": hits / 300, "recall@20": 0.4, "ndcg@10": hits / 600, "ndcg@20": 0.2}
        (work / "runs" / name).mkdir(parents=True)
        (work / f"{name}.json").write_text(json.dumps({"test": metrics, "variant": name, "steps": 10}))
        ranks = [1] * hits + [0] * (300 - hits)
        (work / "runs" / name / "test_ranks.json").write_text(json.dumps(
            {"metrics": metrics, "per_user": {"user_id": users, "target": users, "rank": ranks}}))
    md = tmp_path / "RESULTS.md"
    report.run_report([ref, arm], _ctx(report, tmp_path), markdown_path=md, plot=False)
    paired = json.loads((tmp_path / "results" / f"{arm.id}.json").read_text())["runs"][0]["details"][
        "paired_vs_reference"]
    assert paired["reference"] == "abl-default" and paired["comparisons"][0]["diff"] == pytest.approx(0.2)
    line = next(line for line in md.read_text().splitlines() if arm.id in line)
    assert "minus `abl-default`" in line and "beyond the noise at recall@10, ndcg@10" in line
    ref_line = next(line for line in md.read_text().splitlines() if f"(`{ref.id}`)" in line)
    assert "minus" not in ref_line  # the reference is not compared with itself
    # the report keeps each arm's ranks: an arm measured after the reference's run folder is gone still pairs
    kept = tmp_path / "results" / "ranks" / f"{ref.id}.json"
    assert json.loads(kept.read_text())["per_user"]["rank"] == [1] * 30 + [0] * 270
    shutil.rmtree(work / "runs" / "abl-default")
    late = rows["abl-nodistill"]
    (work / "runs" / "abl-nodistill").mkdir(parents=True)
    (work / "abl-nodistill.json").write_text(json.dumps({"test": {"recall@10": 0.0}, "variant": "abl-nodistill"}))
    (work / "runs" / "abl-nodistill" / "test_ranks.json").write_text(json.dumps(
        {"per_user": {"user_id": users, "target": users, "rank": [0] * 300}}))
    report.run_report([late], _ctx(report, tmp_path), markdown_path=md, plot=False)
    paired = json.loads((tmp_path / "results" / f"{late.id}.json").read_text())["runs"][0]["details"][
        "paired_vs_reference"]
    assert paired["comparisons"][0]["diff"] == pytest.approx(-0.1)


def test_results_md_lists_missing_rows_and_marks_published(report: Any, tmp_path: Path) -> None:
    present, absent = tmp_path / "present.txt", tmp_path / "absent.txt"
    present.write_text("abc")
    rows = [
        _fake_row(report, present, [], row_id="toy-measured"),
        _fake_row(report, absent, [], row_id="toy-missing"),
        report.Row(id="toy-paper", title="PaperNet", dataset="toy", kind="published",
                   published={"recall@10": 0.5, "recall@20": 0.6, "ndcg@10": 0.3, "ndcg@20": 0.35},
                   source="published: Some et al., Table 9"),
    ]
    ctx = _ctx(report, tmp_path)
    md = tmp_path / "RESULTS.md"
    outcome = report.run_report(rows, ctx, markdown_path=md, plot=False)
    assert outcome["skipped"] == {"toy-missing": "absent.txt is missing"}
    text = md.read_text()

    not_run = text.split("## Not run yet", 1)[1]
    assert "`toy-missing`" in not_run and "absent.txt is missing" in not_run
    assert "python benchmarks/report.py --only toy-missing" in not_run
    assert "`toy-measured`" not in not_run

    table = [line for line in text.splitlines() if line.startswith("| ")]
    paper = next(line for line in table if "PaperNet" in line)
    assert "*published*" in paper and "[1]" in paper and "0.5000" in paper
    assert "[1] published: Some et al., Table 9" in text  # the source, once per table
    measured = next(line for line in table if "toy-measured" in line)
    assert "published" not in measured
    # sorted by Recall@10: the published 0.5 comes before the measured 0.03
    assert table.index(paper) < table.index(measured)
    assert "**Machine**" in text


def test_plot_is_written(report: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = tmp_path / "input.txt"
    data.write_text("abc")
    rows = [_fake_row(report, data, [])]
    md = tmp_path / "RESULTS.md"
    report.run_report(rows, _ctx(report, tmp_path), markdown_path=md, plot=True)
    assert (tmp_path / report.PLOT_NAME).read_bytes().startswith(b"\x89PNG")
    assert f"]({report.PLOT_NAME})" in md.read_text()


def _toy_variant_row(report: Any, data: Path, variant: str, recall: float, steps: int, group: str = "") -> Any:
    """A Stage II variant row (``variant`` option, ``steps`` in its details) with a fixed Recall@10."""
    return report.Row(
        id=f"toy-{variant}", title=f"variant {variant}", dataset="toy", kind="measured", command=f"toy {variant}",
        compute=lambda row, ctx, seed: {"metrics": {"recall@10": recall}, "details": {"steps": steps}},
        inputs=lambda row, ctx: {"toy/input.txt": data}, options={"variant": variant, **({"group": group} if group else {})},
    )


def test_headline_plot_holds_the_declared_rows_and_the_variants_get_their_own(report: Any, tmp_path: Path) -> None:
    """Issue 30: the main plot shows the headline rows only (declared order, short labels, about 1200 x 600);
    Stage II variants and ablations go to their own plot, one panel per group or step count."""
    pytest.importorskip("matplotlib")
    import matplotlib.image

    data = tmp_path / "input.txt"
    data.write_text("abc")
    rows = [_fake_row(report, data, [], row_id="toy-a"), _fake_row(report, data, [], row_id="toy-b", seeds=(1, 2)),
            _toy_variant_row(report, data, "abl-default", 0.10, 1500, "ablations"),
            _toy_variant_row(report, data, "abl-x", 0.12, 1500, "ablations"),
            _toy_variant_row(report, data, "v1", 0.20, 600), _toy_variant_row(report, data, "v2", 0.25, 600),
            _toy_variant_row(report, data, "lonely", 0.3, 900)]
    ctx = _ctx(report, tmp_path)
    report.run_report(rows, ctx, markdown_path=None)
    headline = {"toy": (("toy-b", "B short"), ("toy-missing", "never measured"), ("toy-a", "A short"))}
    panels = report.headline_panels(rows, ctx, headline)
    assert [(b.label, b.seeds, b.std > 0) for b in panels["toy"]] == [("B short", 2, True), ("A short", 1, False)]
    assert report.render_plot(rows, ctx, tmp_path / "main.png", headline=headline)
    assert matplotlib.image.imread(tmp_path / "main.png").shape[:2] == (600, 1200)
    # a registry without any headline row plots every quality row instead of nothing
    assert len(report.headline_panels(rows, ctx, {"toy": (("nope", "x"),)})["toy"]) == len(rows)

    variants = report.ablation_panels(rows, ctx)["toy"]
    assert {panel: [(b.label, b.role) for b in bars] for panel, bars in variants.items()} == {
        "ablations, 1500 steps": [("abl-default", "reference"), ("abl-x", "genrec")],
        "Stage II variants, 600 steps": [("v1", "genrec"), ("v2", "genrec")],
    }  # "lonely" (the only 900-step variant) compares with nothing: no panel
    assert report.render_ablation_plot(rows, ctx, tmp_path / "variants.png")

    md = tmp_path / "RESULTS.md"
    report.run_report(rows, ctx, markdown_path=md, plot=True)
    assert f"]({report.PLOT_NAME})" in md.read_text() and f"]({report.ABLATION_PLOT_NAME})" in md.read_text()
    assert (tmp_path / report.ABLATION_PLOT_NAME).read_bytes().startswith(b"\x89PNG")


def test_headline_rows_are_registry_rows(report: Any) -> None:
    """The main plot's rows are declared by id: each must be a quality row of its dataset in the registry."""
    by_id = {row.id: row for row in report.ROWS}
    for data, entries in report.HEADLINE_ROWS.items():
        for row_id, label in entries:
            assert row_id in by_id and by_id[row_id].dataset == data and by_id[row_id].section == "quality", row_id
            assert len(label) <= 28, label  # short labels: the plot is read at a glance


def test_registry_is_consistent(report: Any) -> None:
    ids = [row.id for row in report.ROWS]
    assert len(ids) == len(set(ids))
    for row in report.ROWS:
        assert row.dataset in report.DATASETS
        if row.kind == "published":
            # a paper may print only some cut-offs (TIGER: @5 and @10); the table shows the others as "–"
            assert row.published and set(row.published) <= set(report.QUALITY_METRICS) and row.source
            assert {"recall@10", "ndcg@10"} <= set(row.published)
        else:
            assert row.command and row.compute is not None and row.inputs is not None


def test_published_numbers_match_the_paper(report: Any) -> None:
    """The UNGER table rows in the registry are the Beauty numbers printed in the paper's reading copy."""
    paper = Path(__file__).resolve().parents[2] / "shared" / "papers" / "unger.txt"
    if not paper.is_file():
        pytest.skip("../shared/papers/unger.txt is not here")
    lines = paper.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| GRU4REC |"))
    names = [c.strip() for c in header.strip("|").split("|") if c.strip()] + ["UNGER (Ours)"]
    start = next(i for i, line in enumerate(lines) if line.startswith("| Beauty | Recall@10"))
    values: list[list[float]] = []
    for line in lines[start:start + 4]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        numbers = [c for c in cells if c and c[0].isdigit()]
        values.append([float(c.split()[0].rstrip("*")) for c in numbers])
    for j, name in enumerate(names):
        assert report.UNGER_TABLE_BEAUTY[name] == tuple(v[j] for v in values), name


def test_forget_sources_drops_remembered_per_seed_paths(report: Any, tmp_path: Path) -> None:
    """A per-seed row keeps the paths --source gave it; --forget-sources reads the registry defaults again."""
    for name, recall in (("old-s1", 0.30), ("ml-s1", 0.10)):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        metrics = {"recall@10": recall, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.07, "num_users": 9}
        (folder / "run.json").write_text(json.dumps(
            {"seed": 1, "profile": _today("default"), "test_metrics": metrics, "total_seconds": 60.0}))
    row = report.genrec_run_row("ml-100k", "default", seed_sources={1: "runs/ml-s1/run.json"},
                                produce="genrec run --seed {seed}")
    old = {f"{row.id}@1": tmp_path / "runs" / "old-s1" / "run.json"}
    report.run_report([row], _ctx(report, tmp_path, sources=old), markdown_path=tmp_path / "R.md", plot=False)
    assert report.source_path(row, _ctx(report, tmp_path), 1) == old[f"{row.id}@1"]  # remembered
    ctx = _ctx(report, tmp_path, forget_sources=True)
    assert report.source_path(row, ctx, 1) == tmp_path / "runs" / "ml-s1" / "run.json"


def test_a_resumed_recbole_row_says_its_time_is_every_sittings_training(report: Any, tmp_path: Path) -> None:
    present = tmp_path / "present.txt"
    present.write_text("abc")
    row = _fake_row(report, present, [], row_id="toy-resumed")

    def compute(row: Any, ctx: Any, seed: int | None) -> dict[str, Any]:
        return {"metrics": {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06},
                "wall_time_s": 9000.0, "details": {"epochs_run": 77, "best_epoch": 65, "stopped_by": "early_stopping",
                                                   "sittings": 4, "seconds_to_best_validation": 8000.0}}

    md = tmp_path / "RESULTS.md"
    report.run_report([report.Row(**{**row.__dict__, "compute": compute})], _ctx(report, tmp_path),
                      markdown_path=md, plot=False)
    line = next(line for line in md.read_text().splitlines() if "toy-resumed" in line and line.startswith("| "))
    assert "150.0 min" in line and "epochs 77 (best 65 at 133.3 min)" in line and "trained in 4 sittings" in line
    # a run of one sitting says nothing about sittings
    md.unlink()
    shutil.rmtree(tmp_path / "results")

    def one_sitting(row: Any, ctx: Any, seed: int | None) -> dict[str, Any]:
        stored = compute(row, ctx, seed)
        stored["details"]["sittings"] = 1
        return stored

    report.run_report([report.Row(**{**row.__dict__, "compute": one_sitting})], _ctx(report, tmp_path),
                      markdown_path=md, plot=False)
    assert "sittings" not in md.read_text()


def test_a_default_row_names_every_seeds_prior_and_a_resumed_runs_stage_time(report: Any, tmp_path: Path) -> None:
    """Each seed chose its own (w, c) on validation: the row lists them all; a resumed run's time is its stages'."""
    metrics = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}
    for seed, (weight, smoothing, total) in {1: (0.3, 20.0, 900.0), 2: (0.05, 5.0, 30.0)}.items():
        folder = tmp_path / "runs" / f"ml-s{seed}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({
            "seed": seed, "profile": _today("default"), "test_metrics": metrics, "model_test_metrics": metrics,
            "transition_prior": {"weight": weight, "smoothing": smoothing, "num_transitions": 10, "validation": {}},
            "stages": {"stage2": {"seconds": 800.0}, "transition_prior": {"seconds": 20.0}}, "total_seconds": total}))
    row = report.genrec_run_row("ml-100k", "default", seed_sources={s: f"runs/ml-s{s}/run.json" for s in (1, 2)},
                                produce="genrec run --seed {seed}")
    md = tmp_path / "R.md"
    report.run_report([row], _ctx(report, tmp_path), markdown_path=md, plot=False)
    line = next(line for line in md.read_text().splitlines() if f"`{row.id}`" in line and line.startswith("| "))
    assert "(w, c) = (0.3, 20.0), (0.05, 5.0) chosen on validation" in line
    stored = json.loads((tmp_path / "results" / f"{row.id}.json").read_text())
    # seed 1 ran in one go (900 s >= its stages' 820 s); seed 2 was resumed: 30 s of reuse, 820 s of stages
    assert [r["wall_time_s"] for r in stored["runs"]] == [900.0, 820.0]
    assert "a resumed run (seed 2): its wall time is every stage's own time summed (the last invocation took 30.0 s)" in line
