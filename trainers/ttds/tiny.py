"""Tiny LLaMA-architecture bases trained from scratch on the recommendation prompts (tests, CPU runs; the
7B path is the same code with another name)."""


from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genrec.trainers.ttds.args import TASK_TEMPLATES
from genrec.trainers.ttds.data import TTDSData

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ tiny bases


def train_bpe_tokenizer(corpus: Sequence[str], *, vocab_size: int = 1000) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``corpus`` (bos ``<s>`` added, eos ``</s>``,
    pad ``<pad>``, unk ``<unk>``), for offline experiments with tiny random LLaMA models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def create_tiny_base(
    out_dir: str | Path,
    corpus: Sequence[str],
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Writes a tiny random ``LlamaForCausalLM`` + a BPE tokenizer trained on ``corpus`` into ``out_dir``.

    The folder is then a base model exactly like a Hub name (``TTDSConfig(base_model_name_or_path=out_dir)``),
    which is how tests and the tiny benchmark exercise the 7B code path without a download.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_bpe_tokenizer(corpus, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def pretrain_tiny_base(
    base_dir: str | Path,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    max_tokens: int = 64,
    seed: int = 0,
) -> Path:
    """A tiny base made a (very small) pretrained language model: ``steps`` AdamW steps of next-token
    prediction on ``texts`` (e.g. the item texts), written to ``out_dir`` with the tokenizer.

    The paper's LLM arrives pretrained, so its pooled representations of item texts — what TTDS's towers
    quantise — already carry the items' semantics and move little under LoRA. A random tiny base has no such
    representations; trained from scratch on the tasks, they are re-learned and every dynamic code update
    re-draws almost every code (docs/ttds.md). Pretraining on the item texts first gives a CPU-sized stand-in
    for that starting point. Seeded: batches are a seeded sample of ``texts``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrec.modeling.safe_weights import load_base_llm

    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("pretrain_tiny_base needs at least one non-empty text")
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = load_base_llm(AutoModelForCausalLM, str(base_dir), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(steps):
            picks = torch.randint(len(texts), (batch_size,), generator=generator).tolist()
            enc = tokenizer([texts[i] for i in picks], truncation=True, max_length=max_tokens, padding=True,
                            return_tensors="pt")
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0 or step + 1 == steps:
                logger.info("pretraining the tiny base: step %d/%d, loss %.3f", step + 1, steps,
                            sum(losses[-100:]) / len(losses[-100:]))
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def template_corpus() -> list[str]:
    """The instruction templates' words (for training tiny tokenizers that cover the prompts)."""
    return [t for templates in TASK_TEMPLATES.values() for t in templates]


def iter_sizes(data: TTDSData) -> Iterator[tuple[str, int]]:
    """(name, count) pairs describing a dataset, for logs."""
    yield "items", len(data.item_ids)
    yield "users", len(data.user_ids)
    yield from data.task_counts().items()


def summarize_metrics(metrics: Mapping[str, float], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The paper's columns: HR@1/5/10, NDCG@5/10 (plus invalid rate), rounded for reports."""
    keys = [f"hr@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k > 1] + ["invalid_rate"]
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics and math.isfinite(metrics[k])}
