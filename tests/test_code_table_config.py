"""A model's semantic IDs published with its dataset as the `code_table` config (issue 12, item 5): the config
loads with `datasets.load_dataset` and rebuilds the exact CodeTable (hash checked); the card describes it; the
local folder is left as it was; a table of another catalogue is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from huggingface_hub import CommitInfo, HfApi

from genrec.cli import main
from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.jobs.push import CODE_TABLE_CONFIG, code_table_config_operations, find_run_code_table


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ct")
    raw = root / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    lines = [" ".join([str(u), *map(str, rng.integers(1, 41, size=6))]) for u in range(1, 31)]
    (raw / "sequences.txt").write_text("\n".join(lines) + "\n")
    (raw / "items.jsonl").write_text("".join(json.dumps({"item_id": str(i), "title": f"t{i}"}) + "\n" for i in range(1, 41)))
    folder = root / "run" / "data"
    prepare_dataset("s3rec", folder, path=raw)
    return folder


def _table(ids: list[str]) -> CodeTable:
    codes = np.random.default_rng(1).integers(0, 4, size=(len(ids), 2))
    return CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4])  # collisions: a collision level


def test_code_table_config_loads_back_exactly_and_the_card_describes_it(data: Path, tmp_path: Path) -> None:
    _, items = load_genrec_dataset(data)
    table = _table([str(i) for i in items["item_id"]])
    table.save(data.parent)  # RUN/code_table.json next to RUN/data: what `genrec run` writes
    assert find_run_code_table(data) == data.parent.resolve()
    card_before = (data / "README.md").read_text()

    operations = code_table_config_operations(data, data.parent)

    assert (data / "README.md").read_text() == card_before and not (data / CODE_TABLE_CONFIG).exists()
    published = tmp_path / "published"
    shutil.copytree(data, published)
    for op in operations:
        (published / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        (published / op.path_in_repo).write_bytes(op.path_or_fileobj)
    assert sorted(op.path_in_repo for op in operations) == [
        "README.md", f"{CODE_TABLE_CONFIG}/code_table.json", f"{CODE_TABLE_CONFIG}/train-00000-of-00001.parquet",
    ]
    rows = load_dataset(str(published), CODE_TABLE_CONFIG, split="train")
    metadata = json.loads((published / CODE_TABLE_CONFIG / "code_table.json").read_text())
    again = CodeTable.from_columns(rows.to_dict(), metadata=metadata)
    assert again.content_hash == table.content_hash and again.item_ids == table.item_ids
    assert np.array_equal(again.codes, table.codes)
    card = (published / "README.md").read_text()
    assert f"config_name: {CODE_TABLE_CONFIG}" in card and "## Semantic IDs (`code_table` config)" in card
    assert table.content_hash in card and "## Licence and provenance" in card  # the rest of the card stays
    sequences, items_again = load_genrec_dataset(published)  # the other configs still load as before
    assert len(items_again) == len(items) and "train" in sequences


def test_a_code_table_of_another_catalogue_is_refused(data: Path, tmp_path: Path) -> None:
    _table([f"x{i}" for i in range(40)]).save(tmp_path / "other")
    with pytest.raises(ValueError, match="not this dataset's catalogue"):
        code_table_config_operations(data, tmp_path / "other")


def test_push_of_a_run_data_folder_adds_the_code_table_config(data: Path, monkeypatch, capsys) -> None:
    _, items = load_genrec_dataset(data)
    _table([str(i) for i in items["item_id"]]).save(data.parent)
    commits: list[list] = []
    monkeypatch.setattr(HfApi, "create_repo", lambda *_a, **_k: "https://huggingface.co/me/data")
    monkeypatch.setattr(HfApi, "create_commit", lambda _api, **kwargs: commits.append(kwargs["operations"]) or
                        CommitInfo(commit_url="https://huggingface.co/me/data/commit/0", commit_message="m",
                                   commit_description="", oid="0" * 40))
    assert main(["push", str(data), "me/data", "--dataset"]) == 0
    assert "`code_table` config" in capsys.readouterr().out
    paths = [op.path_in_repo for op in commits[0]]
    assert f"{CODE_TABLE_CONFIG}/train-00000-of-00001.parquet" in paths and paths == sorted(paths)
    assert paths.count("README.md") == 1
    card = next(op.path_or_fileobj for op in commits[0] if op.path_in_repo == "README.md").decode()
    assert 'load_dataset("me/data", "code_table", split="train")' in card
    assert main(["push", str(data), "me/data", "--dataset", "--no-code-table"]) == 0
    assert not any(op.path_in_repo.startswith(CODE_TABLE_CONFIG) for op in commits[1])
