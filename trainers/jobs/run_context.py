"""What the main job carries from stage to stage: one typed record of the run so far.

Every stage of :func:`genrec.trainers.jobs.run.run_pipeline` (and MSCGRec's, and the transition prior's) reads
its inputs from a :class:`RunContext` and records what it made there (:meth:`RunContext.record_stage`), so
that the run's summary (``run.json``) is written in one place (:meth:`RunContext.write_summary`) instead of a
dict edited by several modules.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import recorded_path, resolve_recorded, write_text_atomic
from genrec.trainers.jobs.fingerprints import EMBEDDINGS_DIR
from genrec.trainers.jobs.ledger import StageLedger
from genrec.trainers.jobs.profiles import RUN_SUMMARY_FILE

__all__ = ["RunContext", "first_stage_finished"]


def first_stage_finished(out_dir: Path) -> bool:
    """Whether the run folder holds a prepared dataset (``data/README.md``: prepare renames its folder into place
    whole), the output of the main job's first stage. A run that fails before it leaves the folder as it found it
    (:func:`~genrec.trainers.jobs.output_folder.owned_output_folder`'s ``keep_on_failure``); after it, what the
    run wrote stays, so that a rerun resumes."""
    return (Path(out_dir) / "data" / "README.md").is_file()


@dataclass
class RunContext:
    """The run folder, its ledger, the settings every stage shares, the outputs so far and the summary.

    ``summary`` is what ``run.json`` will hold: ``stages`` (per-stage seconds and outputs), the metrics and
    the settings; stages add to it through :meth:`record_stage` and :meth:`record`. Every path it records is
    relative to the run folder (:meth:`relative`; ``"."`` is the folder itself), so that a copied or moved run
    folder reads its own files: :meth:`resolve` (or ``out_dir / value``) turns a recorded path back into one.
    """

    out_dir: Path
    ledger: StageLedger | None
    seed: int
    show_progress: bool = True
    summary: dict[str, Any] = field(default_factory=lambda: {"stages": {}})
    started: float = field(default_factory=time.perf_counter)
    # outputs of the stages so far (None until the stage has run or been reused)
    emb_path: Path | None = None
    emb: Any = None
    #: fingerprint digests of the upstream stages (``prepare``, ``embeddings``) that later stages hold
    upstream: dict[str, Any] = field(default_factory=dict)
    #: Stage II's fingerprint digest (what the transition prior's fingerprint holds)
    stage2_digest: str | None = None
    best_dir: Path | None = None
    #: ``run.json``'s stages as an earlier invocation left them: a stage this one only reuses keeps its time there
    previous_stages: dict[str, Any] = field(default_factory=dict)
    previous_total: float | None = None
    #: the stages this invocation computed (not reused)
    computed: set[str] = field(default_factory=set)
    #: where Stage I and II write training logs (``Accelerator(log_with=...)``; ``--report-to``, in no fingerprint)
    log_with: str | list[str] | None = "auto"

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "data"

    @property
    def embeddings_dir(self) -> Path:
        return self.out_dir / EMBEDDINGS_DIR

    def relative(self, path: str | os.PathLike | None) -> str | None:
        """``path`` as ``run.json`` records it: relative to the run folder when inside it
        (:func:`~genrec.trainers.engine.files.recorded_path`)."""
        return recorded_path(path, self.out_dir)

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path ``run.json`` records, as a usable path (older, absolute records as they are)."""
        return resolve_recorded(value, self.out_dir)

    def load_previous(self) -> None:
        """Read the times an earlier invocation recorded in ``run.json`` (nothing when there is none or it is not
        JSON), so that a rerun which only reuses stages reports what they cost when they ran, not "0.0 s"."""
        try:
            previous = json.loads((self.out_dir / RUN_SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            return
        if isinstance(previous, dict) and isinstance(previous.get("stages"), dict):
            self.previous_stages = previous["stages"]
            self.previous_total = previous.get("total_seconds")

    def record_stage(self, name: str, start: float, *, reused: bool = False, **outputs: Any) -> dict[str, Any]:
        """Record stage ``name``: its wall-clock seconds since ``start`` and its outputs (paths, steps, ...);
        ``Path`` values are recorded relative to the run folder (:meth:`relative`). A ``reused`` stage keeps the
        seconds an earlier invocation recorded for it (:meth:`load_previous`); when there are none (that
        invocation was killed before it wrote ``run.json``), its seconds are ``None`` — unknown, not the
        fraction of a second it took to find the stage's outputs."""
        outputs = {key: self.relative(value) if isinstance(value, Path) else value for key, value in outputs.items()}
        seconds: float | None = round(time.perf_counter() - start, 2)
        previous = self.previous_stages.get(name)
        if reused and isinstance(previous, dict) and isinstance(previous.get("seconds"), int | float):
            seconds = previous["seconds"]
        else:
            self.computed.add(name)
            if reused:  # done by an earlier invocation whose run.json is gone (or never written): time unknown
                seconds = None
        entry = {"seconds": seconds, **outputs}
        self.summary["stages"][name] = entry
        return entry

    def record(self, **values: Any) -> None:
        """Top-level summary values (metrics, settings)."""
        self.summary.update(values)

    def write_summary(self, *, total: bool = True) -> dict[str, Any]:
        """``run.json`` (written whole or not at all), with the total time unless ``total`` is False (a step
        added to a finished run keeps the run's own total); returns the summary."""
        if total:
            only_reused = not (self.computed - {"export"}) and self.previous_total is not None
            # a rerun that computed nothing keeps the run's own total (its export only rewrote the same model)
            self.summary["total_seconds"] = (
                self.previous_total if only_reused else round(time.perf_counter() - self.started, 2)
            )
        write_text_atomic(self.out_dir / RUN_SUMMARY_FILE, json.dumps(self.summary, indent=2) + "\n")
        return self.summary
