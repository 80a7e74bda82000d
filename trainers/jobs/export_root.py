"""The export into a run folder's root, all or nothing: a failed export leaves the previous model in place.

A run folder's root is the final model's ``save_pretrained`` folder (weights, config, modeling code, tokenizer,
code table, model card, training curve; MSCGRec adds ``modality_tables/``), but it also holds the stages'
sub-folders and ``run.json``, so the root itself cannot be swapped by one rename. :func:`staged_export` instead
has the export write everything into a hidden staging folder inside the run folder (``.export-staging``, on the
same filesystem) and only then moves each exported entry into the root (``os.replace``, one rename each),
setting every root entry it replaces aside until all are in; if anything fails, the new entries are removed
and the previous ones put back. Root entries a previous export wrote that this one does not (a training curve
that is no longer drawn, say) are removed: each export records what it wrote in ``.genrec_export.json``; an
export of a folder without that record (made by an older genrec) removes nothing, it only replaces.

The staging folder is removed on every exit path; one left by a killed process is removed when the next
export starts (a root entry it had set aside and not yet replaced is put back first). Both names start with a
dot: ``genrec push`` never uploads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from genrec.trainers.engine.files import write_text_atomic

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_RECORD", "EXPORT_STAGING", "staged_export"]

EXPORT_STAGING = ".export-staging"
EXPORT_RECORD = ".genrec_export.json"
_ASIDE = ".previous"  # inside the staging folder: the root entries being replaced, until the export is in


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _previous_export(out_dir: Path) -> list[str]:
    """The root entries the last export wrote (empty when unknown: a folder made before the record)."""
    try:
        names = json.loads((out_dir / EXPORT_RECORD).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str) and name and "/" not in name and name not in (".", "..")]


def _install(staging: Path, out_dir: Path) -> None:
    """Move every entry of ``staging`` into ``out_dir`` and remove the previous export's other entries; on any
    failure, ``out_dir`` is put back as it was."""
    new = sorted(path.name for path in staging.iterdir())
    stale = [name for name in _previous_export(out_dir) if name not in new and name != EXPORT_RECORD]
    aside = staging / _ASIDE
    aside.mkdir()
    installed: list[str] = []
    try:
        for name in new:
            target = out_dir / name
            if target.exists() or target.is_symlink():
                os.replace(target, aside / name)
            os.replace(staging / name, target)
            installed.append(name)
        for name in stale:
            if (out_dir / name).exists():
                os.replace(out_dir / name, aside / name)
        record = {"files": [name for name in new if name != EXPORT_RECORD]}
        write_text_atomic(out_dir / EXPORT_RECORD, json.dumps(record, indent=2) + "\n")
    except BaseException:
        for name in installed:  # the new entries out, the previous ones back
            with contextlib.suppress(OSError):
                _remove(out_dir / name)
        for path in aside.iterdir():
            with contextlib.suppress(OSError):
                os.replace(path, out_dir / path.name)
        raise


@contextlib.contextmanager
def staged_export(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A staging folder to export the model into; when the block ends without error its entries replace the
    root's (see the module docstring). The staging folder is removed on every exit path."""
    out_dir = Path(out_dir)
    staging = out_dir / EXPORT_STAGING
    if staging.exists() or staging.is_symlink():
        logger.warning("removing %s, left by an export that did not finish", staging)
        aside = staging / _ASIDE
        if aside.is_dir():  # killed while installing: a root entry set aside but not yet replaced goes back
            for path in aside.iterdir():
                if not (out_dir / path.name).exists():
                    os.replace(path, out_dir / path.name)
        _remove(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
        _install(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
