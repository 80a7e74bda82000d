"""UNGER Stage II trainer: trains, keeps the best model, evaluates test, resumes exactly, refuses bad input."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
import testing_utils
import torch
from safetensors.torch import load_file

from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.engine.checkpoints import TrainingState
from genrec.trainers.evaluation.metrics import metrics_from_ranks
from genrec.trainers.stages.stage2 import (
    RESULT_FILE,
    TEST_RANKS_FILE,
    build_stage2_optimizer,
    collate_trimmed,
    cropped_history_rows,
    train_stage2,
)

N_ITEMS, N_USERS = 30, 40



pytestmark = pytest.mark.usefixtures("one_thread")


def write_dataset(root: Path, splits: dict[str, list[tuple[str, list[str]]]], item_ids: list[str]) -> Path:
    return testing_utils.write_dataset(root, splits, item_ids, description='Synthetic Stage II test data: users walk the item ring in steps of 1 or 2.')


def ring_splits(seed: int = 0) -> tuple[dict[str, list[tuple[str, list[str]]]], list[str]]:
    return testing_utils.ring_splits(N_ITEMS, N_USERS, seed)


def ring_tokenizer(ids: list[str]) -> SemanticIDTokenizer:
    codes = np.random.default_rng(0).integers(0, 4, size=(len(ids), 2))
    return SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4]))


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ring")
    splits, ids = ring_splits()
    data = write_dataset(root / "data", splits, ids)
    tokenizer_dir = root / "tokenizer"
    ring_tokenizer(ids).save_pretrained(str(tokenizer_dir))
    g = torch.Generator().manual_seed(0)
    embeddings = ItemEmbeddings(ids[::-1], torch.randn(len(ids), 6, generator=g), {"stage": "test"})
    return data, tokenizer_dir, embeddings.save(root / "integrated.safetensors")


def tiny_config(**overrides: object) -> UngerConfig:
    values: dict[str, object] = dict(d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2)
    values.update(overrides)
    return UngerConfig(**values)


FAST = dict(batch_size=32, lr=1e-2, warmup_steps=2, log_with=None, show_progress=False, logging_steps=2)


def test_trains_keeps_best_and_reports_test(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, tokenizer_dir, embeddings = ring
    result = train_stage2(
        data, tokenizer_dir, tmp_path, config=tiny_config(), integrated_embeddings=embeddings,
        max_steps=12, eval_every=4, **FAST,
    )
    assert result.distillation and result.global_step == 12 and result.best_step in (4, 8, 12)
    assert result.validation_metrics["invalid_rate"] == 0.0 and result.test_metrics["invalid_rate"] == 0.0
    assert result.num_test_users == N_USERS and result.validation_metrics["num_users"] == N_USERS
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["test_metrics"] == result.test_metrics
    ranks = json.loads((tmp_path / TEST_RANKS_FILE).read_text())  # benchmarks/paired_compare.py's input
    assert len(ranks["per_user"]["rank"]) == N_USERS and metrics_from_ranks(
        ranks["per_user"]["rank"], ks=(10,))["ndcg@10"] == pytest.approx(result.test_metrics["ndcg@10"])
    state = json.loads((max((tmp_path / "checkpoints").glob("step-*")) / "trainer_state.json").read_text())
    losses = [e["train/loss_rec"] for e in state["log_history"] if "train/loss_rec" in e]
    assert losses[-1] < losses[0]
    assert [e["step"] for e in state["log_history"] if "validation/recall@10" in e] == [4, 8, 12]
    best_logged = max(e["validation/recall@10"] for e in state["log_history"] if "validation/recall@10" in e)
    assert result.validation_metrics["recall@10"] == best_logged
    # the best folder is self-contained: model (with the integrated embeddings) + matching tokenizer
    best = UngerForGenerativeRecommendation.from_pretrained(tmp_path / "best")
    tokenizer = SemanticIDTokenizer.from_pretrained(str(tmp_path / "best"))
    best.check_tokenizer(tokenizer)
    table = ItemEmbeddings.load(embeddings).reorder(tokenizer.code_table.item_ids).embeddings
    assert torch.equal(best.integrated_embeddings, table)
    # a finished run resumes to the same result without training again
    again = train_stage2(
        data, tokenizer_dir, tmp_path, config=tiny_config(), integrated_embeddings=embeddings,
        max_steps=12, eval_every=4, **FAST,
    )
    assert again.resumed_from is not None and again.test_metrics == result.test_metrics


def test_resumed_run_equals_uninterrupted_run(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, tokenizer_dir, embeddings = ring
    kwargs = dict(
        config=tiny_config(distillation_negatives=5, dropout=0.1, constrained_training=True, history_mode="per_item"),
        integrated_embeddings=embeddings, max_steps=7, eval_every=3, checkpoint_every=2, evaluate_test=False, **FAST,
    )
    full = train_stage2(data, tokenizer_dir, tmp_path / "full", **kwargs)

    def interrupt(state: TrainingState) -> None:
        if state.global_step == 5:  # the newest checkpoint is step 4, in the middle of epoch 2
            raise KeyboardInterrupt
        if state.global_step < 4:
            time.sleep(1.5)  # slow steps before the checkpoint: their time must survive the resume

    with pytest.raises(KeyboardInterrupt):
        train_stage2(data, tokenizer_dir, tmp_path / "resumed", callbacks=[interrupt], **kwargs)
    resumed = train_stage2(data, tokenizer_dir, tmp_path / "resumed", **kwargs)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step-00000004")
    final = Path("checkpoints") / "step-00000007" / "model.safetensors"
    a, b = load_file(tmp_path / "full" / final), load_file(tmp_path / "resumed" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.validation_metrics == full.validation_metrics
    # the loop's wall time is summed over the resume: it holds the 4.5 s slept before the checkpoint, more than
    # the whole resumed process took
    assert resumed.loop_seconds > max(4.5, resumed.wall_time_s)
    assert full.best_loop_seconds is not None and 0 < full.best_loop_seconds <= full.loop_seconds < 4.5


def test_epochs_set_the_steps(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """``epochs`` (the main job's profiles use it) trains that many passes over the training rows."""
    data, tokenizer_dir, _ = ring
    rows = len(ring_splits()[0]["train"])
    result = train_stage2(
        data, tokenizer_dir, tmp_path, config=tiny_config(), max_steps=1, epochs=2, evaluate_test=False,
        max_eval_users=4, **FAST,
    )
    assert result.global_step == 2 * -(-rows // FAST["batch_size"]) and result.epochs == 2.0
    with pytest.raises(ValueError, match="epochs > 0"):
        train_stage2(data, tokenizer_dir, tmp_path / "bad", epochs=0, **FAST)


def test_cropped_history_rows_are_recent_suffixes_with_the_same_target() -> None:
    histories = [["a", "b", "c", "d"], ["x"], ["p", "q"]]
    extra, targets = cropped_history_rows(histories, ["e", "y", "r"], copies=2, seed=3)
    # the one-item history gets no copy; the others two each, never the whole history
    assert targets == ["e", "e", "r", "r"]
    assert all(h == ["a", "b", "c", "d"][-len(h):] and 1 <= len(h) <= 3 for h in extra[:2])
    assert extra[2:] == [["q"], ["q"]]
    last, _ = cropped_history_rows(histories, ["e", "y", "r"], copies=1, max_items=1)
    assert last == [["d"], ["q"]]
    assert cropped_history_rows(histories, ["e", "y", "r"], copies=0.5, seed=1) == cropped_history_rows(
        histories, ["e", "y", "r"], copies=0.5, seed=1)
    many = cropped_history_rows([["a", "b"]] * 1000, ["c"] * 1000, copies=0.5, seed=0)[1]
    assert 400 < len(many) < 600
    with pytest.raises(ValueError, match="copies"):
        cropped_history_rows(histories, ["e", "y", "r"], copies=-1)
    with pytest.raises(ValueError, match="max_items"):
        cropped_history_rows(histories, ["e", "y", "r"], copies=1, max_items=0)


def test_history_cropping_adds_rows_and_changes_the_run_identity(
    ring: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, tokenizer_dir, _ = ring
    kwargs = dict(config=tiny_config(), max_steps=2, eval_every=2, evaluate_test=False, max_eval_users=4, **FAST)
    plain = train_stage2(data, tokenizer_dir, tmp_path, **kwargs)
    rows = len(ring_splits()[0]["train"])
    assert plain.num_train_examples == rows
    # the same folder with cropping is another run: its checkpoints are refused, not silently resumed
    with pytest.raises(ValueError, match="config, data, tokenizer or hyper-parameters"):
        train_stage2(data, tokenizer_dir, tmp_path, crop_copies=1.0, **kwargs)
    cropped = train_stage2(data, tokenizer_dir, tmp_path / "crop", crop_copies=1.0, crop_max_items=1, **kwargs)
    assert rows < cropped.num_train_examples < 2 * rows


def test_plain_training_without_embeddings(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, tokenizer_dir, _ = ring
    result = train_stage2(
        data, tokenizer_dir, tmp_path, config=tiny_config(integrated_dim=6), max_steps=2, eval_every=2,
        evaluate_test=False, max_eval_users=10, **FAST,
    )
    assert not result.distillation and result.validation_metrics["num_users"] == 10
    best = UngerForGenerativeRecommendation.from_pretrained(tmp_path / "best")
    assert best.config.integrated_dim == 0 and not hasattr(best, "integrated_embeddings")


def test_bad_inputs_get_clear_errors(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, tokenizer_dir, embeddings = ring
    splits, ids = ring_splits()
    splits["train"].append(("stranger", ["i1", "ghost", "i2"]))
    bad = write_dataset(tmp_path / "bad", splits, ids + ["ghost"])
    with pytest.raises(ValueError, match=r"'ghost'.*not in the tokenizer's code table"):
        train_stage2(bad, tokenizer_dir, tmp_path / "out1", config=tiny_config(), max_steps=1, **FAST)
    partial = ItemEmbeddings(ids[:5], torch.zeros(5, 3), {})
    with pytest.raises(ValueError, match="lack 25"):
        train_stage2(data, tokenizer_dir, tmp_path / "out2", integrated_embeddings=partial, max_steps=1, **FAST)
    with pytest.raises(FileNotFoundError, match="no tokenizer folder"):
        train_stage2(data, tmp_path / "missing", tmp_path / "out3", max_steps=1, **FAST)
    with pytest.raises(ValueError, match="eval_beams"):
        train_stage2(data, tokenizer_dir, tmp_path / "out4", eval_beams=5, max_steps=1, **FAST)
    # a resume into a folder of another run is refused
    train_stage2(data, tokenizer_dir, tmp_path / "out5", config=tiny_config(), max_steps=1, evaluate_test=False,
                 max_eval_users=4, **FAST)
    with pytest.raises(ValueError, match="another config"):
        train_stage2(data, tokenizer_dir, tmp_path / "out5", config=tiny_config(ffn_dim=8), max_steps=1,
                     evaluate_test=False, max_eval_users=4, **FAST)


def test_warmup_schedule_and_batch_trimming() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = build_stage2_optimizer(model, lr=1e-3, weight_decay=1e-7, warmup_steps=4, warmup_init_lr=1e-7)
    lrs = []
    for _ in range(6):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-7) and lrs[2] == pytest.approx(1e-7 + (1e-3 - 1e-7) / 2)
    assert lrs[4:] == [pytest.approx(1e-3)] * 2
    for schedule, middle in (("cosine", 0.5e-3 + 0.5e-4), ("linear", 0.5e-3 + 0.5e-4)):
        optimizer, scheduler = build_stage2_optimizer(
            model, lr=1e-3, weight_decay=0.0, warmup_steps=2, warmup_init_lr=0.0, schedule=schedule,
            total_steps=12, min_lr_ratio=0.1,
        )
        lrs = []
        for _ in range(13):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        assert lrs[2] == pytest.approx(1e-3) and lrs[7] == pytest.approx(middle) and lrs[12] == pytest.approx(1e-4)
        assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    with pytest.raises(ValueError, match="total_steps"):
        build_stage2_optimizer(model, lr=1e-3, weight_decay=0.0, warmup_steps=2, warmup_init_lr=0.0, schedule="cosine")
    with pytest.raises(ValueError, match="one of"):
        build_stage2_optimizer(model, lr=1e-3, weight_decay=0.0, warmup_steps=2, warmup_init_lr=0.0, schedule="step")
    rows = [
        (torch.tensor([0, 0, 0, 0, 5, 6]), torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([1]), torch.tensor(0)),
        (torch.tensor([0, 0, 7, 8, 5, 6]), torch.tensor([0, 0, 1, 1, 1, 1]), torch.tensor([2]), torch.tensor(1)),
    ]
    ids, mask, _, _ = collate_trimmed(rows)
    assert ids.tolist() == [[0, 0, 5, 6], [7, 8, 5, 6]] and mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]


@pytest.mark.parametrize("history_mode", ["per_item", "flattened"])
def test_stage2_learns_a_learnable_sequence_task(history_mode: str, tmp_path: Path) -> None:
    """The model must *learn*: on ring walks whose next item is fixed by the last two items, test Recall@10
    after 400 steps must be far above chance (10 / 120 = 0.083) and near the task's ceiling (1.0; measured
    0.94-0.97). A change that stops or halves learning (a broken loss, mask, cache, constraint, position or
    schedule) fails here. Distillation is off: its target embeddings would be noise on synthetic items."""
    rng = random.Random(1)
    n_items, ids = 120, [f"i{k}" for k in range(120)]
    splits: dict[str, list[tuple[str, list[str]]]] = {"train": [], "validation": [], "test": []}
    for u in range(300):
        start, step = rng.randrange(n_items), rng.choice([1, 2])
        seq = [ids[(start + step * k) % n_items] for k in range(rng.randint(6, 12))]
        splits["train"] += [(f"u{u}", seq[max(0, t - 20) : t + 1]) for t in range(1, len(seq) - 2)]
        splits["validation"].append((f"u{u}", seq[:-1][-21:]))
        splits["test"].append((f"u{u}", seq[-21:]))
    data = write_dataset(tmp_path / "data", splits, ids)
    codes = np.random.default_rng(0).permutation(16 * 16)[:n_items]  # unique random 2-level codes
    table = CodeTable.from_codes(ids, np.stack([codes // 16, codes % 16], axis=1), codebook_sizes=[16, 16])
    result = train_stage2(
        data, SemanticIDTokenizer.from_code_table(table), tmp_path / "run",
        config=tiny_config(d_model=32, ffn_dim=64, history_mode=history_mode, constrained_training=True),
        max_steps=400, batch_size=64, lr=3e-3, warmup_steps=30, lr_schedule="cosine", eval_every=400,
        log_with=None, show_progress=False,
    )
    assert result.test_metrics["recall@10"] >= 0.8, result.test_metrics
    assert result.test_metrics["ndcg@10"] >= 0.5, result.test_metrics


@pytest.mark.parametrize("mode", ["id", "integrated", "integrated+id"])
def test_history_item_embedding_finds_items_by_code_and_round_trips(
    mode: str, ring: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """``history_item_embedding`` adds a per-item vector to each history position, found from the item's codes
    inside the model: the lookup must return each item's code-table row (padding -> ``num_items``), the vector
    must reach the encoder output, and a saved model must reload with its key table and recommend the same."""
    data, tokenizer_dir, embeddings = ring
    tokenizer = SemanticIDTokenizer.from_pretrained(str(tokenizer_dir))
    table = tokenizer.code_table
    result = train_stage2(
        data, tokenizer_dir, tmp_path / "run", config=tiny_config(history_item_embedding=mode),
        integrated_embeddings=embeddings, max_steps=6, eval_every=6, **FAST,
    )
    model = UngerForGenerativeRecommendation.from_pretrained(str(tmp_path / "run" / "best"))
    assert model.config.history_item_embedding == mode
    histories = [["i3", "i5", "i9"], ["i7"]]
    enc = tokenizer.encode_history(histories, max_items=20, return_tensors="pt")
    depth = model.config.num_code_levels
    batch, width = enc["input_ids"].shape
    rows = model.encoder.history_item_rows_of(
        enc["input_ids"].view(batch, width // depth, depth), enc["attention_mask"][:, ::depth]
    )
    n = model.config.num_items
    expected = [[table.index_of(i) for i in h] for h in histories]
    assert [[r for r in row if r != n] for row in rows.tolist()] == expected
    assert (rows == n).sum().item() == width // depth * 2 - 4  # the padding positions
    parts = {"id": "history_item_ids", "integrated": "history_item_proj"}
    assert {name for name in parts.values() if hasattr(model.encoder, name)} == {parts[m] for m in mode.split("+")}
    for name in parts.values():  # each of the mode's parts reaches the encoder output
        if hasattr(model.encoder, name):
            before = model.get_encoder()(**enc).last_hidden_state
            with torch.no_grad():
                getattr(model.encoder, name).weight.zero_()
            assert not torch.allclose(before, model.get_encoder()(**enc).last_hidden_state)
    saved = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    keys = saved["encoder.history_item_keys"]
    assert keys.tolist() == sorted(keys.tolist()) and bool((keys >= 0).all()) and len(set(keys.tolist())) == n
    assert result.global_step == 6 and len(model.recommend(histories, tokenizer, k=5)[0]) == 5


def test_history_item_embedding_rejects_what_it_cannot_serve(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, tokenizer_dir, _ = ring
    with pytest.raises(ValueError, match="per_item"):
        tiny_config(history_item_embedding="id", history_mode="flattened")
    with pytest.raises(ValueError, match="one of"):
        tiny_config(history_item_embedding="ids")
    with pytest.raises(ValueError, match="num_items"):
        UngerForGenerativeRecommendation(tiny_config(history_item_embedding="id"))
    for mode in ("integrated", "integrated+id"):
        with pytest.raises(ValueError, match=re.escape(f"history_item_embedding='{mode}' needs")):
            train_stage2(data, tokenizer_dir, tmp_path / "run", config=tiny_config(history_item_embedding=mode),
                         max_steps=1, **FAST)
    tokenizer = SemanticIDTokenizer.from_pretrained(str(tokenizer_dir))
    model = UngerForGenerativeRecommendation(tiny_config(history_item_embedding="id").bind_to_tokenizer(tokenizer))
    with pytest.raises(ValueError, match="row order"):
        model.set_history_items(tokenizer.code_table.codes[:-1])


def test_integrated_history_embedding_without_distillation(ring: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """``distillation_weight=0`` with ``history_item_embedding="integrated"``: the Stage-I embeddings feed the
    encoder only (no distillation head, no distillation loss), and the saved model records their hash."""
    data, tokenizer_dir, embeddings = ring
    train_stage2(
        data, tokenizer_dir, tmp_path / "run",
        config=tiny_config(history_item_embedding="integrated", distillation_weight=0.0),
        integrated_embeddings=embeddings, max_steps=4, eval_every=4, **FAST,
    )
    model = UngerForGenerativeRecommendation.from_pretrained(str(tmp_path / "run" / "best"))
    assert not model.config.uses_distillation and model.config.integrated_dim == 6
    assert not hasattr(model, "distillation_token") and not hasattr(model, "integrated_embeddings")
    assert model.config.integrated_embeddings_hash and bool(model.encoder.history_item_features.abs().sum() > 0)
    saved = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert "integrated_embeddings" not in saved and "encoder.history_item_features" in saved
