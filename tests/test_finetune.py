"""Fine-tuning UNGER on a new domain: what transfers (transformer, shared code-token rows), what stays the new
domain's (item codes, integrated embeddings, history-item table), and clear errors for layouts that cannot line
up. The end-to-end command (``genrec finetune --from RUN --dataset NEW``) is tested in ``test_pipeline.py``
against its quick run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.stages.weight_transfer import (
    check_code_layout,
    source_architecture,
    transfer_stage2_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ARCH = dict(d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2, history_mode="per_item",
            history_item_embedding="integrated", integrated_dim=8)


def _tokenizer(n: int, seed: int, sizes: list[int], prefix: str) -> SemanticIDTokenizer:
    codes = np.random.default_rng(seed).integers(0, sizes[0], size=(n, len(sizes)))
    table = CodeTable.from_codes([f"{prefix}{i}" for i in range(n)], codes, codebook_sizes=sizes, always_append=True)
    return SemanticIDTokenizer.from_code_table(table)


def _model(tok: SemanticIDTokenizer, seed: int, **overrides: object) -> UngerForGenerativeRecommendation:
    config = UngerConfig.from_tokenizer(tok, **{**ARCH, **overrides})
    torch.manual_seed(seed)
    model = UngerForGenerativeRecommendation(config)
    model.set_code_table(tok)
    features = torch.randn(config.num_items, config.integrated_dim, generator=torch.Generator().manual_seed(seed))
    model.set_integrated_embeddings(features)
    model.set_history_items(tok.code_table.codes, features)
    return model


def test_transfer_copies_the_network_and_shared_code_rows_and_keeps_the_new_catalogue() -> None:
    source_tok = _tokenizer(60, 0, [4, 4], "beauty-")  # 60 items on 16 leaves: a deep collision level
    target_tok = _tokenizer(20, 1, [4, 4], "movie-")
    source, target = _model(source_tok, 0), _model(target_tok, 1)
    s_sizes, t_sizes = source.config.codebook_sizes, target.config.codebook_sizes
    assert s_sizes[:2] == t_sizes[:2] and s_sizes[2] > t_sizes[2]  # collision levels of different depth
    before = {k: v.clone() for k, v in target.state_dict().items()}

    report = transfer_stage2_weights(target, source, has_collision_level=True)

    after, src = target.state_dict(), source.state_dict()
    for name in ("decoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.ffn.fc1.weight",
                 "encoder.history_item_proj.weight", "distillation_proj.weight", "distillation_token"):
        assert torch.equal(after[name], src[name]), name
    for name in ("item_codes", "integrated_embeddings", "encoder.history_item_keys", "encoder.history_item_features"):
        assert torch.equal(after[name], before[name]), name  # the new domain's catalogue stays
    emb, src_emb = after["encoder.embed_tokens.weight"], src["encoder.embed_tokens.weight"]
    s_off, t_off = source.config.code_token_offsets, target.config.code_token_offsets
    assert torch.equal(emb[: t_off[0]], src_emb[: s_off[0]])  # specials
    for level in range(3):  # every code of the smaller vocabulary has its source row
        n = t_sizes[level]
        assert torch.equal(emb[t_off[level]: t_off[level] + n], src_emb[s_off[level]: s_off[level] + n]), level
    assert report["vocab_rows_copied"] == target.config.vocab_size
    assert "item_codes" in report["per_domain_kept"]
    # the model still recommends only the new domain's items
    (ranked,) = target.recommend([["movie-1", "movie-2"]], target_tok, k=5, num_beams=5)
    assert ranked and all(item.startswith("movie-") for item, _ in ranked)


def test_a_larger_new_collision_level_keeps_its_extra_rows_fresh() -> None:
    source_tok, target_tok = _tokenizer(20, 1, [4, 4], "a"), _tokenizer(60, 0, [4, 4], "b")
    source, target = _model(source_tok, 0), _model(target_tok, 1)
    fresh = target.state_dict()["encoder.embed_tokens.weight"].clone()
    report = transfer_stage2_weights(target, source, has_collision_level=True)
    s_k, t_k = source.config.codebook_sizes[2], target.config.codebook_sizes[2]
    assert report["vocab_rows_copied"] == target.config.vocab_size - (t_k - s_k)
    off = target.config.code_token_offsets[2]
    emb = target.state_dict()["encoder.embed_tokens.weight"]
    assert torch.equal(emb[off + s_k: off + t_k], fresh[off + s_k: off + t_k])


def test_layouts_and_architectures_that_cannot_line_up_are_refused() -> None:
    source = _model(_tokenizer(30, 0, [4, 4], "a"), 0)
    deeper = _model(_tokenizer(30, 0, [4, 4, 4], "b"), 1)
    with pytest.raises(ValueError, match="code positions"):
        transfer_stage2_weights(deeper, source, has_collision_level=True)
    wider = _model(_tokenizer(30, 0, [8, 8], "c"), 1)
    with pytest.raises(ValueError, match="semantic codebook sizes"):
        check_code_layout(wider.config, source.config, has_collision_level=True)
    other_width = _model(_tokenizer(30, 0, [4, 4], "d"), 1, ffn_dim=64)
    with pytest.raises(ValueError, match="fc1.weight: shape"):
        transfer_stage2_weights(other_width, source, has_collision_level=True)
    no_history_items = _model(_tokenizer(30, 0, [4, 4], "e"), 1)
    plain = UngerForGenerativeRecommendation(UngerConfig.from_tokenizer(
        _tokenizer(30, 0, [4, 4], "f"), **{**ARCH, "history_item_embedding": "none"}))
    with pytest.raises(ValueError, match="architecture differs"):
        transfer_stage2_weights(no_history_items, plain, has_collision_level=True)


def test_source_architecture_leaves_out_the_code_binding() -> None:
    source = _model(_tokenizer(30, 0, [4, 4], "a"), 0)
    arch = source_architecture(source.config)
    assert arch["d_model"] == 16 and arch["history_item_embedding"] == "integrated"
    for key in ("vocab_size", "codebook_sizes", "code_table_hash", "num_items", "integrated_dim", "model_type"):
        assert key not in arch
    rebuilt = UngerConfig.from_tokenizer(_tokenizer(10, 2, [4, 4], "z"), **arch)  # a valid config for a new domain
    assert rebuilt.d_model == 16 and rebuilt.num_items == 10


def test_a_source_without_distillation_gives_a_new_model_without_a_distillation_head() -> None:
    from genrec.trainers.stages.stage2 import resolve_stage2_config

    plain = {**ARCH, "history_item_embedding": "none", "integrated_dim": 0}
    source_tok, target_tok = _tokenizer(30, 0, [4, 4], "a"), _tokenizer(30, 1, [4, 4], "b")
    source = UngerForGenerativeRecommendation(UngerConfig.from_tokenizer(source_tok, **plain))
    arch = source_architecture(source.config)
    assert arch["distillation_weight"] == 0.0

    class _Embeddings:  # what the main job passes: Stage-I embeddings of the new domain
        dim = 8

    config = resolve_stage2_config(UngerConfig(**arch), target_tok, _Embeddings())
    target = UngerForGenerativeRecommendation(config)
    assert not config.uses_distillation and not hasattr(target, "distillation_proj")
    assert transfer_stage2_weights(target, source, has_collision_level=True)["tensors_copied"] > 5
