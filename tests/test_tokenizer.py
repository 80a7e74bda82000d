"""SemanticIDTokenizer: vocabulary, AutoTokenizer round trip, portable tokenizer.json, histories, decoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PretrainedConfig

from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import (
    SemanticIDTokenizer,
    code_token,
    level_letter,
    register_auto_tokenizer,
    semantic_id_vocab,
)


class _TokenizerTestConfig(PretrainedConfig):
    """A config class to key the AutoTokenizer registration in tests (genrec registers its model configs)."""

    model_type = "genrec_semantic_id_test"


@pytest.fixture(scope="module")
def table() -> CodeTable:
    # a: (0,1,0)  b: (0,1,1)  c: (2,0,0)  d: (1,1,0)   -> sizes [3, 2, 2], offsets [4, 7, 9]
    codes = np.array([[0, 1], [0, 1], [2, 0], [1, 1]])
    return CodeTable.from_codes(["a", "b", "c", "d"], codes, codebook_sizes=[3, 2])


@pytest.fixture(scope="module")
def tok(table: CodeTable) -> SemanticIDTokenizer:
    return SemanticIDTokenizer.from_code_table(table)


def test_vocabulary_layout(tok: SemanticIDTokenizer) -> None:
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == [
        "<pad>",
        "</s>",
        "<s>",
        "<unk>",
        "<a_0>",
        "<a_1>",
        "<a_2>",
        "<b_0>",
        "<b_1>",
        "<c_0>",
        "<c_1>",
    ]
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert (
        tok.code_token_offsets == [4, 7, 9] and tok.num_code_levels == 3 and tok.code_level_sizes == [3, 2, 2]
    )
    assert tok("<a_2> <b_0> <c_1>")["input_ids"] == [6, 7, 10]
    with pytest.raises(ValueError, match="'<zz>' is neither an item id"):
        tok("<a_2> <b_0> <c_1> <zz>")  # never a silent <unk>
    assert [level_letter(d) for d in (0, 1, 25, 26, 27, 701, 702)] == ["a", "b", "z", "aa", "ab", "zz", "aaa"]
    assert code_token(2, 7) == "<c_7>" and len(semantic_id_vocab([256, 256, 256])) == 4 + 768


def test_decode_and_batch_decode_keep_working(tok: SemanticIDTokenizer) -> None:
    batch = torch.tensor([[2, 4, 8, 9, 1], [2, 6, 7, 9, 1]])
    assert tok.decode(batch, skip_special_tokens=True) == ["<a_0> <b_1> <c_0>", "<a_2> <b_0> <c_0>"]
    assert tok.batch_decode(batch) == ["<s> <a_0> <b_1> <c_0> </s>", "<s> <a_2> <b_0> <c_0> </s>"]
    assert tok.decode([4, 8, 10]) == "<a_0> <b_1> <c_1>"


# ------------------------------------------------------------------------------------------------ persistence


def test_round_trip_through_auto_tokenizer(
    tok: SemanticIDTokenizer, table: CodeTable, tmp_path: Path
) -> None:
    register_auto_tokenizer(_TokenizerTestConfig)
    files = {Path(f).name for f in tok.save_pretrained(tmp_path)}
    assert {"tokenizer.json", "tokenizer_config.json", "code_table.json", "code_table.parquet"} <= files
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "SemanticIDTokenizer"
    assert config["code_table_hash"] == table.content_hash and config["code_level_sizes"] == [3, 2, 2]
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is SemanticIDTokenizer
    assert loaded.get_vocab() == tok.get_vocab() and loaded.code_token_offsets == tok.code_token_offsets
    assert loaded.code_table == table and loaded.code_table.codes.tobytes() == table.codes.tobytes()
    assert loaded.special_tokens_map == tok.special_tokens_map and loaded.padding_side == "left"
    histories = [["a", "c"], ["d"]]
    assert torch.equal(
        loaded.encode_history(histories)["input_ids"], tok.encode_history(histories)["input_ids"]
    )
    again = SemanticIDTokenizer.from_pretrained(tmp_path)
    assert again.code_table.content_hash == table.content_hash


def test_right_padding_choice_survives_save(table: CodeTable, tmp_path: Path) -> None:
    tok = SemanticIDTokenizer.from_code_table(table, padding_side="right")
    tok.save_pretrained(tmp_path)
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path)
    assert loaded.padding_side == "right"
    assert loaded.encode_history([["a", "b"], ["c"]])["attention_mask"].tolist() == [
        [1] * 6,
        [1, 1, 1, 0, 0, 0],
    ]


def test_refuses_a_code_table_with_another_hash(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    other = CodeTable.from_codes(
        ["a", "b", "c", "e"], np.array([[0, 1], [0, 1], [2, 0], [1, 1]]), codebook_sizes=[3, 2]
    )
    other.save(tmp_path)  # same shape, different ids: a valid table, but not this tokenizer's
    with pytest.raises(ValueError, match="tokenizer_config.json records .*different runs"):
        SemanticIDTokenizer.from_pretrained(tmp_path)


def test_refuses_a_tokenizer_json_of_another_table(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path / "good")
    bigger = CodeTable.from_codes(["a", "b"], np.array([[0, 0], [4, 1]]))
    SemanticIDTokenizer.from_code_table(bigger).save_pretrained(tmp_path / "other")
    (tmp_path / "good" / "tokenizer.json").write_bytes((tmp_path / "other" / "tokenizer.json").read_bytes())
    with pytest.raises(ValueError, match=r"tokenizer\.json does not hold the vocabulary of the code table"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "good")


def test_missing_code_table_is_a_clear_error(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    (tmp_path / "code_table.parquet").unlink()
    with pytest.raises(ValueError, match="needs its code table"):
        SemanticIDTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="filename_prefix"):
        tok.save_pretrained(tmp_path / "p", filename_prefix="x")


_PLAIN = """
import importlib.abc, json, sys
class _NoGenrec(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "genrec" or name.startswith("genrec."):
            raise ImportError("genrec is not installed here")
sys.meta_path.insert(0, _NoGenrec())
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast
folder = sys.argv[1]
plain = Tokenizer.from_file(folder + "/tokenizer.json")
fast = PreTrainedTokenizerFast(tokenizer_file=folder + "/tokenizer.json")
try:
    AutoTokenizer.from_pretrained(folder)  # custom code: transformers asks for trust_remote_code
    refused = ""
except ValueError as error:
    refused = str(error)
auto = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # the files saved in the folder
text = "<a_0> <b_1> <c_0> </s>"
print("\\n" + json.dumps({  # after transformers' trust_remote_code prompt (no newline)
    "plain": plain.encode(text).ids, "fast": fast(text)["input_ids"], "auto": auto(text)["input_ids"],
    "auto_class": type(auto).__name__, "auto_module": type(auto).__module__, "vocab": plain.get_vocab_size(),
    "pad": auto.pad_token_id, "items": auto("a d")["input_ids"], "refused": refused,
    "history": auto.encode_history([["a", "d"]], return_tensors=None)["input_ids"],
    "genrec_loaded": any(m.startswith("genrec") for m in sys.modules),
}))
"""


def test_tokenizer_json_loads_without_genrec(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_semantic_id.SemanticIDTokenizer"
    assert {"tokenization_semantic_id.py", "code_table.py"} <= {p.name for p in tmp_path.iterdir()}
    result = subprocess.run(
        [sys.executable, "-c", _PLAIN, str(tmp_path)], check=True, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, cwd=tmp_path, env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = tok("<a_0> <b_1> <c_0> </s>")["input_ids"]
    assert expected == [4, 8, 9, 1]
    assert out["plain"] == out["fast"] == out["auto"] == expected
    assert out["vocab"] == len(tok) and out["pad"] == 0 and not out["genrec_loaded"]
    assert "trust_remote_code" in out["refused"]  # no silent fallback to a generic tokenizer
    # with trust_remote_code: genrec's tokenizer from the folder's own source, code table included
    assert out["auto_class"] == "SemanticIDTokenizer" and out["auto_module"].startswith("transformers_modules.")
    assert out["items"] == tok("a d")["input_ids"] == [4, 8, 9, 5, 8, 9]
    assert out["history"] == tok.encode_history([["a", "d"]], return_tensors=None)["input_ids"]


# ------------------------------------------------------------------------------------------------ encoding


def test_encode_history_truncates_oldest_and_pads_left(tok: SemanticIDTokenizer) -> None:
    enc = tok.encode_history([["a", "b", "c"], ["d"]], max_items=2)
    a, b, c, d = ([4, 8, 9], [4, 8, 10], [6, 7, 9], [5, 8, 9])
    assert enc["input_ids"].dtype == torch.long
    assert enc["input_ids"].tolist() == [b + c, [0, 0, 0] + d]  # "a" (oldest) dropped
    assert enc["attention_mask"].tolist() == [[1] * 6, [0, 0, 0, 1, 1, 1]]
    right = tok.encode_history([["a", "b", "c"], ["d"]], padding_side="right", return_tensors=None)
    assert right["input_ids"] == [a + b + c, d + [0] * 6]
    assert right["attention_mask"] == [[1] * 9, [1, 1, 1] + [0] * 6]
    as_np = tok.encode_history([["c"]], return_tensors="np")
    assert isinstance(as_np["input_ids"], np.ndarray) and as_np["input_ids"].tolist() == [c]


def test_encode_history_unknown_items_raise_or_are_counted(tok: SemanticIDTokenizer, caplog) -> None:
    with pytest.raises(KeyError, match="item id 'zz' in history 1 is not in the code table"):
        tok.encode_history([["a"], ["b", "zz"]])
    with pytest.raises(ValueError, match=r"empty histories \(indices \[1\]\)"):
        tok.encode_history([["a"], []])
    with pytest.raises(TypeError, match="must be a list of item ids"):
        tok.encode_history(["abc"])
    with pytest.raises(ValueError, match="max_items"):
        tok.encode_history([["a"]], max_items=0)
    with caplog.at_level("WARNING"):
        enc, stats = tok.encode_history(
            [["zz", "a", "b", "c"], ["yy"], [], ["d"]], on_unknown="skip", max_items=2, return_stats=True
        )
    assert stats.num_skipped_items == 2 and stats.skipped_per_history == [1, 1, 0, 0]
    assert stats.empty_histories == [1, 2] and stats.num_truncated_items == 1 and stats.num_items == 6
    assert "skipped 2 item id(s)" in caplog.text and "no known item" in caplog.text
    assert enc["input_ids"].tolist()[1] == [0] * 6 and enc["attention_mask"].tolist()[2] == [0] * 6
    assert enc["input_ids"].tolist()[0] == [4, 8, 10, 6, 7, 9]


def test_encode_targets(tok: SemanticIDTokenizer) -> None:
    assert tok.encode_targets(["d", "a"]).tolist() == [[5, 8, 9, 1], [4, 8, 9, 1]]
    assert tok.encode_targets(["c"], add_eos=False).tolist() == [[6, 7, 9]]
    with pytest.raises(KeyError, match="'nope'"):
        tok.encode_targets(["a", "nope"])


# ------------------------------------------------------------------------------------------------ decoding


def test_decode_items_valid_and_invalid(tok: SemanticIDTokenizer) -> None:
    sequences = torch.tensor(
        [
            [2, 4, 8, 10, 1, 0],  # <s> b </s> <pad>          -> b
            [0, 0, 2, 5, 8, 9],  # left-padded, no eos         -> d
            [2, 4, 8, 10, 4, 1],  # a code too many            -> invalid
            [2, 4, 7, 9, 1, 0],  # (0,0,0): no such item       -> invalid
            [2, 4, 1, 9, 1, 0],  # eos inside the code         -> invalid
            [2, 8, 4, 9, 1, 0],  # level tokens in wrong order -> invalid
            [2, 4, 8, 1, 0, 0],  # too short                   -> invalid
            [2, 0, 0, 0, 0, 0],  # nothing generated           -> invalid
        ]
    )
    items, invalid = tok.decode_items(sequences, return_invalid_mask=True)
    assert items == ["b", "d", None, None, None, None, None, None]
    assert invalid.tolist() == [False, False, True, True, True, True, True, True] and int(invalid.sum()) == 6
    assert tok.decode_items([[4, 8, 9], [6, 7, 9, 1]]) == ["a", "c"]  # ragged lists, bare codes
    assert tok.decode_items([6, 7, 9]) == ["c"]  # one sequence
    assert tok.decode_items([torch.tensor([2, 6, 7, 9]), torch.tensor([2, 4, 8, 9, 1])]) == ["c", "a"]
    beams = sequences[:4].reshape(2, 2, 6)  # (batch, beams, length)
    assert tok.decode_item_indices(beams).tolist() == [[1, 3], [-1, -1]]
    assert tok.decode_items(torch.zeros((3, 2), dtype=torch.long)) == [None, None, None]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_targets_decode_back_to_their_items(sizes: list[int], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, k, size=n) for k in sizes], axis=1)
    table = CodeTable.from_codes([f"x{i}" for i in range(n)], codes, codebook_sizes=sizes)
    tok = SemanticIDTokenizer.from_code_table(table)
    items = [table.item_ids[i] for i in rng.permutation(n)]
    labels = tok.encode_targets(items)
    generated = torch.cat([torch.full((n, 1), tok.bos_token_id), labels], dim=1)
    assert tok.decode_items(generated) == items
    assert tok.decode_items(labels[:, :-1]) == items
    for depth, offset in enumerate(tok.code_token_offsets):
        assert tok.convert_ids_to_tokens(offset) == code_token(depth, 0)
