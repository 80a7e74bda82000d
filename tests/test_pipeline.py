"""The main job end to end (quick profile): every stage runs, the run folder is a loadable model."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.cli import main
from genrec.trainers.evaluation.metrics import metrics_from_ranks
from genrec.trainers.jobs.profiles import PROFILES
from genrec.trainers.jobs.run import run_pipeline

HISTORIES = [["1", "2", "3"], ["50"], ["100", "181", "258", "7", "9"]]

FRESH_PROCESS = """
import json, sys
import genrec  # registers UNGER with the Auto classes
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer
run_dir, histories = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(run_dir)
tokenizer = AutoTokenizer.from_pretrained(run_dir)
assert type(model).__name__ == "UngerForGenerativeRecommendation", type(model)
assert type(AutoModelForSeq2SeqLM.from_pretrained(run_dir)) is type(model)
assert type(tokenizer).__name__ == "SemanticIDTokenizer", type(tokenizer)
print(json.dumps(model.recommend(histories, tokenizer, k=10, num_beams=20)))
"""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "ml-100k"
    summary = run_pipeline("ml-100k", out, profile="quick", show_progress=False)
    return out, summary


def test_every_stage_runs_and_reports_test_metrics(quick_run: tuple[Path, dict]) -> None:
    out, summary = quick_run
    assert list(summary["stages"]) == [
        "prepare", "embed", "stage1", "quantize", "stage2", "transition_prior", "export"
    ]
    prior = summary["transition_prior"]
    assert prior["num_transitions"] > 1000  # ML-100K's training rows hold tens of thousands of pairs
    assert str(prior["weight"]) in prior["validation"]  # chosen among the validated weights
    best = max(prior["validation"].values(), key=lambda m: m["ndcg@10"])["ndcg@10"]
    assert prior["validation"][str(prior["weight"])]["ndcg@10"] == best
    assert summary["model_test_metrics"]["num_users"] == 943  # the model alone, kept beside the mixture
    metrics = summary["test_metrics"]
    assert metrics["num_users"] == 943  # every ML-100K user has a test example
    assert metrics["invalid_rate"] == 0.0  # constrained decoding: only real items
    for k in (1, 5, 10, 20):
        assert 0.0 <= metrics[f"ndcg@{k}"] <= metrics[f"recall@{k}"] <= 1.0
    assert json.loads((out / "run.json").read_text())["test_metrics"] == metrics
    assert summary["stages"]["stage1"]["steps"] == PROFILES["quick"].stage1_max_steps
    assert summary["stages"]["stage2"]["steps"] == PROFILES["quick"].stage2_max_steps


def test_run_folder_is_a_save_pretrained_folder_with_a_model_card(quick_run: tuple[Path, dict]) -> None:
    out, summary = quick_run
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "code_table.parquet", "README.md"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "library_name: genrec" in card
    assert f"{summary['test_metrics']['recall@10']:.4f}" in card
    assert card.count("```python") == 1  # the usage snippet is one code block
    assert str(out.parent) not in card  # no local path


def test_a_fresh_process_reproduces_the_recommendations(quick_run: tuple[Path, dict]) -> None:
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    out, summary = quick_run
    assert summary["stages"]["stage2"]["path"] == "stage2"  # run.json's paths are relative to the run folder
    best = out / summary["stages"]["stage2"]["path"] / "best"
    from genrec.trainers.stages.transition_prior import fit_transition_prior

    model = UngerForGenerativeRecommendation.from_pretrained(best)
    tokenizer = SemanticIDTokenizer.from_pretrained(str(best))
    fit_transition_prior(model, tokenizer, out / "data", weight=summary["transition_prior"]["weight"])
    expected = model.recommend(HISTORIES, tokenizer, k=10, num_beams=20)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(out), json.dumps(HISTORIES)],
        capture_output=True, text=True, check=True,
    )
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert [[item for item, _ in row] for row in fresh] == [[item for item, _ in row] for row in expected]
    for row_fresh, row_expected in zip(fresh, expected, strict=True):
        assert [score for _, score in row_fresh] == pytest.approx([score for _, score in row_expected], abs=1e-5)
    assert all(len(set(item for item, _ in row)) == 10 for row in fresh)


def test_rerun_reuses_every_stage_and_keeps_its_timings(quick_run: tuple[Path, dict], capsys) -> None:
    out, summary = quick_run
    weights = out / "stage2" / "best" / "model.safetensors"
    trained_at = weights.stat().st_mtime_ns
    again = run_pipeline("ml-100k", out, profile="quick", show_progress=False)
    assert again["test_metrics"] == summary["test_metrics"]
    assert weights.stat().st_mtime_ns == trained_at  # reused, not retrained
    # a rerun that only reuses stages reports what they cost when they ran, not "0.0 s"
    assert {name: stage["seconds"] for name, stage in again["stages"].items()} == {
        name: stage["seconds"] for name, stage in summary["stages"].items()
    }
    assert again["total_seconds"] == summary["total_seconds"]
    assert json.loads((out / "run.json").read_text())["total_seconds"] == summary["total_seconds"]

    # the console's closing block: both rankings labelled, the quick profile flagged, where things are, what next
    assert main(["run", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for expected in ("model alone", "model + transition prior (w = ", "smoke test", "card ", "run.json",
                     "genrec recommend --model", "--split test --out"):
        assert expected in printed, expected
    model_alone = next(line for line in printed.splitlines() if line.strip().startswith("model alone"))
    assert f"{summary['model_test_metrics']['recall@10']:.4f}" in model_alone


def test_cli_recommend_and_evaluate_read_the_run_folder(quick_run: tuple[Path, dict], capsys) -> None:
    out, summary = quick_run
    assert main(["recommend", "--model", str(out), "--history", "1", "2", "3", "-k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rows) == 5 and all(isinstance(row["item_id"], str) for row in rows)
    assert main(["recommend", "--model", str(out), "--history", "no-such-item"]) == 2
    assert "no-such-item" in capsys.readouterr().err
    report = out / "eval.json"
    code = main(["evaluate", "--model", str(out), "--data", str(out / "data"), "--split", "test", "--out", str(report)])
    assert code == 0
    assert json.loads(report.read_text())["metrics"] == pytest.approx(summary["test_metrics"])
    # --per-user: each user's target rank, from which the same metrics follow (benchmarks/paired_compare.py)
    code = main(["evaluate", "--model", str(out), "--data", str(out / "data"), "--per-user", "--out", str(report)])
    result = json.loads(report.read_text())
    per_user = result["per_user"]
    assert code == 0 and len(per_user["user_id"]) == len(per_user["rank"]) == result["num_users"]
    assert metrics_from_ranks(per_user["rank"], ks=(1, 5, 10, 20))["ndcg@10"] == pytest.approx(
        result["metrics"]["ndcg@10"])
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(out / "data"), "--per-user"]) == 2
    assert "--out" in capsys.readouterr().err


def test_stage2_learning_rate_comes_from_the_profile_and_a_change_retrains_only_stage2(
    quick_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """The profile's ``stage2_lr`` is the rate Stage II trains at; changing it retrains Stage II and nothing before
    it, and a run at the paper's 1e-3 keeps the fingerprint of runs made before the field existed."""
    import shutil
    from dataclasses import replace

    from genrec.trainers.stages.stage2_defaults import PAPER_LR

    out, summary = quick_run
    assert PROFILES["quick"].stage2_lr == PAPER_LR and summary["profile"]["stage2_lr"] == PAPER_LR
    assert "stage2_lr" not in json.loads((out / "fingerprints" / "stage2.json").read_text())["settings"]
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    stage1_weights = next((copy / "stage1").rglob("*.safetensors"))
    stage1_at = stage1_weights.stat().st_mtime_ns
    faster = run_pipeline("ml-100k", copy, profile=replace(PROFILES["quick"], stage2_lr=5e-3), show_progress=False)
    assert faster["profile"]["stage2_lr"] == 5e-3
    assert json.loads((copy / "fingerprints" / "stage2.json").read_text())["settings"]["stage2_lr"] == 5e-3
    assert stage1_weights.stat().st_mtime_ns == stage1_at  # Stage I reused
    hparams = [path.read_text() for path in (copy / "stage2" / "logs").rglob("hparams.yml")]
    assert hparams and all("\nlr: 0.005\n" in text for text in hparams)  # the optimizer's peak rate
    assert faster["model_test_metrics"] != summary["model_test_metrics"]  # retrained at the new rate
    for bad in (0, -1e-3, float("nan"), float("inf"), True, "2e-3"):
        with pytest.raises(ValueError, match="stage2_lr must be a positive number"):
            replace(PROFILES["quick"], stage2_lr=bad)


def test_paper_profile_is_the_papers_table_4() -> None:
    """UNGER §4.1.3 / Table 4: cluster depth 4, 20k steps, warm-up 2k from 1e-7 (the trainer's default start),
    the flattened code-sequence history, plain training, no early stop, 100 beams at test."""
    paper = PROFILES["paper"]
    assert paper.num_levels == 4 and paper.stage2_max_steps == 20000 and paper.stage2_epochs is None
    assert paper.stage2_warmup_steps == 2000 and paper.stage2_lr_schedule == "constant" and paper.stage2_lr == 1e-3
    assert paper.stage2_patience is None and paper.test_beams == 100
    assert paper.stage2_config == {"history_mode": "flattened"}  # constrained_training off, as in the paper
    assert paper.stage1_patience is not None and paper.stage1_epochs >= 100  # to convergence, not a budget


def test_unknown_profile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        run_pipeline("ml-100k", tmp_path, profile="fast")


def test_stage_verbs_run_one_after_another(quick_run: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    """The verbs the README lists per stage, chained by hand on the quick run's data (tiny budgets)."""
    out, summary = quick_run
    data, semantic = out / "data", str(out / summary["stages"]["embed"]["path"])
    s1 = tmp_path / "s1"
    assert main(["stage1", "--data", str(data), "--embeddings", semantic, "--out", str(s1), "--max-steps", "4",
                 "--config", '{"hidden_size": 16}']) == 0
    assert "validation Recall@10" in capsys.readouterr().out
    integrated = s1 / "integrated_embeddings.safetensors"
    assert main(["quantize", "--embeddings", str(integrated), "--out", str(tmp_path / "sid"), "--levels", "2",
                 "--codebook-size", "16"]) == 0
    s2 = tmp_path / "s2"
    assert main(["train", "--data", str(data), "--tokenizer", str(tmp_path / "sid" / "tokenizer"), "--out", str(s2),
                 "--integrated-embeddings", str(integrated), "--history-mode", "per_item", "--max-steps", "3",
                 "--warmup-steps", "1", "--eval-every", "3", "--max-eval-users", "20",
                 "--config", '{"d_model": 16, "ffn_dim": 32, "num_attention_heads": 2, "decoder_layers": 1}']) == 0
    assert "recall" in capsys.readouterr().out
    assert (s2 / "best" / "model.safetensors").is_file()
    assert main(["balance", "--fused", str(integrated), "--semantic", semantic, "--collaborative", str(integrated),
                 "--sample", "200"]) == 0
    balance = json.loads(capsys.readouterr().out)
    assert balance["collaborative"] > 0.99  # F == C: all of F's neighbourhood structure is C's


def test_the_cards_usage_snippet_runs_as_written_without_genrec(quick_run: tuple[Path, dict]) -> None:
    """The snippet names the repo (here the run folder, from its parent), real item ids, and needs no genrec."""
    from test_remote_code import BLOCKER

    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    out, _ = quick_run
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert f'from_pretrained("{out.name}", trust_remote_code=True)' in snippet
    run = subprocess.run(
        [sys.executable, "-c", BLOCKER + snippet], capture_output=True, text=True, timeout=300, cwd=out.parent,
        stdin=subprocess.DEVNULL, env={**os.environ, "HF_MODULES_CACHE": str(out.parent / "modules")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    table = SemanticIDTokenizer.from_pretrained(str(out)).code_table
    ranked = [line.split()[0] for line in lines[-11:-1]]
    assert len(ranked) == 10 and all(item in table for item in ranked)
    generated = ast.literal_eval(lines[-1])
    assert len(generated) == 10 and None not in generated


def _small_domain(root: Path) -> Path:
    """A small new domain in the S3-Rec layout (200 users, 300 items with titles)."""
    import numpy as np

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lines = [" ".join([str(u), *map(str, rng.integers(1, 301, size=int(rng.integers(5, 12))))]) for u in range(1, 201)]
    (root / "sequences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": str(i), "title": f"book {i} about topic {i % 7}"}) + "\n" for i in range(1, 301)),
        encoding="utf-8",
    )
    return root


def test_finetune_from_a_run_folder_on_a_new_domain_in_one_command(quick_run: tuple[Path, dict], tmp_path: Path,
                                                                   capsys) -> None:
    """`genrec finetune --from RUN --dataset NEW`: the new domain gets its own codes in the source's layout and
    Stage II starts from the source's weights (after a few warm-up steps they are still near the source's,
    which a random start is not)."""
    from safetensors.torch import load_file

    source, _ = quick_run
    out = tmp_path / "ft"
    assert main(["finetune", "--from", str(source), "--dataset", str(_small_domain(tmp_path / "raw")), "--out", str(out),
                 "--profile", "quick", "--stage2-steps", "4"]) == 0
    assert "fine-tuned from" in capsys.readouterr().out
    summary = json.loads((out / "run.json").read_text())
    assert summary["finetune"]["transfer"] is True and summary["stages"]["stage2"]["steps"] == 4
    assert summary["stages"]["stage2"]["transfer"]["tensors_copied"] > 10
    assert summary["test_metrics"]["invalid_rate"] == 0.0
    src_config, new_config = (json.loads((d / "config.json").read_text()) for d in (source, out))
    assert new_config["codebook_sizes"][:3] == src_config["codebook_sizes"][:3]  # the source's layout
    assert new_config["num_items"] == summary["stages"]["embed"]["items"] != src_config["num_items"]
    assert new_config["d_model"] == src_config["d_model"]
    src, new = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    name = "decoder.layers.0.self_attn.q_proj.weight"
    change = float((new[name] - src[name]).norm() / src[name].norm())
    assert change < 0.05, change  # 4 warm-up steps at <= 4e-4 of the peak rate; a random start differs by ~140 %
    assert "Stage II initialised from" in (out / "README.md").read_text()
    assert main(["finetune", "--from", str(source), "--base-model", "x", "--dataset", "d", "--out", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_transition_prior_verb_on_a_run_folder_without_fingerprints(quick_run: tuple[Path, dict], tmp_path: Path,
                                                                     capsys) -> None:
    """`genrec transition-prior RUN` on a folder made before fingerprints existed: computed, the folder's model
    re-exported with the prior, run.json updated, and still no fingerprint folder (which would stop a later
    `genrec run` from adopting the legacy stages)."""
    import shutil

    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    source, summary = quick_run
    legacy = tmp_path / "legacy"
    shutil.copytree(source, legacy)
    shutil.rmtree(legacy / "fingerprints")
    shutil.rmtree(legacy / "transition_prior")
    run = json.loads((legacy / "run.json").read_text())
    run["stages"]["stage2"]["path"] = str(legacy / "stage2")
    for key in ("transition_prior", "model_test_metrics"):
        run.pop(key)
    run["test_metrics"] = summary["model_test_metrics"]
    (legacy / "run.json").write_text(json.dumps(run))
    assert main(["transition-prior", str(legacy)]) == 0
    assert "the model alone" in capsys.readouterr().out
    updated = json.loads((legacy / "run.json").read_text())
    assert updated["transition_prior"]["weight"] == summary["transition_prior"]["weight"]
    assert updated["test_metrics"] == summary["test_metrics"]  # the same computation as inside `genrec run`
    assert updated["model_test_metrics"] == summary["model_test_metrics"]
    assert not (legacy / "fingerprints").exists()
    model = UngerForGenerativeRecommendation.from_pretrained(legacy)
    assert model.has_transition_prior
    assert model.config.transition_weight == summary["transition_prior"]["weight"]
    assert main(["transition-prior", str(tmp_path / "nothing")]) == 2
    capsys.readouterr()
    base = ["evaluate", "--model", str(legacy), "--data", str(legacy / "data"), "--max-users", "40", "--out"]
    assert main([*base, str(tmp_path / "mixed.json")]) == 0
    assert main([*base, str(tmp_path / "alone.json"), "--transition-weight", "0"]) == 0
    mixed, alone = (json.loads((tmp_path / f"{n}.json").read_text())["metrics"] for n in ("mixed", "alone"))
    assert mixed["num_users"] == alone["num_users"] == 40
    assert main([*base, str(tmp_path / "bad.json"), "--transition-weight", "1.5"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert main(["recommend", "--model", str(legacy), "--history", "1", "2", "-k", "3", "--transition-weight", "1",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == 3


def test_until_stops_after_the_stage_and_a_later_run_goes_on(
    quick_run: tuple[Path, dict], tmp_path: Path, capsys
) -> None:
    """`genrec run --until quantize` leaves data, embeddings, Stage I and the code table, trains no Stage II,
    and says so in run.json; the stages it reuses are the full run's (copied here with their fingerprints)."""
    import shutil

    from genrec.cli import build_parser
    from genrec.trainers.jobs.profiles import STOP_STAGES

    out, summary = quick_run
    partial = tmp_path / "partial"
    for name in ("data", "embeddings", "stage1", "semantic_ids", "fingerprints"):
        shutil.copytree(out / name, partial / name)
    assert main(["run", "--quick", "--out", str(partial), "--until", "quantize"]) == 0
    assert "stopped after quantize" in capsys.readouterr().out
    stopped = json.loads((partial / "run.json").read_text())
    assert stopped["stopped_after"] == "quantize" and "test_metrics" not in stopped
    assert list(stopped["stages"]) == ["prepare", "embed", "stage1", "quantize"]
    assert stopped["stages"]["quantize"]["codebook_sizes"] == summary["stages"]["quantize"]["codebook_sizes"]
    assert not (partial / "stage2").exists() and not (partial / "model.safetensors").exists()
    # on a finished run folder --until only reuses stages: its run.json (test metrics) is kept
    before = (out / "run.json").read_text()
    assert run_pipeline("ml-100k", out, profile="quick", until="stage1", show_progress=False)["stopped_after"] == "stage1"
    assert (out / "run.json").read_text() == before
    with pytest.raises(ValueError, match="until='stage2'"):
        run_pipeline("ml-100k", partial, profile="quick", until="stage2", show_progress=False)
    until = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                 if a.dest == "until")
    assert tuple(until.choices) == STOP_STAGES  # the CLI's list (kept inline for a fast import) is the pipeline's


def test_tiger_profiles_are_tigers_recipe() -> None:
    """TIGER (Rajput et al., 2023): RQ-VAE codes of the text embeddings (3 x 256), no Stage I, plain
    cross-entropy, no distillation, no transition prior. `tiger` keeps the default's Stage II network and length
    (so that the two differ only by what UNGER adds) with TIGER's own dropout, 0.1 (the default has the UNGER
    paper's 0 since 2026-12-07) and the paper's peak learning rate 1e-3 (the default's is 2e-3 since 2026-12-07);
    `tiger-paper` is TIGER's own network (flattened code
    history, 4 + 4 layers, width 128, feed-forward 1024, dropout 0.1) at the paper profile's length."""
    from genrec.cli import build_parser

    default = PROFILES["default"]
    for name in ("tiger", "tiger-paper"):
        tiger = PROFILES[name]
        assert tiger.stage1 is False and tiger.quantizer == "rqvae" and tiger.num_levels == 3
        assert not tiger.transition_prior
        config = tiger.stage2_config
        assert config["distillation_weight"] == 0.0 and not config.get("constrained_training")
        assert config.get("history_item_embedding", "none") == "none"  # no Stage I embeddings in the history
    tiger = PROFILES["tiger"]
    assert (tiger.stage2_epochs, tiger.stage2_lr_schedule) == (default.stage2_epochs, default.stage2_lr_schedule)
    unger_only = ("constrained_training", "history_item_embedding", "distillation_weight", "dropout")
    assert {k: v for k, v in default.stage2_config.items() if k not in unger_only} == {
        k: v for k, v in tiger.stage2_config.items() if k not in unger_only}
    assert (default.stage2_config["dropout"], tiger.stage2_config["dropout"]) == (0.0, 0.1)
    assert (default.stage2_lr, tiger.stage2_lr) == (2e-3, 1e-3)  # TIGER's rows were measured at 1e-3
    config = PROFILES["tiger-paper"].stage2_config
    assert config["history_mode"] == "flattened" and config["dropout"] == 0.1
    assert (config["d_model"], config["ffn_dim"], config["encoder_layers"], config["decoder_layers"]) == (128, 1024, 4, 4)
    assert PROFILES["tiger-paper"].stage2_max_steps == PROFILES["paper"].stage2_max_steps
    assert all(PROFILES[name].stage1 for name in PROFILES if not name.startswith("tiger"))
    profile = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                   if a.dest == "profile")
    assert set(profile.choices) == set(PROFILES)  # the CLI's list (inline for a fast import) is the pipeline's


def test_tiger_profile_runs_without_stage1_on_rqvae_codes_of_the_text_embeddings(
    quick_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """The `tiger` profile in a folder holding another profile's stages: it reuses the data and the text
    embeddings, deletes the Stage I it does not use, quantizes the text embeddings with an RQ-VAE and trains
    Stage II without distillation; the exported card says what the model is."""
    import dataclasses
    import shutil

    from safetensors import safe_open

    out, _ = quick_run
    tiger_dir = tmp_path / "tiger"
    for name in ("data", "embeddings", "stage1", "fingerprints"):
        shutil.copytree(out / name, tiger_dir / name)
    tiger = PROFILES["tiger"]
    small = dataclasses.replace(
        tiger, stage2_epochs=None, stage2_max_steps=20, stage2_warmup_steps=5, stage2_eval_every=20,
        stage2_config={**tiger.stage2_config, "d_model": 32, "num_attention_heads": 4, "ffn_dim": 64,
                       "encoder_layers": 1, "decoder_layers": 1},
        quantizer_config={"epochs": 3}, max_eval_users=64,
    )
    embeddings = next((tiger_dir / "embeddings").glob("*.safetensors"))
    embedded = embeddings.stat().st_mtime_ns
    summary = run_pipeline("ml-100k", tiger_dir, profile=small, show_progress=False)
    assert list(summary["stages"]) == ["prepare", "embed", "quantize", "stage2", "export"]
    assert embeddings.stat().st_mtime_ns == embedded and not (tiger_dir / "stage1").exists()
    quantized = json.loads((tiger_dir / "semantic_ids" / "quantize.json").read_text())
    assert quantized["method"] == "rqvae" and quantized["quantizer_config"] == {"epochs": 3}
    assert quantized["codebook_sizes"][:3] == [256, 256, 256]
    metrics = summary["test_metrics"]
    assert metrics["num_users"] == 943 and metrics["invalid_rate"] == 0.0
    assert "transition_prior" not in summary and "model_test_metrics" not in summary
    config = json.loads((tiger_dir / "config.json").read_text())
    assert config["integrated_dim"] == 0 and config["history_item_embedding"] == "none"
    with safe_open(str(tiger_dir / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())  # safetensors' handle is not a dict
    assert names and not [name for name in names if "distill" in name or "integrated" in name]
    card = (tiger_dir / "README.md").read_text()
    assert "TIGER-style generative recommender" in card and "none (TIGER" in card
    assert "- tiger" in card and "- unger" not in card and "rajput2023tiger" in card  # its tag and citation
    with pytest.raises(ValueError, match="no Stage I"):
        run_pipeline("ml-100k", tiger_dir, profile=small, until="stage1", show_progress=False)


def test_a_profile_whose_stage2_network_cannot_be_built_fails_before_any_stage(tmp_path: Path) -> None:
    """A custom profile's Stage II settings are checked first, not after Stage I and the quantizer have run."""
    import dataclasses

    bad = dataclasses.replace(PROFILES["quick"], stage2_config={"d_model": 32, "num_attention_heads": 6})
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        run_pipeline("ml-100k", tmp_path / "bad", profile=bad, show_progress=False)
    assert not (tmp_path / "bad" / "data").exists()


def test_transition_prior_verb_chooses_a_smoothing_and_the_model_ranks_as_measured(
    quick_run: tuple[Path, dict], tmp_path: Path, capsys,
) -> None:
    """`genrec transition-prior RUN --smoothing auto`: (w, c) chosen on validation, the exported model carries
    the smoothed table and ranks test as run.json says; `--smoothing 0` goes back to the plain prior (a new
    fingerprint) and no flag follows the run's profile (quick, like default: auto), as `genrec run` did."""
    import shutil

    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    source, summary = quick_run
    assert "0.3/c=5.0" in summary["transition_prior"]["validation"]  # `genrec run` searched c (the profile's auto)
    run_dir = tmp_path / "smoothed"
    shutil.copytree(source, run_dir)
    assert main(["transition-prior", str(run_dir), "--smoothing", "auto"]) == 0
    assert "transition prior: w = " in capsys.readouterr().out
    updated = json.loads((run_dir / "run.json").read_text())
    prior = json.loads((run_dir / "transition_prior" / "transition_prior.json").read_text())
    assert "smoothing" in prior and {"0.0", "0.3", "0.3/c=5.0"} <= set(prior["validation"])
    assert "0.0/c=5.0" not in prior["validation"]  # the model alone is scored once
    chosen = prior["validation"][f"{prior['weight']}" if not prior["smoothing"]
                                 else f"{prior['weight']}/c={prior['smoothing']}"]["ndcg@10"]
    assert chosen == max(m["ndcg@10"] for m in prior["validation"].values())
    model = UngerForGenerativeRecommendation.from_pretrained(run_dir)
    assert model.config.transition_smoothing == prior["smoothing"]
    assert model.config.transition_weight == prior["weight"]
    card = (run_dir / "README.md").read_text()
    assert (f"smoothing c = {prior['smoothing']}" in card) == bool(prior["smoothing"])
    assert main(["evaluate", "--model", str(run_dir), "--data", str(run_dir / "data"), "--out",
                 str(tmp_path / "test.json")]) == 0
    assert json.loads((tmp_path / "test.json").read_text())["metrics"] == pytest.approx(updated["test_metrics"])
    assert main(["transition-prior", str(run_dir), "--smoothing", "0"]) == 0  # the plain prior
    plain = json.loads((run_dir / "transition_prior" / "transition_prior.json").read_text())
    assert "smoothing" not in plain and not any("/c=" in key for key in plain["validation"])
    assert UngerForGenerativeRecommendation.from_pretrained(run_dir).config.transition_smoothing == 0.0
    assert main(["transition-prior", str(run_dir)]) == 0  # the profile's setting: the run's own search again
    again = json.loads((run_dir / "transition_prior" / "transition_prior.json").read_text())
    assert again["validation"] == summary["transition_prior"]["validation"]
    assert (again["weight"], again["smoothing"]) == (summary["transition_prior"]["weight"],
                                                     summary["transition_prior"].get("smoothing", 0.0))
    assert again["test_metrics"] == summary["test_metrics"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["transition-prior", str(run_dir), "--smoothing", "-1"])
    assert exit_info.value.code == 2 and "number >= 0" in capsys.readouterr().err
