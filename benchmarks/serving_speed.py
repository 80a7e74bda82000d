"""Milliseconds per recommended user: a trained UNGER model vs a SASRec-shaped full-softmax top-k, side by side.

Why: generative retrieval replaces one ``hidden @ item_table.T`` + ``topk`` by a beam search over item codes;
what that costs per user is the question a user weighs against its quality. Everything runs in one process,
on the same test histories, alternating the methods round by round so that load on a shared machine hits
them alike. Both wall time and CPU time (``time.process_time``) are recorded: on a shared machine the CPU
time is the steadier number, the wall time what a user would wait.

Methods (``k`` = number of recommended items = number of beams):

* ``unger``: ``model.recommend(histories, tokenizer, k=B, num_beams=B)`` of the saved UNGER folder: constrained
  beam search with genrec's ``SemanticIDLogitsProcessor`` (tensor prefix index).
* ``unger-prefix-fn``: the same model and beam search through ``model.generate(prefix_allowed_tokens_fn=...)``,
  transformers' ``PrefixConstrainedLogitsProcessor`` walking a Python trie of the same codes (the reference of
  ``benchmarks/constrained_decoding.py``); the recommended items are compared with ``unger``'s.
* ``sasrec-topk``: a SASRec-shaped scorer with RecBole's default SASRec shape (hidden 64, 2 layers, 2 heads,
  inner 256, the history capped at the same 20 items): genrec's ``SASRecEncoder`` (the Stage I option) over an
  item-embedding table of the same catalogue, ``user @ table.T`` over every item, ``topk(k)``. Its weights
  are random (speed does not depend on them); it is the full-softmax cost that a trained SASRec pays.

Batch 1 is timed on ``--single-users`` users one by one (after one warm-up user); batch ``B`` > 1 on the first
``B`` test users at once, ``--rounds`` times (median) after one untimed warm-up round (a first run without it
had genrec's processor, timed first at batch 256, at 13.6 vs 7.8 ms/user; warmed up, it was the faster one). Histories: the test split's inputs (every item but the
last of a test row, at most 20 most recent).

    python benchmarks/serving_speed.py --model-dir ../runs/beauty-hie --json speed.json
    python benchmarks/serving_speed.py --model-dir ../runs/beauty-hie --batch 1 --beams 20 --single-users 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from constrained_decoding import python_trie, trie_fn  # a sibling: benchmarks/ is first on sys.path

METHODS = ("unger", "unger-prefix-fn", "sasrec-topk")
SASREC_SHAPE = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 256}


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds elapsed since ``start``."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def test_histories(data_dir: Path, count: int, max_items: int = 20) -> list[list[str]]:
    """The first ``count`` test inputs of a prepared dataset (history = every item but the target)."""
    from genrec.data_scripts.prepare import load_genrec_dataset

    sequences, _ = load_genrec_dataset(data_dir)
    rows = sequences["test"].select(range(min(count, len(sequences["test"]))))
    return [list(items[:-1])[-max_items:] for items in rows["item_ids"]]


class SASRecTopK:
    """SASRec-shaped full-softmax recommender: encoder -> user vector -> scores of every item -> top-k."""

    def __init__(self, item_ids: Sequence[str], max_history: int = 20, seed: int = 0) -> None:
        from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
        from genrec.modeling.modeling_unger_fusion import SASRecEncoder

        torch.manual_seed(seed)
        config = UngerFusionConfig(collaborative_encoder="sasrec", max_history=max_history, dropout=0.0,
                                   **SASREC_SHAPE)
        self.encoder = SASRecEncoder(config).eval()
        self.items = torch.nn.Embedding(len(item_ids) + 1, SASREC_SHAPE["hidden_size"], padding_idx=0)
        self.index = {item: i + 1 for i, item in enumerate(item_ids)}
        self.item_ids = list(item_ids)
        self.max_history = max_history

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence[str]], k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` items of every history (left-padded batch, user = the last position's output)."""
        length = self.max_history
        ids = torch.zeros(len(histories), length, dtype=torch.long)
        for row, history in enumerate(histories):
            known = [self.index[item] for item in history if item in self.index][-length:]
            if known:
                ids[row, length - len(known):] = torch.tensor(known)
        mask = ids > 0
        last = torch.full((len(histories),), length - 1, dtype=torch.long)
        users = self.encoder(self.items(ids), mask, last)
        scores = users @ self.items.weight[1:].T  # (B, num_items): the full softmax's logits
        values, top = torch.topk(scores, k, dim=-1)
        return [[(self.item_ids[j], v) for j, v in zip(r, s, strict=True)]
                for r, s in zip(top.tolist(), values.tolist(), strict=True)]


def prefix_fn_recommender(model: Any, tokenizer: Any) -> Callable[[Sequence[Sequence[str]], int], list[list[str]]]:
    """UNGER's beam search constrained by transformers' ``prefix_allowed_tokens_fn`` over a Python trie."""
    table = tokenizer.code_table
    offsets = list(tokenizer.code_token_offsets)
    trie = python_trie(np.asarray(table.codes), offsets)
    allowed = trie_fn(trie, table.num_levels, prompt_length=1)
    if model.config.eos_token_id != 1:  # trie_fn answers with constrained_decoding.EOS
        raise ValueError("trie_fn assumes eos_token_id 1")

    @torch.no_grad()
    def recommend(histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        enc = tokenizer.encode_history(histories, max_items=model.config.max_history_items, return_tensors="pt")
        out = model.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], num_beams=k,
            num_return_sequences=k, max_new_tokens=model.config.num_code_levels + 1,
            prefix_allowed_tokens_fn=allowed, renormalize_logits=bool(model.config.constrained_training),
            do_sample=False, length_penalty=0.0, early_stopping=True, return_dict_in_generate=True,
            output_scores=True, decoder_start_token_id=model.config.decoder_start_token_id,
            eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id,
        )
        items = tokenizer.decode_items(out.sequences)
        return [items[i * k:(i + 1) * k] for i in range(len(histories))]

    return recommend


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, time every (method, batch, beams) cell, return the result dictionary."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    import genrec  # noqa: F401  (registers UNGER with the Auto classes)

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    start = clock()
    model = AutoModel.from_pretrained(args.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    load_s = since(start)
    data_dir = args.data or Path(args.model_dir) / "data"
    need = max([b for b in args.batch if b > 1] + [args.single_users + 1])
    histories = test_histories(data_dir, need, model.config.max_history_items)
    sasrec = SASRecTopK(tokenizer.code_table.item_ids, model.config.max_history_items)
    by_prefix_fn = prefix_fn_recommender(model, tokenizer)
    methods: dict[str, Callable[[Sequence[Sequence[str]], int], list[list[Any]]]] = {
        "unger": lambda h, k: [[i for i, _ in r] for r in model.recommend(h, tokenizer, k=k, num_beams=k,
                                                                           batch_size=len(h), exclude_history=False)],
        "unger-prefix-fn": by_prefix_fn,
        "sasrec-topk": lambda h, k: [[i for i, _ in r] for r in sasrec.recommend(h, k)],
    }
    methods = {name: fn for name, fn in methods.items() if name in args.methods}
    cells: list[dict[str, Any]] = []
    for beams in args.beams:
        for batch in args.batch:
            if batch == 1:
                groups = [[h] for h in histories[1:args.single_users + 1]]
                for fn in methods.values():  # warm-up: one user
                    fn(histories[:1], beams)
                rounds = 1
            else:
                groups = [histories[:batch]]
                rounds = args.rounds
                for fn in methods.values():  # warm-up at this shape: the first big batch pays allocations
                    fn(groups[0], beams)
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
            outputs: dict[str, list[list[Any]]] = {name: [] for name in methods}
            for _ in range(rounds):
                for name, fn in methods.items():  # alternate: load hits every method alike
                    wall = cpu = 0.0
                    got: list[list[Any]] = []
                    for group in groups:
                        t0 = clock()
                        got += fn(group, beams)
                        w, c = since(t0)
                        wall, cpu = wall + w, cpu + c
                    times[name].append((wall, cpu))
                    outputs[name] = got
            users = sum(len(g) for g in groups)
            for name in methods:
                wall = statistics.median(t[0] for t in times[name])
                cpu = statistics.median(t[1] for t in times[name])
                cell = {"method": name, "batch": batch, "beams": beams, "k": beams, "users": users,
                        "rounds": rounds, "ms_per_user_wall": 1e3 * wall / users,
                        "ms_per_user_cpu": 1e3 * cpu / users}
                if name == "unger-prefix-fn" and "unger" in outputs:
                    same = sum(a == b for a, b in zip(outputs[name], outputs["unger"], strict=True))
                    cell["same_ranked_items_as_unger"] = same / users
                cells.append(cell)
                print(f"{name:16s} batch {batch:4d} beams/k {beams:4d}: {cell['ms_per_user_wall']:8.2f} ms/user "
                      f"wall, {cell['ms_per_user_cpu']:8.2f} ms/user CPU", flush=True)
    return {
        "model_dir": str(args.model_dir), "num_items": len(tokenizer.code_table),
        "code_levels": tokenizer.code_table.num_levels, "codebook_sizes": list(tokenizer.code_table.codebook_sizes),
        "unger_parameters": sum(p.numel() for p in model.parameters()),
        "sasrec_shape": SASREC_SHAPE, "sasrec_parameters": sum(p.numel() for p in sasrec.encoder.parameters())
        + sasrec.items.weight.numel(),
        "load_s": {"wall": load_s[0], "cpu": load_s[1]}, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "cells": cells,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="saved UNGER folder (genrec run output)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: MODEL_DIR/data)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--beams", type=int, nargs="+", default=[20, 100], help="beams = k recommended items")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--single-users", type=int, default=16, help="users timed one by one at batch 1")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timed runs of each batch > 1 (median), after one warm-up run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
