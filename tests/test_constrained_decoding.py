"""SemanticIDLogitsProcessor: same scores and beams as PrefixConstrainedLogitsProcessor over a Python trie.

Code tables come from ``genrec.CodeTable`` (collisions resolved by its collision level); the prefix index it
returns is also checked against a slow reference builder of the contract (notes/prefix_index.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PrefixConstrainedLogitsProcessor,
    T5Config,
    T5ForConditionalGeneration,
)

from genrec.modeling.constrained_decoding import DEFAULT_DENSE_MAX_BYTES, SemanticIDLogitsProcessor
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.evaluation.metrics import compute_metrics

PAD, EOS, BOS = 0, 1, 2
NUM_SPECIALS = 3


# ------------------------------------------------------------------------------------------ references


def code_table(semantic: np.ndarray, sizes: list[int]) -> CodeTable:
    """A CodeTable of random semantic codes (a collision level is appended when two items collide)."""
    return CodeTable.from_codes([f"item{i}" for i in range(len(semantic))], semantic, codebook_sizes=sizes)


def reference_prefix_index(codes: np.ndarray, level_sizes: list[int]) -> dict[str, torch.Tensor]:
    """The prefix-index contract (notes/prefix_index.md), built the slow obvious way from unique codes."""
    tuples = [tuple(int(c) for c in row) for row in codes]
    assert len(set(tuples)) == len(tuples), "codes must be unique"
    order = sorted(range(len(tuples)), key=tuples.__getitem__)
    out = {"level_sizes": torch.tensor(level_sizes, dtype=torch.int64)}
    for d in range(codes.shape[1]):
        parents = sorted({t[:d] for t in tuples})
        children = sorted({t[: d + 1] for t in tuples})
        position = {p: i for i, p in enumerate(parents)}
        counts = [0] * len(parents)
        for child in children:
            counts[position[child[:d]]] += 1
        out[f"offsets_{d}"] = torch.tensor([0, *accumulate(counts)], dtype=torch.int64)
        out[f"codes_{d}"] = torch.tensor([c[d] for c in children], dtype=torch.int64)
    out["leaf_items"] = torch.tensor(order, dtype=torch.int64)
    return out


class PythonTrie:
    """The plain-Python reference: nested dicts token -> child, as a prefix_allowed_tokens_fn would use."""

    def __init__(self, codes: np.ndarray, token_offsets: list[int], terminal: int) -> None:
        self.depth = codes.shape[1]
        self.terminal = terminal
        self.root: dict[int, dict] = {}
        self.items: dict[tuple[int, ...], int] = {}
        for row, code in enumerate(codes.tolist()):
            node = self.root
            tokens = tuple(o + c for o, c in zip(token_offsets, code, strict=True))
            for token in tokens:
                node = node.setdefault(token, {})
            self.items[tokens] = row

    def allowed(self, prefix: list[int]) -> list[int]:
        if len(prefix) >= self.depth:
            return [self.terminal]
        node = self.root
        for token in prefix:
            node = node.get(token)
            if node is None:
                return [self.terminal]
        return list(node)

    def fn(self, prompt_length: int):
        return lambda batch_id, sent: self.allowed(sent[prompt_length:].tolist())

    def item_of(self, generated: list[int]) -> str | None:
        row = self.items.get(tuple(generated[: self.depth]))
        return None if row is None else f"item{row}"


@dataclass
class Setup:
    table: CodeTable
    token_offsets: list[int]
    vocab_size: int
    dense_max_bytes: int

    @property
    def codes(self) -> np.ndarray:  # (N, D) unique codes
        return self.table.codes

    @property
    def level_sizes(self) -> list[int]:
        return self.table.codebook_sizes

    @property
    def depth(self) -> int:
        return self.codes.shape[1]

    def index(self) -> dict[str, torch.Tensor]:
        return self.table.prefix_index()

    def trie(self) -> PythonTrie:
        return PythonTrie(self.codes, self.token_offsets, EOS)

    def processor(self, **kwargs) -> SemanticIDLogitsProcessor:
        kwargs.setdefault("eos_token_id", EOS)
        kwargs.setdefault("pad_token_id", PAD)
        return SemanticIDLogitsProcessor(
            self.index(), self.token_offsets, dense_max_bytes=self.dense_max_bytes, **kwargs
        )

    def item_tokens(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.codes[rows] + np.asarray(self.token_offsets), dtype=torch.int64)


@st.composite
def setups(draw, max_items: int = 60, max_levels: int = 3, max_size: int = 6) -> Setup:
    """Random code tables: 1-3 semantic levels (+ collision level when it arises), varied token layouts."""
    levels = draw(st.integers(1, max_levels))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=levels, max_size=levels))
    n = draw(st.integers(1, max_items))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = code_table(rng.integers(0, sizes, size=(n, levels)), sizes)
    level_sizes = table.codebook_sizes
    if draw(st.booleans()):  # one token range per depth, with gaps
        offsets, start = [], NUM_SPECIALS
        for k in level_sizes:
            start += draw(st.integers(0, 3))
            offsets.append(start)
            start += k
    else:  # all depths share one token range
        offsets = [NUM_SPECIALS + draw(st.integers(0, 3))] * len(level_sizes)
    vocab_size = max(o + k for o, k in zip(offsets, level_sizes, strict=True)) + draw(st.integers(0, 5))
    dense = draw(st.sampled_from([0, DEFAULT_DENSE_MAX_BYTES, 4 * max_size]))  # CSR, dense, mixed
    return Setup(table, offsets, vocab_size, dense)


# ------------------------------------------------------------------------------------------ scores


@settings(max_examples=25, deadline=None)
@given(setup=setups())
def test_code_table_prefix_index_matches_the_reference_builder(setup: Setup) -> None:
    got = setup.table.prefix_index()
    expected = reference_prefix_index(setup.codes, setup.level_sizes)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) and got[k].dtype == torch.int64 for k in expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups(), data=st.data())
def test_scores_equal_prefix_constrained_processor(setup: Setup, data: st.DataObject) -> None:
    """Every generated depth (and past it), valid and foreign prefixes, -inf rows: scores are identical."""
    trie = setup.trie()
    prompt_length = data.draw(st.integers(0, 3), label="prompt_length")
    num_beams = data.draw(st.integers(1, 4), label="num_beams")
    rows = num_beams * data.draw(st.integers(1, 3), label="batch")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), label="dtype")
    ours = setup.processor(prompt_length=prompt_length, num_beams=num_beams)
    reference = PrefixConstrainedLogitsProcessor(trie.fn(prompt_length), num_beams)
    for step in range(setup.depth + 2):
        items = setup.item_tokens(rng.integers(0, len(setup.codes), size=rows))
        generated = torch.cat([items, torch.full((rows, 2), EOS)], dim=1)[:, :step]
        foreign = torch.as_tensor(rng.random(rows) < 0.25)  # some rows get arbitrary tokens
        generated[foreign] = torch.as_tensor(
            rng.integers(0, setup.vocab_size, size=(int(foreign.sum()), step))
        )
        prompt = torch.as_tensor(rng.integers(0, setup.vocab_size, size=(rows, prompt_length)))
        input_ids = torch.cat([prompt, generated], dim=1)
        scores = torch.log_softmax(torch.as_tensor(rng.normal(size=(rows, setup.vocab_size)) * 3), -1).to(
            dtype
        )
        scores[torch.as_tensor(rng.random(scores.shape) < 0.2)] = -math.inf  # an earlier processor's -inf
        if rng.random() < 0.3:  # a whole batch entry already dead: PrefixConstrained's fallback
            scores[:num_beams] = -math.inf
        expected = reference(input_ids, scores.clone())
        got = ours(input_ids, scores.clone())
        assert got.device == scores.device and got.dtype == scores.dtype
        assert torch.equal(got, expected), f"step {step}"


@settings(max_examples=25, deadline=None)
@given(setup=setups(), data=st.data())
def test_allowed_mask_matches_trie_and_teacher_forcing_stacks_it(setup: Setup, data: st.DataObject) -> None:
    trie = setup.trie()
    processor = setup.processor(prompt_length=0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows = data.draw(st.integers(1, 6))
    length = setup.depth + data.draw(st.integers(0, 1))  # targets with and without the eos label
    target = torch.cat(
        [setup.item_tokens(rng.integers(0, len(setup.codes), size=rows)), torch.full((rows, 1), EOS)], dim=1
    )[:, :length]
    if data.draw(st.booleans()):  # a foreign target (not an item) must follow the same rules
        target[0] = torch.as_tensor(rng.integers(0, setup.vocab_size, size=length))
    vocab = setup.vocab_size + data.draw(st.integers(0, 3))
    stacked = torch.stack([processor.allowed_mask(target[:, :t], vocab_size=vocab) for t in range(length)], 1)
    forced = processor.teacher_forcing_mask(target, vocab_size=vocab)
    assert forced.shape == (rows, length, vocab) and forced.dtype == torch.bool
    assert torch.equal(forced, stacked)
    for r in range(rows):
        for t in range(length):
            expected = torch.zeros(vocab, dtype=torch.bool)
            expected[trie.allowed(target[r, :t].tolist())] = True
            assert torch.equal(forced[r, t], expected), (r, t)


def test_contract_example_and_terminal_rules() -> None:
    """The worked example of the prefix-index contract, by hand."""
    index = {
        "level_sizes": torch.tensor([3, 4]),
        "offsets_0": torch.tensor([0, 2]),
        "codes_0": torch.tensor([0, 2]),
        "offsets_1": torch.tensor([0, 2, 3]),
        "codes_1": torch.tensor([1, 3, 0]),
        "leaf_items": torch.tensor([0, 1, 2]),
    }
    assert all(
        torch.equal(v, reference_prefix_index(np.array([[0, 1], [0, 3], [2, 0]]), [3, 4])[k])
        for k, v in index.items()
    )
    processor = SemanticIDLogitsProcessor(index, [3, 6], prompt_length=1, eos_token_id=EOS, pad_token_id=PAD)
    assert processor.vocab_size == 10 and processor.num_items == 3 and processor.depth == 2

    def allowed(*prefix: int) -> list[int]:
        mask = processor.allowed_mask(torch.tensor([list(prefix)], dtype=torch.long).view(1, len(prefix)))
        return mask[0].nonzero().flatten().tolist()

    assert allowed() == [3, 5]  # codes 0 and 2 at depth 0
    assert allowed(3) == [7, 9] and allowed(5) == [6]  # (0,1), (0,3) and (2,0)
    assert allowed(4) == [EOS]  # code 1 at depth 0 is no item's prefix
    assert allowed(3, 7) == [EOS] and allowed(3, 8) == [EOS]


def test_no_end_token_leaves_complete_codes_unconstrained() -> None:
    setup = Setup(code_table(np.array([[0, 1], [1, 0]]), [2, 2]), [3, 5], 8, DEFAULT_DENSE_MAX_BYTES)
    processor = setup.processor(prompt_length=1, eos_token_id=None, pad_token_id=None)
    scores = torch.randn(2, 8)
    done = torch.tensor([[BOS, 3, 6], [BOS, 4, 5]])
    assert torch.equal(processor(done, scores), scores)
    foreign = processor(torch.tensor([[BOS, 7], [BOS, 3]]), scores)
    assert foreign[0].isneginf().all()  # an invalid prefix allows nothing
    assert foreign[1].isfinite().tolist() == [False] * 6 + [True, False]
    # pad is the end token when no eos is given
    padded = setup.processor(prompt_length=1, eos_token_id=None, pad_token_id=PAD)
    assert padded(done, scores)[:, PAD].isfinite().all() and padded(done, scores)[:, 1:].isneginf().all()


def test_bad_input_gives_clear_errors() -> None:
    setup = Setup(code_table(np.array([[0, 1], [1, 0]]), [2, 2]), [3, 5], 8, DEFAULT_DENSE_MAX_BYTES)
    index = setup.index()
    with pytest.raises(ValueError, match="token_offsets has 1 entries"):
        SemanticIDLogitsProcessor(index, [3], prompt_length=1)
    with pytest.raises(ValueError, match="inside the code tokens of depth 1"):
        SemanticIDLogitsProcessor(index, [3, 5], prompt_length=1, eos_token_id=6)
    with pytest.raises(ValueError, match="no 'codes_1' entry"):
        SemanticIDLogitsProcessor({k: v for k, v in index.items() if k != "codes_1"}, [3, 5], prompt_length=1)
    with pytest.raises(ValueError, match="strictly ascending"):
        SemanticIDLogitsProcessor({**index, "codes_0": torch.tensor([1, 0])}, [3, 5], prompt_length=1)
    with pytest.raises(ValueError, match="outside 0..1"):
        SemanticIDLogitsProcessor({**index, "codes_1": torch.tensor([1, 2])}, [3, 5], prompt_length=1)
    with pytest.raises(ValueError, match="valid CSR"):
        SemanticIDLogitsProcessor({**index, "offsets_1": torch.tensor([0, 2, 2])}, [3, 5], prompt_length=1)
    processor = setup.processor(prompt_length=2)
    with pytest.raises(ValueError, match="prompt_length=2"):
        processor(torch.tensor([[BOS]]), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="need 7"):
        processor(torch.tensor([[BOS, BOS]]), torch.zeros(1, 6))


def test_from_tokenizer_is_duck_typed() -> None:
    setup = Setup(code_table(np.array([[0, 1], [1, 0], [1, 1]]), [2, 2]), [3, 5], 8, DEFAULT_DENSE_MAX_BYTES)
    tokenizer = SimpleNamespace(
        code_table=SimpleNamespace(prefix_index=setup.index),
        code_token_offsets=[3, 5],
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    processor = SemanticIDLogitsProcessor.from_tokenizer(tokenizer, prompt_length=1)
    assert (
        processor.token_offsets == [3, 5] and processor.eos_token_id == EOS and processor.prompt_length == 1
    )
    assert processor.allowed_mask(torch.tensor([[4]]))[0].nonzero().flatten().tolist() == [5, 6]
    with pytest.raises(TypeError, match="code_table"):
        SemanticIDLogitsProcessor.from_tokenizer(SimpleNamespace(eos_token_id=1))


def test_device_follows_the_inputs_and_index_moves_once() -> None:
    """No path hard-codes CPU: the whole computation runs on the 'meta' device (shapes only), and on CUDA."""
    table = code_table(np.random.default_rng(0).integers(0, 4, size=(40, 2)), [4, 4])
    sizes = table.codebook_sizes
    offsets = list(accumulate([NUM_SPECIALS, *sizes[:-1]]))
    setup = Setup(table, offsets, offsets[-1] + sizes[-1], 0)
    for dense in (0, DEFAULT_DENSE_MAX_BYTES):
        setup.dense_max_bytes = dense
        processor = setup.processor(prompt_length=1)
        for device in ["meta"] + (["cuda"] if torch.cuda.is_available() else []):
            tokens = setup.item_tokens(np.arange(5)).to(device)
            scores = torch.zeros(5, setup.vocab_size, device=device)
            input_ids = torch.cat([torch.zeros(5, 1, dtype=torch.long, device=device), tokens[:, :1]], 1)
            out = processor(input_ids, scores)
            assert out.device == scores.device and out.shape == scores.shape
            assert processor.teacher_forcing_mask(tokens).device == tokens.device
            cached = processor._index_on(scores.device)
            processor(input_ids, scores)
            assert processor._index_on(scores.device) is cached
            if device != "meta":
                cpu = processor(input_ids.cpu(), scores.cpu())
                assert torch.equal(out.cpu(), cpu)


# ------------------------------------------------------------------------------------------ generate


def tiny_t5(vocab_size: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    return T5ForConditionalGeneration(config).eval()


def tiny_llama(vocab_size: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=BOS,
    )
    return LlamaForCausalLM(config).eval()


def generation_inputs(setup: Setup, decoder_only: bool, batch: int, seed: int) -> tuple[dict, int]:
    """Encoder inputs (enc-dec) or left-padded prompts (decoder-only), and the processor's prompt_length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=batch)
    width = int(lengths.max())
    input_ids = torch.full((batch, width), PAD)
    attention_mask = torch.zeros(batch, width, dtype=torch.long)
    for row, n in enumerate(lengths):
        input_ids[row, width - n :] = torch.as_tensor(rng.integers(NUM_SPECIALS, setup.vocab_size, size=n))
        attention_mask[row, width - n :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}, (width if decoder_only else 1)


def run_generate(model, inputs: dict, config: GenerationConfig, **kwargs):
    return model.generate(
        **inputs, generation_config=config, return_dict_in_generate=True, output_scores=True, **kwargs
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups(max_items=40, max_size=5), decoder_only=st.booleans(), data=st.data())
def test_generate_gives_identical_beams(setup: Setup, decoder_only: bool, data: st.DataObject) -> None:
    """Beam search with our processor == with prefix_allowed_tokens_fn: sequences and sequence scores."""
    num_beams = data.draw(st.integers(1, 6), label="num_beams")
    num_return = data.draw(st.integers(1, num_beams), label="num_return_sequences")
    batch = data.draw(st.integers(1, 3), label="batch")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    model = (tiny_llama if decoder_only else tiny_t5)(setup.vocab_size, seed)
    inputs, prompt_length = generation_inputs(setup, decoder_only, batch, seed)
    trie = setup.trie()
    config = GenerationConfig(
        max_new_tokens=setup.depth + 1,
        num_beams=num_beams,
        num_return_sequences=num_return,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=PAD,
        decoder_start_token_id=None if decoder_only else PAD,
    )
    processor = setup.processor(prompt_length=prompt_length, num_beams=num_beams)
    ours = run_generate(model, inputs, config, logits_processor=[processor])
    reference = run_generate(model, inputs, config, prefix_allowed_tokens_fn=trie.fn(prompt_length))
    assert torch.equal(ours.sequences, reference.sequences)
    if num_beams > 1:
        assert torch.equal(ours.sequences_scores, reference.sequences_scores)
    assert all(torch.equal(a, b) for a, b in zip(ours.scores, reference.scores, strict=True))
    generated = ours.sequences[:, prompt_length:].tolist()
    recommended = [[trie.item_of(g) for g in generated[i::num_return]] for i in range(num_return)]
    assert compute_metrics(recommended, ["item0"] * num_return)["invalid_rate"] == 0.0
    assert all(g[setup.depth] == EOS for g in generated)


@pytest.mark.parametrize("decoder_only", [False, True])
def test_sampling_never_returns_an_invalid_item(decoder_only: bool) -> None:
    """do_sample + top_k with the processor: invalid rate 0; the same sampling without it is not (control)."""
    table = code_table(np.random.default_rng(7).integers(0, [6, 5, 4], size=(50, 3)), [6, 5, 4])
    sizes = table.codebook_sizes
    offsets = list(accumulate([NUM_SPECIALS, *sizes[:-1]]))
    setup = Setup(table, offsets, offsets[-1] + sizes[-1] + 10, DEFAULT_DENSE_MAX_BYTES)
    model = (tiny_llama if decoder_only else tiny_t5)(setup.vocab_size, 3)
    inputs, prompt_length = generation_inputs(setup, decoder_only, 4, 3)
    trie = setup.trie()
    num_return = 8
    config = GenerationConfig(
        max_new_tokens=setup.depth,
        do_sample=True,
        top_k=3,
        temperature=2.0,
        num_return_sequences=num_return,
        eos_token_id=EOS,
        pad_token_id=PAD,
        decoder_start_token_id=None if decoder_only else PAD,
    )

    def invalid_rate(**kwargs) -> float:
        torch.manual_seed(0)
        out = model.generate(**inputs, generation_config=config, **kwargs)[:, prompt_length:].tolist()
        recommended = [
            [trie.item_of(g) for g in out[b * num_return : (b + 1) * num_return]] for b in range(4)
        ]
        return compute_metrics(recommended, ["item0"] * 4)["invalid_rate"]

    assert invalid_rate(logits_processor=[setup.processor(prompt_length=prompt_length)]) == 0.0
    assert invalid_rate() > 0.0


def test_with_the_semantic_id_tokenizer_end_to_end() -> None:
    """from_tokenizer(SemanticIDTokenizer) + T5 beam search: every returned code decodes to an item."""
    table = code_table(np.random.default_rng(11).integers(0, [8, 8, 8], size=(300, 3)), [8, 8, 8])
    tokenizer = SemanticIDTokenizer.from_code_table(table)
    processor = SemanticIDLogitsProcessor.from_tokenizer(tokenizer, prompt_length=1, num_beams=10)
    assert processor.num_items == len(table) and processor.depth == table.num_levels
    histories = [[f"item{i}" for i in range(j, j + 5)] for j in range(3)]
    inputs = tokenizer.encode_history(histories, return_tensors="pt")
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    model = T5ForConditionalGeneration(config).eval()
    out = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        num_beams=10,
        num_return_sequences=10,
        max_new_tokens=table.num_levels + 1,
        logits_processor=[processor],
    )
    items, invalid = tokenizer.decode_items(out, return_invalid_mask=True)
    assert len(items) == 30 and not invalid.any()
    recommended = [items[i * 10 : (i + 1) * 10] for i in range(3)]
    assert compute_metrics(recommended, ["item0"] * 3)["invalid_rate"] == 0.0
    assert all(len(set(r)) == 10 for r in recommended)  # distinct items per user
    torch.manual_seed(1)  # beam sampling (do_sample + num_beams, top_k after the processor)
    sampled = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        num_beams=10,
        num_return_sequences=10,
        do_sample=True,
        top_k=5,
        max_new_tokens=table.num_levels + 1,
        logits_processor=[processor],
    )
    assert not tokenizer.decode_items(sampled, return_invalid_mask=True)[1].any()
    free = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        num_beams=10,
        num_return_sequences=10,
        max_new_tokens=table.num_levels + 1,
    )
    assert tokenizer.decode_items(free, return_invalid_mask=True)[1].any()  # control: unconstrained fails
