"""The main job's MSCGRec stages (``genrec run --model mscgrec``): per-modality codes, MSCGRec Stage II, export.

After :func:`genrec.trainers.jobs.run.prepare_and_embed` (dataset + text embeddings), in the same run folder:

* ``stage1/``: UNGER's Stage I trainer with ``mode="collaborative_only"`` — a sequential recommender over item
  ids alone, trained on the training split (validation early stopping); its item embeddings are the
  *collaborative* modality (paper §4.1: "SASRec's item embedding as the collaborative modality");
* ``semantic_ids/<modality>/``: one residual k-means quantization per modality (``genrec quantize``'s output:
  quantizer, tokenizer + code table, ``quantize.json``), each with its own collision level: ``collaborative``
  (Stage I's embeddings), ``text`` (the text embeddings) and every extra ``--modality NAME=FILE`` (a user's
  per-item embedding file; the items it lacks miss that modality);
* ``stage2/``: :class:`~genrec.modeling.modeling_mscgrec.MSCGRecForGenerativeRecommendation` trained by
  :func:`~genrec.trainers.stages.stage2.train_stage2` on the decoding modality's tokenizer (default collaborative,
  the paper's choice), reading the other modalities per history item; test metrics of its best model;
* the run folder's root: the model's ``save_pretrained`` folder (decoding tokenizer + code table, model card)
  and ``modality_tables/`` (:class:`~genrec.tokenization.modality_tables.ModalityCodeTables`: every modality's
  code table, hash-checked against the model's config on load).

Every stage is fingerprinted like UNGER's (:class:`~genrec.trainers.jobs.ledger.StageLedger`), so a rerun
reuses finished stages, resumes interrupted trainings and recomputes what changed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genrec.tokenization.modality_tables import ModalityCodeTables, check_modality_name
from genrec.trainers.jobs.export_root import staged_export
from genrec.trainers.jobs.fingerprints import FINGERPRINT_FORMAT, stage1_fingerprint, stage2_fingerprint
from genrec.trainers.jobs.ledger import StageLedger, file_sha256, settings_digest
from genrec.trainers.jobs.run_context import RunContext
from genrec.trainers.jobs.transition import load_best_model, transition_stage_into_summary

logger = logging.getLogger(__name__)

__all__ = [
    "BUILT_IN_MODALITIES", "MODALITY_TABLES_DIR", "check_modality_file", "modality_tokenizer_dirs", "run_mscgrec_stages",
]

BUILT_IN_MODALITIES = ("collaborative", "text")
MODALITY_TABLES_DIR = "modality_tables"


def check_modality_file(name: str, path: str | Path, catalogue: list[str]) -> tuple[Any, float]:
    """Load the user's embedding file of modality ``name`` and check it against the dataset's item ids.

    Returns the ``ItemEmbeddings`` and the share of catalogue items it covers. Raises ``FileNotFoundError``
    for a missing file and ``ValueError`` when a name is reserved / unusable or the file's item ids are not
    this dataset's (any id outside the catalogue, or no catalogue item at all): a file keyed by other ids
    (row numbers, another catalogue's ids) would otherwise silently give every item "missing".
    """
    from genrec.data_scripts.embeddings import ItemEmbeddings

    check_modality_name(name)
    if name in BUILT_IN_MODALITIES:
        raise ValueError(f"--modality {name}: {name!r} is computed by the run itself; give the file another name")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--modality {name}={path}: no such file (an ItemEmbeddings .safetensors file)")
    emb = ItemEmbeddings.load(path)
    known = set(catalogue)
    foreign = [item for item in emb.item_ids if item not in known]
    if foreign:
        raise ValueError(
            f"--modality {name}={path}: {len(foreign)} of the file's {len(emb)} item ids are not in the dataset's "
            f"catalogue of {len(catalogue)} items (e.g. {foreign[:3]}); the file must be keyed by this dataset's "
            "item ids (drop items outside it)"
        )
    if not len(emb):
        raise ValueError(f"--modality {name}={path}: the file holds no item")
    return emb, len(emb) / len(catalogue)


def _quantize_modality(
    name: str, embeddings: Path, out_dir: Path, ledger: StageLedger, source_digest: str, *,
    num_levels: int, codebook_size: int, seed: int, show_progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Residual k-means codes of one modality in ``semantic_ids/<name>/`` (reused when its fingerprint holds)."""
    from genrec.trainers.stages.quantize import quantize_embeddings

    folder = out_dir / "semantic_ids" / name
    settings = {
        "format": FINGERPRINT_FORMAT, "modality": name, "method": "residual_kmeans", "num_levels": num_levels,
        "codebook_size": codebook_size, "seed": seed, "source": source_digest,
    }
    ledger.claim(f"quantize_{name}", settings, [folder])
    if (folder / "quantize.json").is_file():
        logger.info("reusing the %s codes in %s", name, folder)
        report = json.loads((folder / "quantize.json").read_text())
    else:
        report = quantize_embeddings(
            embeddings, folder, num_levels=num_levels, codebook_size=codebook_size, seed=seed, overwrite=True,
            show_progress=show_progress,
        ).summary()
    return settings, report


def run_mscgrec_stages(
    context: RunContext,
    profile: Any,
    *,
    num_levels: int,
    codebook_size: int,
    modalities: Mapping[str, str | Path],
    decode_modality: str,
    mask_probability: float,
    history_feed: str = "item_sum",
) -> None:
    """Stage I (collaborative), per-modality quantization, MSCGRec Stage II + test, export; records each stage
    in ``context`` (which holds the prepared data and the text embeddings of :func:`~genrec.trainers.jobs.run.prepare_and_embed`).

    ``profile`` is the run's :class:`~genrec.trainers.jobs.profiles.PipelineProfile`: its Stage I budget trains the
    collaborative model, its Stage II budget and config (minus ``history_item_embedding``: MSCGRec's history
    modalities replace UNGER's integrated-embedding feed; no distillation, which the paper does not use) train
    MSCGRec. ``history_feed``: MSCGRec's encoder input, ``"item_sum"`` or the paper's ``"stacked"``
    (:class:`~genrec.modeling.configuration_mscgrec.MSCGRecConfig`). See the module docstring for the folders.
    """
    from genrec.modeling.configuration_mscgrec import MSCGRecConfig
    from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
    from genrec.trainers.stages.stage1 import train_stage1
    from genrec.trainers.stages.stage2 import train_stage2

    out_dir, ledger, seed, show_progress = context.out_dir, context.ledger, context.seed, context.show_progress
    emb_path, emb, upstream = context.emb_path, context.emb, context.upstream
    names = [*BUILT_IN_MODALITIES, *modalities]
    if decode_modality not in names:
        raise ValueError(f"unknown decoding modality {decode_modality!r}; this run has the modalities {names}")
    if not 0.0 <= float(mask_probability) <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    catalogue = list(emb.item_ids)
    extra_files = {}
    for name, path in modalities.items():
        extra, share = check_modality_file(name, path, catalogue)
        extra_files[name] = Path(path)
        logger.info("modality %s: %d of %d items (%.1f %%) from %s", name, len(extra), len(catalogue), 100 * share, path)
    data_dir, stage1_dir, stage2_dir = out_dir / "data", out_dir / "stage1", out_dir / "stage2"

    # 3. Stage I on item ids alone: the collaborative modality's embeddings
    start = time.perf_counter()
    stage1_profile = replace(profile, stage1_config={**profile.stage1_config, "mode": "collaborative_only"})
    stage1_settings = stage1_fingerprint(stage1_profile, seed, upstream)
    ledger.claim("stage1", stage1_settings, [stage1_dir])
    if (stage1_dir / "stage1_result.json").is_file() and (stage1_dir / "integrated_embeddings.safetensors").is_file():
        logger.info("reusing the collaborative Stage I in %s", stage1_dir)
        stage1 = json.loads((stage1_dir / "stage1_result.json").read_text())
    else:
        stage1 = train_stage1(
            data_dir, emb_path, stage1_dir, config=UngerFusionConfig(**stage1_profile.stage1_config),
            epochs=profile.stage1_epochs, max_steps=profile.stage1_max_steps, patience=profile.stage1_patience,
            max_eval_examples=profile.stage1_max_eval_examples, seed=seed, show_progress=show_progress,
            log_with=context.log_with,
        ).to_dict()
    context.record_stage("stage1", start, **{
        "path": stage1_dir, "mode": "collaborative_only",
        "steps": stage1["global_step"], "best_step": stage1["best_step"],
        "validation_recall@10": stage1["validation_recall_at_10"],
        "validation_ndcg@10": stage1["validation_ndcg_at_10"],
    })

    # 4. one quantization per modality, each with its own collision level
    start = time.perf_counter()
    sources = {
        "collaborative": (stage1_dir / "integrated_embeddings.safetensors", settings_digest(stage1_settings)),
        "text": (emb_path, str(upstream["embeddings"])),
        **{name: (path, file_sha256(path)) for name, path in extra_files.items()},
    }
    quantize_settings, reports = {}, {}
    for name in names:
        path, digest = sources[name]
        quantize_settings[name], reports[name] = _quantize_modality(
            name, path, out_dir, ledger, digest, num_levels=num_levels, codebook_size=codebook_size, seed=seed,
            show_progress=show_progress,
        )
    context.record_stage("quantize", start, path=out_dir / "semantic_ids", modalities={
        name: {
            "items": report["num_items"], "codebook_sizes": report["codebook_sizes"],
            "collision_rate": report["collision_rate"],
        }
        for name, report in reports.items()
    })
    tokenizer_dir = modality_tokenizer_dirs(out_dir, names)

    # 5. MSCGRec Stage II + test evaluation
    start = time.perf_counter()
    history = [name for name in names if name != decode_modality]
    stage2_config = {k: v for k, v in profile.stage2_config.items() if k != "history_item_embedding"}
    stage2_settings = stage2_fingerprint(
        profile, seed, settings_digest({name: quantize_settings[name] for name in names})
    )
    stage2_settings.update(
        model="mscgrec", decode_modality=decode_modality, history_modalities=history,
        mask_probability=float(mask_probability),
    )
    if history_feed != "item_sum":  # only then: runs made before the option keep their fingerprint
        stage2_settings["history_feed"] = history_feed
    ledger.claim("stage2", stage2_settings, [stage2_dir])
    if (stage2_dir / "stage2_result.json").is_file():
        logger.info("reusing Stage II in %s", stage2_dir)
        stage2 = json.loads((stage2_dir / "stage2_result.json").read_text())
    else:
        stage2 = train_stage2(
            data_dir, tokenizer_dir[decode_modality], stage2_dir,
            config=MSCGRecConfig(
                **stage2_config, decode_modality=decode_modality, mask_probability=mask_probability,
                history_feed=history_feed,
            ),
            history_modalities={name: tokenizer_dir[name] for name in history},
            max_steps=profile.stage2_max_steps, epochs=profile.stage2_epochs,
            warmup_steps=profile.stage2_warmup_steps, eval_every=profile.stage2_eval_every,
            patience=profile.stage2_patience, eval_beams=profile.eval_beams, test_beams=profile.test_beams,
            lr_schedule=profile.stage2_lr_schedule, lr=profile.stage2_lr, max_eval_users=profile.max_eval_users, seed=seed,
            show_progress=show_progress, log_with=context.log_with,
        ).to_dict()
    context.record_stage("stage2", start, path=stage2_dir, steps=stage2["global_step"],
                         best_step=stage2["best_step"])
    context.record(
        mscgrec={
            "decode_modality": decode_modality, "history_modalities": history,
            "mask_probability": float(mask_probability), "history_feed": history_feed,
            "extra_modality_files": {name: context.relative(path) for name, path in extra_files.items()},
        },
        validation_metrics=stage2["validation_metrics"],
        test_metrics=stage2["test_metrics"],
        profile=asdict(profile),
    )
    context.stage2_digest = settings_digest(stage2_settings)
    context.best_dir = stage2_dir / "best"  # where stage2_result.json's best_model_dir points (a copied run too)

    # 6. the transition prior (profiles that ask for it), as for UNGER: the training rows' first-order
    #    transitions mixed into recommend(), weight chosen on validation; the best model is loaded once
    best_model, tokenizer = load_best_model(context.best_dir)
    if profile.transition_prior:
        transition_stage_into_summary(context, best_model, tokenizer, asdict(profile))

    # 7. export: model + decoding tokenizer at the root, every modality's table in modality_tables/
    start = time.perf_counter()
    export_mscgrec_model(best_model, tokenizer, context.best_dir, out_dir, tokenizer_dir, decode_modality,
                         summary=context.summary)
    context.record_stage("export", start, path=out_dir)


def modality_tokenizer_dirs(run_dir: Path, names: Sequence[str]) -> dict[str, Path]:
    """Each modality's tokenizer + code-table folder in an MSCGRec run folder (``genrec quantize``'s layout)."""
    return {name: Path(run_dir) / "semantic_ids" / name / "tokenizer" for name in names}


def export_mscgrec_model(
    model: Any, tokenizer: Any, best_dir: Path, out_dir: Path, tokenizer_dirs: Mapping[str, Path], decode_modality: str,
    *, summary: dict[str, Any],
) -> ModalityCodeTables:
    """Save Stage II's best MSCGRec model (loaded once, with the transition prior installed when the run has
    one) + decoding tokenizer into ``out_dir`` with a model card, and every modality's code table into
    ``out_dir/modality_tables`` (refused if a table's hash is not the model's), all or nothing
    (:func:`~genrec.trainers.jobs.export_root.staged_export`)."""
    from genrec.model_cards.card import save_model_card
    from genrec.model_cards.run_card import (
        build_run_card,
        describe_hardware,
        stage2_log_history,
        write_training_curve,
    )
    from genrec.tokenization.code_table import CodeTable

    tables = ModalityCodeTables(
        {name: CodeTable.load(folder) for name, folder in tokenizer_dirs.items()}, decode_modality
    )
    check_tables_match_model(model, tables)
    summary["hardware"] = describe_hardware()
    summary["mscgrec"]["coverage"] = tables.coverage()
    with staged_export(out_dir) as staging:  # the root's previous files stay until every new one is written
        model.save_pretrained(staging)
        tokenizer.save_pretrained(str(staging))
        tables.save(staging / MODALITY_TABLES_DIR)
        curve = write_training_curve(staging, stage2_log_history(best_dir.parent))
        card = build_run_card(out_dir, summary, model.config, tokenizer, repo_id=out_dir.name,
                              training_curve=curve is not None)
        save_model_card(staging, card)
    return tables


def check_tables_match_model(model: Any, tables: ModalityCodeTables) -> None:
    """``ValueError`` unless ``tables`` are the ones ``model`` was trained with (decoding modality and every
    history modality's name and content hash, as its config records them)."""
    config = model.config
    if tables.decode_modality != config.decode_modality:
        raise ValueError(
            f"the tables decode {tables.decode_modality!r} but the model decodes {config.decode_modality!r}"
        )
    if tables.decode_table.content_hash != config.code_table_hash:
        raise ValueError("the decoding modality's table is not the one the model was trained with (hash differs)")
    if list(tables.history_tables) != list(config.history_modalities):
        raise ValueError(
            f"the tables hold the history modalities {list(tables.history_tables)}, the model reads "
            f"{config.history_modalities}"
        )
    for name, recorded in zip(config.history_modalities, config.history_code_hashes, strict=True):
        if recorded is not None and tables[name].content_hash != recorded:
            raise ValueError(f"modality {name!r}: the table's hash differs from the one the model was trained with")


def load_run_modality_tables(run_dir: str | Path, model: Any) -> ModalityCodeTables:
    """The modality tables of an MSCGRec run folder, checked against ``model`` (its config's hashes)."""
    config = model.config
    tables = ModalityCodeTables.load(
        Path(run_dir) / MODALITY_TABLES_DIR,
        expected_hashes=dict(zip(config.history_modalities, config.history_code_hashes, strict=True)),
    )
    check_tables_match_model(model, tables)
    return tables
