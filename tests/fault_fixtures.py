"""Tiny synthetic inputs and a tiny pipeline profile for the fault-injection tests (seconds per run)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from genrec.trainers.jobs.profiles import PipelineProfile
from genrec.trainers.jobs.run import run_pipeline

#: Every trained stage in a handful of steps; eval over 20 beams of a 40-item corpus.
TINY = PipelineProfile(
    name="tiny",
    stage1_epochs=None,
    stage1_max_steps=6,
    stage1_patience=None,
    stage1_max_eval_examples=40,
    stage1_config={"hidden_size": 16, "din_attention_hidden_sizes": [8], "din_mlp_hidden_sizes": [16]},
    stage2_max_steps=6,
    stage2_warmup_steps=2,
    stage2_eval_every=3,
    stage2_config={"d_model": 16, "ffn_dim": 32, "num_attention_heads": 2, "decoder_layers": 1},
    max_eval_users=20,
    eval_beams=20,
    num_levels=2,
)
TINY_CODEBOOK = 4


def write_s3rec(folder: Path, *, n_users: int = 60, n_items: int = 40, seed: int = 0) -> Path:
    """An S3-Rec folder (sequences.txt + items.jsonl) of random users over items 1..n_items."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, n_users + 1):
        items = rng.sample(range(1, n_items + 1), rng.randint(4, 8))
        lines.append(" ".join(str(v) for v in (user, *items)))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    colours = ["red", "blue", "green", "black", "white"]
    kinds = ["lipstick", "shampoo", "soap", "brush", "cream", "perfume", "mask", "oil"]
    with (folder / "items.jsonl").open("w") as handle:
        for item in range(1, n_items + 1):
            title = f"{colours[item % 5]} {kinds[item % 8]} number {item}"
            handle.write(json.dumps({"item_id": item, "title": title, "brand": f"brand{item % 3}"}) + "\n")
    return folder


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (posix path relative to it) -> sha256 of its bytes: "nothing was touched"."""
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def save_random_unger(item_ids: list[str], folder: Path) -> Path:
    """A seeded random UNGER model + tokenizer (2 levels x 4 codes) over ``item_ids``, saved as a run folder is."""
    import numpy as np
    import torch

    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
    from genrec.tokenization.code_table import CodeTable
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    codes = np.random.default_rng(0).integers(0, 4, size=(len(item_ids), 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(item_ids, codes, codebook_sizes=[4, 4]))
    torch.manual_seed(0)
    model = UngerForGenerativeRecommendation(
        UngerConfig.from_tokenizer(tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=1)
    )
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    return folder


def run_tiny(dataset: Path | str, out: Path, **overrides: Any) -> dict[str, Any]:
    """``run_pipeline`` with the tiny profile (``overrides`` replace its keyword arguments)."""
    kwargs: dict[str, Any] = {"profile": TINY, "codebook_size": TINY_CODEBOOK, "show_progress": False, "seed": 7}
    kwargs.update(overrides)
    return run_pipeline(str(dataset), out, **kwargs)


def tiny_encoder(folder: Path, corpus: list[str]) -> Path:
    """A random 1-layer BERT (width 16) with a word-level tokenizer over ``corpus``: a second text encoder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=raw.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


#: Runs the tiny pipeline in a fresh process; with a kill point, SIGKILLs itself there (a crash, not an error).
RUN_SCRIPT = r"""
import logging, os, signal, sys
logging.basicConfig(level=logging.INFO)
import torch
torch.set_num_threads(int(os.environ.get("TINY_THREADS", "1")))
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from fault_fixtures import run_tiny
kill = sys.argv[4] if len(sys.argv) > 4 else ""

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if kill in ("stage1", "stage2"):  # right after the step-3 checkpoint of that stage is complete
    from genrec.trainers.engine import checkpoints
    save = checkpoints.CheckpointManager.save
    def killing_save(self, state):
        path = save(self, state)
        if self.root.parent.name == kill and state.global_step == 3:
            die()
        return path
    checkpoints.CheckpointManager.save = killing_save
elif kill == "quantize":  # the quantizer is saved, the tokenizer and code table are not
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
    def killing_save_pretrained(self, *args, **kwargs):
        die()
    SemanticIDTokenizer.save_pretrained = killing_save_pretrained
import json
print(json.dumps(run_tiny(Path(sys.argv[1]), Path(sys.argv[2]))["test_metrics"]))
"""


def run_tiny_subprocess(
    data: Path, out: Path, *, kill: str = "", threads: int = 1, timeout: float = 1200
) -> subprocess.CompletedProcess:
    """``run_tiny(data, out)`` in a fresh Python process with ``threads`` torch threads (optionally killed)."""
    env = {**os.environ, "TINY_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", RUN_SCRIPT, str(data), str(out), str(Path(__file__).parent), kill]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
