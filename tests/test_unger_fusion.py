"""UNGER Stage I fusion model: every mode and encoder, the MAL, the losses, save/load and Auto round-trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import (
    AdaptiveLayerNorm,
    DinEncoder,
    UngerFusionModel,
    UngerFusionOutput,
)

N_ITEMS, SEM_DIM, HIDDEN = 30, 12, 8
MODES = ("unger", "semantic_only", "collaborative_only", "concat")


def _config(**overrides: object) -> UngerFusionConfig:
    values: dict[str, object] = dict(
        num_items=N_ITEMS, semantic_dim=SEM_DIM, hidden_size=HIDDEN, max_history_items=6,
        din_attention_hidden_sizes=[8], din_mlp_hidden_sizes=[16], intermediate_size=16, num_attention_heads=2,
    )
    values.update(overrides)
    return UngerFusionConfig(**values)


def _semantic(seed: int = 0) -> torch.Tensor:
    return torch.randn(N_ITEMS, SEM_DIM, generator=torch.Generator().manual_seed(seed))


def _model(**overrides: object) -> UngerFusionModel:
    torch.manual_seed(0)
    config = _config(**overrides)
    return UngerFusionModel(config, semantic_embeddings=_semantic() if config.uses_semantic else None)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    history = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 7]])
    return history, (history != 0).long(), torch.tensor([6, 7, 8])


@pytest.mark.parametrize("encoder", ["din", "sasrec"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_encoder_runs_forward_and_backward(mode: str, encoder: str) -> None:
    model = _model(mode=mode, collaborative_encoder=encoder, fusion="gate")
    history, mask, labels = _batch()
    out = model(history, mask, labels=labels)
    assert isinstance(out, UngerFusionOutput)
    assert out.logits.shape == (3, N_ITEMS + 1)
    assert out.user_embeddings.shape == (3, HIDDEN)
    assert torch.isfinite(out.loss)
    assert (out.loss_align is not None) == (mode == "unger")
    if mode == "unger":
        assert torch.allclose(out.loss, out.loss_next + out.loss_align)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:1])
    width = 2 * HIDDEN if mode == "concat" else HIDDEN
    assert model.integrated_item_embeddings().shape == (N_ITEMS, width)
    # no labels: scores over the corpus only; the padding column never wins
    scores = model(history, mask).logits
    assert scores.argmax(dim=1).min() >= 1


@pytest.mark.parametrize("fusion", ["sum", "gate", "mlp"])
def test_fusions_and_integrated_embedding_is_the_prediction_table(fusion: str) -> None:
    model = _model(fusion=fusion).eval()
    history, mask, _ = _batch()
    table = model.item_table()
    assert torch.equal(model.integrated_item_embeddings(), table[1:])
    users = model.encode_users(history, mask)
    assert torch.allclose(model(history, mask).logits[:, 1:], users @ table[1:].T, atol=1e-6)
    assert torch.allclose(model.score_items(history, mask), users @ table[1:].T, atol=1e-6)
    c = model.collaborative_item_embeddings()
    s = model.adapted_semantic_item_embeddings()
    if fusion == "sum":
        assert torch.allclose(table[1:], c + s, atol=1e-6)


def test_collaborative_layernorm_puts_ids_on_the_semantic_scale() -> None:
    model = _model(fusion="sum", collaborative_norm="layernorm").eval()
    c = F.layer_norm(model.collaborative_item_embeddings(), (HIDDEN,), eps=model.config.layer_norm_eps)
    assert torch.allclose(model.integrated_item_embeddings(), c + model.adapted_semantic_item_embeddings(), atol=1e-5)


def test_modes_own_only_the_parts_they_use() -> None:
    names = lambda m: set(dict(m.named_parameters())) | set(dict(m.named_buffers()))  # noqa: E731
    semantic_only = names(_model(mode="semantic_only"))
    assert "semantic_table" in semantic_only and not any(n.startswith("item_embeddings") for n in semantic_only)
    collaborative = names(_model(mode="collaborative_only"))
    assert not any("semantic" in n or n.startswith("adapter") for n in collaborative)
    concat = names(_model(mode="concat"))
    assert "semantic_pca" in concat and "semantic_table" not in concat
    with pytest.raises(ValueError, match="uses no semantic embeddings"):
        UngerFusionModel(_config(mode="collaborative_only"), semantic_embeddings=_semantic())


def test_semantic_table_is_a_frozen_saved_buffer() -> None:
    model = _model()
    assert "semantic_table" not in dict(model.named_parameters())
    assert torch.equal(model.semantic_table[1:], _semantic())
    assert torch.equal(model.semantic_table[0], torch.zeros(SEM_DIM))
    history, mask, labels = _batch()
    model(history, mask, labels=labels).loss.backward()
    assert model.semantic_table.grad is None
    with pytest.raises(ValueError, match="expects"):
        model.set_semantic_embeddings(torch.randn(N_ITEMS + 1, SEM_DIM))
    bad = _semantic()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        model.set_semantic_embeddings(bad)


def test_adaln_is_layernorm_without_affine_modulated_by_its_input() -> None:
    torch.manual_seed(0)
    layer = AdaptiveLayerNorm(HIDDEN, HIDDEN, eps=1e-6)
    x = torch.randn(5, HIDDEN)
    plain = F.layer_norm(x, (HIDDEN,), eps=1e-6)
    with torch.no_grad():
        layer.modulation.weight.zero_()
        layer.modulation.bias.zero_()
    assert torch.allclose(layer(x, x), plain, atol=1e-6)  # adaLN-Zero start: a plain LayerNorm
    with torch.no_grad():
        layer.modulation.weight.normal_()
    scale, shift = layer.modulation(F.silu(x)).chunk(2, dim=-1)
    assert torch.allclose(layer(x, x), plain * (1 + scale) + shift, atol=1e-5)
    model = _model()  # _init_weights zero-initialises the modulation
    assert torch.count_nonzero(model.adapter.adaln.modulation.weight) == 0
    assert model.adapter.adaln.norm.weight is None


def test_din_uses_raw_weights_by_default_and_softmax_on_request() -> None:
    torch.manual_seed(0)
    history = torch.randn(2, 4, HIDDEN)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    query = torch.randn(2, HIDDEN)
    for normalization in ("none", "softmax"):
        din = DinEncoder(_config(din_attention_normalization=normalization))
        q = query.unsqueeze(1).expand_as(history)
        w = din.attention(torch.cat([history, q, history - q, history * q], -1)).squeeze(-1)
        if normalization == "softmax":
            w = w.masked_fill(mask == 0, -math.inf).softmax(-1)
        w = w.masked_fill(mask == 0, 0.0)
        pooled = (w.unsqueeze(-1) * history).sum(1)
        expected = din.output(torch.cat([pooled, query], -1))
        assert torch.allclose(din(history, mask, query), expected, atol=1e-6)


@pytest.mark.parametrize("encoder", ["din", "sasrec"])
def test_user_vector_does_not_depend_on_padding_side(encoder: str) -> None:
    model = _model(collaborative_encoder=encoder).eval()
    left = torch.tensor([[0, 0, 0, 3, 4, 5]])
    right = torch.tensor([[3, 4, 5, 0, 0, 0]])
    short = torch.tensor([[3, 4, 5]])
    users = [model.encode_users(h, (h != 0).long()) for h in (left, right, short)]
    assert torch.allclose(users[0], users[1], atol=1e-5) and torch.allclose(users[0], users[2], atol=1e-5)


def test_din_query_variants() -> None:
    history, mask, labels = _batch()
    last = _model(din_query="last").eval()
    mean = _model(din_query="mean").eval()
    assert not torch.allclose(last.encode_users(history, mask), mean.encode_users(history, mask))
    target = _model(din_query="target", loss_type="sampled", num_negatives=5)
    out = target(history, mask, labels=labels)
    assert out.logits.shape == (3, 6) and out.user_embeddings is None and torch.isfinite(out.loss)
    target.eval()
    scores = target.score_items(history, mask, candidate_chunk=7)
    table = target.item_table()
    e = table[9]  # item index 9, column 8
    h = table[history]
    by_hand = (target.encoder(h, mask, e.expand(3, -1)) * e).sum(-1)
    assert scores.shape == (3, N_ITEMS) and torch.allclose(scores[:, 8], by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="sampled"):
        _config(din_query="target")


def test_sampled_softmax_masks_accidental_hits() -> None:
    model = _model(loss_type="sampled", num_negatives=N_ITEMS * 3)  # many negatives: hits are certain
    history, mask, labels = _batch()
    out = model(history, mask, labels=labels)
    assert out.logits.shape == (3, 1 + N_ITEMS * 3)
    hits = out.negative_ids.unsqueeze(0) == labels.unsqueeze(1)
    assert hits.any()
    assert (out.logits[:, 1:][hits] == torch.finfo(out.logits.dtype).min).all()
    assert torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("symmetric", [False, True])
def test_alignment_is_cosine_infonce_over_distinct_batch_items(symmetric: bool) -> None:
    model = _model(align_symmetric=symmetric, align_temperature=0.5)
    history, mask, labels = _batch()
    out = model(history, mask, labels=labels)
    items = torch.unique(torch.cat([history[mask.bool()], labels]))
    c = F.normalize(model.item_embeddings(items), dim=-1)
    s = F.normalize(model.adapter(model.semantic_table[items]), dim=-1)
    logits = c @ s.T / 0.5
    target = torch.arange(len(items))
    expected = F.cross_entropy(logits, target)
    if symmetric:
        expected = 0.5 * (expected + F.cross_entropy(logits.T, target))
    assert torch.allclose(out.loss_align, expected, atol=1e-5)


def test_concat_mode_is_normalised_pca_plus_ids_and_deterministic() -> None:
    a, b = _model(mode="concat"), _model(mode="concat")
    assert torch.equal(a.semantic_pca, b.semantic_pca)
    emb = a.integrated_item_embeddings()
    assert torch.allclose(emb[:, :HIDDEN].norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)
    assert torch.allclose(emb[:, HIDDEN:].norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)
    # the semantic half is the PCA of the table: it preserves the table's (centred) Gram structure
    centred = _semantic() - _semantic().mean(0)
    top = torch.linalg.svdvals(centred)[:HIDDEN]
    assert torch.allclose(torch.linalg.svdvals(a.semantic_pca[1:]), top, rtol=1e-3)


def test_bad_inputs_get_clear_errors() -> None:
    model = _model()
    history, mask, labels = _batch()
    with pytest.raises(ValueError, match="labels must be item indices"):
        model(history, mask, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="at least one history item"):
        model(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="0..30"):
        model(torch.tensor([[31]]))
    with pytest.raises(ValueError, match="max_history"):
        _model(collaborative_encoder="sasrec")(torch.arange(1, 9).unsqueeze(0))
    with pytest.raises(ValueError, match="mode"):
        _config(mode="late_fusion")


def test_loss_goes_down_in_a_few_steps() -> None:
    model = _model()
    history, mask, labels = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        out = model(history, mask, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("mode", ["unger", "concat"])
def test_save_pretrained_round_trip_is_exact(tmp_path, mode: str) -> None:
    model = _model(mode=mode, collaborative_encoder="sasrec", fusion="mlp").eval()
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert ("semantic_table" in saved) == (mode == "unger")
    loaded = UngerFusionModel.from_pretrained(tmp_path).eval()
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.config.to_dict()) == strip(model.config.to_dict())
    assert loaded.config.config_hash() == model.config.config_hash()
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    history, mask, _ = _batch()
    assert torch.equal(model(history, mask).logits, loaded(history, mask).logits)
    assert torch.equal(model.integrated_item_embeddings(), loaded.integrated_item_embeddings())


def test_automodel_round_trip(tmp_path) -> None:
    AutoConfig.register("unger_fusion", UngerFusionConfig, exist_ok=True)
    AutoModel.register(UngerFusionConfig, UngerFusionModel, exist_ok=True)
    model = _model().eval()
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), UngerFusionConfig)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, UngerFusionModel)
    assert torch.equal(loaded.integrated_item_embeddings(), model.integrated_item_embeddings())


def test_configs_saved_with_the_old_field_names_load_and_keep_their_hash() -> None:
    """num_heads / num_layers / max_history became transformers' names; old config.json files still load, the
    old names still read, and the hash (part of Stage I's run fingerprint) is what the old names gave."""
    import hashlib
    import json

    config = _config(num_attention_heads=2, num_hidden_layers=3, max_history_items=7)
    old = _config(num_heads=2, num_layers=3, max_history=7)
    assert old.to_dict() == config.to_dict()
    assert (config.num_heads, config.num_layers, config.max_history) == (2, 3, 7)
    assert "num_heads" not in config.to_dict() and config.to_dict()["num_attention_heads"] == 2
    renamed = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers", "max_history_items": "max_history"}
    excluded = {"transformers_version", "architectures", "_name_or_path", "auto_map", "torch_dtype", "dtype",
                "genrec_version"}
    legacy_fields = {renamed.get(k, k): v for k, v in config.to_dict().items() if k not in excluded}
    expected = hashlib.sha256(json.dumps(legacy_fields, sort_keys=True, default=str).encode()).hexdigest()
    assert config.config_hash() == expected
    with pytest.raises(ValueError, match="num_attention_heads"):
        _config(num_heads=0)
