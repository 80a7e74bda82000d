"""The local push_to_hub layout: parquet shards per config + README YAML that load_dataset understands."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict, load_dataset

from genrec.data_scripts.hub_layout import (
    config_names,
    default_config_name,
    read_card,
    update_card,
    write_config,
)
from genrec.data_scripts.splits import build_splits


def _sequences() -> DatasetDict:
    dd, _ = build_splits([("u1", list("abcde"), [1, 2, 3, 4, 5]), ("u2", list("xyz"), [1, 2, 3])])
    return dd


def _items() -> Dataset:
    return Dataset.from_dict({"item_id": ["a", "b"], "title": ["A", ""], "genres": [["g1", "g2"], []]})


def test_layout_loads_with_load_dataset(tmp_path):
    folder = tmp_path / "ds"
    write_config(folder, "sequences", _sequences(), default=True)
    write_config(folder, "items", _items())
    update_card(folder, body="# Tiny\n\nhello\n", metadata={"pretty_name": "Tiny"})
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "README.md",
        "items/train-00000-of-00001.parquet",
        "sequences/test-00000-of-00001.parquet",
        "sequences/train-00000-of-00001.parquet",
        "sequences/validation-00000-of-00001.parquet",
    ]
    assert config_names(folder) == ["items", "sequences"] and default_config_name(folder) == "sequences"
    card = read_card(folder)
    assert card.text == "# Tiny\n\nhello\n" and card.data["pretty_name"] == "Tiny"
    cache = tmp_path / "cache"
    seq = load_dataset(str(folder), "sequences", cache_dir=str(cache))
    assert {s: len(seq[s]) for s in seq} == {"train": 2, "validation": 2, "test": 2}
    assert seq["test"][0] == {"user_id": "u1", "item_ids": list("abcde"), "timestamps": [1, 2, 3, 4, 5]}
    items = load_dataset(str(folder), "items", split="train", cache_dir=str(cache))
    assert items.to_list() == _items().to_list()
    assert load_dataset(str(folder), split="test", cache_dir=str(cache))[1]["user_id"] == "u2"  # default config


def test_yaml_matches_what_push_to_hub_writes(tmp_path):
    """Two write_config calls give the card YAML of two push_to_hub calls (datasets' own card update)."""
    try:
        from datasets.arrow_dataset import _get_updated_dataset_card
        from fsspec.implementations.dirfs import DirFileSystem
        from fsspec.implementations.local import LocalFileSystem
    except ImportError as error:  # pragma: no cover - private helper of this datasets version
        pytest.skip(f"datasets' push_to_hub card helper is not available: {error}")
    ours_dir, hub_dir = tmp_path / "ours", tmp_path / "hub"
    hub_dir.mkdir()
    fs = DirFileSystem(path=str(hub_dir), fs=LocalFileSystem())
    for name, data, default in (("sequences", _sequences(), True), ("items", DatasetDict({"train": _items()}), None)):
        info = write_config(ours_dir, name, data, default=bool(default))
        for split, dataset in data.items():
            assert info.splits[split].num_bytes == dataset._estimate_nbytes()
        sizes = [sum(p.stat().st_size for p in (ours_dir / name).glob(f"{split}-*.parquet")) for split in data]
        card, _ = _get_updated_dataset_card(
            fs=fs, config_name=name, splits_info=list(info.splits.values()),
            features=next(iter(data.values())).features, data_dir=name, set_default=default,
            uploaded_sizes=sizes, deleted_sizes=[], remove_other_splits=True,
        )
        (hub_dir / "README.md").write_text(str(card), encoding="utf-8")
    theirs, ours = read_card(hub_dir).data, read_card(ours_dir).data
    assert ours["configs"] == theirs["configs"]
    assert ours["dataset_info"] == theirs["dataset_info"]


def test_replacing_a_config_keeps_the_others(tmp_path):
    folder = tmp_path / "ds"
    write_config(folder, "sequences", _sequences(), default=True)
    write_config(folder, "items", _items())
    update_card(folder, body="body\n")
    bigger = Dataset.from_dict({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "genres": [[], [], []]})
    write_config(folder, "items", bigger)
    assert config_names(folder) == ["items", "sequences"] and default_config_name(folder) == "sequences"
    assert read_card(folder).text == "body\n"
    infos = {i["config_name"]: i for i in read_card(folder).data["dataset_info"]}
    assert infos["items"]["splits"] == [{"name": "train", "num_bytes": infos["items"]["dataset_size"], "num_examples": 3}]
    assert [p.name for p in (folder / "items").iterdir()] == ["train-00000-of-00001.parquet"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    cache = str(tmp_path / "cache")
    assert load_dataset(str(folder), "items", split="train", cache_dir=cache)["item_id"] == ["a", "b", "c"]
    # a new default moves the flag
    write_config(folder, "items", bigger, default=True)
    assert default_config_name(folder) == "items"


def test_sharding_follows_max_shard_size(tmp_path):
    folder = tmp_path / "ds"
    data = Dataset.from_dict({"item_id": [str(i) for i in range(3000)], "title": ["t" * 50] * 3000})
    write_config(folder, "items", data, max_shard_size=40_000)
    shards = sorted(p.name for p in (folder / "items").iterdir())
    assert len(shards) > 1 and shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    loaded = load_dataset(str(folder), "items", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded["item_id"] == data["item_id"]


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="config name"):
        write_config(tmp_path, "data", _items())
    with pytest.raises(ValueError, match="config name"):
        write_config(tmp_path, "../up", _items())
    with pytest.raises(ValueError, match="split name"):
        write_config(tmp_path, "items", {"bad-split": _items()})
    other = Dataset.from_dict({"item_id": ["a"]})
    with pytest.raises(ValueError, match="share one schema"):
        write_config(tmp_path, "items", {"train": _items(), "test": other})
    with pytest.raises(ValueError, match="no splits"):
        write_config(tmp_path, "items", {})
    with pytest.raises(ValueError, match="write_config"):
        update_card(tmp_path, metadata={"configs": []})
