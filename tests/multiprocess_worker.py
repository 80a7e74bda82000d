"""One rank of ``tests/test_multiprocess.py``: Stage I, Stage II and TTDS trained by two CPU processes (gloo).

Run by ``torch.distributed.run`` (every rank runs this file); each rank writes ``rank<R>.json`` with what the
test compares: steps, metrics and a digest of its trained parameters (DDP keeps them equal across ranks).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

import testing_utils  # noqa: E402

from genrec.data_scripts.embeddings import ItemEmbeddings  # noqa: E402
from genrec.modeling.configuration_unger import UngerConfig  # noqa: E402
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig  # noqa: E402
from genrec.tokenization.code_table import CodeTable  # noqa: E402
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer  # noqa: E402


def digest(module: torch.nn.Module, keep=lambda name: True) -> str:
    """sha256 of the parameters (not buffers) whose names ``keep`` accepts."""
    h = hashlib.sha256()
    for name, param in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        if keep(name):
            h.update(name.encode())
            h.update(param.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def ring_stage1_inputs(out: Path, rank: int) -> tuple[Path, list[str], Path, UngerFusionConfig]:
    """This rank's copy of a ring-walk dataset, seeded semantic embeddings and a tiny Stage I config."""
    splits, ids = testing_utils.ring_splits(30, 40, 0)
    data = testing_utils.write_dataset(out / f"data-{rank}", splits, ids, description="ring walks")
    g = torch.Generator().manual_seed(0)
    semantic = ItemEmbeddings(ids, torch.randn(len(ids), 6, generator=g), {"stage": "test"})
    config = UngerFusionConfig(hidden_size=8, din_attention_hidden_sizes=[8], din_mlp_hidden_sizes=[16],
                               intermediate_size=16, max_history_items=20)
    return data, ids, semantic.save(out / f"semantic-{rank}.safetensors"), config


def unger(out: Path, rank: int) -> dict:
    from genrec.trainers.stages.stage1 import train_stage1
    from genrec.trainers.stages.stage2 import train_stage2

    data, ids, semantic_path, config = ring_stage1_inputs(out, rank)
    stage1 = train_stage1(data, semantic_path, out / "stage1", config=config, max_steps=4, eval_every=2,
                          batch_size=8, warmup_steps=1, lr=1e-2, log_with=None, show_progress=False)
    codes = np.random.default_rng(0).integers(0, 4, size=(len(ids), 2))
    tokenizer = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4]))
    stage2 = train_stage2(data, tokenizer, out / "stage2", integrated_embeddings=stage1.embeddings_path,
                          config=UngerConfig(d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2),
                          max_steps=4, eval_every=2, batch_size=8, lr=1e-2, warmup_steps=1, log_with=None,
                          show_progress=False)
    best = json.loads((out / "stage2" / "stage2_result.json").read_text())
    return {"stage1_steps": stage1.global_step, "stage1_recall": stage1.validation_recall_at_10,
            "stage2_steps": stage2.global_step, "stage2_test": stage2.test_metrics, "stage2_best": best["best_step"]}


def ttds(out: Path, rank: int) -> dict:
    from test_ttds_trainer import _args, _items, _model, _sequences

    from genrec.trainers.ttds import TTDSData, TTDSTrainer, create_tiny_base, template_corpus

    base = out / "base"
    if rank == 0:
        corpus = template_corpus() + list(_items()["title"]) + ["Title: Year: Genres: Recently interacted with:"]
        create_tiny_base(out / "base-tmp", corpus, vocab_size=400)
        (out / "base-tmp").rename(base)
    while not (base / "config.json").is_file():  # rank 1 waits for rank 0's base (no process group yet)
        import time

        time.sleep(0.2)
    model, tokenizer = _model(base)
    data = TTDSData.from_datasets(_sequences(), _items(), seed=0)
    args = _args(out / "ttds", warmup_steps=2, max_steps=4, code_update_steps=2, save_steps=3, train_batch_size=4,
                 alignment_batch_size=4, cpu=True)
    trainer = TTDSTrainer(model, tokenizer, data, args)
    summary = trainer.train()
    import genrec.trainers.ttds.trainer as ttds_trainer

    return {"ttds_steps": summary["global_step"], "ttds_updates": summary["code_updates"],
            "ttds_digest": digest(trainer.model, ttds_trainer._is_trained_key),
            "ttds_table": trainer.codes.item_table.codes.tolist()}


def evaluation(out: Path, rank: int) -> dict:
    """The same seeded model evaluated by every rank: test metrics + per-user ranks, the transition weight search."""
    from datasets import Dataset, DatasetDict

    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
    from genrec.trainers.evaluation.evaluator import evaluate_model
    from genrec.trainers.stages.transition_prior import (
        choose_transition_mixture,
        choose_transition_weight,
        transition_pairs,
    )

    ids = [f"p{k}" for k in range(30)]
    codes = np.random.default_rng(3).integers(0, 4, size=(len(ids), 2))
    tokenizer = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[4, 4]))
    torch.manual_seed(0)
    config = UngerConfig.from_tokenizer(tokenizer, d_model=16, num_attention_heads=2, ffn_dim=32, decoder_layers=2)
    model = UngerForGenerativeRecommendation(config).eval()
    users_seen = []  # the users this rank decoded itself (the rest came from the other rank)
    recommend = model.recommend

    def counting_recommend(histories, *args, **kwargs):
        users_seen.append(len(histories))
        return recommend(histories, *args, **kwargs)

    model.recommend = counting_recommend
    rng = np.random.default_rng(0)
    rows = [[ids[j] for j in rng.integers(0, len(ids), size=rng.integers(2, 7))] for _ in range(37)]
    split = Dataset.from_dict({"user_id": [f"u{i}" for i in range(len(rows))], "item_ids": rows})
    test = evaluate_model(model, tokenizer, DatasetDict({"test": split}), "test", num_beams=20, batch_size=4,
                          show_progress=False, per_user=True)
    sources, targets = transition_pairs(rows, tokenizer)
    model.set_transition_prior(sources, targets)
    weight, table = choose_transition_weight(model, tokenizer, [r[:-1] for r in rows], [r[-1] for r in rows],
                                             num_beams=20, batch_size=4)
    smoothed = choose_transition_mixture(model, tokenizer, [r[:-1] for r in rows], [r[-1] for r in rows],
                                         num_beams=20, batch_size=4, smoothings=(0.0, 1.0, 5.0),
                                         left=np.bincount(sources, minlength=len(ids)))
    return {"test": test, "weight": weight, "table": table, "smoothed": list(smoothed),
            "users_decoded": sum(users_seen)}


def embedding(out: Path, rank: int) -> dict:
    """``genrec embed`` of a prepared dataset (``EMBED_DATA``) with the packaged encoder, split across ranks."""
    import genrec.data_scripts.text_encoders as text_encoders
    from genrec.trainers.jobs.verbs import embed

    rows = []
    pool = text_encoders._pool

    def counting_pool(hidden, mask, pooling):
        rows.append(int(hidden.shape[0]))
        return pool(hidden, mask, pooling)

    text_encoders._pool = counting_pool
    target = out / "items.safetensors"
    embed(os.environ["EMBED_DATA"], out=target, batch_size=8)
    emb = ItemEmbeddings.load(target)
    return {"sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "key": emb.metadata.get("cache_key"),
            "items": len(emb), "rows_encoded": sum(rows)}


def stage1(out: Path, rank: int) -> dict:
    """Stage I alone (batch 8, 4 steps: no epoch's last partial batch), for one process against two."""
    from genrec.trainers.stages.stage1 import train_stage1

    data, ids, semantic_path, config = ring_stage1_inputs(out, rank)
    result = train_stage1(data, semantic_path, out / "stage1", config=config, max_steps=4, eval_every=2,
                          batch_size=8, warmup_steps=1, lr=1e-2, log_with=None, show_progress=False)
    emb = ItemEmbeddings.load(result.embeddings_path)
    return {"recall": result.validation_recall_at_10, "embeddings": emb.embeddings.tolist()}


def mainjob(out: Path, rank: int) -> dict:
    """The main job (``run_pipeline``) on ``MAINJOB_DATA`` into ``out`` by every rank, without dropout (so that two
    processes can train what one does); what the test compares."""
    from dataclasses import replace

    from fault_fixtures import TINY, run_tiny

    # one Stage II step: its batch (256 of the ~350 training rows) splits evenly in two; an epoch's last, partial
    # batch is padded by Accelerate to split evenly (a duplicated row), which one process does not train on
    profile = replace(
        TINY, stage2_config={**TINY.stage2_config, "dropout": 0.0}, stage2_max_steps=1, stage2_eval_every=1,
        stage2_warmup_steps=0, transition_prior=True,
    )
    summary = run_tiny(os.environ["MAINJOB_DATA"], out, profile=profile)
    return {"test": summary["test_metrics"], "model_test": summary.get("model_test_metrics"),
            "stages": sorted(summary["stages"]), "stage2_steps": summary["stages"]["stage2"]["steps"]}


if __name__ == "__main__":
    out, which = Path(sys.argv[1]), sys.argv[2]
    report_dir = Path(os.environ.get("REPORT_DIR", out))
    report_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ["RANK"])
    result = {"world_size": int(os.environ["WORLD_SIZE"])}
    jobs = {"unger": unger, "ttds": ttds, "evaluation": evaluation, "embedding": embedding, "mainjob": mainjob,
            "stage1": stage1}
    result.update(jobs[which](out, rank))
    from accelerate import PartialState

    state = PartialState()  # what the trainings ran under (the trainers build their Accelerator on it)
    result.update(distributed_type=str(state.distributed_type), num_processes=state.num_processes)
    (report_dir / f"{which}-rank{rank}.json").write_text(json.dumps(result))
    from genrec.trainers.engine.processes import end_processes

    end_processes()  # as the genrec CLI does: a live gloo group can abort the interpreter's exit
