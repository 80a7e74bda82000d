"""``pipeline("generative-recommendation", model=folder)`` after ``import genrec``: the custom pipeline task ranks
exactly as ``model.recommend`` does, for one history or several, and refuses malformed input clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genrec  # noqa: F401  (registers the pipeline task)
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pipeline_recommends_like_the_model(tmp_path) -> None:
    from transformers import pipeline

    ids = [str(i) for i in range(1, 41)]
    codes = np.random.default_rng(0).integers(0, 4, size=(len(ids), 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4]))
    torch.manual_seed(0)
    model = UngerForGenerativeRecommendation(UngerConfig.from_tokenizer(
        tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=1))
    model.set_code_table(tok)
    model.eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(str(tmp_path))

    recommend = pipeline("generative-recommendation", model=str(tmp_path))
    assert type(recommend).__name__ == "GenerativeRecommendationPipeline"
    histories = [["1", "2", "3"], ["7"]]
    expected = model.recommend(histories, tok, k=5, num_beams=8)
    one = recommend(histories[0], k=5, num_beams=8)
    assert [(r["item_id"], r["score"]) for r in one] == expected[0]  # same process: bit-identical after reload
    both = recommend(histories, k=5, num_beams=8)
    # a batch pads the shorter history, so its scores may differ from the model's batch in the last bit on some CPUs
    # (seen on an Intel Xeon: 1 ulp); the items and their order must not
    assert [[r["item_id"] for r in rows] for rows in both] == [[item for item, _ in rows] for rows in expected]
    for rows, wanted in zip(both, expected, strict=True):
        assert [r["score"] for r in rows] == pytest.approx([score for _, score in wanted], rel=1e-6)
    assert len(recommend(["1"])) == 10  # k defaults to 10
    assert recommend("1 2 3", k=5, num_beams=8) == one  # a string is one history, as tokenizer("1 2 3") reads it
    with pytest.raises(TypeError, match="list of item ids"):
        recommend(3.5)
    with pytest.raises(TypeError, match="list of item ids"):
        recommend([["1"], None])
    with pytest.raises(ValueError, match="positive int"):
        recommend(["1"], k=0)
    with pytest.raises(KeyError):
        recommend(["no-such-item"], k=3)
    assert [r["item_id"] for r in recommend(["no-such-item", "1"], k=3, on_unknown="skip")] == [
        i for i, _ in model.recommend([["1"]], tok, k=3)[0]
    ]
