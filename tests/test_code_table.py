"""CodeTable: collisions, uniqueness, lookups, prefix index (vs a plain trie), cold start, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec.tokenization.code_table import CODE_TABLE_DATA_FILE, CODE_TABLE_META_FILE, CodeTable

# ------------------------------------------------------------------------------------------------ helpers


def trie_reference(codes: np.ndarray, sizes: list[int]) -> dict[str, list[int]]:
    """The prefix index of the contract, built the slow obvious way from a nested-dict trie."""
    root: dict = {}
    for row, code in enumerate(codes.tolist()):
        node = root
        for c in code[:-1]:
            node = node.setdefault(c, {})
        node[code[-1]] = row
    out: dict[str, list[int]] = {"level_sizes": list(sizes)}
    level = [root]  # nodes at depth d, in lexicographic order of their prefixes
    for d in range(codes.shape[1]):
        offsets, edge_codes, children = [0], [], []
        for node in level:
            for c in sorted(node):
                edge_codes.append(c)
                children.append(node[c])
            offsets.append(len(edge_codes))
        out[f"offsets_{d}"] = offsets
        out[f"codes_{d}"] = edge_codes
        level = children
    out["leaf_items"] = level
    return out


def as_lists(index: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    assert all(t.dtype == torch.int64 and t.device.type == "cpu" for t in index.values())
    return {key: value.tolist() for key, value in index.items()}


def ids(n: int) -> list[str]:
    return [f"i{k}" for k in range(n)]


@pytest.fixture
def collided() -> CodeTable:
    # groups: (0,1) -> i0, i1, i3 ; (2,0) -> i2 ; (1,1) -> i4
    codes = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [1, 1]])
    return CodeTable.from_codes(ids(5), codes, codebook_sizes=[3, 2])


# ------------------------------------------------------------------------------------------------ building


def test_collisions_get_an_extra_level_in_input_order(collided: CodeTable) -> None:
    assert collided.num_levels == 3 and collided.num_semantic_levels == 2 and collided.has_collision_level
    assert collided.codes.tolist() == [[0, 1, 0], [0, 1, 1], [2, 0, 0], [0, 1, 2], [1, 1, 0]]
    assert collided.codes.dtype == np.int64
    assert collided.codebook_sizes == [3, 2, 3]  # collision level size = largest group
    assert collided.collision_rate == pytest.approx(3 / 5)
    assert collided.max_collision_group == 3
    stats = collided.stats()
    assert stats["num_collision_groups"] == 1 and stats["codes_used_per_level"] == [3, 2, 3]
    assert stats["utilisation_per_level"] == pytest.approx([1.0, 1.0, 1.0])
    assert stats["prefix_nodes_per_depth"] == [1, 3, 3, 5]


def test_collision_order_numbers_each_group_by_its_key() -> None:
    codes = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [1, 1]])
    # minus training counts: i3 (5) first, then i0 and i1 tied at 2 (input order); singletons stay 0
    table = CodeTable.from_codes(ids(5), codes, codebook_sizes=[3, 2], collision_order=[-2, -2, -9, -5, 0])
    assert table.codes.tolist() == [[0, 1, 1], [0, 1, 2], [2, 0, 0], [0, 1, 0], [1, 1, 0]]
    assert table.codebook_sizes == [3, 2, 3]
    for bad in ([0, 1], [0, 0, 0, float("nan"), 0]):
        with pytest.raises(ValueError, match="collision_order must hold 5 finite numbers"):
            CodeTable.from_codes(ids(5), codes, collision_order=bad)


def test_no_collision_adds_no_level_unless_asked() -> None:
    codes = np.array([[0, 1], [0, 3], [2, 0]])
    table = CodeTable.from_codes(["a", "b", "c"], codes)
    assert table.num_levels == 2 and not table.has_collision_level
    assert table.codebook_sizes == [3, 4]  # inferred max + 1
    assert table.collision_rate == 0.0 and table.max_collision_group == 1
    from_numpy_ids = CodeTable.from_codes(np.array(["a", "b", "c"]), codes)  # numpy.str_ ids become str
    assert from_numpy_ids == table and all(type(i) is str for i in from_numpy_ids.item_ids)
    appended = CodeTable.from_codes(["a", "b", "c"], torch.tensor(codes), always_append=True)
    assert appended.codes[:, :2].tolist() == codes.tolist() and appended.codes[:, 2].tolist() == [0, 0, 0]
    assert appended.codebook_sizes == [3, 4, 1] and appended.has_collision_level
    assert appended.content_hash != table.content_hash


def test_collisions_error_lists_colliding_items() -> None:
    with pytest.raises(ValueError, match=r"3 items share.*'i0'.*'i1'"):
        CodeTable.from_codes(ids(5), np.array([[0, 1], [0, 1], [2, 0], [0, 1], [1, 1]]), collisions="error")
    table = CodeTable.from_codes(ids(2), np.array([[0], [1]]), collisions="error")
    assert table.num_levels == 1


@pytest.mark.parametrize(
    ("item_ids", "codes", "kwargs", "error", "match"),
    [
        (["a", "a"], [[0], [1]], {}, ValueError, "duplicate item ids.*'a'"),
        (["a", 7], [[0], [1]], {}, TypeError, r"item_ids\[1\] is 7 of type int"),
        (["a", ""], [[0], [1]], {}, ValueError, "empty string"),
        (["a", "b"], [[0], [5]], {"codebook_sizes": [4]}, ValueError, r"outside 0..K_d-1.*'b', \(5,\)"),
        (["a", "b"], [[0], [-1]], {}, ValueError, "non-negative.*'b'"),
        (["a", "b"], [[0.5], [1.0]], {}, TypeError, "integers"),
        (["a", "b"], [0, 1], {}, ValueError, "2-D"),
        (["a", "b", "c"], [[0], [1]], {}, ValueError, "3 item ids but 2 code rows"),
        (["a"], [[0, 1]], {"codebook_sizes": [2]}, ValueError, "codebook_sizes has 1 entries"),
        (["a"], [[0]], {"collisions": "ignore"}, ValueError, "collisions must be"),
    ],
)
def test_bad_input_is_a_clear_error(item_ids, codes, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        CodeTable.from_codes(item_ids, np.asarray(codes), **kwargs)


def test_constructor_rejects_duplicate_full_codes() -> None:
    with pytest.raises(ValueError, match=r"share a code.*collisions='append'"):
        CodeTable(["a", "b"], np.array([[1, 0], [1, 0]]), [2, 1], 2)


def test_codes_are_read_only(collided: CodeTable) -> None:
    with pytest.raises(ValueError, match="read-only"):
        collided.codes[0, 0] = 5


# ------------------------------------------------------------------------------------------------ lookups


def test_lookups_both_ways(collided: CodeTable) -> None:
    assert collided.code_of("i3") == (0, 1, 2) and collided.index_of("i3") == 3
    assert collided.item_of((0, 1, 2)) == "i3" and collided.item_of([1, 1, 0]) == "i4"
    assert collided.item_of((0, 1, 3)) is None and collided.item_of((9, 9, 9)) is None
    assert "i2" in collided and "zz" not in collided and len(collided) == 5
    with pytest.raises(KeyError, match="'zz' is not in the code table"):
        collided.code_of("zz")
    query = torch.tensor([[[0, 1, 1], [2, 0, 0]], [[2, 0, 1], [-1, 1, 0]]])
    assert collided.items_for_codes(query).tolist() == [[1, 2], [-1, -1]]
    assert collided.items_for_codes(np.array([[1, 1, 0], [3, 0, 0]])).tolist() == [4, -1]
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        collided.items_for_codes(torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="integer"):
        collided.items_for_codes(torch.tensor([[0.0, 1.0, 0.0]]))


def test_unknown_ids_raise_or_are_skipped_and_counted(collided: CodeTable) -> None:
    with pytest.raises(KeyError, match=r"2 item id\(s\) are not in the code table.*'x', 'y'"):
        collided.codes_for(["i0", "x", "i1", "y"])
    codes, skipped = collided.codes_for(["i0", "x", "i4", "y"], on_unknown="skip")
    assert skipped == 2 and codes.tolist() == [[0, 1, 0], [1, 1, 0]]
    rows, skipped = collided.indices_for(["i4", "i0"])
    assert skipped == 0 and rows.tolist() == [4, 0]
    assert collided.lookup_indices(["i2", "nope"]).tolist() == [2, -1]


# ------------------------------------------------------------------------------------------------ prefix index


def test_prefix_index_hand_example_from_the_contract() -> None:
    table = CodeTable.from_codes(["x", "y", "z"], np.array([[0, 1], [0, 3], [2, 0]]), codebook_sizes=[3, 4])
    assert as_lists(table.prefix_index()) == {
        "level_sizes": [3, 4],
        "offsets_0": [0, 2],
        "codes_0": [0, 2],
        "offsets_1": [0, 2, 3],
        "codes_1": [1, 3, 0],
        "leaf_items": [0, 1, 2],
    }


def test_prefix_index_with_collision_level(collided: CodeTable) -> None:
    index = as_lists(collided.prefix_index())
    assert index == trie_reference(collided.codes, collided.codebook_sizes)
    assert index["codes_0"] == [0, 1, 2] and index["offsets_2"] == [0, 3, 4, 5]
    assert index["leaf_items"] == [0, 1, 3, 4, 2]
    assert collided.prefix_index() is not collided.prefix_index()  # fresh dict, shared cached tensors
    assert collided.prefix_index()["codes_1"] is collided.prefix_index()["codes_1"]


code_tables = st.integers(1, 3).flatmap(
    lambda depth: st.tuples(
        st.lists(st.integers(1, 4), min_size=depth, max_size=depth),
        st.integers(1, 40),
        st.integers(0, 2**32 - 1),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_tables, st.booleans())
def test_prefix_index_matches_a_python_trie_on_random_tables(spec, always_append: bool) -> None:
    sizes, n, seed = spec
    rng = np.random.default_rng(seed)
    semantic = np.stack([rng.integers(0, k, size=n) for k in sizes], axis=1)
    names = [f"item-{v}" for v in rng.permutation(n)]
    table = CodeTable.from_codes(names, semantic, codebook_sizes=sizes, always_append=always_append)
    # uniqueness, semantic codes kept, collision numbering in input order
    assert len({tuple(c) for c in table.codes.tolist()}) == n
    assert table.codes[:, : len(sizes)].tolist() == semantic.tolist()
    if table.has_collision_level:
        seen: dict[tuple, int] = {}
        for code in table.codes.tolist():
            key = tuple(code[:-1])
            assert code[-1] == seen.get(key, 0)
            seen[key] = code[-1] + 1
        assert table.codebook_sizes[-1] == max(seen.values())
    groups = {}
    for code in semantic.tolist():
        groups[tuple(code)] = groups.get(tuple(code), 0) + 1
    assert table.collision_rate == pytest.approx(sum(c for c in groups.values() if c > 1) / n)
    assert as_lists(table.prefix_index()) == trie_reference(table.codes, table.codebook_sizes)
    # lookups both ways agree with a dict
    by_code = {tuple(c): names[r] for r, c in enumerate(table.codes.tolist())}
    rows = table.items_for_codes(torch.from_numpy(table.codes.copy()))
    assert rows.tolist() == list(range(n))
    probe = np.stack([rng.integers(0, k + 1, size=20) for k in table.codebook_sizes], axis=1)
    expected = [names.index(by_code[tuple(c)]) if tuple(c) in by_code else -1 for c in probe.tolist()]
    assert table.items_for_codes(probe).tolist() == expected


# ------------------------------------------------------------------------------------------------ cold start


def test_add_items_keeps_old_codes_and_takes_next_free_collision_index(collided: CodeTable) -> None:
    grown = collided.add_items(["n0", "n1", "n2", "n3"], np.array([[0, 1], [2, 0], [1, 0], [0, 1]]))
    assert np.array_equal(grown.codes[:5], collided.codes)  # bit-identical
    assert grown.item_ids[:5] == collided.item_ids
    assert grown.codes[5:].tolist() == [[0, 1, 3], [2, 0, 1], [1, 0, 0], [0, 1, 4]]
    assert grown.codebook_sizes == [3, 2, 5]  # the collision level grew from 3 to 5
    assert as_lists(grown.prefix_index()) == trie_reference(grown.codes, grown.codebook_sizes)
    assert grown.item_of((0, 1, 4)) == "n3" and collided.item_of((0, 1, 4)) is None
    assert collided.add_items([], np.zeros((0, 2), dtype=np.int64)) is collided


@settings(max_examples=40, deadline=None)
@given(code_tables, st.integers(1, 20))
def test_add_items_equals_building_from_scratch(spec, num_new: int) -> None:
    """Cold start numbers new items after the existing ones of their group: the same as a fresh build."""
    sizes, n, seed = spec
    rng = np.random.default_rng(seed)
    semantic = np.stack([rng.integers(0, k, size=n + num_new) for k in sizes], axis=1)
    names = [f"item-{v}" for v in range(n + num_new)]
    old = CodeTable.from_codes(names[:n], semantic[:n], codebook_sizes=sizes, always_append=True)
    grown = old.add_items(names[n:], semantic[n:])
    fresh = CodeTable.from_codes(names, semantic, codebook_sizes=sizes, always_append=True)
    assert grown == fresh and grown.codebook_sizes == fresh.codebook_sizes
    assert grown.codes[:n].tobytes() == old.codes.tobytes()


def test_add_items_errors(collided: CodeTable) -> None:
    with pytest.raises(ValueError, match=r"already in the code table.*'i1'"):
        collided.add_items(["i1"], np.array([[0, 0]]))
    with pytest.raises(ValueError, match=r"duplicate ids among the new items.*'n'"):
        collided.add_items(["n", "n"], np.array([[0, 0], [1, 0]]))
    with pytest.raises(ValueError, match="outside the codebook sizes"):
        collided.add_items(["n"], np.array([[3, 0]]))
    with pytest.raises(ValueError, match="semantic levels"):
        collided.add_items(["n"], np.array([[0, 0, 0]]))
    plain = CodeTable.from_codes(["a", "b"], np.array([[0, 0], [1, 1]]), codebook_sizes=[2, 2])
    assert plain.add_items(["c"], np.array([[0, 1]])).codes.tolist() == [[0, 0], [1, 1], [0, 1]]
    with pytest.raises(ValueError, match="no collision level.*always_append=True"):
        plain.add_items(["c"], np.array([[1, 1]]))


# ------------------------------------------------------------------------------------------------ persistence


def test_save_load_round_trip_is_bit_identical(collided: CodeTable, tmp_path: Path) -> None:
    collided.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CODE_TABLE_META_FILE, CODE_TABLE_DATA_FILE]
    data = pq.read_table(tmp_path / CODE_TABLE_DATA_FILE)
    assert data.column_names == ["item_id", "level_0", "level_1", "collision"]
    meta = json.loads((tmp_path / CODE_TABLE_META_FILE).read_text())
    assert meta["content_hash"] == collided.content_hash and meta["codebook_sizes"] == [3, 2, 3]
    assert meta["collision_rate"] == pytest.approx(0.6) and meta["version"] == 1
    loaded = CodeTable.load(tmp_path)
    assert loaded == collided and loaded.content_hash == collided.content_hash
    assert loaded.codes.tobytes() == collided.codes.tobytes() and loaded.item_ids == collided.item_ids
    assert loaded.codebook_sizes == collided.codebook_sizes and loaded.num_semantic_levels == 2


def test_corrupt_truncated_or_edited_files_are_clear_errors(collided: CodeTable, tmp_path: Path) -> None:
    collided.save(tmp_path)
    data_path, meta_path = tmp_path / CODE_TABLE_DATA_FILE, tmp_path / CODE_TABLE_META_FILE
    good_data, good_meta = data_path.read_bytes(), meta_path.read_text()

    data_path.write_bytes(good_data[: len(good_data) // 2])
    with pytest.raises(ValueError, match=r"code_table\.parquet as parquet.*corrupt or truncated"):
        CodeTable.load(tmp_path)

    table = pa.Table.from_pydict(collided.to_columns())
    table = table.set_column(3, "collision", pa.array([0, 2, 0, 1, 0], type=pa.int64()))
    pq.write_table(table, data_path)
    with pytest.raises(ValueError, match="does not match the content hash recorded in .*code_table.json"):
        CodeTable.load(tmp_path)

    data_path.write_bytes(good_data)
    meta = json.loads(good_meta)
    meta["codebook_sizes"] = [3, 2, 4]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the content hash"):
        CodeTable.load(tmp_path)

    meta_path.write_text(good_meta[:40])
    with pytest.raises(ValueError, match=r"code_table\.json is not valid JSON"):
        CodeTable.load(tmp_path)

    meta_path.write_text(good_meta.replace('"num_items": 5', '"num_items": 6'))
    with pytest.raises(ValueError, match="has 5 rows but .* records 6 items"):
        CodeTable.load(tmp_path)

    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"code_table\.json not found"):
        CodeTable.load(tmp_path)

    meta_path.write_text(good_meta)
    assert CodeTable.load(tmp_path) == collided


_CHILD = """
import sys, numpy as np
from genrec.tokenization.code_table import CodeTable
rng = np.random.default_rng(1234)
codes = rng.integers(0, 8, size=(500, 3))
table = CodeTable.from_codes([f"item-{i}" for i in range(500)], codes, codebook_sizes=[8, 8, 8])
table.save(sys.argv[1])
print(table.content_hash)
"""


def test_codes_and_hash_are_stable_across_processes(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    rng = np.random.default_rng(1234)
    codes = rng.integers(0, 8, size=(500, 3))
    here = CodeTable.from_codes([f"item-{i}" for i in range(500)], codes, codebook_sizes=[8, 8, 8])
    assert here.has_collision_level  # 500 items in 512 codes: the collision path is exercised
    loaded = CodeTable.load(tmp_path)
    assert out == here.content_hash == loaded.content_hash
    assert loaded.codes.tobytes() == here.codes.tobytes()


def test_columns_round_trip(collided: CodeTable) -> None:
    columns = collided.to_columns()
    assert list(columns) == ["item_id", "level_0", "level_1", "collision"]
    assert columns["collision"] == [0, 1, 0, 2, 0]
    assert CodeTable.from_columns(columns, metadata=collided.metadata()) == collided
    sparse = CodeTable.from_codes(["a", "b"], np.array([[0], [1]]), codebook_sizes=[16])
    inferred = CodeTable.from_columns(sparse.to_columns())  # sizes inferred without metadata
    assert inferred.codebook_sizes == [2] and inferred.codes.tolist() == sparse.codes.tolist()
    with pytest.raises(ValueError, match="content hash"):
        CodeTable.from_columns(sparse.to_columns(), metadata={**sparse.metadata(), "content_hash": "0" * 64})
    with pytest.raises(ValueError, match="unexpected code table columns"):
        CodeTable.from_columns({**columns, "extra": [1] * 5})


def test_content_hash_encoding_is_pinned(collided: CodeTable) -> None:
    """The canonical encoding is part of the on-disk format: changing it must bump the format version."""
    assert collided.content_hash == "cb38bca8a65add2f7b24672dd3ead1281a01ff16e28627ada0d1263f601ae5a0"
    renamed = CodeTable(["i0", "i1", "i2", "i3", "x"], collided.codes, collided.codebook_sizes, 2)
    assert renamed.content_hash != collided.content_hash
