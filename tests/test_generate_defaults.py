"""Plain ``model.generate(**tokenizer(...))`` recommends only existing items, with no extra argument; a
processor of another code table is refused; the tokenizer reads item ids (never silent ``<unk>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_unger_model import HISTORIES, IDS, make_tokenizer, tiny_model

from genrec.modeling.constrained_decoding import SemanticIDLogitsProcessor, prefix_index_from_codes
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder written the way genrec writes runs: model (with its item codes) + tokenizer."""
    tok = make_tokenizer()
    model = tiny_model(tok, integrated_dim=8)
    model.set_code_table(tok)
    folder = tmp_path_factory.mktemp("unger")
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    return folder


def _inputs(tok: SemanticIDTokenizer) -> dict[str, torch.Tensor]:
    return dict(tok([" ".join(h) for h in HISTORIES], padding=True, return_tensors="pt"))


def test_plain_generate_of_a_loaded_model_yields_only_items(saved: Path) -> None:
    model = UngerForGenerativeRecommendation.from_pretrained(saved).eval()
    tok = SemanticIDTokenizer.from_pretrained(str(saved))
    assert model.has_code_table
    gen = model.generation_config
    assert (gen.max_new_tokens, gen.num_beams, gen.num_return_sequences) == (tok.num_code_levels + 1, 10, 10)
    out = model.generate(**_inputs(tok))
    assert out.shape == (len(HISTORIES) * 10, tok.num_code_levels + 2)  # <s>, D codes, </s>
    items = tok.decode_items(out)
    assert None not in items
    per_user = [items[i : i + 10] for i in range(0, len(items), 10)]
    assert tok.decode_items(out, num_return_sequences=10) == per_user  # grouped per history
    assert all(len(set(row)) == 10 for row in per_user)
    # the same ranking as recommend() without history exclusion (same beams, scores and order)
    expected = model.recommend(HISTORIES, tok, k=10, num_beams=10, exclude_history=False)
    assert per_user == [[item for item, _ in row] for row in expected]
    # the constraint is what makes the difference: unconstrained decoding of this model emits non-items
    free = model.generate(**_inputs(tok), constrain_to_items=False)
    assert None in tok.decode_items(free)


def test_an_explicit_processor_still_works_and_is_checked(saved: Path) -> None:
    model = UngerForGenerativeRecommendation.from_pretrained(saved).eval()
    tok = SemanticIDTokenizer.from_pretrained(str(saved))
    inputs = _inputs(tok)
    own = SemanticIDLogitsProcessor.from_tokenizer(tok, num_beams=10)
    assert own.code_table_hash == tok.code_table.content_hash
    assert torch.equal(model.generate(**inputs, logits_processor=[own]), model.generate(**inputs))
    greedy = model.generate(**inputs, num_beams=1, num_return_sequences=1)
    assert greedy.shape[0] == len(HISTORIES) and None not in tok.decode_items(greedy)

    # issue 13 case 1: a same-shaped tokenizer from another quantization (same items and sizes, other codes)
    other = make_tokenizer(seed=3)
    assert len(other) == len(tok) and other.code_token_offsets == tok.code_token_offsets
    with pytest.raises(ValueError, match="built for code table"):
        model.generate(**inputs, logits_processor=[SemanticIDLogitsProcessor.from_tokenizer(other, num_beams=10)])
    # the same codes given to other items: the same code tree, refused by the code table's hash
    shuffled = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(
        IDS[::-1], tok.code_table.codes[:, :2], codebook_sizes=[4, 4]))
    assert SemanticIDLogitsProcessor.from_tokenizer(shuffled).fingerprint == own.fingerprint
    with pytest.raises(ValueError, match="built for code table"):
        model.generate(**inputs, logits_processor=[SemanticIDLogitsProcessor.from_tokenizer(shuffled)])
    # ... and a hand-built processor of other codes, which carries no hash, by its code tree
    bare = SemanticIDLogitsProcessor(other.code_table.prefix_index(), other.code_token_offsets, prompt_length=1,
                                     eos_token_id=1, num_beams=10)
    assert bare.code_table_hash is None
    with pytest.raises(ValueError, match="codes differ from this model's item codes"):
        model.generate(**inputs, logits_processor=[bare])
    # a hand-built processor of the right codes is accepted
    right = SemanticIDLogitsProcessor(tok.code_table.prefix_index(), tok.code_token_offsets, prompt_length=1,
                                      eos_token_id=1, num_beams=10)
    assert torch.equal(model.generate(**inputs, logits_processor=[right]), model.generate(**inputs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_index_from_codes_equals_the_code_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=(60, 2))  # many collisions: a third (collision) level
    table = CodeTable.from_codes([f"i{k}" for k in range(60)], codes, codebook_sizes=[3, 3])
    ours, theirs = prefix_index_from_codes(table.codes, table.codebook_sizes), table.prefix_index()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    with pytest.raises(ValueError, match="outside the codebook sizes"):
        prefix_index_from_codes(np.full((2, table.num_levels), -1), table.codebook_sizes)


def test_a_checkpoint_without_item_codes_asks_for_them(saved: Path, tmp_path: Path) -> None:
    """Folders written before models carried their codes: no silent unconstrained decoding."""
    old = tmp_path / "old"
    old.mkdir()
    for path in saved.iterdir():
        if path.is_file():
            (old / path.name).write_bytes(path.read_bytes())
    weights = load_file(old / "model.safetensors")
    codes = weights.pop("item_codes")
    save_file(weights, old / "model.safetensors", metadata={"format": "pt"})
    model = UngerForGenerativeRecommendation.from_pretrained(old).eval()
    tok = SemanticIDTokenizer.from_pretrained(str(old))
    assert not model.has_code_table
    with pytest.raises(ValueError, match="carries no item codes"):
        model.generate(**_inputs(tok))
    assert None not in [i for row in model.recommend(HISTORIES, tok, k=3) for i, _ in row]  # recommend is fine
    model.set_code_table(tok)
    assert torch.equal(model.item_codes, codes) and None not in tok.decode_items(model.generate(**_inputs(tok)))
    # resuming training from such a checkpoint (load_state_dict, strict) keeps the installed codes
    fresh = tiny_model(tok, integrated_dim=8)
    fresh.set_code_table(tok)
    fresh.load_state_dict(weights, strict=True)
    assert torch.equal(fresh.item_codes, codes)
    with pytest.raises(ValueError, match="code table does not match"):
        model.set_code_table(make_tokenizer(seed=1))


def test_tokenizer_reads_item_ids() -> None:
    tok = make_tokenizer()
    batch = tok([" ".join(h) for h in HISTORIES], padding=True, return_tensors="pt")
    expected = tok.encode_history(HISTORIES)
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    one = tok(IDS[2:5], is_split_into_words=True)["input_ids"]  # a pre-split history is one history
    assert one == tok.encode_history([IDS[2:5]], return_tensors=None)["input_ids"][0]
    assert tok(["item1", "item5"])["input_ids"] == [tok("item1")["input_ids"], tok("item5")["input_ids"]]
    assert tok.decode(tok("item1")["input_ids"]).split() == [f"<{c}_{v}>" for c, v in
                                                            zip("abc", tok.code_table.code_of("item1"), strict=False)]
    with pytest.raises(ValueError, match="'1' is neither an item id"):
        tok("1 50 181")
    with pytest.raises(ValueError, match="'nope' is neither an item id"):
        tok(["item1", "nope"], is_split_into_words=True)
