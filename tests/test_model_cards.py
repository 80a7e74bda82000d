"""Model cards are generated from the run's real numbers and settings."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from genrec.model_cards.card import build_model_card, save_model_card


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
