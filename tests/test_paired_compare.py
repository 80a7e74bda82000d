"""benchmarks/paired_compare.py: pairs two `genrec evaluate --per-user` files user by user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _write(path: Path, users: list[str], targets: list[str], ranks: list[int]) -> Path:
    path.write_text(json.dumps({"metrics": {}, "per_user": {"user_id": users, "target": targets, "rank": ranks}}))
    return path


def test_pairs_by_user_not_by_position(benchmark_script, tmp_path: Path) -> None:
    compare = benchmark_script("paired_compare.py").compare
    users, targets = [str(u) for u in range(200)], [f"i{u}" for u in range(200)]
    ranks_b = [0] * 200
    ranks_a = [1] * 50 + [0] * 150  # A hits the first 50 users at rank 1, B hits nobody
    a = _write(tmp_path / "a.json", users, targets, ranks_a)
    # B's file lists the users in reverse order: pairing must follow the ids
    b = _write(tmp_path / "b.json", users[::-1], targets[::-1], ranks_b)
    result = compare(a, b, ["hr@1", "ndcg@10"], resamples=500)
    hr = result["comparisons"][0]
    assert hr["mean_a"] == pytest.approx(0.25) and hr["mean_b"] == 0.0 and hr["ci_low"] > 0
    assert hr["only_a"] == 50 and hr["only_b"] == 0


def test_refuses_files_of_different_users_or_targets(benchmark_script, tmp_path: Path) -> None:
    compare = benchmark_script("paired_compare.py").compare
    a = _write(tmp_path / "a.json", ["1", "2"], ["x", "y"], [1, 0])
    assert compare(a, a, ["hr@1"], resamples=10)["comparisons"][0]["diff"] == 0.0
    with pytest.raises(ValueError, match="different users"):
        compare(a, _write(tmp_path / "b.json", ["1", "3"], ["x", "y"], [1, 0]), ["hr@1"])
    with pytest.raises(ValueError, match="different targets"):
        compare(a, _write(tmp_path / "c.json", ["1", "2"], ["x", "z"], [1, 0]), ["hr@1"])
    (tmp_path / "d.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match="--per-user"):
        compare(a, tmp_path / "d.json", ["hr@1"])


def test_common_users_pairs_a_subset_against_the_whole_split(benchmark_script, tmp_path: Path) -> None:
    compare = benchmark_script("paired_compare.py").compare
    whole = _write(tmp_path / "whole.json", ["1", "2", "3", "4"], ["w", "x", "y", "z"], [0, 1, 0, 1])
    subset = _write(tmp_path / "subset.json", ["1", "2"], ["w", "x"], [1, 1])
    with pytest.raises(ValueError, match="different users"):
        compare(subset, whole, ["hr@1"], resamples=10)
    hr = compare(subset, whole, ["hr@1"], resamples=10, common_users=True)["comparisons"][0]
    assert hr["num_users"] == 2 and hr["mean_a"] == 1.0 and hr["mean_b"] == 0.5
    with pytest.raises(ValueError, match="no user in common"):
        compare(subset, _write(tmp_path / "other.json", ["9"], ["q"], [1]), ["hr@1"], common_users=True)


def test_seeds_pool_per_user_not_per_file(benchmark_script, tmp_path: Path) -> None:
    """Three seeds of A against one B: each user's score is A's mean over its seeds; users are resampled once
    (not three times over), so the pooled comparison has the split's users, and mismatched seeds are refused."""
    compare = benchmark_script("paired_compare.py").compare
    users, targets = ["1", "2", "3", "4"], ["w", "x", "y", "z"]
    seeds = [_write(tmp_path / f"a{s}.json", users, targets, ranks)
             for s, ranks in enumerate(([1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]))]
    b = _write(tmp_path / "b.json", users[::-1], targets[::-1], [0, 0, 0, 1])  # hits user 1 only
    hr = compare(seeds[0], b, ["hr@1"], resamples=200, also_a=seeds[1:])["comparisons"][0]
    assert hr["num_users"] == 4
    assert hr["mean_a"] == pytest.approx((3 + 1 + 0 + 1) / 3 / 4) and hr["mean_b"] == 0.25
    assert hr["diff"] == pytest.approx(hr["mean_a"] - 0.25)
    other = _write(tmp_path / "other.json", ["1", "2", "3", "5"], targets, [1, 0, 0, 0])
    with pytest.raises(ValueError, match="different users"):
        compare(seeds[0], b, ["hr@1"], also_a=[other])
    with pytest.raises(ValueError, match="different targets"):
        compare(seeds[0], b, ["hr@1"], also_b=[_write(tmp_path / "t.json", users, ["w", "x", "y", "q"], [0] * 4)])
    with pytest.raises(ValueError, match="do not combine"):
        compare(seeds[0], b, ["hr@1"], also_a=seeds[1:], common_users=True)
