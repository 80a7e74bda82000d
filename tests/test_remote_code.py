"""Saved folders are transformers remote code: they load with ``trust_remote_code=True`` where genrec is NOT
importable, and recommend exactly as genrec does.

The fresh process blocks every import of genrec and of the repository's top-level folders (a meta-path finder
raising ``ModuleNotFoundError``, installed before transformers is imported), runs from a folder without them
(no ``sys.path`` entry reaches this repository) and asserts at the end that no module of genrec or of this
repository was loaded: the classes it used come from ``transformers_modules``, i.e. from the files saved in
the folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_unger_model import HISTORIES, make_tokenizer, tiny_model

from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import UngerFusionModel

REPO_ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, json, os, sys
BLOCKED = {"genrec", "modeling", "tokenization", "trainers", "data_scripts", "model_cards"}
class _NoGenrec(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: genrec is not installed here")
sys.meta_path.insert(0, _NoGenrec())
try:
    import genrec  # noqa: F401
    raise SystemExit("genrec is importable: the test proves nothing")
except ModuleNotFoundError:
    pass

def _not_genrec(repo_root):
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    env = os.path.abspath(sys.prefix) + os.sep  # a virtual environment may live inside the repository
    ours = [f for f in map(os.path.abspath, filter(None, files))
            if f.startswith(repo_root + os.sep) and not f.startswith(env)]
    return {"blocked_modules_loaded": loaded, "repo_files_loaded": ours}
"""

UNGER_SCRIPT = BLOCKER + """
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer
folder, repo_root = sys.argv[1], sys.argv[2]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
seq2seq = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
histories = json.loads(sys.argv[3])
recommended = model.recommend(histories, tokenizer, k=5, num_beams=8)
inputs = tokenizer([" ".join(h) for h in histories], padding=True, return_tensors="pt")
generated = model.generate(**inputs)
print("\\n" + json.dumps({
    "classes": [type(o).__module__ + "." + type(o).__name__ for o in (config, model, seq2seq, tokenizer)],
    "recommended": recommended,
    "generated": generated.tolist(),
    "generated_items": tokenizer.decode_items(generated),
    **_not_genrec(repo_root),
}))
"""

FUSION_SCRIPT = BLOCKER + """
import torch
from transformers import AutoConfig, AutoModel
folder, repo_root = sys.argv[1], sys.argv[2]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
history = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
with torch.no_grad():
    out = model(history, (history != 0).long())
print("\\n" + json.dumps({
    "classes": [type(o).__module__ + "." + type(o).__name__ for o in (config, model)],
    "logits": out.logits.tolist(),
    **_not_genrec(repo_root),
}))
"""


def _run_without_genrec(script: str, folder: Path, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter where genrec cannot be imported; its last stdout line is JSON."""
    work = folder.parent / "elsewhere"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(folder.parent / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(REPO_ROOT), *args], capture_output=True, text=True,
        timeout=300, cwd=work, env=env, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["blocked_modules_loaded"] == [] and out["repo_files_loaded"] == []
    assert all(name.startswith("transformers_modules.") for name in out["classes"]), out["classes"]
    return out


def _no_package_imports(folder: Path) -> None:
    """The copied source imports its siblings with single dots only (never ``genrec.`` or two dots)."""
    for source in folder.glob("*.py"):
        text = source.read_text()
        assert not re.search(r"^\s*(from|import)\s+genrec\b", text, re.M), source.name
        assert not re.search(r"^\s*from\s+\.\.", text, re.M), source.name


def test_unger_folder_loads_and_recommends_without_genrec(tmp_path: Path) -> None:
    tok = make_tokenizer()
    model = tiny_model(tok, integrated_dim=8, history_mode="per_item").eval()
    model.set_code_table(tok)
    folder = tmp_path / "unger"
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_unger.UngerConfig",
        "AutoModel": "modeling_unger.UngerForGenerativeRecommendation",
        "AutoModelForSeq2SeqLM": "modeling_unger.UngerForGenerativeRecommendation",
    }
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_config["auto_map"]["AutoTokenizer"][0] == "tokenization_semantic_id.SemanticIDTokenizer"
    assert {"configuration_unger.py", "modeling_unger.py", "constrained_decoding.py", "transition_prior.py",
            "tokenization_semantic_id.py", "code_table.py"} <= {p.name for p in folder.glob("*.py")}
    _no_package_imports(folder)

    expected = model.recommend(HISTORIES, tok, k=5, num_beams=8)
    inputs = tok([" ".join(h) for h in HISTORIES], padding=True, return_tensors="pt")
    generated = model.generate(**inputs)
    out = _run_without_genrec(UNGER_SCRIPT, folder, json.dumps(HISTORIES))
    assert out["classes"][3].endswith(".SemanticIDTokenizer")
    # same items in the same order; scores up to float rounding (the subprocess's thread count may differ)
    assert [[i for i, _ in row] for row in out["recommended"]] == [[i for i, _ in row] for row in expected]
    assert [[s for _, s in row] for row in out["recommended"]] == [
        pytest.approx([s for _, s in row], rel=1e-5, abs=1e-5) for row in expected
    ]
    assert out["generated"] == generated.tolist()
    assert None not in out["generated_items"]
    assert len(out["generated_items"]) == len(HISTORIES) * model.generation_config.num_return_sequences


def test_mscgrec_folder_loads_and_recommends_without_genrec(tmp_path: Path) -> None:
    import numpy as np

    from genrec.modeling.configuration_mscgrec import MSCGRecConfig
    from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
    from genrec.tokenization.code_table import CodeTable

    tok = make_tokenizer()
    items = tok.code_table.item_ids
    picks = np.random.default_rng(3).permutation(5**3)[: len(items)]
    text = CodeTable.from_codes(items, np.stack(np.unravel_index(picks, (5, 5, 5)), axis=1), codebook_sizes=[5, 5, 5])
    config = MSCGRecConfig.from_tokenizer(
        tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2, history_modalities=["text"],
        history_codebook_sizes=[text.codebook_sizes],
    )
    torch.manual_seed(0)
    model = MSCGRecForGenerativeRecommendation(config).eval()
    model.set_code_table(tok)
    model.set_modality_codes(tok, {"text": text})
    folder = tmp_path / "mscgrec"
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == "configuration_mscgrec.MSCGRecConfig"
    assert auto_map["AutoModel"] == "modeling_mscgrec.MSCGRecForGenerativeRecommendation"
    assert {"configuration_mscgrec.py", "modeling_mscgrec.py", "configuration_unger.py", "modeling_unger.py"} <= {
        p.name for p in folder.glob("*.py")
    }
    _no_package_imports(folder)
    expected = model.recommend(HISTORIES, tok, k=5, num_beams=8)
    out = _run_without_genrec(UNGER_SCRIPT, folder, json.dumps(HISTORIES))
    assert out["classes"][1].endswith(".MSCGRecForGenerativeRecommendation")
    assert [[i for i, _ in row] for row in out["recommended"]] == [[i for i, _ in row] for row in expected]
    assert None not in out["generated_items"]


def test_fusion_folder_loads_without_genrec(tmp_path: Path) -> None:
    config = UngerFusionConfig(
        num_items=30, semantic_dim=12, hidden_size=8, max_history_items=6, din_attention_hidden_sizes=[8],
        din_mlp_hidden_sizes=[16], intermediate_size=16, num_attention_heads=2,
    )
    torch.manual_seed(0)
    model = UngerFusionModel(config, semantic_embeddings=torch.randn(30, 12)).eval()
    folder = tmp_path / "fusion"
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_unger_fusion.UngerFusionConfig",
        "AutoModel": "modeling_unger_fusion.UngerFusionModel",
    }
    _no_package_imports(folder)
    history = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        expected = model(history, (history != 0).long()).logits
    out = _run_without_genrec(FUSION_SCRIPT, folder)
    assert torch.equal(torch.tensor(out["logits"]), expected)


def test_blocker_really_blocks(tmp_path: Path) -> None:
    """The check of the tests above can fail: a script that imports genrec is caught."""
    script = BLOCKER + "\nimport genrec.modeling.modeling_unger\n"
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode != 0 and "blocked" in run.stderr
