"""UNGER Stage II model: losses, history modes, distillation, constrained training, cached generation, I/O."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.constrained_decoding import SemanticIDLogitsProcessor
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation, check_tokenizer_compatibility
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer, register_auto_tokenizer

N_ITEMS = 40
IDS = [f"item{k}" for k in range(N_ITEMS)]
HISTORIES = [IDS[:3], IDS[5:6], IDS[2:9], IDS[30:40]]
TARGETS = ["item1", "item2", "item3", "item39"]


pytestmark = pytest.mark.usefixtures("one_thread")


def register_auto() -> None:
    """What ``import genrec`` will do for UNGER (registered here too, idempotently)."""
    AutoConfig.register("unger", UngerConfig, exist_ok=True)
    AutoModel.register(UngerConfig, UngerForGenerativeRecommendation, exist_ok=True)
    AutoModelForSeq2SeqLM.register(UngerConfig, UngerForGenerativeRecommendation, exist_ok=True)
    register_auto_tokenizer(UngerConfig)


def make_tokenizer(seed: int = 0, n: int = N_ITEMS) -> SemanticIDTokenizer:
    """Items with random 2-level codes over 4 x 4 codebooks: collisions add a third (collision) level."""
    codes = np.random.default_rng(seed).integers(0, 4, size=(n, 2))
    return SemanticIDTokenizer.from_code_table(CodeTable.from_codes(IDS[:n], codes, codebook_sizes=[4, 4]))


@pytest.fixture(scope="module")
def tok() -> SemanticIDTokenizer:
    return make_tokenizer()


def tiny_model(tok: SemanticIDTokenizer, seed: int = 0, **overrides: object) -> UngerForGenerativeRecommendation:
    values: dict[str, object] = dict(d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2)
    values.update(overrides)
    config = UngerConfig.from_tokenizer(tok, **values)
    torch.manual_seed(seed)
    model = UngerForGenerativeRecommendation(config)
    if config.integrated_dim:
        model.set_integrated_embeddings(torch.randn(config.num_items, config.integrated_dim))
    if config.constrained_training:
        model.set_prefix_index(tok.code_table.prefix_index(), tok.code_token_offsets)
    return model


def batch(tok: SemanticIDTokenizer, **kwargs: object) -> dict[str, torch.Tensor]:
    enc = tok.encode_history(HISTORIES, **kwargs)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": tok.encode_targets(TARGETS),
        "target_item_indices": torch.from_numpy(tok.code_table.lookup_indices(TARGETS)),
    }


@pytest.mark.parametrize("mode", ["flattened", "per_item"])
@pytest.mark.parametrize("distill", [False, True])
@pytest.mark.parametrize("constrained", [False, True])
def test_forward_losses(tok: SemanticIDTokenizer, mode: str, distill: bool, constrained: bool) -> None:
    model = tiny_model(tok, history_mode=mode, integrated_dim=8 if distill else 0, constrained_training=constrained)
    inputs = batch(tok)
    out = model(**inputs)
    depth = tok.num_code_levels
    assert out.logits.shape == (len(TARGETS), depth + 1, len(tok))
    assert torch.isfinite(out.loss) and torch.isfinite(out.loss_rec)
    if distill:
        assert out.loss_ikd is not None and torch.isfinite(out.loss_ikd)
        assert torch.allclose(out.loss, out.loss_rec + out.loss_ikd)
        assert out.distillation_embeddings.shape == (len(TARGETS), 8)
    else:
        assert out.loss_ikd is None and torch.equal(out.loss, out.loss_rec)
    out.loss.backward()
    assert model.encoder.embed_tokens.weight.grad is not None
    assert (model.distillation_token.grad is not None) if distill else not hasattr(model, "distillation_token")
    assert all(p.grad is not None for p in model.parameters())  # no unused parameter (DDP-safe)


def test_rec_loss_is_cross_entropy_and_constrained_loss_normalises_over_valid_children(
    tok: SemanticIDTokenizer,
) -> None:
    free = tiny_model(tok)
    constrained = tiny_model(tok, constrained_training=True)
    inputs = batch(tok)
    labels = inputs["labels"]
    out_free, out_constrained = free(**inputs), constrained(**inputs)
    assert torch.equal(out_free.logits, out_constrained.logits)  # same seed, same weights
    logits = out_free.logits
    assert torch.allclose(out_free.loss_rec, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)))
    allowed = SemanticIDLogitsProcessor.from_tokenizer(tok).teacher_forcing_mask(labels, vocab_size=len(tok))
    manual = -(logits.masked_fill(~allowed, float("-inf")).log_softmax(-1).gather(-1, labels[..., None])).mean()
    assert torch.allclose(out_constrained.loss_rec, manual, atol=1e-6)
    assert out_constrained.loss_rec < out_free.loss_rec
    # an explicit mask gives the same loss; a mask that forbids a label is refused
    explicit = free.config.__class__(**{**free.config.to_dict(), "constrained_training": True})
    model = UngerForGenerativeRecommendation(explicit)
    model.load_state_dict(free.state_dict())
    assert torch.allclose(model(**inputs, constraint_mask=allowed).loss_rec, manual, atol=1e-6)
    with pytest.raises(ValueError, match="not allowed by the constraint mask"):
        model(**inputs, constraint_mask=torch.zeros_like(allowed))
    with pytest.raises(ValueError, match="set_prefix_index"):
        model(**inputs)


def test_label_smoothing_spreads_its_mass_over_the_tokens_the_softmax_normalises_over(
    tok: SemanticIDTokenizer,
) -> None:
    inputs = batch(tok)
    labels = inputs["labels"]
    free = tiny_model(tok, label_smoothing=0.2)
    logits = free(**inputs).logits
    flat = logits.reshape(-1, logits.shape[-1])
    expected_free = F.cross_entropy(flat, labels.reshape(-1), label_smoothing=0.2)
    assert torch.allclose(free(**inputs).loss_rec, expected_free, atol=1e-6)
    constrained = tiny_model(tok, constrained_training=True, label_smoothing=0.2)
    allowed = SemanticIDLogitsProcessor.from_tokenizer(tok).teacher_forcing_mask(labels, vocab_size=len(tok))
    log_p = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    nll = -log_p.gather(-1, labels[..., None]).squeeze(-1)
    uniform = -log_p.masked_fill(~allowed, 0.0).sum(-1) / allowed.sum(-1)
    out = constrained(**inputs)
    assert torch.isfinite(out.loss_rec)
    assert torch.allclose(out.loss_rec, (0.8 * nll + 0.2 * uniform).mean(), atol=1e-5)
    assert out.loss_rec > tiny_model(tok, constrained_training=True)(**inputs).loss_rec  # smoothing costs nll
    out.loss.backward()
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="label_smoothing"):
            tiny_model(tok, label_smoothing=bad)


def test_distillation_token_does_not_change_code_logits(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok, integrated_dim=8)
    inputs = batch(tok)
    with_token = model(**inputs)
    model.config.distillation_weight = 0.0
    without = model(**inputs)
    model.config.distillation_weight = 1.0
    assert with_token.loss_ikd is not None and without.loss_ikd is None
    assert torch.allclose(with_token.logits, without.logits, atol=1e-6)
    assert torch.allclose(with_token.loss_rec, without.loss_rec, atol=1e-6)
    with pytest.raises(ValueError, match="target_item_indices"):
        model(**{k: v for k, v in inputs.items() if k != "target_item_indices"})


def test_sampled_negatives_and_full_corpus_distillation(tok: SemanticIDTokenizer) -> None:
    inputs = batch(tok)
    full = tiny_model(tok, integrated_dim=8, distillation_temperature=0.5)
    sampled = tiny_model(tok, integrated_dim=8, distillation_temperature=0.5, distillation_negatives=N_ITEMS * 4)
    out = full(**inputs)
    # the full-corpus loss is InfoNCE over every item: recompute it from the projected states
    query = F.normalize(out.distillation_embeddings, dim=-1)
    keys = F.normalize(full.integrated_embeddings, dim=-1)
    expected = F.cross_entropy(query @ keys.T / 0.5, inputs["target_item_indices"])
    assert torch.allclose(out.loss_ikd, expected, atol=1e-6)
    torch.manual_seed(1)
    first = sampled(**inputs).loss_ikd
    torch.manual_seed(1)
    assert torch.equal(first, sampled(**inputs).loss_ikd)  # seeded sampling is reproducible
    assert torch.isfinite(first)


@pytest.mark.parametrize("mode", ["flattened", "per_item"])
def test_loss_decreases(tok: SemanticIDTokenizer, mode: str) -> None:
    model = tiny_model(tok, history_mode=mode, integrated_dim=8, constrained_training=True)
    inputs = batch(tok)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        out = model(**inputs)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("mode", ["flattened", "per_item"])
def test_padding_side_does_not_matter(tok: SemanticIDTokenizer, mode: str) -> None:
    model = tiny_model(tok, history_mode=mode).eval()
    left, right = batch(tok, padding_side="left"), batch(tok, padding_side="right")
    assert not torch.equal(left["input_ids"], right["input_ids"])
    assert torch.allclose(model(**left).logits, model(**right).logits, atol=1e-5)


def _generate(model: UngerForGenerativeRecommendation, tok: SemanticIDTokenizer, use_cache: bool, beams: int = 6):
    enc = tok.encode_history(HISTORIES)
    processor = SemanticIDLogitsProcessor.from_tokenizer(tok, num_beams=beams)
    return model.generate(
        **enc, num_beams=beams, num_return_sequences=beams, max_new_tokens=tok.num_code_levels + 1,
        logits_processor=[processor], use_cache=use_cache, return_dict_in_generate=True, output_scores=True,
    )


@pytest.mark.parametrize("mode", ["flattened", "per_item"])
def test_generate_gives_valid_items_and_cache_equals_no_cache(tok: SemanticIDTokenizer, mode: str) -> None:
    model = tiny_model(tok, history_mode=mode, integrated_dim=8).eval()
    lengths: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: lengths.append(kwargs["decoder_input_ids"].shape[1]), with_kwargs=True
    )
    cached = _generate(model, tok, use_cache=True)
    cached_lengths, lengths[:] = list(lengths), []
    uncached = _generate(model, tok, use_cache=False)
    hook.remove()
    depth = tok.num_code_levels
    assert cached_lengths == [1] * (depth + 1)  # the cache is really used: one new token per step
    assert lengths == list(range(1, depth + 2))
    assert torch.equal(cached.sequences, uncached.sequences)
    assert torch.allclose(cached.sequences_scores, uncached.sequences_scores, atol=1e-5)
    items = tok.decode_items(cached.sequences)
    assert None not in items
    per_user = [items[i : i + 6] for i in range(0, len(items), 6)]
    assert all(len(set(row)) == 6 for row in per_user)  # distinct items per user


def test_incremental_decoding_matches_full_forward(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok).eval()
    inputs = batch(tok)
    decoder_ids = torch.cat([torch.full((len(TARGETS), 1), 2), inputs["labels"][:, :-1]], dim=1)
    full = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_ids)
    past, steps = None, []
    encoder_outputs = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    for t in range(decoder_ids.shape[1]):
        out = model(
            attention_mask=inputs["attention_mask"], encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_ids[:, t : t + 1], past_key_values=past, use_cache=True,
        )
        past = out.past_key_values
        steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, dim=1), full.logits, atol=1e-5)


def test_save_load_and_auto_round_trip_reproduce_recommendations(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    register_auto()
    model = tiny_model(tok, integrated_dim=8, history_mode="per_item")
    expected = model.recommend(HISTORIES, tok, k=5, num_beams=8)
    assert all(len(row) == 5 and None not in [i for i, _ in row] for row in expected)
    assert all(row[0][1] >= row[-1][1] for row in expected)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is UngerForGenerativeRecommendation
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(tmp_path), UngerForGenerativeRecommendation)
    reference = model.state_dict()
    assert loaded.state_dict().keys() == reference.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.items())
    assert loaded.config.integrated_embeddings_hash == model.config.integrated_embeddings_hash
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok2, SemanticIDTokenizer)
    assert loaded.recommend(HISTORIES, tok2, k=5, num_beams=8) == expected

    script = (
        "import json, sys\n"
        "from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer\n"
        "from genrec.modeling.configuration_unger import UngerConfig\n"
        "from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation as M\n"
        "from genrec.tokenization.tokenization_semantic_id import register_auto_tokenizer\n"
        "AutoConfig.register('unger', UngerConfig, exist_ok=True)\n"
        "AutoModel.register(UngerConfig, M, exist_ok=True)\n"
        "register_auto_tokenizer(UngerConfig)\n"
        "model = AutoModel.from_pretrained(sys.argv[1]); tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        f"print(json.dumps(model.recommend({HISTORIES!r}, tok, k=5, num_beams=8)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    fresh = json.loads(run.stdout.strip().splitlines()[-1])
    assert [[(i, s) for i, s in row] for row in fresh] == expected


def test_tied_embeddings_round_trip(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    model = tiny_model(tok, tie_word_embeddings=True)
    assert model.lm_head.weight is model.encoder.embed_tokens.weight
    model.save_pretrained(tmp_path)
    loaded = UngerForGenerativeRecommendation.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.encoder.embed_tokens.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    untied = tiny_model(tok)
    assert untied.lm_head.weight is not untied.encoder.embed_tokens.weight


def test_mismatched_tokenizer_is_refused(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok)
    other = make_tokenizer(seed=1)  # same items, other codes: same shape, other hash
    with pytest.raises(ValueError, match="code table does not match"):
        model.recommend(HISTORIES, other, k=3)
    smaller = make_tokenizer(n=20)
    with pytest.raises(ValueError, match="num_items"):
        check_tokenizer_compatibility(model.config, smaller)
    with pytest.raises(ValueError, match="not a semantic-ID tokenizer"):
        model.check_tokenizer(object())
    model.check_tokenizer(tok)  # the right one passes


def test_bad_inputs_get_clear_errors(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok, max_history_items=5, integrated_dim=8)
    long_history = tok.encode_history([IDS[:8]])
    with pytest.raises(ValueError, match="max_history_items=5"):
        model(**long_history, labels=tok.encode_targets(["item1"]), target_item_indices=torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\(40, 8\)"):
        model.set_integrated_embeddings(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="divisible"):
        UngerConfig(d_model=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="history_mode"):
        UngerConfig(history_mode="bag")
    with pytest.raises(ValueError, match="num_beams"):
        model.recommend(HISTORIES, tok, k=5, num_beams=2)
    with pytest.raises(KeyError, match="nope"):
        model.recommend([["nope"]], tok, k=2)
