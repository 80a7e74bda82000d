"""What each stage of the main job (``genrec run``) depends on, as fingerprint settings for :class:`StageLedger`.

One function per stage lists the settings and inputs that determine its outputs:

* ``prepare``: the source, ``max_history`` and the sha256 of every input file (for a Hub id, its name);
  the ``dataset`` string itself is left out, so the same folder reached by another path still matches;
* the embeddings carry their own content key (encoder, template, pooling, item texts) inside the file;
* ``stage1``: the profile's Stage I fields, the seed, the prepare fingerprint and the embeddings' key;
* ``quantize``: method, levels, codebook size, seed and the Stage I fingerprint (the embeddings' key in a
  run without Stage I);
* ``stage2``: the profile's Stage II and evaluation fields, the seed and the quantize fingerprint (which
  holds Stage I's, which holds the data's).

:func:`adopt_legacy_run` gives run folders made before fingerprints existed a fingerprint rebuilt from
their own records (``run.json``, the dataset's ``genrec_dataset.json``, the embeddings' metadata), so that
they stay reusable exactly when those records match today's settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genrec.trainers.jobs.ledger import FINGERPRINT_DIR, StageLedger, file_sha256, settings_digest
from genrec.trainers.stages.stage2_defaults import PAPER_LR

logger = logging.getLogger(__name__)

EMBEDDINGS_DIR = "embeddings"
SEMANTIC_EMBEDDINGS_FILE = "semantic.safetensors"
#: Bump when a stage's outputs change meaning for the same settings (forces every run folder to recompute).
FINGERPRINT_FORMAT = 1

STAGE1_FIELDS = ("stage1_epochs", "stage1_max_steps", "stage1_patience", "stage1_max_eval_examples", "stage1_config")
STAGE2_FIELDS = (
    "stage2_max_steps", "stage2_epochs", "stage2_warmup_steps", "stage2_eval_every", "stage2_patience",
    "stage2_config", "stage2_lr_schedule", "max_eval_users", "eval_beams", "test_beams",
)
_SOURCE_FILES = {"s3rec": ("sequences.txt", "items.jsonl"), "ml-100k": ("ml-100k.inter", "ml-100k.item")}


def _profile_fields(profile: Any, names: tuple[str, ...]) -> dict[str, Any]:
    values = profile if isinstance(profile, dict) else asdict(profile)
    return {name: values[name] for name in names if name in values}


def input_files(dataset: str, source: str) -> list[Path] | None:
    """The files ``genrec prepare`` reads for ``dataset``, or None for a Hub dataset id (no local files)."""
    folder = Path(dataset).expanduser()
    if source == "ml-100k" and not folder.is_dir():
        from genrec.data_scripts.movielens import find_ml100k_dir

        folder = find_ml100k_dir()
    if not folder.is_dir():
        return None
    if source in _SOURCE_FILES:
        return [folder / name for name in _SOURCE_FILES[source]]
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def prepare_fingerprint(dataset: str, source: str, max_history: int) -> dict[str, Any]:
    """Settings that determine the prepared dataset (input files by content)."""
    files = input_files(dataset, source)
    inputs: Any
    if files is None:
        inputs = {"hub_id": dataset}
    else:
        # a missing file is prepare's to report (with its own message); fingerprint what exists
        inputs = [{"name": path.name, "sha256": file_sha256(path)} for path in files if path.is_file()]
    return {"format": FINGERPRINT_FORMAT, "source": source, "max_history": max_history, "inputs": inputs}


def stage1_fingerprint(profile: Any, seed: int, upstream: dict[str, Any]) -> dict[str, Any]:
    """Settings that determine Stage I (profile fields, seed, data and embeddings)."""
    return {"format": FINGERPRINT_FORMAT, **_profile_fields(profile, STAGE1_FIELDS), "seed": seed, **upstream}


def quantize_fingerprint(
    num_levels: int, codebook_size: int, seed: int, stage1_digest: str | None, *, method: str = "residual_kmeans",
    quantizer_config: dict[str, Any] | None = None, embeddings: str | None = None,
) -> dict[str, Any]:
    """Settings that determine the semantic IDs: of Stage I's integrated embeddings (``stage1_digest``) or,
    in a run without Stage I (the ``tiger`` profile), of the text embeddings whose key is ``embeddings``."""
    settings: dict[str, Any] = {
        "format": FINGERPRINT_FORMAT, "method": method, "num_levels": num_levels,
        "codebook_size": codebook_size, "seed": seed,
    }
    if stage1_digest is not None:
        settings["stage1"] = stage1_digest
    else:
        settings["embeddings"] = embeddings
    if quantizer_config:  # only then: the fingerprints of residual k-means runs stay as they were
        settings["quantizer_config"] = dict(quantizer_config)
    return settings


def stage2_fingerprint(profile: Any, seed: int, quantize_digest: str) -> dict[str, Any]:
    """Settings that determine Stage II and its test metrics."""
    fields = _profile_fields(profile, (*STAGE2_FIELDS, "stage2_lr"))
    if fields.get("stage2_lr", PAPER_LR) == PAPER_LR:  # runs at the paper's rate (all made before the field) keep
        fields.pop("stage2_lr", None)  # their fingerprint
    return {"format": FINGERPRINT_FORMAT, **fields, "seed": seed, "quantize": quantize_digest}


def adopt_legacy_run(run_dir: Path, ledger: StageLedger) -> bool:
    """Fingerprint a run folder made before fingerprints existed, from its own records; True if adopted.

    Needs the legacy ``run.json`` (written when that run finished) and the prepared dataset's report. The
    rebuilt fingerprints are those the legacy settings would have today, so the usual comparison then
    reuses each stage whose settings still match and recomputes the others, naming the difference. The
    legacy embeddings file (in ``data/embeddings/``, where older versions wrote it) moves into the run
    folder. A run folder without ``run.json`` (interrupted before it finished) cannot be adopted: its stages
    recompute.
    """
    if (run_dir / FINGERPRINT_DIR).exists():
        return False
    summary_path, report_path = run_dir / "run.json", run_dir / "data" / "genrec_dataset.json"
    if not summary_path.is_file() or not report_path.is_file():
        return False
    try:
        summary = json.loads(summary_path.read_text())
        report = json.loads(report_path.read_text())
        legacy_emb = run_dir / summary["stages"]["embed"]["path"]  # relative to the run folder (older: absolute)
        source, profile, seed = summary["source"], summary["profile"], summary["seed"]
        num_levels, codebook_size = summary["num_levels"], summary["codebook_size"]
        if source == "hub" and not report.get("files"):
            inputs: Any = {"hub_id": summary["dataset"]}
        else:
            inputs = [{"name": f["name"], "sha256": f["sha256"]} for f in report["files"]]
        prepare = {"format": FINGERPRINT_FORMAT, "source": source, "max_history": report["max_history"],
                   "inputs": inputs}
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("%s: could not read the records of an older run (%s); its stages will recompute", run_dir, error)
        return False
    if not legacy_emb.is_file() or run_dir / "data" not in legacy_emb.parents:
        return False
    from genrec.data_scripts.embeddings import ItemEmbeddings

    try:
        cache_key = ItemEmbeddings.load(legacy_emb).metadata.get("cache_key")
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable embeddings of an older run (%s); its stages will recompute", run_dir, error)
        return False
    if not cache_key:
        return False
    target = run_dir / EMBEDDINGS_DIR / SEMANTIC_EMBEDDINGS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(legacy_emb, target)
    with contextlib.suppress(OSError):  # data/embeddings, if now empty: the dataset folder is a dataset again
        legacy_emb.parent.rmdir()
    stage1 = stage1_fingerprint(profile, seed, {"prepare": settings_digest(prepare), "embeddings": cache_key})
    quantize = quantize_fingerprint(num_levels, codebook_size, seed, settings_digest(stage1))
    stage2 = stage2_fingerprint(profile, seed, settings_digest(quantize))
    for stage, settings in (("prepare", prepare), ("stage1", stage1), ("quantize", quantize), ("stage2", stage2)):
        ledger.record(stage, settings)
    logger.info("%s: fingerprinted the stages of a run made by an older genrec from its run.json", run_dir)
    return True
