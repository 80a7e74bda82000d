"""TTDS by repo id over real HTTP on loopback (issue 12, item 3).

A tiny random LLaMA base is published into the olah server of ``test_hub_loopback`` (a Hub-compatible server
on 127.0.0.1) and a TTDS recommender built on it by repo id and pinned revision; ``genrec push`` (HfApi writes
intercepted) gives the exact files of the recommender repo, which are committed into the served git repo. A
fresh process then loads, by repo id at a pinned revision: the recommender (``TTDSRecommender``: adapter,
towers, tokenizer, code tables; the base by the name and revision its config records), the LLM through
``AutoModelForCausalLM`` (genrec's TTDS class) and through peft's ``AutoPeftModelForCausalLM`` (the adapter
alone on the resized base), and gets the local originals' recommendations and logits. A second commit on
``main`` changes the adapter, so the pin is what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from test_hub_loopback import _commit_operations, _fresh, _git, _Recorder, hub  # noqa: F401  (hub: fixture)
from transformers import AutoModelForCausalLM, AutoTokenizer

from genrec.cli import main
from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.jobs.ttds import write_ttds_card
from genrec.trainers.ttds import TRAINING_SUMMARY, TTDSRecommender, create_tiny_base, template_corpus

BASE_REPO, TTDS_REPO = "genrec-test/tiny-llama", "genrec-test/ttds-tiny"
HISTORIES = [["1", "2", "3"], ["7", "4"]]

pytestmark = pytest.mark.usefixtures("one_thread")

LOAD = """
import json, sys
import torch
import genrec
from peft import AutoPeftModelForCausalLM
from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM
from genrec.trainers.ttds import TTDSRecommender
repo, pinned, head, histories, probe = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
x = torch.tensor([probe])
out = {}
for rev in (pinned, head):
    rec = TTDSRecommender.from_pretrained(repo, revision=rev)
    out[rev] = rec.recommend(histories, k=5)
rec = TTDSRecommender.from_pretrained(repo, revision=pinned)
auto = AutoModelForCausalLM.from_pretrained(repo, revision=pinned)
peft_llm = AutoPeftModelForCausalLM.from_pretrained(f"{snapshot_download(repo, revision=pinned)}/adapter")
with torch.no_grad():
    out["logits"] = rec.model(input_ids=x).logits[0, -1].tolist()
    out["auto_logits"] = auto(input_ids=x).logits[0, -1].tolist()
    out["peft_logits"] = peft_llm(input_ids=x).logits[0, -1].tolist()
out["auto_class"] = type(auto).__name__
out["base"] = [rec.model.config.base_model_name_or_path, rec.model.config.base_model_revision]
print("\\n" + json.dumps(out))
"""


def _tiny_recommender(root: Path, base_sha: str) -> tuple[TTDSRecommender, list[int]]:
    """A TTDS recommender on the tiny base, referenced by repo id + commit; trained parts moved off their init."""
    base_dir = root / "base"
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    config = TTDSConfig(
        base_model_name_or_path=BASE_REPO, base_model_revision=base_sha, num_levels=2, codebook_size=8,
        num_collision_tokens=4, lora_r=4, lora_alpha=8, lora_dropout=0.0, user_tower=False,
    )
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))  # the same bytes the server holds at base_sha
    model = TTDSForCausalLM.from_base(config, tokenizer, base_model=base, seed=0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
    model.eval()
    ids = [str(i) for i in range(1, 21)]
    codes = np.random.default_rng(0).integers(0, 8, size=(len(ids), 2))
    table = CodeTable.from_codes(ids, codes, codebook_sizes=[8, 8], always_append=True)
    probe = [tokenizer.bos_token_id, 5, 9, config.item_token_offset + 3]
    return TTDSRecommender(model, tokenizer, table, None), probe


def test_ttds_pushed_and_loaded_by_repo_id_at_a_pinned_revision(hub: dict[str, Any], tmp_path: Path,  # noqa: F811
                                                                monkeypatch) -> None:
    corpus = template_corpus() + [f"Movie {i} about space" for i in range(30)]
    base_dir = create_tiny_base(tmp_path / "base", corpus, vocab_size=300)
    base_repo = hub["mirrors"] / "models" / BASE_REPO
    base_repo.mkdir(parents=True)
    _git(base_repo, "init", "-q", "-b", "main")
    for path in base_dir.iterdir():
        (base_repo / path.name).write_bytes(path.read_bytes())
    _git(base_repo, "add", "-A")
    _git(base_repo, "commit", "-q", "-m", "tiny base")
    base_sha = _git(base_repo, "rev-parse", "HEAD")

    recommender, probe = _tiny_recommender(tmp_path, base_sha)
    folder = tmp_path / "ttds" / "final"
    recommender.save_pretrained(folder)
    summary = {
        "dataset": str(tmp_path / "data"), "metrics": {"test": {"recall@10": 0.25, "ndcg@10": 0.125}},
        "global_step": 8, "dtype": "torch.float32", "total_seconds": 3.0, "example_history": HISTORIES[0],
        "dataset_source": "ml-100k", "training_arguments": {"output_dir": str(tmp_path / "ttds")},
    }
    (folder / TRAINING_SUMMARY).write_text(json.dumps(summary))
    write_ttds_card(folder, summary)
    expected = [[list(pair) for pair in row] for row in recommender.recommend(HISTORIES, k=5)]  # as JSON reads
    with torch.no_grad():
        logits = recommender.model(input_ids=torch.tensor([probe])).logits[0, -1]

    # ---- write path: `genrec push` of the TTDS folder, exact files
    recorder = _Recorder()
    monkeypatch.setattr(HfApi, "create_repo", lambda _api, *args, **kwargs: recorder.create_repo(*args, **kwargs))
    monkeypatch.setattr(HfApi, "create_commit", lambda _api, *args, **kwargs: recorder.create_commit(*args, **kwargs))
    assert main(["push", str(folder), TTDS_REPO, "--revision", "v1"]) == 0
    (commit,) = recorder.commits
    files = {op.path_in_repo: op.path_or_fileobj for op in commit["operations"]}
    assert sorted(files) == [
        "README.md", "adapter/README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json", "adapter/tokenizer_config.json", "config.json", "generators.safetensors",
        "item_code_table/code_table.json", "item_code_table/code_table.parquet", "tokenizer.json",
        "tokenizer_config.json", TRAINING_SUMMARY,
    ]
    readme = files["README.md"].decode()
    meta = yaml.safe_load(readme.split("---")[1])
    assert meta["library_name"] == "genrec" and meta["base_model"] == BASE_REPO and "ttds" in meta["tags"]
    assert meta["pipeline_tag"] == "other" and meta["license"] == "other"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.25
    assert base_sha in readme and f'TTDSRecommender.from_pretrained("{TTDS_REPO}", revision="v1")' in readme
    assert str(tmp_path) not in readme and str(tmp_path) not in files[TRAINING_SUMMARY].decode()
    adapter_config = json.loads(files["adapter/adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] == BASE_REPO and adapter_config["revision"] == base_sha

    # ---- publish exactly those bytes; then move main past the pin (other adapter weights)
    repo = hub["mirrors"] / "models" / TTDS_REPO
    pinned = _commit_operations(repo, commit["operations"], commit["message"])
    weights = load_file(repo / "adapter" / "adapter_model.safetensors")
    save_file({k: -v for k, v in weights.items()}, repo / "adapter" / "adapter_model.safetensors",
              metadata={"format": "pt"})
    _git(repo, "commit", "-q", "-am", "other adapter on main")
    head = _git(repo, "rev-parse", "main")

    # ---- read path over HTTP in a fresh process
    out = _fresh(LOAD, hub, TTDS_REPO, pinned, head, json.dumps(HISTORIES), json.dumps(probe))
    assert out[pinned] == expected
    assert out[head] != expected  # the pin, not main, was loaded
    assert out["base"] == [BASE_REPO, base_sha]
    assert out["auto_class"] == "TTDSForCausalLM"
    for key in ("logits", "auto_logits", "peft_logits"):
        assert out[key] == pytest.approx(logits.tolist(), rel=1e-5, abs=1e-5), key

    # ---- the card's usage snippet runs as written (its pin "v1" is a tag on the published commit)
    _git(repo, "tag", "v1", pinned)
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    ran = _fresh(snippet + "\nimport json\nprint('\\n' + json.dumps(recommender.recommend([history], k=5)))", hub)
    assert ran == [expected[0]]
