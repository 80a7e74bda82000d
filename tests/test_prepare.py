"""prepare_dataset end to end: folders that load with load_dataset, reports, safety, hub re-layout."""

from __future__ import annotations

import gzip
import json

import pytest
from datasets import Dataset, load_dataset
from fault_fixtures import file_hashes

from genrec.data_scripts import hub_layout, prepare
from genrec.data_scripts.hub_layout import config_names, read_card, write_config
from genrec.data_scripts.prepare import (
    REPORT_FILENAME,
    add_config,
    load_genrec_dataset,
    prepare_dataset,
    push_dataset_folder,
)
from genrec.data_scripts.splits import DataFormatError


@pytest.fixture(scope="module")
def ml_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "ml-100k"
    report = prepare_dataset("ml-100k", out)
    return out, report


def _s3rec(tmp_path, lines="1 1 2 3 4\n2 2 3 1\n3 4 1\n"):
    folder = tmp_path / "s3"
    folder.mkdir(exist_ok=True)
    (folder / "sequences.txt").write_text(lines, encoding="utf-8")
    items = [{"item_id": str(i), "title": f"item {i}" if i != 2 else "", "categories": ["c"]} for i in range(1, 6)]
    (folder / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return folder




def test_ml100k_folder_loads(ml_folder, tmp_path):
    out, report = ml_folder
    assert (report.users, report.items, report.interactions) == (943, 1682, 100_000)
    assert report.rows == {"train": 100_000 - 3 * 943, "validation": 943, "test": 943}
    assert report.seconds < 60 and report.configs == ["items", "sequences"]
    cache = str(tmp_path / "cache")
    sequences = load_dataset(str(out), "sequences", cache_dir=cache)
    items = load_dataset(str(out), "items", cache_dir=cache)
    assert {s: len(sequences[s]) for s in sequences} == report.rows
    assert len(items["train"]) == 1682 and items["train"].column_names == ["item_id", "title", "year", "genres"]
    first = sequences["test"][0]
    assert first["user_id"] == "1" and len(first["item_ids"]) == 21 == len(first["timestamps"])
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert saved["users"] == 943 and saved["max_history"] == 20 and saved["source"] == "ml-100k"
    assert saved["skipped"]["users_with_fewer_than_3_interactions"] == 0
    assert "seconds" not in saved and str(out) not in json.dumps(saved)
    card = read_card(out)
    assert "100,000" in card.text and "Leave-one-out" in card.text and "max history | 20" in card.text
    assert "## Intended use and limitations" in card.text and "HR@K and Recall@K are the same" in card.text
    assert card.data["pretty_name"] == "MovieLens-100K"
    seq2, items2 = load_genrec_dataset(out, cache_dir=cache)
    assert seq2["train"].num_rows == report.rows["train"] and items2.num_rows == 1682


def test_out_dir_safety(ml_folder, tmp_path, monkeypatch):
    out, _ = ml_folder
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_dataset("ml-100k", out)
    folder = _s3rec(tmp_path)
    target = tmp_path / "out"
    prepare_dataset("s3rec", target, path=folder)
    before = file_hashes(target)
    # an interrupted run (failure while writing the card) leaves the old folder as it was, and no leftovers
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(hub_layout, "update_card", boom)
        with pytest.raises(KeyboardInterrupt):
            prepare_dataset("s3rec", target, path=folder, max_history=1, overwrite=True)
    assert file_hashes(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s3"]
    # same inputs, same bytes
    prepare_dataset("s3rec", target, path=folder, overwrite=True)
    assert file_hashes(target) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_dataset("s3rec", empty, path=folder)  # an existing empty folder is fine
    assert (empty / "README.md").is_file()


def test_s3rec_report_counts_skips(tmp_path):
    folder = _s3rec(tmp_path, "1 1 2 3 4\n2 2 3 1\n3 4 1\n")
    report = prepare_dataset("s3rec", tmp_path / "out", path=folder, max_history=2)
    assert report.users == 2 and report.items == 4 and report.interactions == 7
    assert report.skipped["users_with_fewer_than_3_interactions"] == 1
    assert report.skipped["interactions_of_users_with_fewer_than_3_interactions"] == 2
    assert report.skipped["items_without_interactions_dropped"] == 1  # item 5
    assert report.counts["items_without_title"] == 1
    seqs, items = load_genrec_dataset(tmp_path / "out", cache_dir=str(tmp_path / "cache"))
    assert sorted(items["item_id"]) == ["1", "2", "3", "4"]
    assert seqs["test"]["item_ids"] == [["2", "3", "4"], ["2", "3", "1"]]
    assert "users_with_fewer_than_3_interactions: 1" in read_card(tmp_path / "out").text


def test_amazon2014_end_to_end(tmp_path):
    reviews = tmp_path / "reviews_Toys_and_Games_5.json.gz"
    rows = [(f"U{u}", f"I{(u + k) % 6}", 1000 * k + u) for u in range(6) for k in range(5)]
    with gzip.open(reviews, "wt") as handle:
        for u, a, t in rows:
            handle.write(json.dumps({"reviewerID": u, "asin": a, "overall": 4.0, "unixReviewTime": t}) + "\n")
    meta = tmp_path / "meta_Toys_and_Games.json.gz"
    with gzip.open(meta, "wt") as handle:
        handle.write("{'asin': 'I0', 'title': 'Yo-yo', 'categories': [['Toys & Games', 'Yo-yos']]}\n")
    report = prepare_dataset("amazon2014", tmp_path / "out", reviews=reviews, meta=meta)
    assert report.kcore == 5 and report.users == 6 and report.interactions == 30
    assert report.configs == ["items", "reviews", "sequences", "users"]
    assert report.counts["items_without_metadata"] == 5
    assert read_card(tmp_path / "out").data["pretty_name"] == "Amazon 2014 Toys and Games"
    users = load_dataset(str(tmp_path / "out"), "users", split="train", cache_dir=str(tmp_path / "cache"))
    assert users.column_names == ["user_id", "original_user_id"] and len(users) == 6
    bad = tmp_path / "meta_bad.json.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write("{'asin': 'I0', 'title': 'Yo\n")
    with pytest.raises(DataFormatError, match=r"meta_bad\.json\.gz, line 1"):
        prepare_dataset("amazon2014", tmp_path / "out2", reviews=reviews, meta=bad)
    assert not (tmp_path / "out2").exists()
    report = prepare_dataset("amazon2014", tmp_path / "out2", reviews=reviews, meta=bad, on_error="skip")
    assert report.skipped["malformed_lines:meta_bad.json.gz"] == 1


def test_hub_source_and_validation(ml_folder, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # prepare's own loads
    out, _ = ml_folder
    report = prepare_dataset("hub", tmp_path / "copy", path=out, max_history=5)
    assert (report.users, report.items, report.interactions) == (943, 1682, 100_000)
    assert report.counts["rows_truncated_to_max_history"] > 0
    seqs, _ = load_genrec_dataset(tmp_path / "copy", cache_dir=str(tmp_path / "cache"))
    assert max(len(x) for x in seqs["test"]["item_ids"]) == 6

    broken = tmp_path / "broken"
    seq = Dataset.from_dict({"user_id": ["1"], "item_ids": [["a", "b"]]})
    write_config(broken, "sequences", {"train": seq, "validation": seq, "test": seq}, default=True)
    with pytest.raises(ValueError, match="no config 'items'"):
        load_genrec_dataset(broken)
    write_config(broken, "items", Dataset.from_dict({"item_id": ["a", "b"]}))
    with pytest.raises(ValueError, match="split 'train' has no column 'timestamps'"):
        load_genrec_dataset(broken, cache_dir=str(tmp_path / "c1"))
    ints = Dataset.from_dict({"user_id": ["1"], "item_ids": [[1, 2]], "timestamps": [[1, 2]]})
    write_config(broken, "sequences", {"train": ints, "validation": ints, "test": ints})
    with pytest.raises(ValueError, match="column 'item_ids' has type list<item: int64>; expected"):
        load_genrec_dataset(broken, cache_dir=str(tmp_path / "c2"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a genrec dataset folder"):
        prepare_dataset("hub", tmp_path / "x", path=tmp_path / "plain")


def test_add_config(tmp_path):
    out = tmp_path / "out"
    prepare_dataset("s3rec", out, path=_s3rec(tmp_path))
    table = Dataset.from_dict({"item_id": ["1", "2"], "codes": [[3, 1], [0, 2]]})
    add_config(out, "code_table", table)
    assert config_names(out) == ["code_table", "items", "sequences"]
    assert hub_layout.default_config_name(out) == "sequences"
    loaded = load_dataset(str(out), "code_table", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.to_list() == table.to_list()
    assert json.loads((out / REPORT_FILENAME).read_text())["configs"] == ["code_table", "items", "sequences"]
    with pytest.raises(ValueError, match="rebuild it with prepare_dataset"):
        add_config(out, "items", table)
    with pytest.raises(ValueError, match="not a genrec dataset folder"):
        add_config(tmp_path, "code_table", table)


def test_argument_validation(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown source"):
        prepare_dataset("movielens", tmp_path / "o")
    with pytest.raises(ValueError, match="needs path="):
        prepare_dataset("s3rec", tmp_path / "o")
    with pytest.raises(ValueError, match=r"needs reviews= and meta=.*cseweb\.ucsd\.edu"):
        prepare_dataset("amazon2014", tmp_path / "o")
    with pytest.raises(ValueError, match=r"amazon-reviews-2023\.github\.io"):
        prepare_dataset("amazon2023", tmp_path / "o", reviews="r.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        prepare_dataset("ml-100k", tmp_path / "o", on_error="ignore")
    with pytest.raises(ValueError, match="max_history"):
        prepare_dataset("ml-100k", tmp_path / "o", max_history=0)
    with pytest.raises(ValueError, match="kcore"):
        prepare_dataset("amazon2014", tmp_path / "o", kcore=0)

    def no_network(*args, **kwargs):
        raise AssertionError("validation must fail before any Hub call")

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", no_network)
    monkeypatch.setattr("huggingface_hub.HfApi.create_commit", no_network)
    with pytest.raises(ValueError, match="invalid Hub repo id"):
        push_dataset_folder(tmp_path, "not a/valid//id")
    with pytest.raises(ValueError, match="non-empty"):
        push_dataset_folder(tmp_path, "")
    with pytest.raises(FileNotFoundError):
        push_dataset_folder(tmp_path / "missing", "me/data")
    with pytest.raises(ValueError, match="not a genrec dataset folder"):
        push_dataset_folder(tmp_path, "me/data")
    with pytest.raises(TypeError, match="private"):
        push_dataset_folder(tmp_path, "me/data", private="yes")
    assert prepare.SOURCES == ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")


@pytest.mark.beauty
def test_beauty_prepare(beauty_dir, tmp_path):
    report = prepare_dataset("s3rec", tmp_path / "beauty", path=beauty_dir)
    assert (report.users, report.items, report.interactions) == (22_363, 12_101, 198_502)
    assert report.rows == {"train": 198_502 - 3 * 22_363, "validation": 22_363, "test": 22_363}
    assert report.counts["items_without_title"] == 7 and report.seconds < 60
    seqs, items = load_genrec_dataset(tmp_path / "beauty", cache_dir=str(tmp_path / "cache"))
    assert len(seqs["test"]) == 22_363 and len(items) == 12_101
    assert seqs["test"][0] == {"user_id": "1", "item_ids": ["1", "2", "3", "4", "5"], "timestamps": [0, 1, 2, 3, 4]}
