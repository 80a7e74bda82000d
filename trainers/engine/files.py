"""Files genrec writes: whole or not at all, and with paths that stay true when the folder moves.

**Recorded paths** (``run.json``, ``stage1_result.json``, ``stage2_result.json``, ``quantize.json``, the
per-user ranks files, Stage I's integrated-embeddings metadata). The rule, one for every file:

* a path is recorded **relative to the folder of the file that records it** (POSIX separators, ``..`` where
  the target is elsewhere in the same output folder) when the target lies inside that file's *output folder*:
  the nearest folder at or above the recording file that holds genrec's output-folder manifest
  (``.genrec_run.json``, i.e. a ``genrec run`` / ``finetune`` folder), or else the recording file's own folder
  (e.g. ``genrec train --out S2`` alone: ``S2/stage2_result.json`` records ``best`` and ``.``);
* a local path outside it (an input the user gave: a dataset or an embeddings file elsewhere) is recorded
  absolute; a value that names no local file or folder (a Hub id) is recorded as given.

Readers join the recorded value to the recording file's folder (:func:`resolve_recorded`, or plainly
``folder / value``): an absolute path, which genrec versions before this rule recorded, is then read as it is.
So two identical runs in two folders write the same bytes, and a copied or moved run folder reads its own files.

**Atomic writes** (:func:`write_text_atomic`, and :func:`write_atomic` for any writer, e.g. a parquet file): a
temporary sibling renamed over the target, removed on every failure path (a full disk, an unwritable folder, a
target that is a folder), so no ``.tmp`` file is left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_FILE", "modified_time", "output_root", "recorded_path", "recorded_paths", "resolve_recorded",
    "write_atomic", "write_text_atomic",
]

#: The manifest that marks a genrec output folder (written by :mod:`genrec.trainers.jobs.output_folder`).
MANIFEST_FILE = ".genrec_run.json"


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute lexically (``..`` folded, symlinks kept: both sides of a comparison get the same)."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def modified_time(path: str | os.PathLike) -> int | None:
    """``path``'s modification time in nanoseconds, None when there is no such file: a stage whose output file
    has the same time before and after it ran only reused that file."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return None


def output_root(folder: str | os.PathLike) -> Path:
    """The output folder that ``folder`` belongs to: the nearest folder at or above it holding the manifest
    (``.genrec_run.json``), else ``folder`` itself (absolute)."""
    start = _absolute(folder)
    for candidate in (start, *start.parents):
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    return start


def recorded_path(path: str | os.PathLike | None, recorder_dir: str | os.PathLike) -> str | None:
    """``path`` as a file in ``recorder_dir`` records it (see the module docstring); None stays None."""
    if path is None:
        return None
    if not Path(path).expanduser().exists():
        return str(path)  # a Hub id, or a name that is no local path: as given
    target, here = _absolute(path), _absolute(recorder_dir)
    root = output_root(here)
    if target == root or root in target.parents:
        return Path(os.path.relpath(target, here)).as_posix()
    return str(target)


def recorded_paths(
    record: Mapping[str, Any], recorder_dir: str | os.PathLike, keys: Iterable[str]
) -> dict[str, Any]:
    """``record`` with the values of ``keys`` (those present and not None) as :func:`recorded_path` gives them."""
    out = dict(record)
    for key in keys:
        if out.get(key) is not None:
            out[key] = recorded_path(out[key], recorder_dir)
    return out


def resolve_recorded(value: str | os.PathLike, recorder_dir: str | os.PathLike) -> Path:
    """A path recorded by a file in ``recorder_dir`` as a usable path: relative values are joined to the folder,
    absolute ones (older records) kept."""
    path = Path(value)
    return path if path.is_absolute() else Path(recorder_dir) / path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all: a hidden temporary sibling, renamed over ``path``; the
    temporary file is removed when anything fails (the error is raised)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` whole or not at all with ``write(tmp)``, which writes the file it is given (a parquet
    writer, ``torch.save``, ...): a hidden temporary sibling, renamed over ``path``; the temporary file is removed
    when anything fails (the error is raised)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
