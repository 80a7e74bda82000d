"""benchmarks/markov_baseline.py: the floors (pop, first-order Markov) and their per-user ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from genrec.data_scripts.hub_layout import write_config
from genrec.trainers.evaluation.metrics import metrics_from_ranks


def _data(tmp_path: Path) -> Path:
    # a -> b twice, a -> c once: Markov ranks b first after a; c is the most popular target overall
    train = {"user_id": ["1", "2", "3", "4", "5"],
             "item_ids": [["a", "b"], ["a", "b"], ["a", "c"], ["d", "c"], ["b", "c"]]}
    test = {"user_id": ["1", "2", "3"], "item_ids": [["x", "a", "b"], ["a", "c"], ["d"]]}  # user 3: no history
    for split in (train, test):
        split["timestamps"] = [list(range(len(seq))) for seq in split["item_ids"]]
    data = tmp_path / "data"
    write_config(data, "sequences", DatasetDict({"train": Dataset.from_dict(train), "validation":
                                                 Dataset.from_dict(test), "test": Dataset.from_dict(test)}),
                 default=True)
    write_config(data, "items", Dataset.from_dict({"item_id": ["a", "b", "c", "d", "x"],
                                                    "title": ["A", "B", "C", "D", "X"]}))
    return data


def test_markov_follows_the_last_item_and_backs_off_to_popularity(benchmark_script, tmp_path: Path) -> None:
    module = benchmark_script("markov_baseline.py")
    result = module.evaluate_baselines(_data(tmp_path), "test", per_user=True)
    assert result["num_users"] == 2  # the row without a history is not ranked
    markov, pop = result["per_user"]["markov"], result["per_user"]["pop"]
    assert markov["user_id"] == ["1", "2"] and markov["target"] == ["b", "c"]
    assert markov["rank"] == [1, 2]  # after a: b (2 counts), then c (1)
    assert pop["rank"] == [2, 1]  # targets by count: c (3), b (2)
    assert metrics_from_ranks(markov["rank"], ks=(1,))["hr@1"] == pytest.approx(result["markov"]["hr@1"])
    assert "per_user" not in module.evaluate_baselines(_data(tmp_path / "again"), "test")


def test_markov_gap_from_ranks_files_groups_every_user_by_transition_count(benchmark_script, tmp_path: Path) -> None:
    """The no-decoding table of ``studies/markov_gap.py``: each ranks file's Recall@10 / NDCG@10 per group of
    users by the training count of their last item -> target (user 1: a -> b seen twice; user 2: a -> c once)."""
    import json
    import math

    baseline = benchmark_script("markov_baseline.py")
    gap = benchmark_script("studies/markov_gap.py")
    data = _data(tmp_path)
    markov = tmp_path / "markov.json"
    markov.write_text(json.dumps({"per_user": baseline.evaluate_baselines(data, "test", per_user=True)["per_user"]
                                  ["markov"]}))
    model = tmp_path / "model.json"  # misses user 1, ranks user 2's target first
    model.write_text(json.dumps({"per_user": {"user_id": ["2", "1"], "target": ["c", "b"], "rank": [1, 0]}}))
    result = gap.gap_from_ranks(data, {"model": model, "markov": markov})
    groups = result["groups"]
    assert result["num_users"] == 2 and groups["2"]["users"] == groups["1"]["users"] == 1
    assert groups["2"]["model"] == {"recall@10": 0.0, "ndcg@10": 0.0}
    assert groups["1"]["model"] == {"recall@10": 1.0, "ndcg@10": 1.0}
    assert groups["2"]["markov"]["ndcg@10"] == pytest.approx(1.0)  # b first after a
    assert groups["1"]["markov"]["ndcg@10"] == pytest.approx(1 / math.log2(3))  # c second
    assert groups["0"]["users"] == 0 and groups["0"]["model"] is None
    assert groups["all"]["model"]["recall@10"] == 0.5
    wrong = tmp_path / "wrong.json"  # another split's users
    wrong.write_text(json.dumps({"per_user": {"user_id": ["1"], "target": ["b"], "rank": [1]}}))
    with pytest.raises(ValueError, match="ranks 1 users"):
        gap.gap_from_ranks(data, {"wrong": wrong})
    wrong.write_text(json.dumps({"per_user": {"user_id": ["1", "2"], "target": ["b", "a"], "rank": [1, 1]}}))
    with pytest.raises(ValueError, match="another target"):
        gap.gap_from_ranks(data, {"wrong": wrong})
