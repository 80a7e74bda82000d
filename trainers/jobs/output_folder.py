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

A job that fails before it has finished anything (``keep_on_failure`` of :func:`owned_output_folder` says when
that is: for ``genrec run``, before the dataset is prepared) leaves the folder as it found it: the files and
folders it added (the manifest, the lock, the first stage's fingerprint) are removed, and so is the folder itself
(with the parents it created) when the job created it. A typo'd dataset or an offline Hub then leaves no debris.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
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


class _UndoOnFailure:
    """Puts an output folder back as it was before a job that failed without finishing anything.

    Made before the claim, it notes whether the folder (and which of its parents) existed; :meth:`after_claim`
    notes which paths it held; on a failure that ``keep_on_failure`` does not vouch for, :meth:`remove_new_paths` (lock
    still held) deletes every path added since, but the lock, and :meth:`remove_created_folders` (after the lock
    is released) the folder and the parents the job created, when they are empty. Files that existed before are
    never touched.
    """

    def __init__(self, out_dir: str | Path, keep_on_failure: Callable[[Path], bool]) -> None:
        self.keep_on_failure = keep_on_failure
        path = Path(out_dir).expanduser().absolute()
        self.created = [folder for folder in (path, *path.parents) if not folder.exists()]  # deepest first
        self.had_manifest = (path / MANIFEST_FILE).is_file()
        self.before: set[str] = set()
        self.undo = False

    def after_claim(self, out: Path) -> None:
        if out in self.created:
            return  # everything in it is new
        for root, dirs, files in os.walk(out):  # a genrec folder (claim refuses others): a few thousand paths at most
            rel = Path(root).relative_to(out)
            self.before.update((rel / name).as_posix() for name in (*dirs, *files))
        if not self.had_manifest:
            self.before.discard(MANIFEST_FILE)  # written by this claim

    def _should_undo(self, out: Path, failed: bool) -> bool:
        if not failed:
            return False
        try:
            return not self.keep_on_failure(out)
        except Exception:  # deciding must not replace the job's own error; keep the files
            return False

    def remove_new_paths(self, out: Path, failed: bool) -> None:
        self.undo = self._should_undo(out, failed)
        if not self.undo:
            return
        logger.debug("the job failed before it finished anything: removing what it wrote into %s", out)
        for root, dirs, files in os.walk(out, topdown=True):
            rel = Path(root).relative_to(out)
            for name in files:
                key = (rel / name).as_posix()
                if key not in self.before and key != LOCK_FILE:
                    (Path(root) / name).unlink(missing_ok=True)
            for name in list(dirs):
                if (rel / name).as_posix() not in self.before:
                    dirs.remove(name)
                    target = Path(root) / name
                    if target.is_symlink():
                        target.unlink()
                    else:
                        shutil.rmtree(target, ignore_errors=True)

    def remove_created_folders(self) -> None:
        if not self.undo:
            return
        for folder in self.created:  # deepest first; a folder someone else wrote into since stays
            try:
                folder.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def owned_output_folder(
    out_dir: str | Path,
    *,
    job: str,
    inputs: dict[str, str | os.PathLike | None] | None = None,
    keep_on_failure: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """:func:`claim_output_folder` and :func:`locked` for the block: the folder (absolute) is claimed and locked
    by the main process of a multi-process launch (the only one that writes shared files); a refusal is
    raised on every process, so none waits for the others at a barrier.

    ``keep_on_failure``: when the block raises and this returns False for the folder (the job finished nothing
    worth keeping, e.g. ``genrec run`` before its dataset was prepared), the folder is put back as it was before
    the claim: the paths the job added are removed, and the folder itself (with the parents it created) when the
    job created it. None: the folder keeps whatever the job wrote (a rerun resumes from it).
    """
    hold = contextlib.ExitStack()

    def acquire() -> Path:
        undo = _UndoOnFailure(out_dir, keep_on_failure) if keep_on_failure is not None else None
        out = claim_output_folder(out_dir, job=job, inputs=inputs).absolute()
        if undo is not None:
            undo.after_claim(out)
            hold.callback(undo.remove_created_folders)  # runs last, after the lock is released
        hold.enter_context(locked(out, job=job))
        if undo is not None:  # runs first, while the lock is held
            hold.push(lambda kind, error, trace: undo.remove_new_paths(out, failed=kind is not None))
        return out

    out = on_main_process(acquire)
    with hold:  # releases the main process's lock on every exit path (nothing to release elsewhere)
        yield out

