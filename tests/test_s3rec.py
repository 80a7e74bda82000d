"""S3-Rec-style folders (sequences.txt + items.jsonl): tiny fixtures, and the papers' Beauty when present."""

from __future__ import annotations

import json

import pytest

from genrec.data_scripts.s3rec import read_s3rec
from genrec.data_scripts.splits import DataFormatError, build_splits


def _folder(tmp_path, sequences: str, items: list[dict] | str):
    folder = tmp_path / "s3"
    folder.mkdir()
    (folder / "sequences.txt").write_text(sequences, encoding="utf-8")
    text = items if isinstance(items, str) else "".join(json.dumps(item) + "\n" for item in items)
    (folder / "items.jsonl").write_text(text, encoding="utf-8")
    return folder


ITEMS = [
    {"item_id": "1", "asin": "A1", "title": "Lipstick", "brand": "X", "categories": ["Beauty", "Makeup"], "price": "3.5"},
    {"item_id": "2", "asin": "A2", "title": "", "brand": "", "categories": ["Beauty"], "price": ""},
    {"item_id": 3, "asin": "A3", "title": "Brush", "brand": None, "categories": [["Beauty", "Tools"]], "price": 4.0},
    {"item_id": "4", "asin": "A4", "categories": "Beauty"},
]


def test_tiny_folder(tmp_path):
    folder = _folder(tmp_path, "1 1 2 3\n2 3 1 2 4\n\n3 1 2\n4 4\n", ITEMS)
    data = read_s3rec(folder)
    assert [(s.user_id, s.item_ids, s.timestamps) for s in data.sequences] == [
        ("1", ["1", "2", "3"], [0, 1, 2]),
        ("2", ["3", "1", "2", "4"], [0, 1, 2, 3]),
        ("3", ["1", "2"], [0, 1]),
        ("4", ["4"], [0]),
    ]
    assert data.items.column_names == ["item_id", "asin", "title", "brand", "categories", "price"]
    assert data.items.to_list()[2:] == [
        {"item_id": "3", "asin": "A3", "title": "Brush", "brand": "", "categories": ["Beauty", "Tools"], "price": "4.0"},
        {"item_id": "4", "asin": "A4", "title": "", "brand": "", "categories": ["Beauty"], "price": ""},
    ]
    assert data.counts["items_without_title"] == 2  # kept, counted
    assert data.skipped == {"blank_lines:sequences.txt": 1}
    dd, report = build_splits(data.sequences)
    assert report.short_users == 2 and report.users == 2
    assert dd["train"]["item_ids"] == [["3", "1"]]
    assert dd["test"]["item_ids"] == [["1", "2", "3"], ["3", "1", "2", "4"]]


def test_errors_name_file_and_line(tmp_path):
    folder = _folder(tmp_path, "1 1 2 3\n1 2 3 4\n", ITEMS)
    with pytest.raises(DataFormatError, match=r"sequences\.txt, line 2: user '1' already has a line"):
        read_s3rec(folder)
    (folder / "sequences.txt").write_text("1 1 2 3\n", encoding="utf-8")
    (folder / "items.jsonl").write_text('{"item_id": "1"}\n{"item_id": "2", "title": "x"\n[1]\n{"title": "y"}\n')
    with pytest.raises(DataFormatError, match=r"items\.jsonl, line 2: not a JSON object"):
        read_s3rec(folder)
    data = read_s3rec(folder, on_error="skip")
    assert data.skipped == {"malformed_lines:items.jsonl": 3}
    assert data.items["item_id"] == ["1"] and data.counts["items_without_title"] == 1
    (folder / "items.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="items.jsonl"):
        read_s3rec(folder)


@pytest.mark.beauty
def test_beauty_counts(beauty_dir):
    data = read_s3rec(beauty_dir)
    dd, report = build_splits(data.sequences)
    assert (report.users, report.items, report.interactions) == (22_363, 12_101, 198_502)
    assert report.rows == {"train": 198_502 - 3 * 22_363, "validation": 22_363, "test": 22_363}
    assert report.short_users == 0 and report.duplicate_interactions == 0 and report.resorted_users == 0
    assert len(data.items) == 12_101 and data.counts["items_without_title"] == 7
    assert set(data.items.column_names) >= {"item_id", "asin", "title", "brand", "categories", "price"}
