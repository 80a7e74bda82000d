"""Output folders that belong to genrec: claimed before anything is written, locked while a job runs.

A job's ``--out`` folder is either new / empty (genrec creates it and writes its manifest, ``.genrec_run.json``),
already genrec's (it holds that manifest, or is a run folder made before manifests existed: ``run.json`` or
``fingerprints/``), or refused: genrec never deletes or overwrites files in a folder it did not make. The
output folder may not be, nor contain, one of the job's inputs (``--dataset``, ``--from``), so that a run
cannot delete the dataset it reads or overwrite the model it fine-tunes.

While a job writes into the folder it holds a lock file (``.genrec.lock``: PID, host, start time); a second
job on the same folder stops at once with one line naming the holder. A lock whose process is gone (same
host, PID no longer alive) is stale and taken over with a warning. Both files start with a dot, so ``genrec
push`` never uploads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from genrec._version import __version__
from genrec.trainers.engine.files import MANIFEST_FILE, write_text_atomic
from genrec.trainers.engine.processes import on_main_process

logger = logging.getLogger(__name__)

__all__ = ["LOCK_FILE", "MANIFEST_FILE", "FolderInUseError", "check_not_inside", "claim_output_folder", "locked",
           "owned_output_folder"]

LOCK_FILE = ".genrec.lock"
_MANIFEST_FORMAT = "genrec-output-folder"
# what marks a run folder written before manifests existed (adopted: it was genrec's)
_LEGACY_MARKERS = ("run.json", "fingerprints")


class FolderInUseError(OSError):
    """Another genrec process holds the output folder's lock."""


def _local_path(value: str | os.PathLike | None) -> Path | None:
    """``value`` as a resolved local path when it names an existing file or folder (a Hub id or a dataset
    name gives None)."""
    if value is None or not isinstance(value, str | os.PathLike):
        return None
    path = Path(value).expanduser()
    return path.resolve() if path.exists() else None


def check_not_inside(out_dir: str | Path, inputs: dict[str, str | os.PathLike | None]) -> None:
    """``ValueError`` when ``out_dir`` is one of ``inputs`` (flag -> path) or contains one: writing the output
    there would delete or overwrite the input."""
    out = Path(out_dir).expanduser().resolve()
    for flag, value in inputs.items():
        source = _local_path(value)
        if source is None:
            continue
        if source == out:
            raise ValueError(f"--out {out_dir} is the {flag} folder itself: write the output to another folder")
        if out in source.parents:
            raise ValueError(
                f"--out {out_dir} contains the {flag} input {value}: genrec would delete or overwrite it; write "
                "the output to a folder outside it"
            )


def _is_genrec_folder(folder: Path) -> bool:
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text()).get("format") == _MANIFEST_FORMAT
        except (json.JSONDecodeError, AttributeError, OSError):
            return False
    return any((folder / marker).exists() for marker in _LEGACY_MARKERS)


def claim_output_folder(
    out_dir: str | Path, *, job: str, inputs: dict[str, str | os.PathLike | None] | None = None
) -> Path:
    """Make ``out_dir`` genrec's output folder for ``job`` (e.g. ``"run"``), or refuse it.

    A missing or empty folder is created with its manifest; a folder with the manifest (or a legacy genrec run
    folder, which then gets one) is reused; any other non-empty folder is refused with a ``FileExistsError``
    that says why, before anything in it is touched. ``inputs`` (flag -> path or id) are checked with
    :func:`check_not_inside`. Returns the folder.
    """
    out = Path(out_dir).expanduser()
    check_not_inside(out, inputs or {})
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file: give a folder")
    existing = [p.name for p in out.iterdir()] if out.is_dir() else []
    if existing and not _is_genrec_folder(out):
        shown = ", ".join(sorted(existing)[:5]) + (", ..." if len(existing) > 5 else "")
        raise FileExistsError(
            f"--out {out_dir} is not empty and was not made by genrec (it holds {shown}; no {MANIFEST_FILE}): "
            "genrec never deletes or overwrites files it did not make; choose a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST_FILE
    if not manifest.is_file():
        write_text_atomic(manifest, json.dumps({"format": _MANIFEST_FORMAT, "version": 1, "job": job,
                                                "genrec_version": __version__}, indent=2) + "\n")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


@contextlib.contextmanager
def locked(out_dir: str | Path, *, job: str) -> Iterator[Path]:
    """Hold ``out_dir``'s lock for the duration of the block (``FolderInUseError`` when another live genrec
    process holds it); the lock file is removed on every exit path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "job": job,
          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            pid, host = holder.get("pid"), holder.get("host")
            stale = isinstance(pid, int) and host == me["host"] and not _alive(pid)
            if holder and not stale:
                raise FolderInUseError(
                    f"{out} is in use by genrec `{holder.get('job', '?')}` (PID {pid} on {host}, since "
                    f"{holder.get('since', '?')}); wait for it to finish, or delete {path} if that process is gone"
                ) from None
            logger.warning("removing the stale lock %s (%s)", path, holder or "unreadable")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:  # pragma: no cover - another process took the stale lock between our two tries
        raise FolderInUseError(f"{out} is in use by another genrec process ({path})")
    try:
        yield out
    finally:
        if _read_lock(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def owned_output_folder(
    out_dir: str | Path, *, job: str, inputs: dict[str, str | os.PathLike | None] | None = None
) -> Iterator[Path]:
    """:func:`claim_output_folder` and :func:`locked` for the block: the folder (absolute) is claimed and locked
    by the main process of a multi-process launch (the only one that writes shared files); a refusal is
    raised on every process, so none waits for the others at a barrier."""
    hold = contextlib.ExitStack()

    def acquire() -> Path:
        out = claim_output_folder(out_dir, job=job, inputs=inputs).absolute()
        hold.enter_context(locked(out, job=job))
        return out

    out = on_main_process(acquire)
    with hold:  # releases the main process's lock on every exit path (nothing to release elsewhere)
        yield out

