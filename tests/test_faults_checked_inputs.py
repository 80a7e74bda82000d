"""Fault injection for issue 32, cases 5 and 6: one line where there were tracebacks, refusals where inputs
were silently accepted.

5. a card whose split sizes no longer match its parquet files; a legacy pickle checkpoint (``optimizer.bin``);
   a model or encoder folder with only pickle weights (``pytorch_model.bin``): one line ``genrec VERB: error:``,
   exit 2, and no pickle is ever loaded (the planted payloads would leave a marker file if they ran).
6. embeddings of another catalogue or of other item texts; item ids that are tokenizer tokens (``<pad>``,
   ``<a_1>``) or empty; misspelled config keys (``config.json`` and ``--config``); a dataset no user can be
   trained on; impossible quantizer settings: refused before any training starts.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_fixtures import save_random_unger, write_s3rec
from testing_utils import write_dataset

from genrec.cli import main
from genrec.data_scripts.dataset_loading import RESERVED_ITEM_IDS, load_genrec_dataset
from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.data_scripts.item_text import default_template, items_hash
from genrec.data_scripts.prepare import prepare_dataset
from genrec.modeling.configuration_mscgrec import MSCGRecConfig
from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import UngerFusionModel
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SPECIAL_TOKENS, SemanticIDTokenizer
from genrec.trainers.stages.stage1 import load_semantic_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")


def one_line_error(capsys: pytest.CaptureFixture[str], verb: str) -> str:
    """The single ``genrec VERB: error: ...`` line on stderr (no traceback, nothing else of that kind)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"genrec {verb}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def unique(root: Path, name: str) -> Path:
    """A folder name no other test uses: datasets caches a local folder by its name and card."""
    return root / f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared tiny dataset (40 items "1".."40", 60 users)."""
    root = tmp_path_factory.mktemp("dataset")
    out = unique(root, "prepared")
    prepare_dataset("s3rec", out, path=write_s3rec(root / "raw"))
    return out


@pytest.fixture(scope="module")
def model_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A (random) UNGER model + tokenizer over the dataset's catalogue, saved as a run folder is."""
    _, items = load_genrec_dataset(dataset)
    ids = list(items["item_id"])
    return save_random_unger(list(ids), tmp_path_factory.mktemp("model") / "run")


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


class _Payload:
    """A pickle that touches ``marker`` when unpickled: proof that nothing was unpickled if the file is absent."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}))


# ------------------------------------------------------------- case 5: one line instead of a traceback


def stale_card(dataset: Path, root: Path) -> Path:
    """A copy of ``dataset`` whose README records 6 more train rows than its parquet holds."""
    stale = copy_folder(dataset, unique(root, "stale"))
    card = (stale / "README.md").read_text()
    train_rows = len(load_genrec_dataset(dataset)[0]["train"])
    needle = f"num_examples: {train_rows}\n"
    assert needle in card
    (stale / "README.md").write_text(card.replace(needle, f"num_examples: {train_rows + 6}\n", 1))
    return stale


def test_a_card_whose_split_sizes_no_longer_match_its_files_is_one_line(dataset: Path, model_dir: Path,
                                                                          tmp_path: Path, capsys) -> None:
    stale = stale_card(dataset, tmp_path)
    expected = "split sizes recorded in its README.md (dataset_info) do not match its data files"
    with pytest.raises(ValueError, match=r"config 'sequences': the split sizes .* \(train: card \d+ rows, files \d+\)"):
        load_genrec_dataset(stale)
    assert main(["prepare", "hub", "--path", str(stale), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys, "prepare")
    assert expected in line and "genrec prepare" in line and str(stale) in line
    assert not (tmp_path / "out").exists()
    assert main(["evaluate", "--model", str(model_dir), "--data", str(stale), "--beams", "20"]) == 2
    assert expected in one_line_error(capsys, "evaluate")
    assert main(["run", "--dataset", str(stale), "--source", "hub", "--out", str(tmp_path / "run")]) == 2
    assert expected in one_line_error(capsys, "run")


def test_a_truncated_parquet_file_is_one_line(dataset: Path, tmp_path: Path, capsys) -> None:
    broken = copy_folder(dataset, unique(tmp_path, "broken"))
    shard = next((broken / "items").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert main(["prepare", "hub", "--path", str(broken), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys, "prepare")
    assert "config 'items': its data files cannot be read (ArrowInvalid" in line and "genrec prepare" in line


def _embeddings_for(dataset: Path, **metadata: str) -> ItemEmbeddings:
    _, items = load_genrec_dataset(dataset)
    ids = list(items["item_id"])
    return ItemEmbeddings(ids, torch.randn(len(ids), 8, generator=torch.Generator().manual_seed(0)), metadata)


def test_a_legacy_pickle_checkpoint_is_refused_unread_in_one_line(dataset: Path, tmp_path: Path, capsys) -> None:
    """A Stage I checkpoint in accelerate's pickle format (optimizer.bin, random_states_0.pkl): genrec used to
    ``torch.load`` it and died with UnpicklingError; now the resume stops before reading any pickle."""
    emb = _embeddings_for(dataset).save(tmp_path / "emb.safetensors")
    out = tmp_path / "stage1"
    step = out / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    plant_pickle(step / "optimizer.bin", marker)
    plant_pickle(step / "random_states_0.pkl", marker)
    (step / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    config = json.dumps({"hidden_size": 8, "din_attention_hidden_sizes": [8], "din_mlp_hidden_sizes": [8]})
    assert main(["stage1", "--data", str(dataset), "--embeddings", str(emb), "--out", str(out), "--config", config,
                 "--max-steps", "2"]) == 2
    line = one_line_error(capsys, "stage1")
    assert "is a checkpoint of an older genrec (optimizer.bin, random_states_0.pkl: pickle files" in line
    assert "--restart" in line
    assert not marker.exists()


def bin_only_copy(model_dir: Path, target: Path, marker: Path | None = None) -> Path:
    """``model_dir`` with its weights as ``pytorch_model.bin`` (a real state dict, or a payload) instead."""
    folder = copy_folder(model_dir, target)
    weights = folder / "model.safetensors"
    if marker is None:
        from safetensors.torch import load_file

        torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    else:
        plant_pickle(folder / "pytorch_model.bin", marker)
    weights.unlink()
    return folder


def test_a_model_folder_with_only_pickle_weights_is_refused_with_the_conversion_hint(model_dir: Path, tmp_path: Path,
                                                                                     capsys) -> None:
    from transformers import AutoModel

    plain = bin_only_copy(model_dir, tmp_path / "plain")  # loadable with weights_only=True: still refused
    marker = tmp_path / "unpickled"
    evil = bin_only_copy(model_dir, tmp_path / "evil", marker)
    for folder in (plain, evil):
        assert main(["recommend", "--model", str(folder), "--history", "1"]) == 2
        line = one_line_error(capsys, "recommend")
        assert "holds its weights only as pickle files (pytorch_model.bin), which genrec never loads" in line
        assert "safe_serialization=True" in line and "use_safetensors=False" in line
        assert main(["evaluate", "--model", str(folder), "--data", str(tmp_path)]) == 2
        one_line_error(capsys, "evaluate")
        with pytest.raises(ValueError, match="only as pickle files"):
            AutoModel.from_pretrained(folder)
    assert not marker.exists()
    # the conversion the hint names, in a trusted environment, gives a folder genrec loads again
    converted = tmp_path / "converted"
    AutoModel.from_pretrained(plain, use_safetensors=False).save_pretrained(converted, safe_serialization=True)
    for path in model_dir.iterdir():
        if not (converted / path.name).exists():
            shutil.copy(path, converted / path.name)
    assert main(["recommend", "--model", str(converted), "--history", "1"]) == 0


def test_stage1_models_and_encoders_with_only_pickle_weights_are_refused(tmp_path: Path, capsys) -> None:
    from fault_fixtures import tiny_encoder

    fusion = tmp_path / "fusion"
    UngerFusionModel(UngerFusionConfig(num_items=3, semantic_dim=4, hidden_size=8, mode="collaborative_only",
                                       din_attention_hidden_sizes=[8], din_mlp_hidden_sizes=[8])).save_pretrained(fusion)
    torch.save({}, fusion / "pytorch_model.bin")
    (fusion / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="only as pickle files"):
        UngerFusionModel.from_pretrained(fusion)

    encoder = tiny_encoder(tmp_path / "encoder", ["red lipstick", "blue soap"])
    marker = tmp_path / "unpickled"
    plant_pickle(encoder / "pytorch_model.bin", marker)
    (encoder / "model.safetensors").unlink()
    data = write_dataset(tmp_path / "data", {"train": [("u", ["a", "b"])], "validation": [("u", ["a", "b"])],
                                             "test": [("u", ["a", "b"])]}, ["a", "b"])
    assert main(["embed", "--data", str(data), "--encoder", str(encoder), "--out", str(tmp_path / "e.safetensors")]) == 2
    line = one_line_error(capsys, "embed")
    assert "encoder folder" in line and "only as pickle files (pytorch_model.bin)" in line
    assert not marker.exists()


# --------------------------------------------------------------------------- case 6: checked inputs


def test_stage1_refuses_embeddings_of_another_catalogue(dataset: Path, tmp_path: Path, capsys) -> None:
    """ids 1..100 on a 40-item dataset (ids 1..40): every item is covered, but the file is another dataset's."""
    foreign = ItemEmbeddings([str(i) for i in range(1, 101)], torch.randn(100, 8), {"encoder": "other"})
    path = foreign.save(tmp_path / "foreign.safetensors")
    assert main(["stage1", "--data", str(dataset), "--embeddings", str(path), "--out", str(tmp_path / "s1"),
                 "--max-steps", "1"]) == 2
    line = one_line_error(capsys, "stage1")
    assert "were made for another catalogue: 100 items, 60 of them not in this dataset's 40" in line
    assert "genrec embed" in line
    assert not (tmp_path / "s1" / "checkpoints").exists()


def test_stage1_refuses_embeddings_made_for_other_item_texts(dataset: Path) -> None:
    _, items = load_genrec_dataset(dataset)
    ids = list(items["item_id"])
    template = default_template(items.column_names)
    good = _embeddings_for(dataset, items_hash=items_hash(items, template), template=template)
    assert load_semantic_embeddings(good, ids, items=items).item_ids == ids
    shuffled = good.reorder(ids[::-1])  # the same rows in another order: the same catalogue and texts
    assert load_semantic_embeddings(shuffled, ids, items=items).item_ids == ids
    stale = _embeddings_for(dataset, items_hash="0" * 64, template=template)
    with pytest.raises(ValueError, match="were made for other item texts than this dataset's"):
        load_semantic_embeddings(stale, ids, items=items)
    other_template = _embeddings_for(dataset, items_hash=items_hash(items, template), template="{title}")
    with pytest.raises(ValueError, match="other item texts"):
        load_semantic_embeddings(other_template, ids, items=items)


def _renamed(dataset_splits: dict, ids: list[str], old: str, new: str) -> tuple[dict, list[str]]:
    splits = {name: [(user, [new if i == old else i for i in items]) for user, items in rows]
              for name, rows in dataset_splits.items()}
    return splits, [new if i == old else i for i in ids]


def _splits(n_users: int = 5, length: int = 6) -> tuple[dict, list[str]]:
    ids = [str(i) for i in range(1, 9)]
    splits: dict = {"train": [], "validation": [], "test": []}
    for user in range(n_users):
        seq = [ids[(user + k) % len(ids)] for k in range(length)]
        splits["train"] += [(f"u{user}", seq[: t + 1]) for t in range(1, length - 2)]
        splits["validation"].append((f"u{user}", seq[:-1]))
        splits["test"].append((f"u{user}", seq))
    return splits, ids


def test_reserved_token_ids_are_the_tokenizers_specials() -> None:
    assert RESERVED_ITEM_IDS == SPECIAL_TOKENS


@pytest.mark.parametrize("bad", ["<pad>", "</s>", "<unk>", "<a_1>", "<ab_12>"])
def test_item_ids_that_are_tokenizer_tokens_are_refused(tmp_path: Path, capsys, bad: str) -> None:
    """``tokenizer("<pad> 2")`` reads ``<pad>`` as the pad token while ``encode_history`` reads it as the item."""
    splits, ids = _renamed(*_splits(), "1", bad)
    data = write_dataset(tmp_path / "data", splits, ids)
    with pytest.raises(ValueError, match=r"tokens of genrec's semantic-ID tokenizer"):
        load_genrec_dataset(data)
    assert main(["prepare", "hub", "--path", str(data), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys, "prepare")
    assert bad in line and "rename those items" in line
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_is_not_built_over_item_ids_that_are_its_tokens() -> None:
    table = CodeTable.from_codes(["1", "<pad>", "<b_0>"], np.array([[0], [1], [2]]), codebook_sizes=[3])
    with pytest.raises(ValueError, match=r"item id\(s\) \['<pad>', '<b_0>'\] of the code table are tokens"):
        SemanticIDTokenizer.from_code_table(table)


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_item_ids_are_refused_at_prepare_and_load(tmp_path: Path, capsys, bad: str) -> None:
    splits, ids = _renamed(*_splits(), "1", bad)
    data = write_dataset(tmp_path / "data", splits, ids)
    with pytest.raises(ValueError, match=r"item id\(s\) are empty or only whitespace"):
        load_genrec_dataset(data)
    assert main(["prepare", "hub", "--path", str(data), "--out", str(tmp_path / "out")]) == 2
    assert "empty or only whitespace" in one_line_error(capsys, "prepare")
    assert main(["run", "--dataset", str(data), "--source", "hub", "--out", str(tmp_path / "run")]) == 2
    assert "empty or only whitespace" in one_line_error(capsys, "run")


@pytest.mark.parametrize("length", [1, 3])
def test_prepare_refuses_a_dataset_no_user_can_be_trained_on(tmp_path: Path, capsys, length: int) -> None:
    """Every user with 1 interaction (0 users kept) or with 3 (validation and test only, no train row)."""
    raw = tmp_path / "raw"
    write_s3rec(raw)
    lines = (raw / "sequences.txt").read_text().splitlines()
    (raw / "sequences.txt").write_text("\n".join(" ".join(line.split()[: 1 + length]) for line in lines) + "\n")
    assert main(["prepare", "s3rec", "--path", str(raw), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys, "prepare")
    assert "no user can be trained on: the train split is empty" in line and "of 60 read" in line
    assert not (tmp_path / "out").exists()


def test_a_dataset_without_train_rows_is_refused_before_any_training(dataset: Path, model_dir: Path, tmp_path: Path,
                                                                     capsys) -> None:
    from datasets import Dataset

    from genrec.data_scripts.splits import sequence_features

    splits, ids = _splits()
    data = write_dataset(tmp_path / "data", splits, ids)
    Dataset.from_dict({"user_id": [], "item_ids": [], "timestamps": []}, features=sequence_features()).to_parquet(
        data / "sequences" / "train-00000-of-00001.parquet"
    )
    expected = "config 'sequences': split 'train' has no rows"
    with pytest.raises(ValueError, match=expected):
        load_genrec_dataset(data)
    assert main(["prepare", "hub", "--path", str(data), "--out", str(tmp_path / "out")]) == 2
    assert expected in one_line_error(capsys, "prepare")
    tok = tmp_path / "tok"
    codes = np.arange(len(ids) * 2).reshape(-1, 2) % 4
    SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4])).save_pretrained(str(tok))
    assert main(["train", "--data", str(data), "--tokenizer", str(tok), "--out", str(tmp_path / "s2"),
                 "--max-steps", "1"]) == 2
    assert expected in one_line_error(capsys, "train")
    assert not (tmp_path / "s2" / "checkpoints").exists()


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--codebook-size", "0", "codebook_size (--codebook-size) must be an int >= 1"),
    ("--levels", "0", "num_levels (--levels) must be an int >= 1"),
])
def test_impossible_quantizer_settings_are_refused_before_any_stage(dataset: Path, tmp_path: Path, capsys,
                                                                   flag: str, value: str, expected: str) -> None:
    out = tmp_path / "run"
    assert main(["run", "--dataset", str(dataset), "--source", "hub", "--out", str(out), flag, value]) == 2
    assert expected in one_line_error(capsys, "run")
    assert not out.exists()  # refused before the run folder, the data or any stage
    missing = tmp_path / "no-embeddings.safetensors"  # checked before the embeddings are even read
    assert main(["quantize", "--embeddings", str(missing), "--out", str(tmp_path / "q"), flag, value]) == 2
    assert expected in one_line_error(capsys, "quantize")


@pytest.mark.parametrize(("cls", "values", "message"), [
    (UngerConfig, {"d_modle": 16}, "UngerConfig: unknown config key 'd_modle'; did you mean 'd_model'?"),
    (UngerFusionConfig, {"hiden_size": 16}, "UngerFusionConfig: unknown config key 'hiden_size'; did you mean 'hidden_size'?"),
    (TTDSConfig, {"lora_rank": 4}, "TTDSConfig: unknown config key 'lora_rank'; did you mean 'lora_r'?"),
    (MSCGRecConfig, {"decode_modalty": "text"},
     "MSCGRecConfig: unknown config key 'decode_modalty'; did you mean 'decode_modality'?"),
])
def test_unknown_config_keys_name_the_closest_valid_key(cls, values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        cls(**values)
    with pytest.raises(ValueError, match="unknown config key 'zzz_qqq'; valid keys: "):
        cls(zzz_qqq=1)


def test_unknown_keys_in_config_json_and_in_config_overrides_are_one_line(model_dir: Path, dataset: Path,
                                                                          tmp_path: Path, capsys) -> None:
    edited = copy_folder(model_dir, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "d_modle": 32}))
    assert main(["recommend", "--model", str(edited), "--history", "1"]) == 2
    assert "UngerConfig: unknown config key 'd_modle'; did you mean 'd_model'?" in one_line_error(capsys, "recommend")
    emb = _embeddings_for(dataset).save(tmp_path / "emb.safetensors")
    assert main(["stage1", "--data", str(dataset), "--embeddings", str(emb), "--out", str(tmp_path / "s1"),
                 "--config", '{"hiden_size": 16}']) == 2
    assert "did you mean 'hidden_size'?" in one_line_error(capsys, "stage1")
    assert not (tmp_path / "s1" / "checkpoints").exists()


#: Keys transformers (5.x, and the 4.x releases older files come from) writes into every config.json.
TRANSFORMERS_KEYS = {
    "transformers_version": "4.46.0", "_name_or_path": "somewhere", "torch_dtype": "float32", "dtype": "float32",
    "architectures": ["X"], "output_attentions": False, "output_hidden_states": False, "return_dict": True,
    "torchscript": False, "use_bfloat16": False, "pruned_heads": {}, "chunk_size_feed_forward": 0,
    "is_decoder": False, "add_cross_attention": False, "tie_encoder_decoder": False, "max_length": 20,
    "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1, "temperature": 1.0, "top_k": 50,
    "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "bad_words_ids": None, "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "finetuning_task": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "tokenizer_class": None, "prefix": None, "sep_token_id": None, "task_specific_params": None,
    "problem_type": None, "tf_legacy_loss": False, "cross_attention_hidden_size": None, "typical_p": 1.0,
    "diversity_penalty": 0.0, "num_beam_groups": 1, "encoder_no_repeat_ngram_size": 0, "_commit_hash": None,
    "_attn_implementation_autoset": True, "genrec_version": "0.1.0",
}


def _saved_configs(tmp_path: Path) -> dict[str, Path]:
    """One saved config of every genrec family, as today's save_pretrained writes it."""
    folders = {}
    configs = {
        "unger": UngerConfig(num_code_levels=2, codebook_sizes=[4, 4], vocab_size=12, d_model=16, num_attention_heads=2),
        "unger_fusion": UngerFusionConfig(num_items=5, semantic_dim=4, hidden_size=8),
        "mscgrec": MSCGRecConfig(num_code_levels=2, codebook_sizes=[4, 4], vocab_size=12, d_model=16,
                                 num_attention_heads=2, history_modalities=["text"], history_codebook_sizes=[[4, 2]]),
        "ttds": TTDSConfig(num_levels=2, codebook_size=4, llm_config={"hidden_size": 32}),
    }
    for name, config in configs.items():
        config.save_pretrained(tmp_path / name)
        folders[name] = tmp_path / name
    return folders


def test_every_saved_config_still_loads_with_transformers_and_older_genrec_keys(tmp_path: Path) -> None:
    from transformers import AutoConfig

    for name, folder in _saved_configs(tmp_path).items():
        fresh = AutoConfig.from_pretrained(folder)
        assert fresh.model_type == name
        saved = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**TRANSFORMERS_KEYS, **saved}))
        old = AutoConfig.from_pretrained(folder)
        assert type(old) is type(fresh)
        for key, value in saved.items():
            if key not in ("transformers_version", "_name_or_path", "dtype"):
                assert getattr(old, key) == getattr(fresh, key), (name, key, value)
    # names of genrec before 0.2 (Stage I) and configs saved before TTDS's tower fields still load
    legacy = UngerFusionConfig.from_dict({"num_items": 5, "num_heads": 4, "num_layers": 3, "max_history": 7})
    assert (legacy.num_attention_heads, legacy.num_hidden_layers, legacy.max_history_items) == (4, 3, 7)
    old_ttds = TTDSConfig.from_dict({"num_levels": 2, "codebook_size": 4})
    assert old_ttds.dm_vae_token_loss == "literal"


def test_run_folder_configs_of_every_family_reload(model_dir: Path) -> None:
    """A model folder's config.json (written by save_pretrained with auto_map, dtype, architectures) loads."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    assert isinstance(config, UngerConfig) and config.d_model == 16
