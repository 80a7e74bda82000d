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
