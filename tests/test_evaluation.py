"""Full-corpus evaluation: constrained beam search + the shared metrics, labelled with the split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.evaluation.evaluator import evaluate_model, load_examples
from genrec.trainers.evaluation.metrics import compute_metrics

N_ITEMS = 15  # fewer than the largest cut-off: every item is returned, so recall@20 must be exactly 1
IDS = [f"p{k}" for k in range(N_ITEMS)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup() -> tuple[UngerForGenerativeRecommendation, SemanticIDTokenizer, DatasetDict]:
    codes = np.random.default_rng(3).integers(0, 3, size=(N_ITEMS, 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(IDS, codes, codebook_sizes=[3, 3]))
    torch.manual_seed(0)
    config = UngerConfig.from_tokenizer(tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2)
    model = UngerForGenerativeRecommendation(config)
    rng = np.random.default_rng(0)
    rows = [[IDS[j] for j in rng.integers(0, N_ITEMS, size=rng.integers(2, 6))] for _ in range(23)]
    rows.append(["p3"])  # no history: skipped and counted
    split = Dataset.from_dict({"user_id": [f"u{i}" for i in range(len(rows))], "item_ids": rows})
    return model, tok, DatasetDict({"validation": split, "test": split})


def test_metrics_are_the_shared_metrics_of_constrained_recommendations(setup) -> None:
    model, tok, data = setup
    result = evaluate_model(model, tok, data, "test", num_beams=20, batch_size=7, show_progress=False)
    assert result["split"] == "test" and result["num_beams"] == 20 and result["k_values"] == [1, 5, 10, 20]
    assert result["num_users"] == 23 and result["num_skipped_no_history"] == 1
    metrics = result["metrics"]
    assert metrics["invalid_rate"] == 0.0 and metrics["num_users"] == 23
    assert metrics["recall@20"] == 1.0  # all 15 items, each once, in every list
    assert metrics["recall@1"] <= metrics["recall@5"] <= metrics["recall@10"] <= 1.0
    assert all(0.0 <= metrics[f"ndcg@{k}"] <= metrics[f"recall@{k}"] for k in (1, 5, 10, 20))
    # the same numbers as recommend() + compute_metrics by hand; evaluation never excludes history items
    examples = load_examples(data, "test")
    ranked = model.recommend(examples.histories, tok, k=N_ITEMS, num_beams=20, exclude_history=False)
    assert all(sorted(i for i, _ in row) == sorted(IDS) for row in ranked)
    assert metrics == compute_metrics([[i for i, _ in row] for row in ranked], examples.targets, (1, 5, 10, 20))
    # batching does not change anything; the split name labels the output
    validation = evaluate_model(model, tok, data, "validation", num_beams=20, batch_size=50, show_progress=False)
    assert validation["split"] == "validation" and validation["metrics"] == metrics


def test_max_users_and_bad_inputs(setup) -> None:
    model, tok, data = setup
    few = evaluate_model(model, tok, data["test"], max_users=5, k_values=(1, 5), num_beams=5, show_progress=False)
    assert few["num_users"] == 5 and set(few["metrics"]) >= {"recall@1", "ndcg@5", "mrr@5", "invalid_rate"}
    with pytest.raises(ValueError, match="num_beams"):
        evaluate_model(model, tok, data, num_beams=4, k_values=(1, 5), show_progress=False)
    with pytest.raises(ValueError, match="no 'train' split"):
        evaluate_model(model, tok, data, "train", show_progress=False)
    stranger = Dataset.from_dict({"user_id": ["x"], "item_ids": [["p1", "zzz"]]})
    with pytest.raises(ValueError, match="'zzz' is not in the tokenizer's code table"):
        evaluate_model(model, tok, stranger, show_progress=False)


def test_max_users_is_a_fixed_random_sample_not_a_prefix() -> None:
    rows = Dataset.from_dict({"user_id": [f"u{i}" for i in range(200)], "item_ids": [["a", f"t{i}"] for i in range(200)]})
    first = load_examples(rows, max_users=20)
    assert len(first.user_ids) == 20 and first.user_ids == load_examples(rows, max_users=20).user_ids
    assert first.user_ids != [f"u{i}" for i in range(20)]  # not the first rows
    order = [int(u[1:]) for u in first.user_ids]
    assert order == sorted(order)  # original order kept
    assert len(load_examples(rows, max_users=500).user_ids) == 200
