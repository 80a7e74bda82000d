"""TTDS trainer: instruction data, prompt rendering, warm-up + joint training with dynamic codes, constrained
evaluation, exact resume, and a fresh process reproducing the saved recommender's generations."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

import genrec.trainers.ttds as ttds
import genrec.trainers.ttds.data as ttds_data
import genrec.trainers.ttds.trainer as ttds_trainer
from genrec.data_scripts.splits import build_splits
from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.evaluation.metrics import metrics_from_ranks
from genrec.trainers.ttds import (
    CodeState,
    CollisionOverflowError,
    PromptRenderer,
    TTDSCollator,
    TTDSData,
    TTDSRecommender,
    TTDSTrainer,
    TTDSTrainingArguments,
    build_code_table,
    create_tiny_base,
    template_corpus,
)
from genrec.trainers.ttds.code_updates import compute_tower_codes, update_code_tables

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Western"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _items() -> Dataset:
    ids = [str(i) for i in range(1, 31)]
    return Dataset.from_dict({
        "item_id": ids,
        "title": [f"Movie {i} {GENRES[i % 6]} story" for i in range(1, 31)],
        "genres": [[GENRES[i % 6]] for i in range(1, 31)],
    })


def _sequences(with_review: bool = False):
    rng = random.Random(0)
    rows = []
    for user in range(1, 15):
        n = rng.randint(5, 9)
        genre = user % 6
        items = [str((genre + 6 * rng.randint(0, 4)) % 30 + 1) for _ in range(n)]
        rows.append((str(user), items, list(range(1000 * user, 1000 * user + n))))
    splits, _ = build_splits(rows, max_history=20)
    if with_review:
        train = splits["train"]
        reviews = [[f"I liked movie {i}" for i in seq] for seq in train["item_ids"]]
        reviews[0][-1] = ""  # an empty review gives no example (counted)
        splits["train"] = train.add_column("review", reviews)
    return splits


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    corpus = template_corpus() + list(_items()["title"]) + ["Title: Year: Genres: Recently interacted with:"]
    return create_tiny_base(tmp_path_factory.mktemp("ttds_trainer") / "base", corpus, vocab_size=400)


def _model(base_dir, **overrides):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    values = {"num_levels": 2, "codebook_size": 8, "num_collision_tokens": 32, "lora_r": 4, "lora_alpha": 8}
    values.update(overrides)
    config = TTDSConfig(base_model_name_or_path=str(base_dir), **values)
    return TTDSForCausalLM.from_base(config, tokenizer, seed=0), tokenizer


def _args(tmp_path, **overrides) -> TTDSTrainingArguments:
    values = {"output_dir": str(tmp_path), "seed": 3, "warmup_steps": 3, "max_steps": 16, "code_update_steps": 5,
              "train_batch_size": 8, "alignment_batch_size": 6, "logging_steps": 4, "num_beams": 10,
              "encode_batch_size": 16}
    values.update(overrides)
    return TTDSTrainingArguments(**values)


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    model, tokenizer = _model(base_dir)
    sequences = _sequences()
    data = TTDSData.from_datasets(sequences, _items(), seed=0)
    trainer = TTDSTrainer(model, tokenizer, data, _args(tmp_path_factory.mktemp("run")))
    summary = trainer.train()
    return trainer, summary, sequences


# ------------------------------------------------------------------------------------------------ data


def test_data_refuses_an_item_missing_from_the_items_table():
    items = _items()
    first = next(i for seq in _sequences()["test"]["item_ids"] for i in seq)
    kept = items.filter(lambda row: row["item_id"] != first)
    with pytest.raises(ValueError, match=rf"row \d+ names item '{first}', which is not in the items table"):
        TTDSData.from_datasets(_sequences(), kept)


def test_data_builds_every_task_and_skips_missing_text_cleanly():
    sequences = _sequences()
    data = TTDSData.from_datasets(sequences, _items())
    counts = data.task_counts()
    assert counts["seqrec"] == sequences["train"].num_rows
    assert counts["item2tokens"] == counts["tokens2item"] == 30
    assert counts["next_user"] > 0 and "user_text" not in counts
    assert data.skipped == {"user_text:no_text_column": 1}
    assert len(data.user_ids) == 14 and data.user_texts[0].startswith("Recently interacted with: Movie")
    # the next user of an item really interacted with it, after the prompt's users
    interactions, _ = ttds_data._user_sequences(sequences)
    for example in (e for e in data.examples if e["task"] == "next_user"):
        times = {u: min(t for i, t in interactions[u] if i == example["item"]) for u in [*example["users"], example["target_user"]]}
        assert all(times[u] <= times[example["target_user"]] for u in example["users"])

    with_text = TTDSData.from_datasets(_sequences(with_review=True), _items(), tasks=("user_text",))
    assert with_text.task_counts() == {"user_text": sequences["train"].num_rows - 1}
    assert with_text.skipped == {"user_text:review:empty": 1}
    first = with_text.examples[0]
    assert first["kind"] == "review" and first["target_text"].startswith("I liked movie")

    capped = TTDSData.from_datasets(sequences, _items(), tasks=("seqrec",), max_examples_per_task=10, seed=1)
    assert len(capped.examples) == 10 and capped.skipped == {"seqrec:over_cap": sequences["train"].num_rows - 10}
    single = TTDSData.from_datasets(sequences, _items(), user_tower=False)
    assert "next_user" not in single.task_counts()

    bad = _items().filter(lambda row: row["item_id"] != "7")
    with pytest.raises(ValueError, match="item '7'"):
        TTDSData.from_datasets(sequences, bad)


def test_prompts_splice_code_ids_and_answers_end_with_eos(base_dir):
    model, tokenizer = _model(base_dir)
    data = TTDSData.from_datasets(_sequences(), _items())
    config = model.config
    rng = np.random.default_rng(0)
    codes = CodeState(
        build_code_table(data.item_ids, torch.tensor(rng.integers(0, 8, (30, 2))), config, "item"),
        build_code_table(data.user_ids, torch.tensor(rng.integers(0, 8, (14, 2))), config, "user"),
    )
    renderer = PromptRenderer(tokenizer, config, data, codes, max_length=512)

    def code_ids(tower, entity):
        table = codes.table(tower)
        return [o + int(c) for o, c in zip(config.token_offsets(tower, 3), table.code_of(entity), strict=True)]

    example = {"task": "seqrec", "user": "2", "history": ["3", "9", "15"], "target_item": "21"}
    prompt = renderer.prompt_ids(example, 0)
    sep = tokenizer(", ", add_special_tokens=False)["input_ids"]
    history = code_ids("item", "3") + sep + code_ids("item", "9") + sep + code_ids("item", "15")
    assert prompt[0] == tokenizer.bos_token_id
    assert _contains(prompt, history) and _contains(prompt, code_ids("user", "2"))
    assert renderer.answer_ids(example) == [*code_ids("item", "21"), tokenizer.eos_token_id]
    assert tokenizer.decode(prompt[1:]).startswith("You are an expert in sequential recommendation.")
    assert renderer.prompt_ids(example, 1) != prompt  # another template

    text_answer = renderer.answer_ids({"task": "tokens2item", "item": "4"})
    assert text_answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(text_answer[:-1]).strip() == data.item_texts[3]
    next_user = renderer.prompt_ids({"task": "next_user", "item": "4", "users": ["1", "5"], "target_user": "6"}, 0)
    assert _contains(next_user, code_ids("item", "4")) and _contains(next_user, code_ids("user", "5"))

    short = PromptRenderer(tokenizer, config, data, codes, max_length=len(prompt) - 2)
    trimmed = short.prompt_ids(example, 0)
    assert short.truncated >= 1 and len(trimmed) + config.num_levels + 2 <= short.max_length  # room for the answer
    assert not _contains(trimmed, code_ids("item", "3")) and _contains(trimmed, code_ids("item", "15"))

    # history_loss: the history items' code tokens are labels (separators and text are not); other tasks none
    ids, labels = renderer.prompt_ids_and_labels(example, 0, history_labels=True)
    assert ids == prompt and len(labels) == len(ids)
    labeled = [t for t, label in zip(ids, labels, strict=True) if label != -100]
    assert labeled == code_ids("item", "3") + code_ids("item", "9") + code_ids("item", "15")
    assert all(label in (-100, t) for t, label in zip(ids, labels, strict=True))
    assert set(renderer.prompt_ids_and_labels(example, 0)[1]) == {-100}
    next_user_example = {"task": "next_user", "item": "4", "users": ["1", "5"], "target_user": "6"}
    assert set(renderer.prompt_ids_and_labels(next_user_example, 0, history_labels=True)[1]) == {-100}
    collated = TTDSCollator(renderer, seed=0, alignment_batch_size=4, pad_token_id=tokenizer.pad_token_id,
                            history_loss=True)
    data.examples.insert(0, {**example})
    batch = collated([0])
    answer = renderer.answer_ids(example)
    assert int((batch["labels"][0] != -100).sum()) == 3 * len(code_ids("item", "3")) + len(answer)


def _contains(sequence, part):
    return any(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


def test_code_table_overflow_is_an_error_first_and_a_rejected_update_later(base_dir, monkeypatch):
    model, tokenizer = _model(base_dir, num_collision_tokens=4, user_tower=False)
    ids = [str(i) for i in range(6)]
    with pytest.raises(CollisionOverflowError, match="6 items share one semantic code"):
        build_code_table(ids, torch.zeros(6, 2, dtype=torch.long), model.config, "item")
    table = build_code_table(ids, torch.tensor([[i % 4, i // 4] for i in range(6)]), model.config, "item")
    assert table.num_levels == 3 and table.codebook_sizes == [8, 8, 1]  # collision level always present

    data = TTDSData.from_datasets(_sequences(), _items(), tasks=("item2tokens",))
    previous = build_code_table(data.item_ids, torch.tensor([[i % 8, i // 8] for i in range(30)]), model.config, "item")
    codes = CodeState(previous, None)
    renderer = PromptRenderer(tokenizer, model.config, data, codes)
    monkeypatch.setattr(model.item_generator, "quantize", lambda x, **kw: torch.zeros(len(x), 2, dtype=torch.long))
    stats = ttds.update_code_tables(model, renderer, codes, batch_size=8, pad_token_id=tokenizer.pad_token_id)
    assert codes.item_table is previous and codes.rejected == 1 and stats["item_update_rejected"] == 1.0
    with pytest.raises(CollisionOverflowError):  # a first table that overflows is an error, not a silent skip
        ttds.update_code_tables(model, renderer, CodeState(), batch_size=8, pad_token_id=tokenizer.pad_token_id)


# ------------------------------------------------------------------------------------------------ training


def test_code_updates_follow_their_schedule_and_stop_at_code_update_until(tmp_path):
    def steps(**overrides):
        args = _args(tmp_path, **{"warmup_steps": 3, "max_steps": 20, "code_update_steps": 5, **overrides})
        holder = type("Holder", (), {"args": args})()
        return [s for s in range(24) if ttds_trainer.TTDSTrainer._is_update_step(holder, s)]

    assert steps() == [3, 8, 13, 18, 23]  # after the warm-up, then every 5 joint steps
    assert steps(code_update_until=10) == [3, 8, 13]  # joint steps 0, 5, 10; none after joint step 10
    assert steps(code_update_until=0) == [3]
    assert steps(code_update_steps=0) == [3]  # static codes (TTSS): the codes of the warm-up only
    with pytest.raises(ValueError, match="code_update_until"):
        _args(tmp_path, code_update_until=-1)
    # the options added later leave the fingerprint of a run that does not use them as it was
    assert "code_update_until" not in _args(tmp_path).fingerprint_fields()
    assert _args(tmp_path, code_update_until=4).fingerprint_fields()["code_update_until"] == 4
    assert _args(tmp_path, code_update_refit=True).fingerprint_fields()["code_update_refit"] is True


def test_training_lowers_the_loss_and_updates_codes(trained):
    trainer, summary, _ = trained
    assert summary["global_step"] == 3 + 16
    # 1 initial + 1 after warm-up + joint updates at joint steps 5, 10, 15
    assert summary["code_updates"] == 5 and summary["rejected_code_updates"] == 0
    joint = [h for h in summary["loss_history"] if "lm_loss" in h]
    assert joint[-1]["lm_loss"] < joint[0]["lm_loss"], joint
    warm = summary["loss_history"][0]
    assert "lm_loss" not in warm and warm["id_loss"] > 0  # the warm-up trains the DM-VAE only
    assert summary["task_counts"]["seqrec"] > 0 and summary["skipped"] == {"user_text:no_text_column": 1}
    assert trainer.codes.item_table.num_levels == 3 and len(trainer.codes.user_table) == 14


def test_code_updates_stay_bounded_and_settle(trained):
    """The collapse of issue 15 (collision rate 0.55 -> 0.90, > 99.7 % of codes changing at every update)
    must not come back: per update, the collision rate stays near the k-means start and the fraction of
    items whose semantic code changed shrinks as training goes on."""
    _, summary, _ = trained
    history = summary["code_history"]
    collisions = [e["codes/item_collision_rate"] for e in history]
    changed = [e["codes/item_codes_changed"] for e in history if "codes/item_codes_changed" in e]
    assert len(collisions) == 5 and len(changed) == 4, history
    assert max(collisions) <= collisions[0] + 0.15 and max(collisions) < 0.5, collisions
    assert max(changed) < 0.5 and changed[-1] <= changed[0], changed
    assert all("codes/item_full_codes_changed" in e and "codes/item_dead_codes_reset" in e for e in history[1:])
    assert all(0 <= e["codes/item_first_level_changed"] <= e["codes/item_codes_changed"] for e in history[1:])
    assert all("codes/user_codes_changed" in e for e in history[1:])


def test_a_refitting_code_update_keeps_the_codes_of_an_unchanged_model(trained):
    """``code_update_refit``: k-means again on the same representations, from the current centroids and
    renumbered to the previous ids, gives a valid table that keeps more items' codes than a fresh k-means."""
    trainer, _, _ = trained
    model, codes = copy.deepcopy(trainer.model), copy.deepcopy(trainer.codes)
    stats = update_code_tables(model, trainer.renderer, codes, batch_size=16, pad_token_id=trainer.pad,
                               refit_codebooks=True, seed=7)
    assert codes.updates == trainer.codes.updates + 1 and len(codes.item_table) == len(trainer.codes.item_table)
    assert stats["item_collision_rate"] < 0.5, stats
    # a k-means from a fresh start instead changes more codes
    unaligned = copy.deepcopy(trainer.model)
    reps = compute_tower_codes(unaligned, trainer.renderer, "item", batch_size=16, pad_token_id=trainer.pad,
                               representations=True)
    unaligned.item_generator.init_codebooks(reps, seed=7 * 1_000_003 + trainer.codes.updates)
    previous = torch.from_numpy(np.array(trainer.codes.item_table.codes[:, : unaligned.config.num_levels], dtype=np.int64))
    changed = (unaligned.item_generator.quantize(reps) != previous).any(dim=1).float().mean()
    assert stats["item_codes_changed"] < float(changed), (stats, float(changed))
    # the refit moves unused centroids first, and says how many
    assert stats["item_dead_codes_reset"] >= 0 and float(stats["item_dead_codes_reset"]).is_integer()


def test_evaluation_recommends_only_valid_items(trained):
    trainer, _, sequences = trained
    recommender = trainer.recommender()
    metrics = recommender.evaluate(sequences["test"], ks=(1, 5, 10), batch_size=7)
    assert metrics["invalid_rate"] == 0.0 and metrics["num_users"] == 14
    again = recommender.evaluate(sequences["test"], ks=(1, 5, 10), batch_size=7, per_user=True)
    ranks = again.pop("per_user")
    assert again == metrics and ranks["user_id"] == [str(u) for u in sequences["test"]["user_id"]]
    assert metrics_from_ranks(ranks["rank"], ks=(1, 5, 10))["ndcg@10"] == pytest.approx(metrics["ndcg@10"])
    for key in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"):
        assert 0.0 <= metrics[key] <= 1.0
    ranked = recommender.recommend([["1", "2"], ["30"]], ["1", None], k=10)
    lists = [[item for item, _ in row] for row in ranked]
    assert all(len(row) == 10 == len(set(row)) for row in lists)
    assert all(item in recommender.item_table for row in lists for item in row)
    assert all([s for _, s in row] == sorted((s for _, s in row), reverse=True) for row in ranked)  # best first
    with pytest.raises(KeyError, match="'999'"):
        recommender.recommend([["999"]], k=3)
    skipped = recommender.recommend([["999"], ["999", "1", "2"]], ["1", "1"], k=10, on_unknown="skip")
    assert skipped[0] == [] and skipped[1] == recommender.recommend([["1", "2"]], ["1"], k=10)[0]


def test_resume_equals_an_uninterrupted_run(base_dir, tmp_path):
    sequences = _sequences()

    def run(folder, max_steps):
        model, tokenizer = _model(base_dir)
        data = TTDSData.from_datasets(sequences, _items(), tasks=("seqrec", "next_user", "item2tokens"), seed=0)
        args = _args(folder, warmup_steps=2, max_steps=max_steps, code_update_steps=2, save_steps=4,
                     train_batch_size=6, alignment_batch_size=4)
        trainer = TTDSTrainer(model, tokenizer, data, args)
        trainer.train()
        return trainer

    straight = run(tmp_path / "straight", 6)
    # "Interrupted" after step 4 (2 warm-up + 2 joint). Step 4 is a code-update step, which a run skips at its
    # own last step; the resumed run must make that update before going on, as the straight run did.
    run(tmp_path / "resumed", 2)
    stopped = tmp_path / "resumed" / "checkpoints" / "step-00000004"
    assert json.loads((stopped / "ttds_codes.json").read_text())["last_update_step"] == 2
    resumed = run(tmp_path / "resumed", 6)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    trained_keys = [k for k in a if ttds_trainer._is_trained_key(k)]
    assert trained_keys and all(torch.equal(a[k], b[k]) for k in trained_keys)
    assert straight.codes.item_table == resumed.codes.item_table
    assert straight.codes.user_table == resumed.codes.user_table
    # checkpoints hold only what trains (not the frozen base) + the code tables
    from safetensors.torch import load_file

    latest = tmp_path / "resumed" / "checkpoints" / "step-00000008"
    assert all(ttds_trainer._is_trained_key(k) for k in load_file(str(latest / "model.safetensors")))
    assert (latest / "item_code_table" / "code_table.json").is_file()


# ------------------------------------------------------------------------------------------------ save / load


def test_train_base_trains_the_base_and_the_saved_recommender_reloads_it(base_dir, tmp_path):
    """``train_base=True`` (a base trained from scratch): the joint phase moves the base LLM's own weights, the
    checkpoints keep them (every weight, so a resume restores them), and the saved recommender — adapter +
    ``base_weights.safetensors`` over the base loaded by name — recommends exactly as the trained one."""
    sequences = _sequences()
    model, tokenizer = _model(base_dir, train_base=True)
    before = {k: v.clone() for k, v in model.base_weights().items()}
    data = TTDSData.from_datasets(sequences, _items(), seed=0)
    trainer = TTDSTrainer(model, tokenizer, data, _args(tmp_path / "run", warmup_steps=1, max_steps=3, save_steps=4,
                                                        code_update_steps=2))
    trainer.train()
    after = trainer.model.base_weights()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    latest = max((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert set(after) <= {k.removeprefix("llm.") for k in load_file(str(latest / "model.safetensors"))}
    recommender = trainer.recommender()
    folder = recommender.save_pretrained(tmp_path / "final")
    again = TTDSRecommender.from_pretrained(folder)
    histories = [list(s[:-1]) for s in sequences["test"]["item_ids"]][:4]
    assert again.recommend(histories, k=5) == recommender.recommend(histories, k=5)


def test_a_fresh_process_reproduces_the_saved_recommender(trained, tmp_path, capsys):
    trainer, _, sequences = trained
    recommender = trainer.recommender()
    folder = recommender.save_pretrained(tmp_path / "final")
    histories = [list(s[:-1]) for s in sequences["test"]["item_ids"]][:6]
    users = list(sequences["test"]["user_id"])[:6]
    expected = recommender.recommend(histories, users, k=10)
    script = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads(1)
        from genrec.trainers.ttds import TTDSRecommender
        rec = TTDSRecommender.from_pretrained({str(folder)!r})
        print(json.dumps(rec.recommend({histories!r}, {users!r}, k=10)))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[list(pair) for pair in row] for row in expected]

    loaded = TTDSRecommender.from_pretrained(folder)
    assert loaded.item_table == recommender.item_table and loaded.user_table == recommender.user_table

    # `genrec recommend` in a fresh process: the UNGER contract, (item_id, score) pairs, best first
    cli = ("import sys; from genrec.cli import main; raise SystemExit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", cli, "recommend", "--model", str(folder), "--history",
                           *histories[0], "-k", "10", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected_cli = recommender.recommend([histories[0]], k=10)[0]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [{"item_id": i, "score": s} for i, s in expected_cli]

    # `genrec evaluate` of the TTDS folder on its dataset = the recommender's own evaluation
    from datasets import DatasetDict

    from genrec.cli import main
    from genrec.data_scripts.hub_layout import write_config

    data = tmp_path / "data"
    write_config(data, "sequences", DatasetDict(_sequences()), default=True)
    write_config(data, "items", _items())
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(folder), "--data", str(data), "--k", "1", "5", "10", "--beams", "10",
                 "--max-users", "5", "--out", str(report)]) == 0
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics == recommender.evaluate(sequences["test"], ks=(1, 5, 10), num_beams=10, max_users=5)
    wrong = tmp_path / "other"
    other_items = _items().map(lambda row: {"item_id": "x" + row["item_id"]})
    write_config(wrong, "sequences", DatasetDict(_sequences()), default=True)
    write_config(wrong, "items", other_items)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folder), "--data", str(wrong)]) == 2
    assert "not the TTDS model's" in capsys.readouterr().err


def test_reload_refuses_a_code_table_of_another_model(trained, tmp_path):
    trainer, _, _ = trained
    recommender = trainer.recommender()
    folder = recommender.save_pretrained(tmp_path / "final")
    table = recommender.item_table
    codes = np.array(table.codes)
    codes[[0, 1]] = codes[[1, 0]]  # swap two items' codes
    CodeTable(table.item_ids, codes, table.codebook_sizes, table.num_semantic_levels).save(folder / "item_code_table")
    with pytest.raises(ValueError, match="does not belong to this model"):
        TTDSRecommender.from_pretrained(folder)


@pytest.mark.slow
def test_ml100k_end_to_end_benchmark_runs(tmp_path):
    """The ML-100K benchmark script, shortened: prepares the data, trains, evaluates, reports metrics."""
    from genrec.data_scripts.movielens import find_ml100k_dir

    try:
        find_ml100k_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    from conftest import REPO_ROOT

    out = tmp_path / "summary.json"
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "ttds_ml100k.py"), "--work-dir", str(tmp_path / "w"),
           "--warmup-steps", "5", "--max-steps", "20", "--code-update-steps", "10", "--max-eval-users", "50",
           "--json-out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    test = summary["metrics"]["test"]
    assert test["num_users"] == 50 and test["invalid_rate"] == 0.0
    assert summary["global_step"] == 25 and summary["code_updates"] == 3
    assert (tmp_path / "w" / "run" / "final" / "item_code_table" / "code_table.json").is_file()


def test_finetune_cli_is_the_one_command_for_a_base_model(base_dir, tmp_path, capsys):
    """`genrec finetune --dataset D --base-model B --out O`: the documented 7B command with a tiny base."""
    from datasets import DatasetDict

    from genrec.cli import main
    from genrec.data_scripts.hub_layout import write_config

    data = tmp_path / "data"
    write_config(data, "sequences", DatasetDict(_sequences()), default=True)
    write_config(data, "items", _items())
    config = {"num_levels": 2, "codebook_size": 8, "num_collision_tokens": 32, "lora_r": 4, "lora_alpha": 8}
    training = {"warmup_steps": 2, "max_steps": 6, "code_update_steps": 3, "train_batch_size": 8,
                "alignment_batch_size": 6, "num_beams": 10, "encode_batch_size": 16, "cpu": True}
    code = main(["finetune", "--dataset", str(data), "--base-model", str(base_dir), "--out", str(tmp_path / "o"),
                 "--dtype", "float32", "--config", json.dumps(config), "--training", json.dumps(training)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"validation", "test"}
    summary = json.loads((tmp_path / "o" / ttds.TRAINING_SUMMARY).read_text())
    assert summary["metrics"]["test"]["invalid_rate"] == 0.0
    ranks = json.loads((tmp_path / "o" / "test_ranks.json").read_text())  # paired_compare.py's input
    assert metrics_from_ranks(ranks["per_user"]["rank"], ks=(10,))["ndcg@10"] == pytest.approx(
        summary["metrics"]["test"]["ndcg@10"])
    assert TTDSRecommender.from_pretrained(tmp_path / "o" / "final") is not None
    card = (tmp_path / "o" / "final" / "README.md").read_text()
    assert "model-index:" in card and "library_name: genrec" in card and "- ttds" in card
    assert f"{summary['metrics']['test']['ndcg@10']:.4f}" in card and str(tmp_path) not in card

    # --from a saved TTDS recommender: continue from its adapter, token rows and towers (new codebooks)
    code = main(["finetune", "--from", str(tmp_path / "o" / "final"), "--dataset", str(data),
                 "--out", str(tmp_path / "o2"), "--dtype", "float32", "--training", json.dumps(training)])
    assert code == 0
    capsys.readouterr()
    again = json.loads((tmp_path / "o2" / ttds.TRAINING_SUMMARY).read_text())
    assert again["init_from"] == str(tmp_path / "o" / "final") and again["base_model"] == str(base_dir)
    assert again["metrics"]["test"]["invalid_rate"] == 0.0
    first = load_file(tmp_path / "o" / "final" / "adapter" / "adapter_model.safetensors")
    second = load_file(tmp_path / "o2" / "final" / "adapter" / "adapter_model.safetensors")
    lora = next(k for k in first if "lora_B" in k)
    # started from the first run's LoRA (non-zero B) and moved on; a fresh LoRA starts with B = 0, so its B
    # would be nearer to zero than to the first run's (both runs take the same number of Adam steps)
    assert bool(first[lora].abs().sum() > 0) and not torch.equal(first[lora], second[lora])
    assert float((second[lora] - first[lora]).norm()) < float(second[lora].norm())
    assert main(["finetune", "--from", str(tmp_path / "o" / "final"), "--dataset", str(data), "--out",
                 str(tmp_path / "o3"), "--scratch"]) == 2
    assert "UNGER sources only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--dataset", str(data), "--base-model", str(base_dir), "--out", str(tmp_path / "p"),
              "--config", "[1, 2]"])
    assert exit_info.value.code == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_pretraining_the_tiny_base_lowers_its_text_loss_and_saves_a_loadable_base(base_dir, tmp_path):
    """pretrain_tiny_base: a language model of the item texts (the stand-in for a pretrained LLM)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrec.trainers.ttds import pretrain_tiny_base

    texts = list(_items()["title"])
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))

    def text_loss(folder):
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return float(model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss)

    out = pretrain_tiny_base(base_dir, texts, tmp_path / "pretrained", steps=40, batch_size=8, learning_rate=3e-3)
    assert text_loss(out) < 0.7 * text_loss(base_dir)
    model, _ = _model(out)  # a TTDS model builds on it like on any base
    assert model.config.base_model_name_or_path == str(out)
    with pytest.raises(ValueError, match="non-empty"):
        pretrain_tiny_base(base_dir, ["", " "], tmp_path / "none", steps=1)
