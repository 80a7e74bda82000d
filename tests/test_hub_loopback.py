"""The Hub path over real HTTP on loopback: ``genrec push`` -> a Hub-compatible server -> load by repo id.

The server is olah (PyPI ``olah``, a self-hosted Hub mirror) on 127.0.0.1 in offline mode, serving local git
repositories as Hub repos (its ``mirrors-path``): the same ``/api/.../revision/...``, ``/resolve/...``,
``paths-info`` and ``tree`` endpoints that transformers, huggingface_hub and datasets call on the Hub. olah is
read-only (no upload API), so the write path is ``genrec push`` with ``HfApi.create_repo``/``create_commit``
intercepted: the test asserts the exact files and commit operations, then commits exactly those bytes into
the git repository olah serves. Fresh processes then load the model (where genrec cannot be imported, with
``trust_remote_code=True``) and the dataset by repo id at a pinned revision, and get the recommendations and
rows of the local originals. A second commit on ``main`` changes the weights, so the pin is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from huggingface_hub import CommitInfo, HfApi
from safetensors.torch import load_file, save_file
from test_remote_code import BLOCKER
from testing_utils import free_port

from genrec.cli import main
from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
from genrec.model_cards.card import save_model_card
from genrec.model_cards.run_card import build_run_card
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

MODEL_REPO, DATA_REPO = "genrec-test/unger-tiny", "genrec-test/tiny-data"

# What `genrec push` must upload for a run folder, and nothing else (no stage folders, checkpoints, caches).
MODEL_FILES = [
    "README.md", "code_arrays.py", "code_table.json", "code_table.parquet", "code_table.py", "code_table_files.py",
    "config.json", "config_fields.py",
    "configuration_unger.py", "constrained_decoding.py", "generation_config.json", "model.safetensors",
    "modeling_unger.py", "run.json", "safe_weights.py", "tokenization_semantic_id.py", "tokenizer.json",
    "tokenizer_config.json", "transition_prior.py",
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """olah on 127.0.0.1, offline, serving the git repositories under ``mirrors/<models|datasets>/<org>/<name>``."""
    root = tmp_path_factory.mktemp("olah")
    port = free_port()
    (root / "mirrors").mkdir()
    (root / "olah.toml").write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\nrepos-path = "{root / "cache"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n\n[accessibility]\noffline = true\n'
    )
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "--config", str(root / "olah.toml")], cwd=root, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/api/whoami-v2", timeout=2)  # noqa: S310 (loopback)
                break
            except urllib.error.HTTPError:
                break  # the server answers
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"olah did not start: {(root / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield {"endpoint": endpoint, "mirrors": root / "mirrors", "root": root}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=genrec-test", "-c", "user.email=test@localhost", *args], cwd=repo, check=True,
        capture_output=True, text=True,
    ).stdout.strip()


def _commit_operations(repo: Path, operations: list[Any], message: str) -> str:
    """Apply the recorded ``CommitOperationAdd``s to the served git repo, exactly as the Hub would; the sha."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "main")
    for op in operations:
        target = repo / op.path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        source = op.path_or_fileobj
        target.write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


class _Recorder:
    """Stands in for the two HfApi calls that write (olah has no upload API)."""

    def __init__(self) -> None:
        self.repos: list[tuple[str, str]] = []
        self.commits: list[dict[str, Any]] = []

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, **_: Any) -> str:
        self.repos.append((repo_id, repo_type or "model"))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id: str, operations: Any, *, commit_message: str,
                      repo_type: str | None = None, **_: Any) -> CommitInfo:
        self.commits.append({"repo_id": repo_id, "repo_type": repo_type or "model", "operations": list(operations),
                             "message": commit_message})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message=commit_message,
                          commit_description="", oid="0" * 40)


def _tiny_run(root: Path) -> tuple[Path, Path, list, list]:
    """A small prepared dataset (S3-Rec layout, 300 items) and a run folder with a tiny UNGER model trained a
    few steps on it."""
    rng = np.random.default_rng(0)
    raw = root / "raw"
    raw.mkdir()
    lines = [" ".join([str(u), *map(str, rng.integers(1, 301, size=int(rng.integers(5, 12))))])
             for u in range(1, 201)]
    (raw / "sequences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (raw / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": str(i), "title": f"item {i}"}) + "\n" for i in range(1, 301)), encoding="utf-8"
    )
    data = root / "data-folder"
    prepare_dataset("s3rec", data, path=raw)
    (data / "embeddings").mkdir()
    (data / "embeddings" / "cache.safetensors").write_bytes(b"local cache, not for upload")
    sequences, items = load_genrec_dataset(data)
    ids = items["item_id"]
    codes = np.random.default_rng(0).integers(0, 8, size=(len(ids), 2))
    tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[8, 8]))
    config = UngerConfig.from_tokenizer(tok, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=1,
                                        max_history_items=5)
    torch.manual_seed(0)
    model = UngerForGenerativeRecommendation(config)
    model.set_code_table(tok)
    rows = sequences["train"].select(range(64))
    user_histories = [r[:-1][-3:] for r in sequences["test"].select(range(3))["item_ids"]]
    histories = [r[:-1][-5:] for r in rows["item_ids"]]
    batch = tok.encode_history(histories)
    labels = tok.encode_targets([r[-1] for r in rows["item_ids"]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    run = root / "run"
    model.save_pretrained(run)
    tok.save_pretrained(str(run))
    (run / "stage2" / "checkpoints" / "step-5").mkdir(parents=True)
    (run / "stage2" / "checkpoints" / "step-5" / "model.safetensors").write_bytes(b"checkpoint")
    summary = {
        "dataset": str(data), "source": "s3rec", "seed": 0, "num_levels": 2, "codebook_size": 8,
        "profile": {"name": "test", "eval_beams": 10, "test_beams": None, "stage2_lr_schedule": "constant"},
        "stages": {"prepare": {"seconds": 1.0, "path": str(data)},
                   "stage2": {"seconds": 2.0, "path": "stage2", "steps": 5, "best_step": 5}},  # relative, as runs write
        "test_metrics": {"recall@10": 0.01}, "validation_metrics": {"recall@10": 0.02},
        "model_dir": ".",
    }
    (run / "run.json").write_text(json.dumps(summary))
    save_model_card(run, build_run_card(run, summary, config, tok, repo_id=run.name))
    expected = model.recommend(user_histories, tok, k=5, num_beams=8)
    return run, data, user_histories, expected


def _fresh(script: str, hub: dict[str, Any], *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=hub["endpoint"], HF_HOME=str(hub["root"] / f"hf-home-{len(list(hub['root'].iterdir()))}"),
        HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", HF_HUB_ETAG_TIMEOUT="60", HF_HUB_DOWNLOAD_TIMEOUT="60",
    )
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600,
                         cwd=hub["root"], env=env, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


LOAD_MODEL = BLOCKER + """
from transformers import AutoModel, AutoTokenizer
repo, revision, head, histories = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
out = {}
for rev in (revision, head):
    model = AutoModel.from_pretrained(repo, trust_remote_code=True, revision=rev)
    tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True, revision=rev)
    out[rev] = model.recommend(histories, tokenizer, k=5, num_beams=8)
out["classes"] = [type(model).__module__, type(tokenizer).__module__]
print("\\n" + json.dumps({**out, **_not_genrec(os.environ["GENREC_REPO_ROOT"])}))
"""

LOAD_DATASET = """
import json, sys
from genrec.data_scripts.prepare import load_genrec_dataset
sequences, items = load_genrec_dataset(sys.argv[1], revision=sys.argv[2])
print("\\n" + json.dumps({"rows": {s: len(d) for s, d in sequences.items()}, "test0": sequences["test"][0],
                          "items": len(items), "item0": items[0]["item_id"]}))
"""


def test_push_then_load_by_repo_id_at_a_pinned_revision(hub: dict[str, Any], tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    run, data, histories, expected = _tiny_run(tmp_path)
    recorder = _Recorder()
    monkeypatch.setattr(HfApi, "create_repo", lambda _api, *args, **kwargs: recorder.create_repo(*args, **kwargs))
    monkeypatch.setattr(HfApi, "create_commit", lambda _api, *args, **kwargs: recorder.create_commit(*args, **kwargs))

    # ---- write path: the exact repos, files and commits
    assert main(["push", str(run), MODEL_REPO, "--dataset-repo", DATA_REPO]) == 0
    assert main(["push", str(data), DATA_REPO, "--dataset"]) == 0
    assert recorder.repos == [(MODEL_REPO, "model"), (DATA_REPO, "dataset")]
    model_commit, data_commit = recorder.commits
    assert model_commit["repo_id"] == MODEL_REPO and model_commit["repo_type"] == "model"
    assert [op.path_in_repo for op in model_commit["operations"]] == MODEL_FILES
    files = {op.path_in_repo: op.path_or_fileobj for op in model_commit["operations"]}
    readme = files["README.md"].decode()
    assert f'AutoModel.from_pretrained("{MODEL_REPO}", trust_remote_code=True)' in readme
    assert f"datasets:\n- {DATA_REPO}" in readme and "model-index:" in readme and "license: other" in readme
    for name in ("README.md", "run.json", "config.json", "tokenizer_config.json", "generation_config.json"):
        content = files[name] if isinstance(files[name], bytes) else Path(files[name]).read_bytes()
        assert str(tmp_path).encode() not in content, name  # no local path is published
    assert json.loads(files["run.json"])["stages"]["stage2"]["path"] == "stage2"
    assert data_commit["repo_id"] == DATA_REPO and data_commit["repo_type"] == "dataset"
    data_files = sorted(op.path_in_repo for op in data_commit["operations"])
    local_files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*")
                         if p.is_file() and not p.relative_to(data).as_posix().startswith("embeddings/"))
    assert data_files == local_files and "README.md" in data_files
    card = next(Path(op.path_or_fileobj) for op in data_commit["operations"] if op.path_in_repo == "README.md")
    assert "license: other" in card.read_text() and "## Licence and provenance" in card.read_text()
    assert not any(name.startswith("embeddings/") for name in data_files)  # the local cache stays local

    # ---- publish exactly those bytes into the repos the server serves; then move main past the pin
    model_repo = hub["mirrors"] / "models" / MODEL_REPO
    pinned = _commit_operations(model_repo, model_commit["operations"], model_commit["message"])
    weights = load_file(model_repo / "model.safetensors")
    weights["lm_head.weight"] = -weights["lm_head.weight"]
    save_file(weights, model_repo / "model.safetensors", metadata={"format": "pt"})
    _git(model_repo, "commit", "-q", "-am", "other weights on main")
    head = _git(model_repo, "rev-parse", "main")  # (olah answers tree listings of a *branch* of a local
    # mirror with 401 where a missing folder should be 404, which transformers' tokenizer loading probes)
    data_sha = _commit_operations(hub["mirrors"] / "datasets" / DATA_REPO, data_commit["operations"],
                                  data_commit["message"])

    # ---- read path over HTTP, fresh processes
    monkeypatch.setenv("GENREC_REPO_ROOT", str(Path(__file__).resolve().parents[1]))
    out = _fresh(LOAD_MODEL, hub, MODEL_REPO, pinned, head, json.dumps(histories))
    assert out["blocked_modules_loaded"] == [] and out["repo_files_loaded"] == []
    assert all(name.startswith("transformers_modules.") for name in out["classes"])
    # Same items in the same order; scores equal up to float rounding (the fresh process may run with another
    # number of CPU threads, and bit-equality is only promised at equal thread counts: README).
    assert [[i for i, _ in row] for row in out[pinned]] == [[i for i, _ in row] for row in expected]
    assert [[s for _, s in row] for row in out[pinned]] == [
        pytest.approx([s for _, s in row], rel=1e-5, abs=1e-5) for row in expected
    ]
    assert [[i for i, _ in row] for row in out[head]] != [[i for i, _ in row] for row in expected]

    loaded = _fresh(LOAD_DATASET, hub, DATA_REPO, data_sha)
    sequences, items = load_genrec_dataset(data)
    assert loaded["rows"] == {split: len(rows) for split, rows in sequences.items()}
    assert loaded["test0"] == sequences["test"][0] and loaded["items"] == len(items)
    assert loaded["item0"] == items[0]["item_id"]


FINETUNE = """
import json, sys
from genrec.cli import main
repo, revision, data, out = sys.argv[1:5]
code = main(["finetune", "--from", repo, "--revision", revision, "--dataset", data, "--out", out,
             "--profile", "quick", "--stage2-steps", "2"])
summary = json.load(open(out + "/run.json"))
print("\\n" + json.dumps({"code": code, "finetune": summary["finetune"],
                          "transfer": summary["stages"]["stage2"]["transfer"]["tensors_copied"],
                          "invalid": summary["test_metrics"]["invalid_rate"]}))
"""


def test_finetune_from_a_repo_id_at_a_pinned_revision(hub: dict[str, Any], tmp_path: Path) -> None:
    """`genrec finetune --from org/repo --revision SHA --dataset NEW` in a fresh process, over HTTP."""
    run, data, _, _ = _tiny_run(tmp_path)
    repo = hub["mirrors"] / "models" / "genrec-test/unger-source"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for path in run.iterdir():
        if path.is_file():
            (repo / path.name).write_bytes(path.read_bytes())
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "source model")
    pinned = _git(repo, "rev-parse", "HEAD")
    (repo / "config.json").write_text(json.dumps({"model_type": "bert"}))  # main moves on: not an UNGER model
    _git(repo, "commit", "-q", "-am", "something else on main")
    out = _fresh(FINETUNE, hub, "genrec-test/unger-source", pinned, str(tmp_path / "raw"), str(tmp_path / "ft"))
    assert out["code"] == 0 and out["invalid"] == 0.0
    assert out["finetune"]["source"] == "genrec-test/unger-source" and out["finetune"]["revision"] == pinned
    assert out["transfer"] > 5
    card = (tmp_path / "ft" / "README.md").read_text()
    assert "base_model: genrec-test/unger-source" in card and f"genrec-test/unger-source @ {pinned}" in card
