"""MSCGRec: history items read in several modalities, decoding in one; masking; save / reload; Auto classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import genrec  # noqa: F401  (registers the Auto classes)
from genrec.modeling.configuration_mscgrec import MSCGRecConfig
from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

N = 24
IDS = [f"i{k}" for k in range(N)]


def collaborative_tokenizer() -> SemanticIDTokenizer:
    codes = np.random.default_rng(0).integers(0, 4, size=(N, 2))
    return SemanticIDTokenizer.from_code_table(CodeTable.from_codes(IDS, codes, codebook_sizes=[4, 4]))


def text_table(items: list[str] | None = None, seed: int = 1, *, codes: np.ndarray | None = None) -> CodeTable:
    """Distinct 3 x 3 x 3 text codes (so the collision level always has size 1 and the sizes never change)."""
    items = IDS if items is None else items
    if codes is None:
        picks = np.random.default_rng(seed).permutation(27)[: len(items)]
        codes = np.stack(np.unravel_index(picks, (3, 3, 3)), axis=1)
    return CodeTable.from_codes(items, codes, codebook_sizes=[3, 3, 3], always_append=True)


def build(tokenizer: SemanticIDTokenizer, table: CodeTable, **overrides: object) -> MSCGRecForGenerativeRecommendation:
    values: dict[str, object] = dict(
        d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2, history_modalities=["text"],
        history_codebook_sizes=[table.codebook_sizes], constrained_training=True,
    )
    values.update(overrides)
    torch.manual_seed(0)
    model = MSCGRecForGenerativeRecommendation(MSCGRecConfig.from_tokenizer(tokenizer, **values))
    model.set_code_table(tokenizer)
    model.set_prefix_index(tokenizer.code_table.prefix_index(), tokenizer.code_token_offsets)
    model.set_modality_codes(tokenizer, {"text": table})
    return model


def encode(tokenizer: SemanticIDTokenizer, histories: list[list[str]]) -> dict[str, torch.Tensor]:
    return tokenizer.encode_history(histories, max_items=20, return_tensors="pt")


def test_config_checks() -> None:
    tokenizer = collaborative_tokenizer()
    ok = dict(history_modalities=["text"], history_codebook_sizes=[[3, 3, 3, 1]])
    config = MSCGRecConfig.from_tokenizer(tokenizer, **ok)
    assert config.num_modalities == 2 and config.history_levels == [(0, 3), (0, 3), (0, 3), (0, 1)]
    with pytest.raises(ValueError, match="per_item"):
        MSCGRecConfig.from_tokenizer(tokenizer, history_mode="flattened", **ok)
    with pytest.raises(ValueError, match="1 history modalities but 2 lists"):
        MSCGRecConfig.from_tokenizer(tokenizer, history_modalities=["text"], history_codebook_sizes=[[3], [3]])
    with pytest.raises(ValueError, match="distinct"):
        MSCGRecConfig.from_tokenizer(tokenizer, history_modalities=["t", "t"], history_codebook_sizes=[[3], [3]])
    with pytest.raises(ValueError, match="read from the input codes"):
        MSCGRecConfig.from_tokenizer(tokenizer, history_modalities=["collaborative"], history_codebook_sizes=[[3]])
    with pytest.raises(ValueError, match=r"mask_probability must be in \[0, 1\]"):
        MSCGRecConfig.from_tokenizer(tokenizer, mask_probability=1.5, **ok)


def test_history_modalities_reach_the_encoder_and_missing_ones_are_masked() -> None:
    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table).eval()
    inputs = encode(tokenizer, [["i1", "i2", "i3"]])
    base = model.get_encoder()(**inputs).last_hidden_state
    # other text codes for i2 change the history's encoding
    codes = table.codes[:, :3].copy()
    used = {tuple(c) for c in codes.tolist()}
    codes[table.index_of("i2")] = next(c for c in np.ndindex(3, 3, 3) if c not in used)
    other = text_table(codes=codes)
    changed = build(tokenizer, other).eval()
    changed.load_state_dict({k: v for k, v in model.state_dict().items() if "modality_codes" not in k}, strict=False)
    assert not torch.allclose(changed.get_encoder()(**inputs).last_hidden_state, base)
    # an item that lacks the text modality uses the mask tokens: same as masking its codes by hand
    partial = text_table([i for i in IDS if i != "i2"])
    lacking = build(tokenizer, partial).eval()
    assert lacking.modality_coverage() == {"text": pytest.approx((N - 1) / N)}
    i2 = tokenizer.code_table.index_of("i2")
    assert bool((lacking.encoder.modality_codes[i2] == -1).all())
    by_hand = build(tokenizer, table).eval()
    by_hand.load_state_dict(lacking.state_dict())
    assert torch.equal(by_hand.encoder.modality_codes, lacking.encoder.modality_codes)


def test_training_masks_modalities_and_learns() -> None:
    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table, mask_probability=1.0)
    inputs = encode(tokenizer, [["i1", "i2", "i3"], ["i4", "i5"]])
    model.train()
    torch.manual_seed(3)
    a = model.get_encoder()(**inputs).last_hidden_state
    torch.manual_seed(4)
    b = model.get_encoder()(**inputs).last_hidden_state
    assert not torch.allclose(a, b)  # a different modality of each item hidden per draw
    model.eval()
    assert torch.equal(model.get_encoder()(**inputs).last_hidden_state, model.get_encoder()(**inputs).last_hidden_state)
    # the loss trains the modality tokens and the decoding modality's mask tokens
    model.train()
    labels = tokenizer.encode_targets(["i6", "i7"], return_tensors="pt")
    out = model(**inputs, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.encoder.modality_tokens.weight.grad.abs().sum() > 0
    assert model.encoder.decode_mask_tokens.grad is not None


def test_tables_are_checked() -> None:
    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table)
    recorded = model.config.history_code_hashes[0]
    assert recorded == table.content_hash
    with pytest.raises(ValueError, match="hash"):
        model.set_modality_codes(tokenizer, {"text": text_table(seed=5)})
    with pytest.raises(ValueError, match="missing"):
        model.set_modality_codes(tokenizer, {})
    wrong = CodeTable.from_codes(IDS, np.zeros((N, 1), dtype=np.int64) + np.arange(N)[:, None] % 5,
                                 codebook_sizes=[5], always_append=True)
    with pytest.raises(ValueError, match="codebook sizes"):
        model.set_modality_codes(tokenizer, {"text": wrong})
    with pytest.raises(ValueError, match="shares no item"):
        build(tokenizer, text_table(["x1", "x2"]))


def test_save_reload_auto_and_recommend_only_valid_items(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(str(tmp_path))
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert type(again) is MSCGRecForGenerativeRecommendation
    assert torch.equal(again.encoder.modality_codes, model.encoder.modality_codes)
    assert again.config.history_code_hashes == model.config.history_code_hashes
    tok = AutoTokenizer.from_pretrained(tmp_path)
    histories = [["i1", "i2", "i3"], ["i9"]]
    ours = model.recommend(histories, tokenizer, k=5, num_beams=5)
    theirs = again.recommend(histories, tok, k=5, num_beams=5)
    assert [[i for i, _ in r] for r in ours] == [[i for i, _ in r] for r in theirs]
    assert all(item in set(IDS) for r in theirs for item, _ in r)
    # plain generate() is constrained by the model's own code table
    out = again.generate(**encode(tok, histories))
    codes = out[:, 1:-1] - torch.tensor(tok.code_token_offsets)
    known = {tuple(c) for c in tok.code_table.codes.tolist()}
    assert all(tuple(row) in known for row in codes.tolist())


def test_train_stage2_trains_mscgrec_from_modality_tables(tmp_path: Path) -> None:
    import testing_utils

    from genrec.trainers.stages.stage2 import train_stage2

    splits, ids = testing_utils.ring_splits(N, 30)
    data = testing_utils.write_dataset(tmp_path / "data", splits, ids, description="MSCGRec test data.")
    tokenizer, table = collaborative_tokenizer(), text_table()
    table.save(tmp_path / "text")
    config = MSCGRecConfig.from_tokenizer(
        tokenizer, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=1, constrained_training=True,
        history_modalities=["text"], history_codebook_sizes=[table.codebook_sizes], mask_probability=0.75,
    )
    result = train_stage2(
        data, tokenizer, tmp_path / "run", config=config, history_modalities={"text": tmp_path / "text"},
        max_steps=4, eval_every=2, warmup_steps=1, batch_size=16, eval_beams=20, max_eval_users=8,
        log_with=None, show_progress=False,
    )
    assert result.num_test_users == 30 and 0.0 <= result.test_metrics["recall@10"] <= 1.0
    from transformers import AutoModel

    best = AutoModel.from_pretrained(tmp_path / "run" / "best")
    assert type(best) is MSCGRecForGenerativeRecommendation and best.config.mask_probability == 0.75
    assert best.config.history_code_hashes == [table.content_hash]
    assert best.modality_coverage() == {"text": 1.0}
    # tables that contradict an MSCGRec config are refused
    with pytest.raises(ValueError, match="history modalities"):
        train_stage2(data, tokenizer, tmp_path / "bad", config=config, history_modalities={"image": table},
                     max_steps=1, log_with=None, show_progress=False)


def test_an_unger_config_with_tables_becomes_an_mscgrec_config() -> None:
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.trainers.stages.stage2 import as_mscgrec_config

    tokenizer, table = collaborative_tokenizer(), text_table()
    unger = UngerConfig.from_tokenizer(tokenizer, d_model=32, num_attention_heads=4, constrained_training=True)
    config = as_mscgrec_config(unger, {"text": table})
    assert isinstance(config, MSCGRecConfig) and config.d_model == 32 and config.constrained_training
    assert config.history_modalities == ["text"] and config.history_codebook_sizes == [table.codebook_sizes]
    filled = as_mscgrec_config(MSCGRecConfig(mask_probability=0.75, d_model=32, num_attention_heads=4), {"text": table})
    assert filled.mask_probability == 0.75 and filled.history_modalities == ["text"] and filled.d_model == 32


def test_hide_modalities_reads_a_modality_as_missing_for_every_item() -> None:
    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table).eval()
    with torch.no_grad():  # mask tokens that differ from zero, so that hiding is visible
        model.encoder.decode_mask_tokens.normal_()
    inputs = encode(tokenizer, [["i1", "i2", "i3"], ["i4"]])
    encoder = model.get_encoder()
    base = encoder(**inputs).last_hidden_state
    assert model.modality_names == ["collaborative", "text"]
    # hiding text == a model whose text table lacks every history item
    lacking = build(tokenizer, text_table(["i0"])).eval()
    lacking.load_state_dict({k: v for k, v in model.state_dict().items() if "modality_codes" not in k}, strict=False)
    with model.hide_modalities(["text"]):
        hidden_text = encoder(**inputs).last_hidden_state
    assert torch.allclose(hidden_text, lacking.get_encoder()(**inputs).last_hidden_state, atol=1e-6)
    assert not torch.allclose(hidden_text, base)
    assert torch.equal(encoder(**inputs).last_hidden_state, base)  # restored after the block
    with model.hide_modalities([]):
        assert torch.equal(encoder(**inputs).last_hidden_state, base)
    # hiding the decoding modality replaces the history items' code sums by its mask tokens: the histories
    # of two different items then encode alike when their text codes are hidden too
    one, other = encode(tokenizer, [["i1"]]), encode(tokenizer, [["i5"]])
    with model.hide_modalities(["collaborative", "text"]):
        assert torch.allclose(encoder(**one).last_hidden_state, encoder(**other).last_hidden_state, atol=1e-6)
    assert not torch.allclose(encoder(**one).last_hidden_state, encoder(**other).last_hidden_state)
    with pytest.raises(ValueError, match="unknown modality 'image'"), model.hide_modalities(["image"]):
        pass
    with_ids = build(tokenizer, table, history_item_embedding="id")
    with_ids.set_history_items(tokenizer.code_table.codes, None)
    with pytest.raises(ValueError, match="cannot hide the decoding modality"), with_ids.hide_modalities(["collaborative"]):
        pass


def test_stacked_feed_reads_every_code_as_a_position_with_relative_biases(tmp_path: Path) -> None:
    from transformers import AutoModel

    tokenizer, table = collaborative_tokenizer(), text_table()
    model = build(tokenizer, table, history_feed="stacked", mask_probability=0.5)
    per_item = model.config.positions_per_item
    assert per_item == tokenizer.code_table.num_levels + table.num_levels
    histories = [["i1", "i2", "i3"], ["i4"]]
    inputs = encode(tokenizer, histories)
    model.eval()
    states = model.get_encoder()(**inputs).last_hidden_state
    assert states.shape[1] == 3 * per_item  # three (padded) items, every code of every modality a position
    with model.hide_modalities(["text"]):
        assert not torch.allclose(model.get_encoder()(**inputs).last_hidden_state, states)
    # the relative biases are learnt: the loss reaches them
    model.train()
    out = model(**inputs, labels=tokenizer.encode_targets(["i6", "i7"], return_tensors="pt"))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.encoder.item_distance_bias.weight.grad.abs().sum() > 0
    assert model.encoder.slot_offset_bias.weight.grad.abs().sum() > 0
    # saved, reloaded, constrained to real items
    model.eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(str(tmp_path))
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.history_feed == "stacked"
    ours = model.recommend(histories, tokenizer, k=5, num_beams=5)
    theirs = again.recommend(histories, tokenizer, k=5, num_beams=5)
    assert [[i for i, _ in r] for r in ours] == [[i for i, _ in r] for r in theirs]
    assert all(item in set(IDS) for r in theirs for item, _ in r)
    with pytest.raises(ValueError, match="history_feed must be one of"):
        build(tokenizer, table, history_feed="flat")
    with pytest.raises(ValueError, match="history_item_embedding must be 'none'"):
        build(tokenizer, table, history_feed="stacked", history_item_embedding="id")
