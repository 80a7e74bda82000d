"""TTDS training-step cost: a pretrained base (SmolLM2-135M) beside the tiny random one, and where a step goes.

For each base, batch size and thread count, one process times (interleaved, after a warm-up, medians):

- ``lm_answer_only``: forward + backward of ``L_LLM`` with the LM head applied only where the next token is an
  answer token (``TTDSForCausalLM.forward(..., return_logits=False)``, what the trainer uses);
- ``lm_all_positions``: the same loss with logits over every position (the LLM's own ``labels=`` path);
- ``head_answer_only``: the LM head alone at the answer positions, forward + backward on fixed hidden states:
  the most a *restricted* output head (scoring only the semantic-token rows) could save, since the rest of the
  step does not depend on the head's width;
- ``dm_vae``: the alignment part of a joint step (``dm_vae_loss`` on a batch of item texts), forward + backward.

The sequences are random token ids of the measured ML-100K lengths (``--prompt-length``: a seqrec prompt with 20
history items, ~110 tokens with SmolLM2's tokenizer; answer = 3 codes + collision + eos), so the figures are the
cost of a step, not of a particular batch. LoRA r 8 on q/k/v/o, base frozen (the paper's setting; the tiny base
too, so the two rows differ only in the base).

Usage::

    python benchmarks/ttds_step_time.py                                        # tiny base only, batch 16, 1 thread
    python benchmarks/ttds_step_time.py --bases tiny smollm2-135m --batch-sizes 8 16 32 --threads 1 2 \\
        --json-out benchmarks/results/ttds-step-time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def build_model(base: str, tmp: Path, args: argparse.Namespace) -> Any:
    """A TTDS model (M=3, N=16, LoRA r 8, base frozen) around ``base`` ("tiny" = a random LlamaConfig + BPE)."""
    from transformers import AutoTokenizer

    from genrec.modeling.configuration_ttds import TTDSConfig
    from genrec.modeling.modeling_ttds import TTDSForCausalLM
    from genrec.modeling.packaged_bases import base_load_arguments
    from genrec.trainers.ttds import create_tiny_base, template_corpus

    if base == "tiny":
        corpus = template_corpus() + [f"Item {i} about {w}" for i in range(200) for w in ("space", "love", "war")]
        name = str(create_tiny_base(tmp / "tiny", corpus, vocab_size=args.tiny_vocab_size, hidden_size=64,
                                    num_layers=2, num_heads=4))
    else:
        name = base
    folder, load_kwargs = base_load_arguments(name, {})
    tokenizer = AutoTokenizer.from_pretrained(folder, **load_kwargs)
    config = TTDSConfig(base_model_name_or_path=name, num_levels=3, codebook_size=16, num_collision_tokens=256,
                        lora_r=8, lora_alpha=16)
    model = TTDSForCausalLM.from_base(config, tokenizer, seed=0, dtype=torch.float32)
    model.set_phase("joint")
    model.train()
    return model


def timers(model: Any, batch_size: int, args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    """The timed closures of one (model, batch size): each runs forward + backward once."""
    gen = torch.Generator().manual_seed(0)
    length = args.prompt_length + args.answer_length
    base_vocab = model.config.base_vocab_size
    ids = torch.randint(3, base_vocab, (batch_size, length), generator=gen)
    # the answer: semantic tokens (their rows are the ones a restricted head would keep) + eos
    ids[:, args.prompt_length:] = torch.randint(base_vocab, model.config.vocab_size, (batch_size, args.answer_length),
                                                generator=gen)
    labels = ids.clone()
    labels[:, : args.prompt_length] = -100
    mask = torch.ones_like(ids)
    item_ids = torch.randint(3, base_vocab, (batch_size, args.item_text_length), generator=gen)
    item_mask = torch.ones_like(item_ids)
    head = model.base_llm.get_output_embeddings()
    with torch.no_grad():
        hidden = model.decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    rows, cols = (targets != -100).nonzero(as_tuple=True)
    answer_hidden = hidden[:, :-1][rows, cols].detach().requires_grad_(True)
    answer_targets = targets[rows, cols]

    def lm(return_logits: bool) -> Callable[[], None]:
        def run() -> None:
            out = model(input_ids=ids, attention_mask=mask, labels=labels, return_logits=return_logits)
            out.lm_loss.backward()
        return run

    def head_only() -> None:
        torch.nn.functional.cross_entropy(head(answer_hidden).float(), answer_targets).backward()

    def dm_vae() -> None:
        id_loss, token_loss, rec_loss = model.dm_vae_loss("item", item_ids, item_mask)
        (id_loss + token_loss + rec_loss).backward()

    return {"lm_answer_only": lm(False), "lm_all_positions": lm(True), "head_answer_only": head_only,
            "dm_vae": dm_vae}


def measure(model: Any, batch_size: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    """Median seconds of each closure at ``threads`` (interleaved repeats after one warm-up round)."""
    torch.set_num_threads(threads)
    closures = timers(model, batch_size, args)
    times: dict[str, list[float]] = {name: [] for name in closures}
    for round_ in range(args.repeats + 1):
        for name, run in closures.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            run()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(v) for name, v in times.items()}
    return {
        "median_seconds": {k: round(v, 4) for k, v in medians.items()},
        "head_share_of_lm_step": round(medians["head_answer_only"] / medians["lm_answer_only"], 4),
        "all_positions_over_answer_only": round(medians["lm_all_positions"] / medians["lm_answer_only"], 2),
        "repeats": args.repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", nargs="+", default=["tiny"],
                        help="'tiny' (random LlamaConfig, hidden 64, 2 layers), 'smollm2-135m', a Hub name or folder")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--tiny-vocab-size", type=int, default=2000)
    parser.add_argument("--prompt-length", type=int, default=110, help="prompt tokens per example")
    parser.add_argument("--answer-length", type=int, default=5, help="answer tokens (M codes + collision + eos)")
    parser.add_argument("--item-text-length", type=int, default=24, help="tokens of an item text (DM-VAE batch)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per configuration")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {base: build_model(base, Path(tmp), args) for base in args.bases}
        for threads in args.threads:
            for batch_size in args.batch_sizes:
                for base, model in models.items():
                    row = {"base": base, "batch_size": batch_size, "threads": threads,
                           "parameters": sum(p.numel() for p in model.parameters()),
                           **measure(model, batch_size, threads, args)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    report = {
        "what": __doc__.split("\n\n")[0],
        "command_args": vars(args),
        "rows": rows,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
