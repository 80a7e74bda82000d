"""``genrec run --model mscgrec`` end to end on a tiny dataset, the modality-table layout, ``genrec shapley``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_fixtures import TINY, run_tiny, write_s3rec

from genrec.cli import main
from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.modality_tables import MODALITY_TABLES_FILE, ModalityCodeTables
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.analysis.shapley import modality_contribution, shapley_values
from genrec.trainers.jobs.run_mscgrec import MODALITY_TABLES_DIR, load_run_modality_tables

pytestmark = pytest.mark.usefixtures("one_thread")

FRESH_PROCESS = """
import json, sys
import genrec  # registers the Auto classes
from transformers import AutoModel, AutoTokenizer
run_dir, histories = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(run_dir)
tokenizer = AutoTokenizer.from_pretrained(run_dir)
assert type(model).__name__ == "MSCGRecForGenerativeRecommendation", type(model)
print(json.dumps(model.recommend(histories, tokenizer, k=10, num_beams=20)))
"""
HISTORIES = [["1", "2", "3"], ["40"], ["5", "39", "12", "7"]]
IMAGE_ITEMS = [str(i) for i in range(1, 31)]  # items 31..40 have no image


def image_file(folder: Path, items: list[str] = IMAGE_ITEMS, dim: int = 8) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "image.safetensors"
    ItemEmbeddings(items, torch.from_numpy(rng.normal(size=(len(items), dim)).astype(np.float32))).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("mscgrec")
    data = write_s3rec(root / "raw")
    image = image_file(root)
    out = root / "run"
    summary = run_tiny(data, out, model="mscgrec", modalities={"image": image}, mask_probability=0.5)
    return out, summary, data


def test_every_stage_runs_and_the_run_folder_holds_every_modality(tiny_run: tuple[Path, dict, Path]) -> None:
    out, summary, _ = tiny_run
    assert list(summary["stages"]) == ["prepare", "embed", "stage1", "quantize", "stage2", "export"]
    assert summary["stages"]["stage1"]["mode"] == "collaborative_only"
    assert set(summary["stages"]["quantize"]["modalities"]) == {"collaborative", "text", "image"}
    assert summary["stages"]["quantize"]["modalities"]["image"]["items"] == len(IMAGE_ITEMS)
    assert summary["mscgrec"]["history_modalities"] == ["text", "image"]
    assert summary["mscgrec"]["coverage"] == {"collaborative": 1.0, "text": 1.0, "image": 0.75}
    metrics = summary["test_metrics"]
    assert metrics["num_users"] == 60 and metrics["invalid_rate"] == 0.0
    assert json.loads((out / "run.json").read_text())["test_metrics"] == metrics
    model = MSCGRecForGenerativeRecommendation.from_pretrained(out)
    assert model.config.mask_probability == 0.5 and model.config.decode_modality == "collaborative"
    tables = load_run_modality_tables(out, model)
    assert list(tables) == ["collaborative", "text", "image"]
    # the items without an image embedding are missing the image modality in the model
    image_columns = slice(len(model.config.history_codebook_sizes[0]), None)
    missing = model.encoder.modality_codes[:, image_columns].lt(0).all(-1)
    rows = {item: row for row, item in enumerate(tables.decode_table.item_ids)}
    assert sorted(int(r) for r in missing.nonzero().flatten()) == sorted(rows[str(i)] for i in range(31, 41))
    assert "MSCGRec" in (out / "README.md").read_text()


def test_a_fresh_process_reloads_the_run_and_recommends_only_valid_items(tiny_run: tuple[Path, dict, Path]) -> None:
    out, _, _ = tiny_run
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(out), json.dumps(HISTORIES)],
        capture_output=True, text=True, check=True,
    )
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    catalogue = set(CodeTable.load(out).item_ids)
    assert [len(row) for row in fresh] == [10, 10, 10]
    assert all(item in catalogue for row in fresh for item, _ in row)
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    model = MSCGRecForGenerativeRecommendation.from_pretrained(out)
    expected = model.recommend(HISTORIES, SemanticIDTokenizer.from_pretrained(str(out)), k=10, num_beams=20)
    assert [[i for i, _ in row] for row in fresh] == [[i for i, _ in row] for row in expected]


def test_a_rerun_reuses_every_stage_and_a_new_mask_probability_retrains_stage2_only(
    tiny_run: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    out, summary, data = tiny_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "stage1" / "stage1_result.json", out / "stage2" / "stage2_result.json")}
    image = image_file(tmp_path)  # same content, another path: still the same fingerprint
    again = run_tiny(data, out, model="mscgrec", modalities={"image": image}, mask_probability=0.5)
    assert again["test_metrics"] == summary["test_metrics"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    changed = run_tiny(data, out, model="mscgrec", modalities={"image": image}, mask_probability=0.0)
    stage1, stage2 = stamps
    assert stage1.stat().st_mtime_ns == stamps[stage1] and stage2.stat().st_mtime_ns != stamps[stage2]
    assert changed["mscgrec"]["mask_probability"] == 0.0
    # back to the fixture's settings for the other tests
    run_tiny(data, out, model="mscgrec", modalities={"image": image}, mask_probability=0.5)


def test_bad_modality_inputs_are_clear_errors(tiny_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, _, data = tiny_run
    foreign = image_file(tmp_path, items=["1", "2", "B000XYZ"])
    with pytest.raises(ValueError, match="not in the dataset's catalogue"):
        run_tiny(data, tmp_path / "r1", model="mscgrec", modalities={"image": foreign})
    with pytest.raises(ValueError, match="computed by the run itself"):
        run_tiny(data, tmp_path / "r2", model="mscgrec", modalities={"text": foreign})
    with pytest.raises(ValueError, match="unknown decoding modality 'image'"):
        run_tiny(data, tmp_path / "r3", model="mscgrec", decode_modality="image")
    with pytest.raises(ValueError, match="MSCGRec settings"):
        run_tiny(data, tmp_path / "r4", mask_probability=0.5)
    assert main(["run", "--model", "mscgrec", "--modality", "image", "--out", str(tmp_path / "r5")]) == 2


def test_modality_tables_refuse_a_replaced_table(tiny_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, _, _ = tiny_run
    tables = ModalityCodeTables.load(out / MODALITY_TABLES_DIR)
    copy = tmp_path / "tables"
    tables.save(copy)
    assert ModalityCodeTables.load(copy).content_hashes() == tables.content_hashes()
    text = tables["text"]
    other = CodeTable.from_codes(text.item_ids, text.codes[::-1].copy(), codebook_sizes=text.codebook_sizes)
    other.save(copy / "text")  # a valid table, but not the one the set was saved with
    with pytest.raises(ValueError, match="replaced after the set was saved"):
        ModalityCodeTables.load(copy)
    with pytest.raises(ValueError, match="the model was trained with"):
        ModalityCodeTables.load(out / MODALITY_TABLES_DIR, expected_hashes={"text": other.content_hash})
    with pytest.raises(ValueError, match="not in the decoding modality"):
        ModalityCodeTables({"collaborative": tables["image"], "text": text}, "collaborative")
    with pytest.raises(ValueError, match="modality name"):
        ModalityCodeTables({"collaborative": tables["collaborative"], "../x": text}, "collaborative")
    assert json.loads((out / MODALITY_TABLES_DIR / MODALITY_TABLES_FILE).read_text())["decode_modality"] == "collaborative"


def test_shapley_command_evaluates_every_subset(tiny_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, summary, _ = tiny_run
    report = modality_contribution(out, out_dir=tmp_path, metrics=("recall@20", "ndcg@10"), show_progress=False)
    assert report["modalities"] == ["collaborative", "text", "image"]
    assert len(report["subsets"]) == 8
    assert report["full"]["recall@20"] == pytest.approx(summary["test_metrics"]["recall@20"])
    for metric, values in report["shapley"].items():
        assert sum(values.values()) == pytest.approx(report["full"][metric] - report["empty"][metric])
    assert (tmp_path / "shapley.json").is_file()
    assert "| collaborative + text + image |" in (tmp_path / "shapley.md").read_text()


def test_transition_prior_on_an_mscgrec_run(tiny_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """`genrec transition-prior RUN` on an MSCGRec run folder: the prior is fitted, its weight chosen on
    validation, the MSCGRec model re-exported with it (modality tables kept and checked), the model's own
    metrics kept as model_test_metrics; the reloaded model ranks with the prior, and `genrec shapley` still
    attributes the model alone."""
    import shutil

    from genrec.trainers.jobs.run import add_transition_prior

    out, summary, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    again = add_transition_prior(run, show_progress=False)
    assert again["model_test_metrics"] == summary["test_metrics"]
    weight = again["transition_prior"]["weight"]
    assert "transition_prior" in again["stages"] and again["test_metrics"]["invalid_rate"] == 0.0
    model = MSCGRecForGenerativeRecommendation.from_pretrained(run)
    assert model.config.transition_weight == weight and model.config.num_transitions > 0
    load_run_modality_tables(run, model)  # the tables still match the re-exported model
    tokenizer = SemanticIDTokenizer.from_pretrained(str(run))
    ranked = model.recommend(HISTORIES, tokenizer, k=10, num_beams=20)
    assert all(len(row) == 10 and all(item is not None for item, _ in row) for row in ranked)
    report = modality_contribution(run, out_dir=tmp_path / "shapley", metrics=("recall@20",), show_progress=False)
    assert report["full"]["recall@20"] == pytest.approx(summary["test_metrics"]["recall@20"])  # the model alone


def test_shapley_values_of_known_games() -> None:
    players = ["a", "b", "c"]
    subsets = [frozenset(s) for s in ([], ["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"])]
    additive = {s: 1.0 * ("a" in s) + 2.0 * ("b" in s) + 4.0 * ("c" in s) for s in subsets}
    assert shapley_values(additive, players) == pytest.approx({"a": 1.0, "b": 2.0, "c": 4.0})
    # "glove game": a pays only together with b or c; b and c are symmetric
    glove = {s: float("a" in s and len(s) > 1) for s in subsets}
    values = shapley_values(glove, players)
    assert values["b"] == pytest.approx(values["c"]) and values["a"] == pytest.approx(2 / 3)
    with pytest.raises(KeyError, match="no value for the subset"):
        shapley_values({s: 0.0 for s in subsets[:-1]}, players)


def test_the_stacked_history_feed_runs_through_the_main_job(tiny_run: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, _, data = tiny_run
    run = tmp_path / "stacked"
    # a profile with the transition prior (as the default): the main job runs the stage for MSCGRec too
    summary = run_tiny(data, run, model="mscgrec", history_feed="stacked",
                       profile=replace(TINY, transition_prior=True))
    assert summary["mscgrec"]["history_feed"] == "stacked"
    assert summary["test_metrics"]["invalid_rate"] == 0.0
    assert list(summary["stages"])[-2:] == ["transition_prior", "export"] and "model_test_metrics" in summary
    model = MSCGRecForGenerativeRecommendation.from_pretrained(run)
    assert model.config.history_feed == "stacked" and model.config.history_modalities == ["text"]
    assert model.config.transition_weight == summary["transition_prior"]["weight"]
    assert json.loads((run / "fingerprints" / "stage2.json").read_text())["settings"]["history_feed"] == "stacked"
    with pytest.raises(ValueError, match="MSCGRec settings"):
        run_tiny(data, tmp_path / "unger", history_feed="stacked")


def test_stage2_steps_override_the_profile_for_equal_step_comparisons(
    tiny_run: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    _, _, data = tiny_run
    summary = run_tiny(data, tmp_path / "unger", stage2_max_steps=4)  # UNGER through the same prepare/embed path
    assert summary["stages"]["stage2"]["steps"] == 4 and summary["profile"]["stage2_max_steps"] == 4
    assert summary["stages"]["stage1"]["steps"] == 6 and "model" not in summary
    settings = json.loads((tmp_path / "unger" / "fingerprints" / "stage2.json").read_text())["settings"]
    assert settings["stage2_max_steps"] == 4 and settings["stage2_eval_every"] == 3
    assert settings["stage2_warmup_steps"] == 0  # at most a tenth of the run
    with pytest.raises(ValueError, match="stage2_max_steps must be >= 1"):
        run_tiny(data, tmp_path / "bad", stage2_max_steps=0)
