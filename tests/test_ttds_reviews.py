"""The TTDS review task's data: Amazon raw files keep review text and summary (config ``reviews``), a
prepared folder gives the train rows a ``review`` column, and ML-100K-like data without reviews skips the
task with a message."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from datasets import Dataset, DatasetDict

from genrec.data_scripts.amazon import read_amazon2014, read_amazon2023
from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
from genrec.trainers.jobs.ttds import with_reviews
from genrec.trainers.ttds import TTDSData
from genrec.trainers.ttds.data import attach_reviews

# (reviewer, asin, unix time); every user and item has >= 3 reviews (3-core)
ROWS = [(u, a, 100 * k + j) for j, u in enumerate(["U1", "U2", "U3", "U4"]) for k, a in enumerate("ABCD")]


def _gzip_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path


def _amazon2014(tmp_path):
    reviews = _gzip_lines(tmp_path / "reviews_Toy_5.json.gz", [
        json.dumps({"reviewerID": u, "asin": a, "reviewText": f"{u} on {a}: fine", "summary": f"{a} ok",
                    "overall": 4.0, "unixReviewTime": t}) for u, a, t in ROWS
    ] + [json.dumps({"reviewerID": "U1", "asin": "A", "overall": 1.0, "unixReviewTime": 999})])  # no text
    meta = _gzip_lines(tmp_path / "meta_Toy.json.gz", [f"{{'asin': '{a}', 'title': 'Toy {a}'}}" for a in "ABCD"])
    return reviews, meta


def test_amazon2014_keeps_review_text_and_summary_per_interaction(tmp_path):
    reviews, meta = _amazon2014(tmp_path)
    data = read_amazon2014(reviews, meta, kcore=3)
    table = data.extra_configs["reviews"]
    assert table.column_names == ["user_id", "item_id", "timestamp", "review", "summary"]
    assert table.num_rows == sum(len(s.item_ids) for s in data.sequences) == 17
    asin = dict(zip(data.items["item_id"], data.items["asin"], strict=True))
    original = dict(zip(data.extra_configs["users"]["user_id"], data.extra_configs["users"]["original_user_id"],
                        strict=True))
    for row in table:
        if row["timestamp"] == 999:
            assert row["review"] == row["summary"] == ""  # a review line without text: empty, still aligned
        else:
            assert row["review"] == f"{original[row['user_id']]} on {asin[row['item_id']]}: fine"
            assert row["summary"] == f"{asin[row['item_id']]} ok"
    assert "reviews" not in read_amazon2014(reviews, meta, kcore=3, keep_review_text=False).extra_configs


def test_amazon2023_reads_text_and_title(tmp_path):
    reviews = _gzip_lines(tmp_path / "Toy.jsonl.gz", [
        json.dumps({"user_id": u, "parent_asin": a, "asin": a + "x", "rating": 5.0, "timestamp": t * 1000,
                    "title": f"title {a}", "text": f"text {u}"}) for u, a, t in ROWS
    ])
    meta = _gzip_lines(tmp_path / "meta_Toy.jsonl.gz", [json.dumps({"parent_asin": a, "title": a}) for a in "ABCD"])
    table = read_amazon2023(reviews, meta, kcore=3).extra_configs["reviews"]
    assert set(table["summary"]) == {f"title {a}" for a in "ABCD"} and set(table["review"]) == {
        f"text {u}" for u in ("U1", "U2", "U3", "U4")}


def test_prepared_amazon_folder_gives_the_review_task(tmp_path, caplog):
    reviews, meta = _amazon2014(tmp_path)
    out = tmp_path / "toy"
    prepare_dataset("amazon2014", out, reviews=reviews, meta=meta, kcore=3)
    sequences, items = load_genrec_dataset(out)
    with caplog.at_level(logging.INFO, logger="genrec.trainers.jobs.ttds"):
        with_text = with_reviews(out, sequences, None)
    assert "review task: 17 reviews" in caplog.text
    train = with_text["train"]
    assert [len(r) for r in train["review"]] == [len(s) for s in train["item_ids"]]
    data = TTDSData.from_datasets(with_text, items, tasks=("user_text",))
    examples = [e for e in data.examples if e["task"] == "user_text"]
    assert examples and all(e["kind"] == "review" for e in examples)
    # each example's target is the review of its row's last item, by that user
    original = {u: o for u, o in zip(*load_original_users(out), strict=True)}
    asin = dict(zip(items["item_id"], items["asin"], strict=True))
    by_user = {}
    for user, seq, texts in zip(train["user_id"], train["item_ids"], train["review"], strict=True):
        if texts[-1]:
            by_user.setdefault(user, set()).add(texts[-1])
            assert texts[-1] == f"{asin[seq[-1]]} ok: {original[user]} on {asin[seq[-1]]}: fine"
    assert {e["target_text"] for e in examples} == set().union(*by_user.values())


def load_original_users(folder):
    from genrec.data_scripts.dataset_loading import load_optional_config

    users = load_optional_config(folder, "users")
    return users["user_id"], users["original_user_id"]


def test_without_reviews_the_task_is_skipped_with_a_message(tmp_path, caplog):
    from genrec.data_scripts.hub_layout import write_config

    train = Dataset.from_dict({"user_id": ["1"], "item_ids": [["1", "2"]], "timestamps": [[1, 2]]})
    sequences = DatasetDict({"train": train, "validation": train, "test": train})
    folder = tmp_path / "ml"
    write_config(folder, "sequences", sequences, default=True)
    write_config(folder, "items", Dataset.from_dict({"item_id": ["1", "2"], "title": ["a", "b"]}))
    with caplog.at_level(logging.INFO, logger="genrec.trainers.jobs.ttds"):
        assert with_reviews(folder, sequences, None) is sequences
    assert "no 'reviews' config" in caplog.text and "skipped" in caplog.text


def test_attach_reviews_refuses_bad_tables():
    train = Dataset.from_dict({"user_id": ["1"], "item_ids": [["1", "2"]]})
    with pytest.raises(ValueError, match="lacks the columns"):
        attach_reviews(DatasetDict({"train": train}), Dataset.from_dict({"user_id": ["1"]}))
    reviews = Dataset.from_dict({"user_id": ["1"], "item_id": ["2"], "review": ["great"], "summary": [""]})
    out = attach_reviews(DatasetDict({"train": train}), reviews)
    assert out["train"]["review"] == [["", "great"]]  # no timestamps: matched by (user, item)
