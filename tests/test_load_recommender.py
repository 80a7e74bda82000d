"""One loader for every model family (genrec.trainers.jobs.load): what a folder holds, one clear error for what
it is not, and the same calls for UNGER, MSCGRec and TTDS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.modeling.configuration_mscgrec import MSCGRecConfig
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.jobs.load import UngerModel, identify_model, load_recommender

ITEMS = [str(i) for i in range(1, 21)]


@pytest.fixture(scope="module")
def unger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    codes = np.random.default_rng(0).integers(0, 4, size=(len(ITEMS), 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ITEMS, codes, codebook_sizes=[4, 4]))
    torch.manual_seed(0)
    model = UngerForGenerativeRecommendation(
        UngerConfig.from_tokenizer(tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=1)
    )
    folder = tmp_path_factory.mktemp("unger") / "run"
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    return folder


def test_an_unger_folder_answers_recommend_like_the_model(unger_dir: Path) -> None:
    source = identify_model(unger_dir)
    assert (source.family, source.model_type) == ("unger", "unger")
    recommender = load_recommender(source)
    assert isinstance(recommender, UngerModel) and recommender.family == "unger"
    histories = [["1", "2"], ["5"]]
    expected = recommender.model.recommend(histories, recommender.tokenizer, k=5, num_beams=8)
    assert recommender.recommend(histories, k=5, num_beams=8) == expected
    recommender.check_catalogue(ITEMS)
    with pytest.raises(ValueError, match="not the dataset the model was trained on"):
        recommender.check_catalogue(ITEMS[:-1], where="dataset x")


def test_mscgrec_is_an_unger_family_model(tmp_path: Path) -> None:
    MSCGRecConfig().save_pretrained(tmp_path)
    source = identify_model(tmp_path)
    assert (source.family, source.model_type) == ("unger", "mscgrec")


def test_what_is_not_a_model_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^--from .*missing: no such folder$"):
        identify_model(tmp_path / "missing", what="--from")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="--model .*: expected a model folder, got a file"):
        load_recommender(tmp_path / "file.txt")
    with pytest.raises((OSError, ValueError)):  # transformers' own error for a folder without config.json
        identify_model(tmp_path)


def test_another_family_is_refused_by_name(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    assert identify_model(tmp_path).family == "bert"
    with pytest.raises(ValueError, match="'bert' model, not a genrec UNGER model"):
        load_recommender(tmp_path)


def test_a_ttds_folder_refuses_a_transition_weight_before_loading_anything(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "ttds"}))  # no weights: nothing may load
    assert identify_model(tmp_path).family == "ttds"
    with pytest.raises(ValueError, match="a TTDS model has no transition prior"):
        load_recommender(tmp_path, transition_weight=0.5)
