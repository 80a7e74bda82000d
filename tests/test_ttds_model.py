"""TTDS model: config, tokenizer extension, twin-tower generators, DM-VAE losses, LoRA, constrained
recommendation and save/load, on a tiny random LLaMA with a BPE tokenizer trained on the fly."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.modeling.semantic_token_generator import SemanticTokenGenerator, matching_renumbering
from genrec.modeling.tokenization_ttds import extend_tokenizer
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.ttds import create_tiny_base, template_corpus

CORPUS = template_corpus() + [f"Movie {i} about {g} and friends" for i in range(40) for g in ("space", "love", "war")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return create_tiny_base(tmp_path_factory.mktemp("ttds_base") / "base", CORPUS, vocab_size=400)


def _tokenizer(base_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir))


def _config(base_dir, **kwargs) -> TTDSConfig:
    values = {"num_levels": 2, "codebook_size": 8, "num_collision_tokens": 4, "lora_r": 4, "lora_alpha": 8,
              "lora_dropout": 0.0}
    values.update(kwargs)
    return TTDSConfig(base_model_name_or_path=str(base_dir), **values)


@pytest.fixture(scope="module")
def built(base_dir):
    tokenizer = _tokenizer(base_dir)
    model = TTDSForCausalLM.from_base(_config(base_dir), tokenizer, seed=0)
    return model, tokenizer


def _texts(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _item_table(model, n=20, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, model.config.codebook_size, size=(n, model.config.num_levels))  # some collide
    return CodeTable.from_codes([f"i{k}" for k in range(n)], codes,
                                codebook_sizes=[model.config.codebook_size] * model.config.num_levels,
                                always_append=True)


# ------------------------------------------------------------------------------------------------ config


def test_config_defaults_roundtrip_and_validation(tmp_path):
    config = TTDSConfig(base_model_name_or_path="meta-llama/Llama-2-7b-hf", llm_config={"hidden_size": 4096})
    # Paper (Sec. 5.1.4): M=4 codebooks of N=256 entries of dim 256, MLP 4096 -> 2048 -> 1024 -> 512 -> 256.
    assert (config.num_levels, config.codebook_size) == (4, 256)
    assert config.resolved_codebook_dim == 256
    assert config.resolved_generator_hidden_sizes == [2048, 1024, 512]
    assert config.tokens_per_tower == 4 * 256 + 256
    config.save_pretrained(tmp_path)
    again = TTDSConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    names = TTDSConfig(num_levels=2, codebook_size=3, num_collision_tokens=2).semantic_token_names("user")
    assert names == ["<user_a_0>", "<user_a_1>", "<user_a_2>", "<user_b_0>", "<user_b_1>", "<user_b_2>",
                     "<user_p_0>", "<user_p_1>"]
    with pytest.raises(ValueError, match="pooling"):
        TTDSConfig(pooling="max")
    with pytest.raises(ValueError, match="num_levels"):
        TTDSConfig(num_levels=0)
    with pytest.raises(ValueError, match="llm_config"):
        _ = TTDSConfig().llm_hidden_size


def test_extend_tokenizer_layout_pad_and_idempotence(base_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "x", "movie", "answer"]  # a vocabulary without any pad token
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    no_pad = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = TTDSConfig(num_levels=2, codebook_size=4, num_collision_tokens=2)
    base_len = len(no_pad)
    extend_tokenizer(no_pad, config)
    assert no_pad.pad_token == "<pad>" and no_pad.pad_token_id == base_len  # added before the codes
    assert config.base_vocab_size == base_len and config.item_token_offset == base_len + 1
    assert config.user_token_offset == config.item_token_offset + config.tokens_per_tower
    assert config.vocab_size == len(no_pad) == base_len + 1 + 2 * config.tokens_per_tower
    # token id of code c at level m = offset + m*N + c; collision k at offset + M*N + k
    assert no_pad.convert_tokens_to_ids("<item_b_3>") == config.item_token_offset + 4 + 3
    assert no_pad.convert_tokens_to_ids("<user_p_1>") == config.user_token_offset + 8 + 1
    assert config.token_offsets("item", 3) == [config.item_token_offset + d * 4 for d in range(3)]
    # the tokenizer reads the new tokens as single tokens
    text_ids = no_pad("x <item_a_2><item_b_0>", add_special_tokens=False)["input_ids"]
    assert text_ids[-2:] == [config.item_token_offset + 2, config.item_token_offset + 4]
    # a second call only verifies
    assert extend_tokenizer(no_pad, config) is no_pad and len(no_pad) == config.vocab_size
    other = TTDSConfig(num_levels=2, codebook_size=4, num_collision_tokens=2, item_token_offset=5)
    with pytest.raises(ValueError, match="does not belong"):
        extend_tokenizer(no_pad, other)
    with pytest.raises(ValueError, match="some but not all"):
        extend_tokenizer(no_pad, TTDSConfig(num_levels=3, codebook_size=4, num_collision_tokens=2))


# ------------------------------------------------------------------------------------------------ towers


def test_generator_residual_quantisation_and_straight_through():
    torch.manual_seed(0)
    gen = SemanticTokenGenerator(16, [12, 8], 6, num_levels=3, codebook_size=5, reduction="sum", token_loss="literal",
                                 codebook_update="gradient", normalize_latent=False)
    x = torch.randn(7, 16)
    gen.init_codebooks(x, seed=1)
    out = gen(x)
    assert torch.equal(out.codes, gen.quantize(x))
    # forward value of the straight-through assignment is exactly the one-hot of the chosen code
    assert torch.equal(out.assignments, torch.nn.functional.one_hot(out.codes, 5).float())
    # Formula 10/11/13 by hand
    residual, expected = gen.encode(x), 0.0
    for m in range(3):
        centroid = gen.codebooks[m][out.codes[:, m]]
        assert torch.equal(out.codes[:, m], torch.cdist(residual, gen.codebooks[m]).argmin(1))
        expected = expected + (residual - centroid).pow(2).sum(-1).mean()
        residual = residual - centroid
    torch.testing.assert_close(out.token_loss, expected)
    # gradients cross the argmin through the soft assignment (encoder and codebooks get them)
    weights = torch.randn(3, 5)
    (out.assignments * weights).sum().backward()
    assert gen.encoder[0].weight.grad.abs().sum() > 0 and gen.codebooks.grad.abs().sum() > 0


def test_vq_token_loss_uses_stop_gradients_and_decoder_reconstructs():
    torch.manual_seed(0)
    gen = SemanticTokenGenerator(16, [12], 6, num_levels=2, codebook_size=5, reduction="sum", commitment_cost=0.25,
                                 codebook_update="gradient")
    x = torch.randn(9, 16)
    gen.init_codebooks(x, seed=1)
    out = gen(x)
    # value: sum_m (1 + commitment) * ||r_m - c_m||^2 with r_{m+1} = r_m - c_m
    residual, expected = gen.encode(x), 0.0
    for m in range(2):
        centroid = gen.codebooks[m][out.codes[:, m]]
        expected = expected + 1.25 * (residual - centroid).pow(2).sum(-1).mean()
        residual = residual - centroid
    torch.testing.assert_close(out.token_loss, expected)
    # the codebook term moves only the centroids, the commitment term only the encoder: d/dlatent is
    # commitment * 2 * sum_m (r_m - c_m) / B (the literal loss would give 1/commitment = 4x more, and also
    # drag the centroids along through the residuals)
    (g_latent,) = torch.autograd.grad(out.token_loss, out.latent, retain_graph=True)
    residual, expected_grad = out.latent.detach(), torch.zeros_like(out.latent)
    for m in range(2):
        centroid = gen.codebooks[m][out.codes[:, m]].detach()
        expected_grad += 0.25 * 2 * (residual - centroid) / x.shape[0]
        residual = residual - centroid
    torch.testing.assert_close(g_latent, expected_grad)
    (g_codebooks,) = torch.autograd.grad(out.token_loss, gen.codebooks, retain_graph=True)
    assert g_codebooks.abs().sum() > 0
    # the decoder reads the quantised latent and rebuilds the standardised input
    assert out.reconstruction_loss > 0
    gen.zero_grad()
    out.reconstruction_loss.backward()
    assert gen.decoder[0].weight.grad.abs().sum() > 0 and gen.encoder[0].weight.grad.abs().sum() > 0
    assert gen.codebooks.grad is None or gen.codebooks.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="token_loss"):
        SemanticTokenGenerator(16, [12], 6, num_levels=2, codebook_size=5, token_loss="sg")
    assert SemanticTokenGenerator(16, [12], 6, num_levels=2, codebook_size=5, reconstruction=False).decoder is None


def test_refit_codebooks_renumbers_persisting_cells_to_their_previous_ids():
    old = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    permuted = torch.tensor([2, 0, 3, 1])[old]  # the same cells under other ids
    order = matching_renumbering(permuted, old, 4)
    assert torch.equal(torch.argsort(order)[permuted], old)  # renumbered back exactly
    moved = permuted.clone()
    moved[-1] = permuted[0]  # one entity changed cell: everyone else keeps their id
    assert (torch.argsort(matching_renumbering(moved, old, 4))[moved] == old).sum() == 7

    torch.manual_seed(0)
    gen = SemanticTokenGenerator(8, [8], 4, num_levels=2, codebook_size=6)
    x = torch.randn(60, 8)
    gen.init_codebooks(x, seed=0)
    before = gen.quantize(x)
    moved = x + 0.05 * torch.randn(60, 8)  # the LLM's representations drift a little
    cold = copy.deepcopy(gen)
    cold.init_codebooks(moved, seed=5)  # a k-means from a fresh start: other ids
    gen.refit_codebooks(moved, previous=before, seed=5)
    kept = (gen.quantize(moved) == before).all(dim=1).float().mean()
    assert kept > 0.8 and kept > (cold.quantize(moved) == before).all(dim=1).float().mean()
    # crowded cells: centroids far from every latent are brought back, and every cell is used again
    with torch.no_grad():
        gen.codebooks[0, 2:] = 1e3
    assert len(torch.unique(gen.quantize(moved)[:, 0])) == 2
    assert gen.refit_codebooks(moved, previous=before, seed=5)[0] == 4  # the four unreachable ones, counted
    assert len(torch.unique(gen.quantize(moved)[:, 0])) == 6


def test_dead_codes_are_moved_onto_latents_and_updates_are_damped():
    torch.manual_seed(0)
    gen = SemanticTokenGenerator(8, [8], 4, num_levels=2, codebook_size=6)
    x = torch.randn(40, 8)
    gen.init_codebooks(x, seed=0)
    with torch.no_grad():
        gen.codebooks[0, 4:] = 1e3  # two centroids nobody can reach
    before = gen.quantize(x)
    assert not bool(torch.isin(torch.tensor([4, 5]), before[:, 0]).any())
    counts = gen.reset_dead_codes(x, seed=1)
    assert counts[0] == 2
    after = gen.quantize(x)
    assert bool(torch.isin(torch.tensor([4, 5]), after[:, 0]).all())  # both now used
    assert len({tuple(c) for c in after.tolist()}) >= len({tuple(c) for c in before.tolist()})
    copy_gen = copy.deepcopy(gen)
    assert gen.reset_dead_codes(x, seed=1) == copy_gen.reset_dead_codes(x, seed=1)
    assert torch.equal(gen.codebooks, copy_gen.codebooks)  # seeded, deterministic
    # EMA codebooks: a training forward moves the used centroids towards their residuals, eval does not
    frozen = gen.codebooks.clone()
    gen.eval()
    gen(x)
    assert torch.equal(gen.codebooks, frozen)
    gen.train()
    codes = gen(x).codes
    level0 = gen.encode(x).detach()
    used = torch.unique(codes[:, 0])
    for k in used.tolist():
        members = level0[codes[:, 0] == k].mean(0)
        assert (gen.codebooks[0, k] - members).norm() < (frozen[0, k] - members).norm() + 1e-6
    assert not gen.codebooks.requires_grad
    # damping: a slightly moved input keeps its code with a margin; without one the greedy code wins
    latent_codes = gen.quantize(x)
    wrong = latent_codes.clone()
    wrong[:, 1] = (wrong[:, 1] + 1) % 6  # a worse previous code
    err_wrong = gen.quantization_error(gen.encode(x), wrong)
    err_best = gen.quantization_error(gen.encode(x), latent_codes)
    assert torch.equal(gen.quantize(x, previous=wrong, margin=0.0), latent_codes)
    kept = gen.quantize(x, previous=wrong, margin=1e9)
    assert bool((err_best > 0).any()) and torch.equal(kept[err_best > 0], wrong[err_best > 0])
    mid = gen.quantize(x, previous=wrong, margin=0.5)
    expect_keep = err_wrong <= 1.5 * err_best
    assert torch.equal(mid, torch.where(expect_keep.unsqueeze(1), wrong, latent_codes))
    none_yet = wrong.clone()
    none_yet[0] = -1  # no previous code: the greedy one
    assert torch.equal(gen.quantize(x, previous=none_yet, margin=1e9)[0], latent_codes[0])


def test_codebook_init_is_seeded_and_spreads_codes():
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0)) * 5 + 100  # large common offset
    a = SemanticTokenGenerator(16, [8], 4, num_levels=2, codebook_size=8)
    b = copy.deepcopy(a)
    a.init_codebooks(x, seed=3)
    b.init_codebooks(x, seed=3)
    assert torch.equal(a.codebooks, b.codebooks)
    assert len({tuple(c) for c in a.quantize(x).tolist()}) > 16  # not collapsed onto a few codes
    torch.testing.assert_close(a.input_mean, x.mean(0))


# ------------------------------------------------------------------------------------------------ model


def test_from_base_builds_lora_with_new_rows_trainable(built):
    model, tokenizer = built
    cfg = model.config
    assert cfg.llm_config["hidden_size"] == 64 and cfg.vocab_size == len(tokenizer)
    assert model.llm.get_input_embeddings().weight.shape[0] == cfg.vocab_size
    assert model.base_llm.get_output_embeddings().weight.shape[0] == cfg.vocab_size
    counts = model.num_trainable_parameters()
    new_rows = cfg.vocab_size - cfg.base_vocab_size
    assert counts["token_rows"] == 2 * new_rows * 64  # input embedding + untied LM head rows
    assert counts["lora"] > 0 and counts["towers"] > 0 and counts["other"] == 0
    peft_config = model.llm.peft_config["default"]
    assert sorted(peft_config.trainable_token_indices) == ["embed_tokens", "lm_head"]
    assert peft_config.trainable_token_indices["embed_tokens"] == list(range(cfg.base_vocab_size, cfg.vocab_size))
    # the config alone rebuilds the same architecture (random weights), e.g. for from_config-style use
    fresh = TTDSForCausalLM(TTDSConfig.from_dict(cfg.to_dict()))
    assert {n: p.shape for n, p in fresh.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}


def test_answer_only_loss_equals_the_full_lm_loss_and_its_gradients(built):
    """return_logits=False (the trainer's path) projects only the answer positions: same loss, same grads."""
    model, tokenizer = built
    model = copy.deepcopy(model)
    model.set_phase("joint")
    ids, mask = _texts(tokenizer, ["Movie 3 about love", "Movie 7 about war and friends and more"])
    ids[:, -2] = model.config.vocab_size - 1  # a new (code) token row among the answers: its delta trains too
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # the "prompt"
    grads = []
    for return_logits in (True, False):
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels, return_logits=return_logits)
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        losses = out.lm_loss if return_logits else (out.lm_loss, out.logits)
    full_loss = model(input_ids=ids, attention_mask=mask, labels=labels).lm_loss
    assert losses[1] is None
    torch.testing.assert_close(losses[0], full_loss)
    assert grads[0].keys() == grads[1].keys() and any("trainable_tokens" in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4)
    no_answer = torch.full_like(labels, -100)
    assert model(input_ids=ids, attention_mask=mask, labels=no_answer, return_logits=False).lm_loss == 0
    with pytest.raises(ValueError, match="return_logits=False takes no extra LLM arguments"):
        model(input_ids=ids, attention_mask=mask, labels=labels, return_logits=False, output_hidden_states=True)


def test_forward_combines_losses_and_phases_control_gradients(built):
    model, tokenizer = built
    model = copy.deepcopy(model)
    model.train()
    ids, mask = _texts(tokenizer, ["Movie 3 about love", "Movie 7 about war and friends"])
    labels = ids.masked_fill(mask == 0, -100)
    out = model(input_ids=ids, attention_mask=mask, labels=labels, item_text_input_ids=ids,
                item_text_attention_mask=mask, user_text_input_ids=ids[:1], user_text_attention_mask=mask[:1])
    cfg = model.config
    dm_vae = out.id_loss + cfg.dm_vae_beta * out.token_loss + cfg.tower_reconstruction_weight * out.reconstruction_loss
    torch.testing.assert_close(out.loss, out.lm_loss + cfg.dm_vae_alpha * dm_vae)
    assert out.reconstruction_loss > 0
    assert out.logits.shape == (*ids.shape, cfg.vocab_size)

    model.set_phase("joint")
    model.zero_grad()
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "trainable_tokens_delta" in n)
    assert model.item_generator.encoder[0].weight.grad.abs().sum() > 0  # L_ID through the straight-through path
    assert model.user_generator.encoder[0].weight.grad.abs().sum() > 0
    assert "user_generator.codebooks" not in dict(model.named_parameters())  # EMA codebooks: no optimiser

    model.set_phase("warmup")  # LLM (and LoRA) frozen, towers + new rows train
    model.zero_grad(set_to_none=True)
    model(item_text_input_ids=ids, item_text_attention_mask=mask).loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" in n)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)
    assert model.item_generator.encoder[0].weight.grad is not None
    with pytest.raises(ValueError, match="phase"):
        model.set_phase("stage2")


def test_activation_checkpointing_gives_the_same_loss_and_gradients(built):
    model, tokenizer = built
    plain = copy.deepcopy(model)
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing_enable()
    ids, mask = _texts(tokenizer, ["Movie 3 about love", "Movie 7 about war"])
    grads = []
    for m in (plain, checkpointed):
        m.train()
        m.set_phase("joint")
        out = m(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100),
                item_text_input_ids=ids, item_text_attention_mask=mask)
        out.loss.backward()
        grads.append((out.loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())
    assert not any(getattr(m, "gradient_checkpointing", False) for m in plain.modules())
    torch.testing.assert_close(grads[0][0], grads[1][0])
    assert grads[0][1].keys() == grads[1][1].keys()
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(grad, grads[1][1][name], msg=name)


def test_a_few_steps_lower_the_loss(built):
    model, tokenizer = built
    model = copy.deepcopy(model)
    model.train()
    model.set_phase("joint")
    table = _item_table(model)
    prompts = _texts(tokenizer, ["Movie 1 about love, Movie 2 about war. Answer:"] * 4)
    targets = model.codes_to_token_ids("item", torch.tensor(np.array(table.codes[:4])))
    eos = torch.full((4, 1), tokenizer.eos_token_id)
    ids = torch.cat([prompts[0], targets, eos], 1)
    mask = torch.cat([prompts[1], torch.ones_like(targets), torch.ones_like(eos)], 1)
    labels = torch.cat([torch.full_like(prompts[0], -100), targets, eos], 1)
    item_ids, item_mask = _texts(tokenizer, ["Movie 1 about love", "Movie 2 about war"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(8):
        out = model(input_ids=ids, attention_mask=mask, labels=labels, item_text_input_ids=item_ids,
                    item_text_attention_mask=item_mask)
        losses.append(float(out.loss.detach()))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] - 0.5, losses


_PROMPT_TEXTS = ["Movie 1 about love. Answer:", "Answer:", "Movie 30 about space and war, friends. Answer:"]


def _left_padded_prompts(model, tokenizer):
    """A 20-item code table and three left-padded prompts of different lengths (the model in eval mode)."""
    model.eval()
    table = _item_table(model, n=20)
    return table, tokenizer(_PROMPT_TEXTS, padding=True, padding_side="left", return_tensors="pt")


def test_the_shared_prompt_prefill_gives_the_beams_of_the_per_beam_prefill(built):
    model, tokenizer = built
    table, enc = _left_padded_prompts(model, tokenizer)
    kwargs = {"num_beams": 6, "num_return_sequences": 5, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    shared = model.generate_item_codes(enc["input_ids"], enc["attention_mask"], table.prefix_index(), **kwargs)
    plain = model.generate_item_codes(enc["input_ids"], enc["attention_mask"], table.prefix_index(),
                                      share_prompt=False, **kwargs)
    assert torch.equal(shared[0], plain[0])
    assert torch.allclose(shared[1], plain[1], atol=1e-5)


def test_recommend_returns_only_valid_distinct_items(built):
    model, tokenizer = built
    table, enc = _left_padded_prompts(model, tokenizer)
    codes, scores = model.generate_item_codes(enc["input_ids"], enc["attention_mask"], table.prefix_index(),
                                              num_beams=6, num_return_sequences=5,
                                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert codes.shape == (3, 5, table.num_levels) and scores.shape == (3, 5)
    rows = table.items_for_codes(codes)
    assert bool((rows >= 0).all())  # every beam is an existing item
    assert all(len(set(r)) == 5 for r in rows.tolist())  # beams are distinct items
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())  # best first
    right = tokenizer(_PROMPT_TEXTS, padding=True, padding_side="right", return_tensors="pt")
    with pytest.raises(ValueError, match="left-padded"):
        model.generate_item_codes(right["input_ids"], right["attention_mask"], table.prefix_index(), num_beams=2,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # the old name still works for one release, with a FutureWarning pointing at the one recommend contract
    with pytest.warns(FutureWarning, match="TTDSRecommender.recommend"):
        old_codes, old_scores = model.recommend(enc["input_ids"], enc["attention_mask"], table.prefix_index(),
                                                num_beams=6, num_return_sequences=5,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(old_codes, codes) and torch.allclose(old_scores, scores)


def test_save_load_roundtrip_is_exact(built, base_dir, tmp_path):
    model, tokenizer = built
    model = copy.deepcopy(model)
    with torch.no_grad():  # move every trained part away from its initial value
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
    model.eval()
    model.save_pretrained(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model_type"] == "ttds" and saved["base_model_name_or_path"] == str(base_dir)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "run" / "model.safetensors").exists()  # the base is never copied

    again = TTDSForCausalLM.from_pretrained(tmp_path / "run")
    assert not again.training
    ids, mask = _texts(tokenizer, ["Movie 5 about space", "x"])
    extra = torch.tensor([[model.config.item_token_offset + 3, model.config.user_token_offset + 1]] * 2)
    ids, mask = torch.cat([ids, extra], 1), torch.cat([mask, torch.ones_like(extra)], 1)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits,
                           again(input_ids=ids, attention_mask=mask).logits)
        assert torch.equal(model.compute_codes("item", ids, mask), again.compute_codes("item", ids, mask))
    for a, b in zip(model.item_generator.state_dict().values(), again.item_generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    table = _item_table(model)
    left = tokenizer(["Movie 5 about space. Answer:"], return_tensors="pt")
    kwargs = {"num_beams": 4, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    first = model.generate_item_codes(left["input_ids"], left["attention_mask"], table.prefix_index(), **kwargs)
    second = again.generate_item_codes(left["input_ids"], left["attention_mask"], table.prefix_index(), **kwargs)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_train_base_trains_saves_and_reloads_the_base_weights(base_dir, tmp_path):
    """``train_base``: the joint phase trains the base LLM's own weights too (a base trained from scratch); the
    saved folder carries them (``base_weights.safetensors``) and a reload over the untouched base is exact. The
    default keeps the base frozen and saves no such file."""
    tokenizer = _tokenizer(base_dir)
    model = TTDSForCausalLM.from_base(_config(base_dir, train_base=True), tokenizer, seed=0)
    model.set_phase("warmup")
    base_names = set(model.base_weights())
    trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert not any(n in base_names for n in trainable)  # the warm-up keeps the base frozen
    model.set_phase("joint")
    base_params = [p for n, p in model.llm.named_parameters() if n in base_names]
    assert base_params and all(p.requires_grad for p in base_params)  # the joint phase trains them
    with torch.no_grad():  # "train" the base
        for name, param in model.llm.named_parameters():
            if name in base_names:
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
    model.eval()
    model.save_pretrained(tmp_path / "run")
    assert (tmp_path / "run" / "base_weights.safetensors").is_file()
    again = TTDSForCausalLM.from_pretrained(tmp_path / "run")
    ids, mask = _texts(tokenizer, ["Movie 5 about space", "x"])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits,
                           again(input_ids=ids, attention_mask=mask).logits)
    fresh = TTDSForCausalLM.from_base(_config(base_dir), _tokenizer(base_dir), seed=0)  # the base as loaded by name
    with torch.no_grad():
        assert not torch.equal(fresh(input_ids=ids, attention_mask=mask).logits,
                               again(input_ids=ids, attention_mask=mask).logits)
    (tmp_path / "run" / "base_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="train_base"):
        TTDSForCausalLM.from_pretrained(tmp_path / "run")
    fresh.set_phase("joint")  # the default: the base stays frozen and nothing extra is saved
    assert not any(p.requires_grad for n, p in fresh.llm.named_parameters() if n in set(fresh.base_weights()))
    fresh.save_pretrained(tmp_path / "frozen")
    assert not (tmp_path / "frozen" / "base_weights.safetensors").exists()


def test_reload_refuses_other_base_and_incomplete_folder(built, tmp_path):
    model, _ = built
    model.save_pretrained(tmp_path / "run")
    other = create_tiny_base(tmp_path / "other", CORPUS, vocab_size=400, hidden_size=32)
    with pytest.raises(ValueError, match="hidden_size"):
        TTDSForCausalLM.from_pretrained(tmp_path / "run", base_model_name_or_path=str(other))
    (tmp_path / "run" / "generators.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="generators.safetensors"):
        TTDSForCausalLM.from_pretrained(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="config.json"):
        TTDSForCausalLM.from_pretrained(tmp_path / "nowhere")


def test_a_folder_saved_before_the_new_tower_fields_loads_with_its_old_towers(base_dir, tmp_path):
    """Folders written before dm_vae_token_loss / codebook_update / normalize_latent /
    tower_reconstruction_weight existed have no such keys: they load with the towers they were trained with
    (no decoder, gradient-trained codebooks), not with today's defaults, whose extra weights they lack."""
    tokenizer = _tokenizer(base_dir)
    legacy = {"dm_vae_token_loss": "literal", "codebook_update": "gradient", "normalize_latent": False,
              "tower_reconstruction_weight": 0.0}
    model = TTDSForCausalLM.from_base(_config(base_dir, **legacy), tokenizer, seed=0).eval()
    model.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    for key in [*legacy, "commitment_cost", "codebook_ema_decay"]:
        saved.pop(key, None)
    path.write_text(json.dumps(saved))
    again = TTDSForCausalLM.from_pretrained(tmp_path / "old")
    assert again.config.dm_vae_token_loss == "literal" and again.config.tower_reconstruction_weight == 0.0
    for a, b in zip(model.item_generator.state_dict().values(), again.item_generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert TTDSConfig().dm_vae_token_loss == "vq"  # new configs keep the new defaults
