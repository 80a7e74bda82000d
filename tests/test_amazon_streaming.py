"""The Amazon reader streams: the memory it holds does not grow with the review texts (issue 28)."""

from __future__ import annotations

import gzip
import json
import tracemalloc

from genrec.data_scripts import amazon
from genrec.data_scripts.amazon import read_amazon2023

LINES = 4000
TEXT = "x" * 4000  # 16 MB of review text in all


def _write(tmp_path):
    reviews, meta = tmp_path / "Beauty.jsonl.gz", tmp_path / "meta_Beauty.jsonl.gz"
    with gzip.open(reviews, "wt", encoding="utf-8", compresslevel=1) as handle:
        for j in range(LINES):
            user, item = f"U{j % 400}", f"P{j % 97}"
            handle.write(json.dumps({"rating": 5.0, "title": f"t{j}", "text": TEXT + str(j), "images": [],
                                     "asin": item + "v", "parent_asin": item, "user_id": user,
                                     "timestamp": 1_000 * j, "helpful_vote": 0, "verified_purchase": True}) + "\n")
    with gzip.open(meta, "wt", encoding="utf-8") as handle:
        for i in range(97):
            handle.write(json.dumps({"parent_asin": f"P{i}", "title": f"Item {i}", "store": "S",
                                     "images": [{"large": "x" * 1000}], "details": {"k": "v" * 1000}}) + "\n")
    return reviews, meta


def test_reader_holds_no_review_text_or_parsed_record(tmp_path, monkeypatch):
    reviews, meta = _write(tmp_path)
    alive = {"now": 0, "max": 0}
    real = amazon.iter_json_records

    def counting(*args, **kwargs):  # how many parsed review records are referenced at once
        for number, record in real(*args, **kwargs):
            alive["now"] += 1
            alive["max"] = max(alive["max"], alive["now"])
            yield number, _Tracked(record, alive)

    monkeypatch.setattr(amazon, "iter_json_records", counting)
    tracemalloc.start()
    try:
        data = read_amazon2023(reviews, meta, kcore=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert alive["max"] <= 2  # a record is released before (or as) the next line is parsed
    # every text is in the output (Arrow memory, not traced) ...
    texts = data.extra_configs["reviews"]["review"]
    assert len(texts) == LINES and sorted(texts) == sorted(TEXT + str(j) for j in range(LINES))
    # ... but the Python-side peak stays far below the 16 MB of text the old reader kept in a dict
    assert peak < 4 * 2**20, peak
    # only the metadata fields genrec reads are kept (no images, details)
    assert set(data.items.column_names) >= {"title", "store"} and data.items["title"][0].startswith("Item")


class _Tracked(dict):
    """A review record that counts itself down when garbage-collected."""

    def __init__(self, record, alive):
        super().__init__(record)
        self._alive = alive

    def __del__(self):
        self._alive["now"] -= 1
