"""Leave-one-out split protocol: a hand-checked example, the counted cleaning steps, invariants."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec.data_scripts.splits import (
    DataFormatError,
    LineErrors,
    UserSequence,
    build_splits,
    clean_user_sequence,
    iter_lines,
    truncate_history,
)


def rows(dataset):
    return [(r["user_id"], r["item_ids"], r["timestamps"]) for r in dataset]


def test_hand_checked_example():
    sequences = [
        # 5 interactions: train targets b, c; validation d; test e. max_history=2 truncates the history.
        UserSequence("u1", ["a", "b", "c", "d", "e"], [10, 20, 30, 40, 50]),
        # 2 interactions: skipped and counted.
        ("u2", ["x", "y"], [1, 2]),
        # unsorted: sorted to q(10), r(20), p(30): no train row, validation [q, r], test [q, r, p].
        ("u3", ["p", "q", "r"], [30, 10, 20]),
        # duplicate consecutive x@1 dropped -> x, y, z, w.
        ("u4", ["x", "x", "y", "z", "w"], [1, 1, 2, 3, 4]),
        # ties keep the file order: k(1), m(5), n(5), o(5); a repeat at a later time is kept.
        ("u5", ["m", "n", "o", "k", "m"], [5, 5, 5, 1, 9]),
    ]
    dd, report = build_splits(sequences, max_history=2)
    assert list(dd) == ["train", "validation", "test"]
    assert rows(dd["train"]) == [
        ("u1", ["a", "b"], [10, 20]),
        ("u1", ["a", "b", "c"], [10, 20, 30]),
        ("u4", ["x", "y"], [1, 2]),
        ("u5", ["k", "m"], [1, 5]),
        ("u5", ["k", "m", "n"], [1, 5, 5]),
    ]
    assert rows(dd["validation"]) == [
        ("u1", ["b", "c", "d"], [20, 30, 40]),
        ("u3", ["q", "r"], [10, 20]),
        ("u4", ["x", "y", "z"], [1, 2, 3]),
        ("u5", ["m", "n", "o"], [5, 5, 5]),
    ]
    assert rows(dd["test"]) == [
        ("u1", ["c", "d", "e"], [30, 40, 50]),
        ("u3", ["q", "r", "p"], [10, 20, 30]),
        ("u4", ["y", "z", "w"], [2, 3, 4]),
        ("u5", ["n", "o", "m"], [5, 5, 9]),
    ]
    assert report.users == 4
    assert report.items == 5 + 3 + 4 + 4  # a-e, p q r, x y z w, k m n o
    assert report.interactions == 5 + 3 + 4 + 5
    assert report.rows == {"train": 5, "validation": 4, "test": 4}
    assert report.input_users == 5 and report.input_interactions == 5 + 2 + 3 + 5 + 5
    assert report.short_users == 1 and report.short_interactions == 2
    assert report.resorted_users == 2  # u3 and u5
    assert report.duplicate_interactions == 1
    assert report.skipped["users_with_fewer_than_3_interactions"] == 1
    assert report.skipped["duplicate_consecutive_interactions"] == 1
    assert report.to_dict()["skipped"] == report.skipped


def test_schema_and_default_history():
    dd, report = build_splits([("u", [str(i) for i in range(30)], list(range(30)))])
    assert report.max_history == 20
    assert dd["train"].features.arrow_schema.field("timestamps").type.value_type.bit_width == 64
    assert max(len(r) for r in dd["train"]["item_ids"]) == 21
    assert dd["test"][0]["item_ids"] == [str(i) for i in range(9, 30)]
    assert len(dd["train"]) == 27


def test_errors():
    with pytest.raises(ValueError, match="appears twice"):
        build_splits([("u", ["a", "b", "c"], [1, 2, 3]), ("u", ["a", "b", "c"], [1, 2, 3])])
    with pytest.raises(ValueError, match="user 'v'.*2 item ids but 3 timestamps"):
        build_splits([("v", ["a", "b"], [1, 2, 3])])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_history"):
            build_splits([], max_history=bad)


def test_empty_input_gives_empty_splits():
    dd, report = build_splits([("u", ["a"], [1])])
    assert all(len(dd[s]) == 0 for s in dd) and report.short_users == 1 and report.users == 0


def test_clean_user_sequence_is_stable():
    items, times, resorted, dropped = clean_user_sequence(["b", "a", "c", "c"], [2, 1, 2, 2])
    assert (items, times, resorted, dropped) == (["a", "b", "c"], [1, 2, 2], True, 1)


def test_truncate_history():
    dd, _ = build_splits([("u", list("abcdefg"), list(range(7)))], max_history=5)
    short, cut = truncate_history(dd["test"], 2)
    assert cut == 1 and short[0] == {"user_id": "u", "item_ids": ["e", "f", "g"], "timestamps": [4, 5, 6]}
    same, cut = truncate_history(dd["test"], 10)
    assert cut == 0 and same[0]["item_ids"] == list("bcdefg")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("abcdef"), min_size=0, max_size=12), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=4),
)
def test_protocol_invariants(item_lists, max_history):
    sequences = [(f"u{i}", items, list(range(len(items)))) for i, items in enumerate(item_lists)]
    dd, report = build_splits(sequences, max_history=max_history)
    kept = [(u, items) for u, items, _ in sequences if len(items) >= 3]
    assert report.users == len(kept)
    assert len(dd["train"]) == sum(len(items) - 3 for _, items in kept)
    assert len(dd["validation"]) == len(dd["test"]) == len(kept)
    train = iter(rows(dd["train"]))
    for (user, items), val, test in zip(kept, rows(dd["validation"]), rows(dd["test"]), strict=True):
        for target in range(1, len(items) - 2):
            row = next(train)
            assert row[0] == user and row[1] == items[max(0, target - max_history) : target + 1]
        assert val[1] == items[max(0, len(items) - 2 - max_history) : len(items) - 1]
        assert test[1] == items[max(0, len(items) - 1 - max_history) :]
        assert test[2] == list(range(len(items)))[-len(test[1]) :]
    assert next(train, None) is None


def test_iter_lines_gzip_and_errors(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("x\ny\r\n", encoding="utf-8")
    assert list(iter_lines(plain)) == [(1, "x"), (2, "y")]
    packed = tmp_path / "a.gz"
    packed.write_bytes(gzip.compress(b"one\ntwo\n" * 2000))
    assert sum(1 for _ in iter_lines(packed)) == 4000
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(gzip.compress(b"one\ntwo\n" * 2000)[:-30])
    with pytest.raises(DataFormatError, match=r"t\.gz: truncated or corrupt gzip"):
        list(iter_lines(truncated))
    latin = tmp_path / "l.txt"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(DataFormatError, match=r"l\.txt, line 2: not UTF-8"):
        list(iter_lines(latin))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        list(iter_lines(tmp_path / "missing.txt"))


def test_line_errors_policy(tmp_path):
    path = tmp_path / "f.jsonl"
    with pytest.raises(DataFormatError, match=r"f\.jsonl, line 7: bad.*on_error='skip'"):
        LineErrors("raise")(path, 7, "bad")
    errors = LineErrors("skip")
    errors(path, 7, "bad")
    errors(path, 9, "bad")
    errors.blank_line(path)
    assert errors.counts() == {"malformed_lines:f.jsonl": 2, "blank_lines:f.jsonl": 1}
    with pytest.raises(ValueError, match="on_error"):
        LineErrors("ignore")
