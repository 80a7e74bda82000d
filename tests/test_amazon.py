"""Raw Amazon 2014 / 2023 files: small gzip fixtures written here in exactly the published formats."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from genrec.data_scripts.amazon import kcore_mask, parse_record, read_amazon2014, read_amazon2023
from genrec.data_scripts.splits import DataFormatError, build_splits

# (reviewer, asin, unix time). File order is by asin, like the published 2014 files.
REVIEWS_2014 = [
    ("U3", "A", 120), ("U1", "A", 100), ("U2", "A", 110), ("U4", "A", 130), ("U5", "A", 140),
    ("U1", "B", 100), ("U2", "B", 210), ("U2", "B", 210), ("U3", "B", 220), ("U5", "B", 240), ("U5", "B", 440),
    ("U1", "C", 300), ("U2", "C", 310), ("U3", "C", 50), ("U5", "C", 340),
    ("U4", "D", 230),
    ("U4", "E", 330),
]
META_2014 = [
    # Python literal: single quotes, nested category lists, a dict -- json.loads cannot read it
    "{'asin': 'A', 'title': \"Rosé d'Anjou Nail Lacquer\", 'brand': 'OPI', 'price': 12.0, "
    "'salesRank': {'Beauty': 344222}, 'categories': [['Beauty', 'Makeup', 'Nails'], ['Beauty', 'Gifts']], "
    "'description': 'A shiny polish.', 'related': {'also_bought': ['B', 'C']}}",
    # JSON with true/null: not a Python literal, read by the json fallback
    '{"asin": "B", "title": "Kabuki Brush", "brand": null, "categories": [["Beauty", "Tools"]], "isGift": true}',
    # an item removed by the k-core: not needed, never parsed
    "{'asin': 'D', 'title': 'Dropped'}",
    # C has no metadata line at all
]


def _gzip_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path


def _reviews_2014(tmp_path, rows=REVIEWS_2014):
    return _gzip_lines(
        tmp_path / "reviews_Beauty_5.json.gz",
        [
            json.dumps({"reviewerID": u, "asin": a, "reviewerName": "n", "helpful": [0, 0], "reviewText": "ok",
                        "overall": 5.0, "summary": "s", "unixReviewTime": t, "reviewTime": "01 1, 2014"})
            for u, a, t in rows
        ],
    )


def test_amazon2014_kcore_renumbering_and_meta(tmp_path):
    reviews = _reviews_2014(tmp_path)
    meta = _gzip_lines(tmp_path / "meta_Beauty.json.gz", META_2014)
    data = read_amazon2014(reviews, meta, kcore=3)
    # k-core (k=3): D, E have one review -> removed; U4 is left with A only -> removed (2nd round).
    assert data.skipped["kcore_interactions"] == 3 and data.skipped["kcore_users"] == 1
    assert data.skipped["kcore_items"] == 2 and data.counts["kcore_rounds"] == 2
    # U2's doubled B@210 is one duplicate interaction.
    assert data.skipped["duplicate_consecutive_interactions"] == 1 and data.counts["raw_reviews"] == 17
    # users renumbered by first review in the file: U3, U1, U2, U5; items along U3's chronological
    # sequence first: C(50), A(120), B(220).
    assert data.extra_configs["users"].to_list() == [
        {"user_id": "1", "original_user_id": "U3"},
        {"user_id": "2", "original_user_id": "U1"},
        {"user_id": "3", "original_user_id": "U2"},
        {"user_id": "4", "original_user_id": "U5"},
    ]
    sequences = {s.user_id: (s.item_ids, s.timestamps) for s in data.sequences}
    assert sequences == {
        "1": (["1", "2", "3"], [50, 120, 220]),
        "2": (["2", "3", "1"], [100, 100, 300]),  # A and B tie at 100: file order (A line first)
        "3": (["2", "3", "1"], [110, 210, 310]),
        "4": (["2", "3", "1", "3"], [140, 240, 340, 440]),  # a later repeat of B is kept
    }
    items = {row["asin"]: row for row in data.items}
    assert data.items["item_id"] == ["1", "2", "3"] and data.items["asin"] == ["C", "A", "B"]
    assert items["A"] == {
        "item_id": "2", "asin": "A", "title": "Rosé d'Anjou Nail Lacquer", "brand": "OPI",
        "categories": ["Beauty", "Makeup", "Nails", "Gifts"], "description": "A shiny polish.", "price": "12.0",
    }
    assert items["B"]["title"] == "Kabuki Brush" and items["B"]["brand"] == "" and items["B"]["categories"] == [
        "Beauty", "Tools"]
    assert items["C"]["title"] == "" and items["C"]["categories"] == []
    assert data.counts["items_without_metadata"] == 1 and data.counts["items_without_title"] == 1
    dd, report = build_splits(data.sequences)
    assert (report.users, report.items, report.interactions) == (4, 3, 13)
    assert report.rows == {"train": 1, "validation": 4, "test": 4} and report.resorted_users == 0
    assert dd["train"][0] == {"user_id": "4", "item_ids": ["2", "3"], "timestamps": [140, 240]}


def test_amazon2014_five_core_is_a_noop(tmp_path):
    rows = [(f"U{u}", f"I{(u + k) % 6}", 1000 * k + u) for u in range(6) for k in range(5)]
    data = read_amazon2014(_reviews_2014(tmp_path, rows), _gzip_lines(tmp_path / "meta.json.gz", []))
    assert data.skipped["kcore_interactions"] == 0 and data.counts["kcore_rounds"] == 0
    assert sum(len(s.item_ids) for s in data.sequences) == 30 and len(data.sequences) == 6
    assert data.counts["items_without_metadata"] == 6


def test_malformed_lines_name_file_and_line(tmp_path):
    reviews = _reviews_2014(tmp_path)
    broken_meta = META_2014[:2] + ["{'asin': 'C', 'title': 'unterminated"]
    meta = _gzip_lines(tmp_path / "meta_Beauty.json.gz", broken_meta)
    with pytest.raises(DataFormatError, match=r"meta_Beauty\.json\.gz, line 3: cannot parse the metadata record"):
        read_amazon2014(reviews, meta, kcore=3)
    data = read_amazon2014(reviews, meta, kcore=3, on_error="skip")
    assert data.skipped["malformed_lines:meta_Beauty.json.gz"] == 1 and data.counts["items_without_metadata"] == 1

    lines = gzip.decompress(reviews.read_bytes()).decode().splitlines()
    lines[4] = lines[4][:40]  # truncated JSON on line 5
    lines[6] = json.dumps({"reviewerID": "U2", "asin": "B"})  # no unixReviewTime on line 7
    bad_reviews = _gzip_lines(tmp_path / "reviews_bad.json.gz", lines)
    with pytest.raises(DataFormatError, match=r"reviews_bad\.json\.gz, line 5: not a JSON object"):
        read_amazon2014(bad_reviews, meta, kcore=3)
    data = read_amazon2014(bad_reviews, meta, kcore=1, on_error="skip")
    assert data.skipped["malformed_lines:reviews_bad.json.gz"] == 2

    truncated = tmp_path / "reviews_cut.json.gz"
    truncated.write_bytes(reviews.read_bytes()[:-25])
    with pytest.raises(DataFormatError, match=r"reviews_cut\.json\.gz: truncated or corrupt gzip"):
        read_amazon2014(truncated, meta)
    with pytest.raises(FileNotFoundError, match=r"cseweb\.ucsd\.edu/~jmcauley"):
        read_amazon2014(tmp_path / "nope.json.gz", meta)


def test_parse_record_never_evaluates_code():
    assert parse_record("{'a': [['x', 'y']], 'b': 1.5}", literal_first=True) == {"a": [["x", "y"]], "b": 1.5}
    assert parse_record('{"a": true, "b": null}', literal_first=True) == {"a": True, "b": None}
    with pytest.raises(ValueError, match="not Python literal.*not JSON"):
        parse_record("{'a': __import__('os').getcwd()}", literal_first=True)
    with pytest.raises(ValueError, match="not a dict"):
        parse_record("[1, 2]", literal_first=False)


def test_kcore_mask():
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 0])
    keep, rounds = kcore_mask(users, items, 2)
    assert keep.tolist() == [True, True, True, True, False] and rounds == 1
    keep, rounds = kcore_mask(users, items, 3)
    assert not keep.any()
    with pytest.raises(ValueError):
        kcore_mask(users, items, 0)


def test_amazon2023_parent_asin_and_ms_timestamps(tmp_path):
    reviews = [
        {"user_id": "AG1", "parent_asin": "P1", "asin": "V1", "rating": 5.0, "timestamp": 1_600_000_003_000},
        {"user_id": "AG1", "parent_asin": "P2", "asin": "P2", "rating": 4.0, "timestamp": 1_600_000_001_000},
        {"user_id": "AG1", "parent_asin": "P3", "asin": "P3", "rating": 3.0, "timestamp": 1_600_000_002_000},
        # two variants of one parent reviewed at the same moment: one interaction
        {"user_id": "AG1", "parent_asin": "P1", "asin": "V2", "rating": 5.0, "timestamp": 1_600_000_003_000},
        {"user_id": "AG2", "parent_asin": "P1", "asin": "V1", "rating": 2.0, "timestamp": 1_500_000_000_000},
        {"user_id": "AG2", "parent_asin": "P2", "asin": "P2", "rating": 2.0, "timestamp": 1_500_000_000_500},
        {"user_id": "AG2", "parent_asin": "P4", "asin": "P4", "rating": 2.0, "timestamp": 1_500_000_000_900},
    ]
    meta = [
        {"main_category": "All Beauty", "title": "Serum", "average_rating": 4.1, "rating_number": 9,
         "features": ["30 ml", "vegan"], "description": ["Light.", "Fast."], "price": 19.99, "images": [],
         "videos": [], "store": "Acme", "categories": [], "details": {"Size": "30 ml"}, "parent_asin": "P1",
         "bought_together": None},
        {"main_category": "All Beauty", "title": "Comb", "features": [], "description": [], "price": None,
         "store": None, "categories": ["Beauty", "Tools"], "details": {}, "parent_asin": "P2"},
    ]
    reviews_path = _gzip_lines(tmp_path / "All_Beauty.jsonl.gz", [json.dumps(r) for r in reviews])
    meta_path = tmp_path / "meta_All_Beauty.jsonl"  # plain (not gzipped) works too
    meta_path.write_text("".join(json.dumps(m) + "\n" for m in meta), encoding="utf-8")
    data = read_amazon2023(reviews_path, meta_path, kcore=1)
    assert data.skipped["duplicate_consecutive_interactions"] == 1
    assert [(s.user_id, s.item_ids, s.timestamps) for s in data.sequences] == [
        ("1", ["1", "2", "3"], [1_600_000_001_000, 1_600_000_002_000, 1_600_000_003_000]),
        ("2", ["3", "1", "4"], [1_500_000_000_000, 1_500_000_000_500, 1_500_000_000_900]),
    ]
    assert data.items["asin"] == ["P2", "P3", "P1", "P4"]
    serum = data.items[2]
    assert serum == {
        "item_id": "3", "asin": "P1", "title": "Serum", "store": "Acme", "main_category": "All Beauty",
        "categories": [], "features": ["30 ml", "vegan"], "description": "Light.\nFast.", "price": "19.99",
    }
    assert data.items[0]["price"] == "" and data.items[0]["categories"] == ["Beauty", "Tools"]
    assert data.counts["items_without_metadata"] == 2 and data.counts["resorted_users"] == 1
    assert data.extra_configs["users"]["original_user_id"] == ["AG1", "AG2"]
    # default 5-core on this tiny file removes everything, and says so
    empty = read_amazon2023(reviews_path, meta_path)
    assert empty.sequences == [] and empty.skipped["kcore_interactions"] == 6


def test_amazon2023_malformed_review(tmp_path):
    path = tmp_path / "Cat.jsonl"
    path.write_text('{"user_id": "u", "parent_asin": "p", "timestamp": 1}\n{"user_id": "u", "parent_asin": "q"}\n')
    meta = tmp_path / "meta_Cat.jsonl"
    meta.write_text("")
    with pytest.raises(DataFormatError, match=r"Cat\.jsonl, line 2: review without 'timestamp'"):
        read_amazon2023(path, meta)


@pytest.mark.slow
@pytest.mark.beauty
def test_raw_2014_rebuild_matches_the_s3rec_beauty_folder(beauty_dir, tmp_path):
    """Beauty written back into the raw 2014 formats (one review per interaction, in user order, plus
    metadata lines for unrelated items) is rebuilt into exactly the benchmark's ids and sequences."""
    from genrec.data_scripts.s3rec import read_s3rec

    bench = read_s3rec(beauty_dir)
    items = {row["item_id"]: row for row in bench.items}
    reviews = _gzip_lines(
        tmp_path / "reviews_Beauty_5.json.gz",
        [
            json.dumps({"reviewerID": f"R{s.user_id}", "asin": items[i]["asin"], "overall": 5.0,
                        "unixReviewTime": 1_300_000_000 + 86_400 * k})
            for s in bench.sequences for k, i in enumerate(s.item_ids)
        ],
    )
    meta_lines = [repr({"asin": f"X{n:09d}", "title": "other", "categories": [["Beauty"]]}) for n in range(20_000)]
    meta_lines += [
        repr({"asin": row["asin"], "title": row["title"], "brand": row["brand"], "categories": [row["categories"]],
              "price": float(row["price"]) if row["price"] else None, "salesRank": {"Beauty": 1}})
        for row in bench.items
    ]
    rebuilt = read_amazon2014(reviews, _gzip_lines(tmp_path / "meta_Beauty.json.gz", meta_lines))
    assert rebuilt.skipped["kcore_interactions"] == 0
    assert [(s.user_id, s.item_ids) for s in rebuilt.sequences] == [(s.user_id, s.item_ids) for s in bench.sequences]
    for column in ("item_id", "asin", "title", "brand", "categories", "price"):
        assert rebuilt.items[column] == bench.items[column], column
