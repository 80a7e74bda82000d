"""UNGER Stage I trainer: trains, exports, keeps the best model, resumes exactly, refuses bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import testing_utils
import torch
from safetensors.torch import load_file

from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import UngerFusionModel
from genrec.trainers.engine.checkpoints import CheckpointManager, TrainingState
from genrec.trainers.stages.stage1 import EMBEDDINGS_FILE, load_stage1_data, train_stage1

N_ITEMS, N_USERS = 40, 40



def write_dataset(root: Path, splits: dict[str, list[tuple[str, list[str]]]], item_ids: list[str]) -> Path:
    return testing_utils.write_dataset(root, splits, item_ids, description='Synthetic Stage I test data: users walk the item ring in steps of 1 or 2.')


def ring_splits(seed: int = 0) -> tuple[dict[str, list[tuple[str, list[str]]]], list[str]]:
    return testing_utils.ring_splits(N_ITEMS, N_USERS, seed)


def ring_embeddings(ids: list[str]) -> ItemEmbeddings:
    """Semantic embeddings that place the ring on a circle (plus noise), stored in *reverse* order."""
    g = torch.Generator().manual_seed(0)
    angle = torch.arange(len(ids)) / len(ids) * 2 * torch.pi
    emb = torch.randn(len(ids), 10, generator=g) * 0.3
    emb[:, 0] += torch.cos(angle)
    emb[:, 1] += torch.sin(angle)
    return ItemEmbeddings(ids[::-1], emb.flip(0).contiguous(), {"encoder": "synthetic"})


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ring")
    splits, ids = ring_splits()
    data = write_dataset(root / "data", splits, ids)
    path = ring_embeddings(ids).save(root / "semantic.safetensors")
    return data, path


def tiny_config(**overrides: object) -> UngerFusionConfig:
    values: dict[str, object] = dict(
        hidden_size=8, din_attention_hidden_sizes=[8], din_mlp_hidden_sizes=[16], intermediate_size=16,
        max_history_items=20,
    )
    values.update(overrides)
    return UngerFusionConfig(**values)


FAST = dict(batch_size=32, warmup_steps=2, lr=1e-2, log_with=None, show_progress=False, logging_steps=5)


def test_trains_exports_and_keeps_the_best_model(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    result = train_stage1(data, semantic, tmp_path, config=tiny_config(), epochs=4, eval_every=5, patience=None, **FAST)
    latest = max((tmp_path / "checkpoints").glob("step-*"))
    history = json.loads((latest / "trainer_state.json").read_text())
    train_losses = [e["train/loss"] for e in history["log_history"] if "train/loss" in e]
    assert train_losses[-1] < train_losses[0]
    assert result.global_step == 4 * math.ceil(result.num_train_examples / 32)
    assert 0.0 <= result.validation_recall_at_10 <= 1.0 and result.validation_recall_at_10 > 10 / N_ITEMS
    assert result.validation_metrics["recall@10"] == result.validation_recall_at_10
    assert result.num_validation_examples == N_USERS

    exported = ItemEmbeddings.load(result.embeddings_path)
    assert Path(result.embeddings_path).name == EMBEDDINGS_FILE
    assert exported.item_ids == [f"i{k}" for k in range(N_ITEMS)]  # vocabulary (items config) order
    assert exported.embeddings.shape == (N_ITEMS, 8)
    assert exported.metadata["mode"] == "unger" and exported.metadata["fusion"] == "gate"
    best = UngerFusionModel.from_pretrained(result.best_model_dir)
    assert exported.metadata["stage1_config_hash"] == best.config.config_hash()
    assert torch.equal(best.integrated_item_embeddings().detach(), exported.embeddings)
    assert json.loads((Path(result.best_model_dir) / "vocabulary.json").read_text()) == exported.item_ids
    # the semantic table inside the model is the embeddings file re-ordered to the vocabulary
    reordered = ItemEmbeddings.load(semantic).reorder(exported.item_ids).embeddings
    assert torch.equal(best.semantic_table[1:], reordered)
    saved = json.loads((tmp_path / "stage1_result.json").read_text())
    assert saved["validation_recall_at_10"] == result.validation_recall_at_10
    assert len(list((tmp_path / "checkpoints").glob("step-*"))) <= 2

    # a finished run resumes to the same result without training again
    again = train_stage1(data, semantic, tmp_path, config=tiny_config(), epochs=4, eval_every=5, patience=None, **FAST)
    assert again.global_step == result.global_step and again.resumed_from is not None
    assert again.validation_recall_at_10 == result.validation_recall_at_10


class _Interrupt(Exception):
    pass


def test_resumed_run_equals_uninterrupted_run(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    config = tiny_config(dropout=0.2, align_max_items=12)  # dropout + subsampling: RNG state matters
    kwargs = dict(config=config, max_steps=10, eval_every=4, checkpoint_every=2, patience=None,
                  gradient_accumulation_steps=2, **FAST)
    full = train_stage1(data, semantic, tmp_path / "full", **kwargs)

    def interrupt(state: TrainingState) -> None:
        if state.global_step == 5:  # 3 steps per epoch: resumes from step 4, in the middle of epoch 2
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_stage1(data, semantic, tmp_path / "resumed", callbacks=[interrupt], **kwargs)
    resumed = train_stage1(data, semantic, tmp_path / "resumed", **kwargs)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step-00000004")
    final = "checkpoints/step-00000010/model.safetensors"
    a, b = load_file(tmp_path / "full" / final), load_file(tmp_path / "resumed" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.validation_metrics == full.validation_metrics
    assert torch.equal(
        ItemEmbeddings.load(full.embeddings_path).embeddings, ItemEmbeddings.load(resumed.embeddings_path).embeddings
    )


def test_resume_refuses_another_config_and_restart_clears(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    train_stage1(data, semantic, tmp_path, config=tiny_config(), max_steps=2, eval_every=2, **FAST)
    with pytest.raises(ValueError, match="another config"):
        train_stage1(data, semantic, tmp_path, config=tiny_config(fusion="sum"), max_steps=2, eval_every=2, **FAST)
    # a checkpoint interrupted while saving is ignored
    (tmp_path / "checkpoints" / "step-00000009.tmp").mkdir()
    result = train_stage1(
        data, semantic, tmp_path, config=tiny_config(fusion="sum"), max_steps=2, eval_every=2, resume=False, **FAST
    )
    assert result.resumed_from is None
    assert ItemEmbeddings.load(result.embeddings_path).metadata["fusion"] == "sum"


def test_checkpoint_manager_lists_only_complete_checkpoints(tmp_path: Path) -> None:
    from accelerate import Accelerator

    manager = CheckpointManager(Accelerator(cpu=True), tmp_path, keep_last=1)
    assert manager.latest() is None
    (tmp_path / "step-00000002").mkdir()  # no trainer state: incomplete
    (tmp_path / "step-00000001").mkdir()
    TrainingState(global_step=1).save(tmp_path / "step-00000001" / "trainer_state.json")
    assert manager.latest() == tmp_path / "step-00000001"
    (tmp_path / "step-00000001" / "trainer_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainingState.load(tmp_path / "step-00000001" / "trainer_state.json")


def test_bad_inputs_get_clear_errors(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    splits, ids = ring_splits()
    # semantic embeddings that miss an item of the dataset
    partial = ItemEmbeddings(ids[1:], torch.randn(N_ITEMS - 1, 10), {})
    partial_path = partial.save(tmp_path / "partial.safetensors")
    with pytest.raises(ValueError, match=r"lack 1 of the dataset's 40 items, e.g. \['i0'\]"):
        train_stage1(data, partial_path, tmp_path / "run1", config=tiny_config(), max_steps=1, **FAST)
    # a sequence naming an item the items config does not have
    splits["validation"][3] = ("u3", ["i1", "ghost"])
    bad = write_dataset(tmp_path / "bad", splits, ids)
    with pytest.raises(ValueError, match=r"split 'validation', row 3 \(user 'u3'\) has item id 'ghost'"):
        load_stage1_data(bad)


def test_rows_without_history_are_skipped_and_counted(tmp_path: Path) -> None:
    splits, ids = ring_splits()
    splits["train"].append(("lonely", ["i5"]))
    data = load_stage1_data(write_dataset(tmp_path / "d", splits, ids), max_history=3)
    assert data.skipped_no_history == {"train": 1, "validation": 0}
    assert data.truncated["validation"] > 0  # ring histories are up to 7 long
    history, mask, labels = data.splits["train"].tensors
    assert history.shape[1] == 3 and int(labels.min()) >= 1
    assert torch.equal(mask, (history != 0).long())
    # left padding: the most recent history item sits in the last column
    first = splits["train"][0][1]
    assert history[0, -1].item() == ids.index(first[-2]) + 1 and labels[0].item() == ids.index(first[-1]) + 1


def test_mixed_precision_runs_one_after_another_in_one_process(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    kwargs = dict(config=tiny_config(), max_steps=2, eval_every=2, **FAST)
    bf16 = train_stage1(data, semantic, tmp_path / "bf16", mixed_precision="bf16", **kwargs)
    full = train_stage1(data, semantic, tmp_path / "fp32", mixed_precision="fp16", **kwargs)  # no GPU: fp32
    assert bf16.global_step == full.global_step == 2
    assert 0.0 <= bf16.validation_recall_at_10 <= 1.0


def test_time_budget_stops_after_an_evaluated_step_and_resume_continues(ring: tuple[Path, Path], tmp_path: Path) -> None:
    data, semantic = ring
    kwargs = dict(config=tiny_config(), max_steps=4, eval_every=10, **FAST)
    stopped = train_stage1(data, semantic, tmp_path, time_budget_s=0.0, **kwargs)
    assert (stopped.global_step, stopped.stop_reason, stopped.best_step) == (1, "time_budget", 1)
    continued = train_stage1(data, semantic, tmp_path, **kwargs)
    assert (continued.global_step, continued.stop_reason) == (4, "max_steps")
