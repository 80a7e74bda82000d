"""Fault injection on inputs, the library API and the CLI (issue 13, cases 3-6).

Hostile-but-realistic inputs: malformed data files, swapped or truncated model files, folders of other
models, an offline Hub, unwritable outputs, mistyped configs, a dataset that is not the model's. Each must
end in a clear error (one line ``genrec VERB: error: ...``, exit 2, on the CLI) or a documented result,
never in silently wrong output or a traceback; real bugs keep their traceback.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from fault_fixtures import save_random_unger, write_s3rec

from genrec.cli import main
from genrec.data_scripts.prepare import prepare_dataset
from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared tiny dataset (40 items "1".."40")."""
    root = tmp_path_factory.mktemp("dataset")
    prepare_dataset("s3rec", root / "prepared", path=write_s3rec(root / "raw"))
    return root / "prepared"


@pytest.fixture(scope="module")
def model_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A (random) UNGER model + tokenizer over the dataset's catalogue, saved as a run folder is."""
    from datasets import load_dataset

    ids = load_dataset(str(dataset), "items", split="train")["item_id"]
    return save_random_unger(list(ids), tmp_path_factory.mktemp("model") / "run")


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> tuple[UngerForGenerativeRecommendation, SemanticIDTokenizer]:
    return UngerForGenerativeRecommendation.from_pretrained(model_dir), SemanticIDTokenizer.from_pretrained(str(model_dir))


def one_line_error(capsys: pytest.CaptureFixture[str], verb: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"genrec {verb}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------ case 3: data loss in prepare


def test_float_item_ids_in_items_jsonl_are_refused(tmp_path: Path) -> None:
    raw = write_s3rec(tmp_path / "raw")
    lines = (raw / "items.jsonl").read_text().splitlines()
    (raw / "items.jsonl").write_text(
        "\n".join(json.dumps({**json.loads(line), "item_id": float(json.loads(line)["item_id"])}) for line in lines)
    )
    with pytest.raises(ValueError, match=r"items.jsonl, line 1: 'item_id' 1.0 is a JSON float"):
        prepare_dataset("s3rec", tmp_path / "out", path=raw)
    assert not (tmp_path / "out").exists()


def test_item_rows_that_match_no_interaction_are_refused(tmp_path: Path) -> None:
    """ids spelled another way (or the items file of another dataset) would leave every item without text."""
    raw = write_s3rec(tmp_path / "raw")
    lines = (raw / "items.jsonl").read_text().splitlines()
    (raw / "items.jsonl").write_text(
        "\n".join(json.dumps({**json.loads(line), "item_id": f"B{json.loads(line)['item_id']:04d}"}) for line in lines)
    )
    with pytest.raises(ValueError, match="none of the 40 items of the interactions has an item row"):
        prepare_dataset("s3rec", tmp_path / "out", path=raw)


@pytest.mark.parametrize("bad", ["abc", "1.5", "-3", "+4", "007"])
def test_non_integer_item_ids_in_sequences_txt_are_refused(tmp_path: Path, bad: str) -> None:
    raw = write_s3rec(tmp_path / "raw")
    lines = (raw / "sequences.txt").read_text().splitlines()
    lines[2] = f"{lines[2]} {bad}"
    (raw / "sequences.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"sequences.txt, line 3: item id '{re.escape(bad)}'.*integer"):
        prepare_dataset("s3rec", tmp_path / "out", path=raw)
    report = prepare_dataset("s3rec", tmp_path / "skipped", path=raw, on_error="skip")  # or skipped, counted
    assert sum(report.skipped.values()) >= 1


def test_integer_item_ids_of_either_json_type_still_match(tmp_path: Path) -> None:
    raw = write_s3rec(tmp_path / "raw")  # item ids written as JSON integers
    lines = (raw / "items.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "item_id": "1"})  # and one as a string
    (raw / "items.jsonl").write_text("\n".join(lines) + "\n")
    report = prepare_dataset("s3rec", tmp_path / "out", path=raw)
    assert report.counts["items_without_metadata"] == 0


# ---------------------------------------------------------------------------------- case 4: crashes


def test_histories_left_empty_by_skip_get_no_recommendations(loaded) -> None:
    model, tok = loaded
    expected = model.recommend([["1", "2"]], tok, k=5)
    assert model.recommend([[]], tok, k=5, on_unknown="skip") == [[]]
    assert model.recommend([["nope"], ["nope", "zilch"]], tok, k=5, on_unknown="skip") == [[], []]
    mixed = model.recommend([["nope"], ["1", "nope", "2"], []], tok, k=5, on_unknown="skip")
    assert mixed[0] == [] and mixed[2] == []
    assert [item for item, _ in mixed[1]] == [item for item, _ in expected[0]]
    assert [s for _, s in mixed[1]] == pytest.approx([s for _, s in expected[0]], abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"k": 2.5}, "k"), ({"k": None}, "k"), ({"k": True}, "k"), ({"k": "5"}, "k"), ({"k": 0}, "k"),
     ({"k": 2, "num_beams": 2.5}, "num_beams"), ({"k": 2, "batch_size": 0}, "batch_size")],
)
def test_bad_k_and_beams_are_clear_value_errors(loaded, kwargs: dict, name: str) -> None:
    model, tok = loaded
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        model.recommend([["1"]], tok, **kwargs)


def test_cli_recommend_has_the_on_unknown_option_it_suggests(model_dir: Path, capsys) -> None:
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "nope"]) == 2
    assert "--on-unknown skip" in one_line_error(capsys, "recommend")
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "nope", "--on-unknown", "skip",
                 "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == 3
    assert main(["recommend", "--model", str(model_dir), "--history", "nope", "--on-unknown", "skip"]) == 2
    assert "none of the history's item ids is known" in one_line_error(capsys, "recommend")


# ------------------------------------------------------------------------- case 5: one line, not a traceback


def test_truncated_weights_are_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["recommend", "--model", str(broken), "--history", "1"]) == 2
    one_line_error(capsys, "recommend")


def test_a_folder_of_another_model_family_is_one_line(tmp_path: Path, capsys) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8)).save_pretrained(tmp_path / "bert")
    assert main(["recommend", "--model", str(tmp_path / "bert"), "--history", "1"]) == 2
    assert "'bert' model, not a genrec UNGER model" in one_line_error(capsys, "recommend")
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2  # no config.json at all
    one_line_error(capsys, "evaluate")


def test_a_missing_model_path_is_named(tmp_path: Path, capsys) -> None:
    assert main(["recommend", "--model", str(tmp_path / "no" / "such"), "--history", "1"]) == 2
    assert "no such folder" in one_line_error(capsys, "recommend")


def test_push_offline_is_one_line(model_dir: Path, dataset: Path, capsys) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: no test reaches a hub
    assert main(["push", str(model_dir), "someone/model"]) == 2
    assert "offline" in one_line_error(capsys, "push").lower()
    assert main(["push", "--dataset", str(dataset), "someone/data"]) == 2
    one_line_error(capsys, "push")


def test_prepare_hub_offline_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    assert main(["prepare", "hub", "--path", "someone/no-such-dataset", "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "prepare")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_one_line_and_leaves_nothing_behind(tmp_path: Path, monkeypatch, capsys) -> None:
    """Replacing an --out folder that cannot be moved (on Linux: no write permission on it)."""
    raw = write_s3rec(tmp_path / "raw")
    out = tmp_path / "out"
    assert main(["prepare", "s3rec", "--path", str(raw), "--out", str(out)]) == 0
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    import genrec.data_scripts.prepare as prepare_module

    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == out:
            raise PermissionError(13, "Permission denied", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(prepare_module.os, "replace", replace)
    capsys.readouterr()
    assert main(["prepare", "s3rec", "--path", str(raw), "--out", str(out), "--overwrite"]) == 2
    assert "Permission denied" in one_line_error(capsys, "prepare")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no .old-*/.tmp-* left


def test_internal_errors_keep_their_traceback(monkeypatch) -> None:
    """A KeyError (or TypeError, ...) inside genrec is a bug: it is not dressed up as bad input."""
    import genrec.commands.recommend as cli_recommend

    def buggy(args):
        return {}["missing"]

    monkeypatch.setattr(cli_recommend, "run", buggy)  # the parser is built inside main()
    with pytest.raises(KeyError):
        main(["recommend", "--model", "x", "--history", "1"])


# ------------------------------------------------------------------------------ case 6: mismatches that pass


def test_evaluate_refuses_a_dataset_that_is_not_the_models(model_dir: Path, dataset: Path, tmp_path: Path,
                                                             capsys) -> None:
    foreign = tmp_path / "foreign"
    prepare_dataset("s3rec", foreign, path=write_s3rec(tmp_path / "raw", n_items=20, seed=3))  # ids 1..20 overlap
    assert main(["evaluate", "--model", str(model_dir), "--data", str(foreign), "--beams", "20"]) == 2
    line = one_line_error(capsys, "evaluate")
    assert "not the dataset the model was trained on" in line and "20 of the model's 40 items" in line
    assert main(["evaluate", "--model", str(model_dir), "--data", str(dataset), "--beams", "20",
                 "--max-users", "5"]) == 0


@pytest.mark.parametrize(
    ("cls", "values", "field"),
    [
        (UngerConfig, {"d_model": 16, "num_attention_heads": 4.5}, "UngerConfig.num_attention_heads"),
        (UngerConfig, {"num_code_levels": 2, "codebook_sizes": "4,5"}, "UngerConfig.codebook_sizes"),
        (UngerConfig, {"constrained_training": "false"}, "UngerConfig.constrained_training"),
        (UngerConfig, {"dropout": "0.1"}, "UngerConfig.dropout"),
        (UngerFusionConfig, {"hidden_size": 16.5}, "UngerFusionConfig.hidden_size"),
        (UngerFusionConfig, {"din_mlp_hidden_sizes": "200,80"}, "UngerFusionConfig.din_mlp_hidden_sizes"),
        (TTDSConfig, {"num_levels": "3"}, "TTDSConfig.num_levels"),
        (TTDSConfig, {"lora_r": 8.5}, "TTDSConfig.lora_r"),
    ],
)
def test_config_fields_are_type_checked_by_name(cls, values: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}"):
        cls(**values)


def test_a_mistyped_config_file_is_one_line_naming_the_field(model_dir: Path, tmp_path: Path, capsys) -> None:
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in model_dir.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "num_attention_heads": 2.5}))
    assert main(["recommend", "--model", str(edited), "--history", "1"]) == 2
    assert "UngerConfig.num_attention_heads must be an int, got 2.5" in one_line_error(capsys, "recommend")


def test_cli_config_overrides_are_checked_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["stage1", "--data", str(tmp_path), "--embeddings", str(tmp_path / "e.safetensors"),
                 "--out", str(tmp_path / "s1"), "--config", '{"hidden_size": "16"}']) == 2
    assert "UngerFusionConfig.hidden_size must be an int" in one_line_error(capsys, "stage1")
