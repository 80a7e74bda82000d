"""Which settings and inputs made each stage's outputs in a run folder, so a rerun reuses only what still fits.

``genrec run --out X`` continues an interrupted run: finished stages are reused and interrupted trainings
resume from their checkpoints. That is only right when the stage would be computed the same way now. Each
stage therefore *claims* its outputs with a fingerprint: a JSON object of everything that determines them
(its settings, the digests of its input files, the fingerprints of the stages it reads). The fingerprint
is written to ``X/fingerprints/<stage>.json`` *before* the stage starts, so checkpoints of an interrupted
stage are tagged too. On a rerun:

* recorded fingerprint == current one: the stage's outputs are reused (finished) or resumed (checkpoints);
* different, or outputs present without any fingerprint: the outputs are deleted and the stage recomputes,
  with a log line naming what changed (``stage1: settings changed (seed: 1 -> 2)``).

Because each fingerprint holds the digests of the stages upstream, a change propagates downstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import write_text_atomic
from genrec.trainers.engine.processes import on_main_process

logger = logging.getLogger(__name__)

FINGERPRINT_DIR = "fingerprints"

__all__ = ["FINGERPRINT_DIR", "StageLedger", "canonical", "differences", "file_sha256", "settings_digest"]


def canonical(settings: Any) -> Any:
    """``settings`` as plain JSON values (tuples -> lists, paths -> strings), so equal settings compare equal."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def settings_digest(settings: Any) -> str:
    """sha256 of the canonical JSON of ``settings`` (the fingerprint downstream stages include)."""
    text = json.dumps(canonical(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ABSENT = "(absent)"


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two canonical settings objects: ``["seed: 1 -> 2", ...]``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(differences(old.get(key, _ABSENT), new.get(key, _ABSENT), name))
        return out
    if old == new:
        return []

    def show(value: Any) -> str:
        text = value if value is _ABSENT else json.dumps(value, sort_keys=True)
        return text if len(text) <= 60 else text[:28] + "..." + text[-28:]

    return [f"{prefix or 'value'}: {show(old)} -> {show(new)}"]


class StageLedger:
    """The fingerprints of one run folder's stages (``<run>/fingerprints/<stage>.json``)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / FINGERPRINT_DIR

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def recorded(self, stage: str) -> dict[str, Any] | None:
        """The settings recorded for ``stage``, or None (never claimed, or an unreadable record)."""
        path = self.path(stage)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("%s: unreadable fingerprint %s; treating the stage as unknown", stage, path)
            return None
        return record.get("settings") if isinstance(record, dict) else None

    def record(self, stage: str, settings: Any) -> str:
        """Write ``settings`` as ``stage``'s fingerprint (atomically); returns its digest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = canonical(settings)
        digest = settings_digest(settings)
        text = json.dumps({"digest": digest, "settings": settings}, indent=2, sort_keys=True) + "\n"
        write_text_atomic(self.path(stage), text)  # no .tmp left behind when the write fails
        return digest

    def claim(self, stage: str, settings: Any, outputs: Sequence[Path]) -> bool:
        """Make ``outputs`` belong to ``settings``.

        Returns True when the recorded fingerprint already equals ``settings`` (the outputs, if any, may be
        reused or resumed). Otherwise deletes whatever of ``outputs`` exists (logging why), records
        ``settings`` and returns False: the stage must be computed afresh. Under a multi-process launch only
        the main process looks and deletes; every process gets its answer once it is done.
        """
        return on_main_process(lambda: self._claim(stage, settings, outputs))

    def _claim(self, stage: str, settings: Any, outputs: Sequence[Path]) -> bool:
        settings = canonical(settings)
        old = self.recorded(stage)
        if old == settings:
            return True
        present = [path for path in outputs if path.exists()]
        if present:
            if old is None:
                logger.warning(
                    "%s: %s has no fingerprint (made by an older genrec, or before its settings were recorded); "
                    "recomputing it", stage, ", ".join(str(p) for p in present),
                )
            else:
                changed = differences(old, settings)
                logger.warning(
                    "%s: settings changed since %s was made (%s); recomputing it",
                    stage, ", ".join(str(p) for p in present), "; ".join(changed[:6]) or "format",
                )
            for path in present:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        self.record(stage, settings)
        return False
