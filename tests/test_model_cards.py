"""Model cards are generated from the run's real numbers and settings, with a YAML the Hub understands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import ModelCard

from genrec.data_scripts.provenance import data_terms, dataset_display_name
from genrec.model_cards.card import build_model_card, eval_results, save_model_card
from genrec.model_cards.run_card import build_run_card, non_default_settings, public_summary
from genrec.modeling.configuration_unger import UngerConfig
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer


def test_card_carries_metrics_settings_and_usage(tmp_path) -> None:
    card = build_model_card(
        title="UNGER on ML-100K",
        summary="A test card.",
        usage="from transformers import AutoModel\nmodel = AutoModel.from_pretrained('run')",
        datasets={"ml-100k": "MovieLens-100K, leave-one-out"},
        metrics={"test": {"recall@10": 0.12345, "ndcg@10": 0.05}, "validation": {"recall@10": 0.2}},
        hyperparameters={"lr": 1e-3, "batch_size": 256},
        tags=("unger",),
    )
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    assert "library_name: genrec" in text
    assert "| recall@10 | 0.1235 |" in text
    assert "**validation**" in text and "**test**" in text
    assert "| batch_size | `256` |" in text
    assert "AutoModel.from_pretrained('run')" in text
    reloaded = ModelCard.load(path)
    assert reloaded.data.library_name == "genrec"


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        build_model_card(title="t", summary="s", usage="u", datasets={}, metrics={"dev": {"a": 1.0}})


def _run_summary(tmp_path) -> dict:
    return {
        "dataset": "org/beauty", "source": "hub", "seed": 7, "num_levels": 3, "codebook_size": 4,
        "profile": {"name": "quick", "eval_beams": 20, "test_beams": None, "stage2_lr_schedule": "cosine",
                    "max_eval_users": 128},
        "stages": {"prepare": {"seconds": 1.5, "path": str(tmp_path / "data")},
                   "embed": {"seconds": 2.0, "path": str(tmp_path / "data" / "embeddings" / "e.safetensors")},
                   "stage1": {"seconds": 3.0, "path": str(tmp_path / "stage1"), "steps": 30, "best_step": 20},
                   "stage2": {"seconds": 4.0, "path": "/somewhere/else/stage2", "steps": 40, "best_step": 40}},
        "test_metrics": {"recall@10": 0.25, "ndcg@10": 0.125, "invalid_rate": 0.0},
        "validation_metrics": {"recall@10": 0.3},
        "hardware": {"cpu": "test cpu", "cpu_cores": 2, "accelerator": "none (CPU)"},
        "model_dir": str(tmp_path),
    }


def test_run_card_yaml_has_model_index_license_and_no_local_path(tmp_path) -> None:
    codes = np.random.default_rng(0).integers(0, 4, size=(12, 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes([f"B{k:03d}" for k in range(12)], codes,
                                                                   codebook_sizes=[4, 4]))
    config = UngerConfig.from_tokenizer(tok, d_model=48, num_attention_heads=4, constrained_training=True)
    summary = _run_summary(tmp_path)
    card = build_run_card(tmp_path, summary, config, tok, repo_id="org/unger-beauty", revision="v1")
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    data = ModelCard.load(path).data.to_dict()
    assert data["library_name"] == "genrec" and data["pipeline_tag"] == "other"
    assert data["datasets"] == ["org/beauty"] and data["license"] == "other"
    assert {"unger", "generative-recommendation"} <= set(data["tags"])
    index = data["model-index"][0]
    assert index["name"] == "unger-beauty"
    result = index["results"][0]
    assert result["dataset"] == {"name": "org/beauty", "type": "org/beauty", "split": "test"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"recall@10": 0.25, "ndcg@10": 0.125}
    # settings that differ from the defaults, and only those
    assert "| d_model | `48` |" in text and "| constrained_training | `True` |" in text
    assert "| decoder_layers |" not in text
    assert "| stage2 (s) | 4.0 |" in text and "| cpu | test cpu |" in text
    assert f"| content hash | `{tok.code_table.content_hash}` |" in text
    assert 'AutoModel.from_pretrained("org/unger-beauty", trust_remote_code=True, revision="v1")' in text
    assert "history = ['B000', 'B001', 'B002']" in text  # no prepared data here: the table's first items
    assert "@article{xiao_unger," in text and "vandenhirtz_mscgrec" in text  # MSCGRec: constrained training
    assert str(tmp_path) not in text


def test_public_summary_has_no_absolute_path(tmp_path) -> None:
    summary = _run_summary(tmp_path)
    summary["dataset"] = str(tmp_path / "my-data")
    public = public_summary(summary, tmp_path)
    text = json.dumps(public)
    assert "/" + tmp_path.parts[1] not in text and "/somewhere" not in text
    assert public["stages"]["embed"]["path"] == "data/embeddings/e.safetensors"
    assert public["stages"]["stage2"]["path"] == "stage2" and public["model_dir"] == "."
    assert public["dataset"] == "my-data"
    assert public["test_metrics"] == summary["test_metrics"]


def test_settings_and_terms_helpers() -> None:
    assert non_default_settings(UngerConfig()) == {}
    assert non_default_settings(UngerConfig(dropout=0.1, history_mode="flattened")) == {
        "dropout": 0.1, "history_mode": "flattened"}
    assert data_terms("ml-100k").license_name == "movielens-usage-license"
    assert not data_terms("ml-100k").redistributable and not data_terms("amazon2014").redistributable
    assert data_terms("hub").name == "user-provided data"
    assert dataset_display_name("org/x") == "org/x" and dataset_display_name("/abs/folder/beauty") == "beauty"
    assert [r.metric_type for r in eval_results({"recall@10": 0.1, "note": "x", "flag": True},
                                                dataset_type="d", dataset_name="d")] == ["recall@10"]


def test_training_curve_png_is_drawn_from_the_logged_history_and_shown_in_the_card(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from genrec.model_cards.run_card import CURVE_FILE, stage2_log_history, write_training_curve

    state = tmp_path / "stage2" / "checkpoints" / "step-00000040"
    state.mkdir(parents=True)
    history = [{"step": s, "train/loss": 3.0 / s} for s in (10, 20, 30, 40)]
    history += [{"step": 20, "validation/recall@10": 0.1}, {"step": 40, "validation/recall@10": 0.2}]
    (state / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert stage2_log_history(tmp_path / "stage2") == history
    path = write_training_curve(tmp_path, stage2_log_history(tmp_path / "stage2"))
    assert path == tmp_path / CURVE_FILE and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_training_curve(tmp_path / "empty", []) is None  # nothing logged: no figure
    codes = np.random.default_rng(0).integers(0, 4, size=(12, 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes([f"B{k:03d}" for k in range(12)], codes,
                                                                   codebook_sizes=[4, 4]))
    card = str(build_run_card(tmp_path, _run_summary(tmp_path), UngerConfig.from_tokenizer(tok), tok, repo_id="o/m"))
    assert f"]({CURVE_FILE})" in card
    (tmp_path / CURVE_FILE).unlink()
    card = str(build_run_card(tmp_path, _run_summary(tmp_path), UngerConfig.from_tokenizer(tok), tok, repo_id="o/m"))
    assert CURVE_FILE not in card


def test_a_finetuned_run_card_names_its_source(tmp_path) -> None:
    codes = np.random.default_rng(0).integers(0, 4, size=(12, 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes([f"B{k:03d}" for k in range(12)], codes,
                                                                   codebook_sizes=[4, 4]))
    summary = {**_run_summary(tmp_path), "finetune": {"source": "org/unger-beauty", "revision": "v2", "transfer": True}}
    card = build_run_card(tmp_path, summary, UngerConfig.from_tokenizer(tok), tok, repo_id="o/m")
    assert card.data.to_dict()["base_model"] == "org/unger-beauty"
    assert "| Stage II initialised from | `org/unger-beauty @ v2` |" in str(card)
    summary["finetune"]["transfer"] = False
    card = build_run_card(tmp_path, summary, UngerConfig.from_tokenizer(tok), tok, repo_id="o/m")
    assert "base_model" not in card.data.to_dict() and "random (control run)" in str(card)


def test_public_summary_keeps_the_relative_paths_runs_record(tmp_path) -> None:
    """run.json's paths are relative to the run folder (issue 32): published as they are."""
    summary = _run_summary(tmp_path)
    summary["stages"] = {"prepare": {"seconds": 1.0, "path": "data"}, "stage2": {"seconds": 2.0, "path": "stage2"},
                         "export": {"seconds": 0.5, "path": "."}}
    summary["model_dir"] = "."
    public = public_summary(summary, tmp_path / "moved-away")
    assert public["stages"] == summary["stages"] and public["model_dir"] == "."
