"""What a dataset argument may name: a dataset genrec knows by name, a local folder, or a Hub dataset id.

``genrec run --dataset X`` (and ``genrec prepare hub --path X``) used to take anything that was neither a known
name nor an existing folder for a Hub id, so a typo (``ml-100kk``) waited for the Hub and then blamed it. Here
a name is a Hub id only when it has the form ``owner/name`` of a Hub repository; anything else that is not a
known name or an existing folder is refused at once, with the closest known name (:func:`unknown_dataset`).

Imports nothing heavy: the CLI checks a ``--dataset`` before torch or ``datasets`` load.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

__all__ = ["KNOWN_DATASETS", "is_hub_repo_id", "unknown_dataset", "unknown_hub_dataset"]

#: Dataset names genrec reads without a path (lower case) -> the ``genrec prepare`` source that reads them.
KNOWN_DATASETS = {"ml-100k": "ml-100k", "ml100k": "ml-100k", "movielens-100k": "ml-100k"}

# The Hub's repository id rule (huggingface_hub.utils.validate_repo_id), with the owner required: genrec's
# datasets live in a user's or an organisation's namespace.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HUB_REPO_ID = re.compile(rf"{_PART}/{_PART}")


def is_hub_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repository id, ``owner/name`` (at most 96 characters, no ``--``
    or ``..``, not ending in ``.git``). Says nothing about whether the repository exists."""
    return (
        len(name) <= 96 and _HUB_REPO_ID.fullmatch(name) is not None
        and "--" not in name and ".." not in name and not name.endswith(".git")
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def _closest_folder(name: str) -> str:
    """`` (did you mean 'PARENT/NEAR'?)`` for the folder beside ``name`` whose name is closest, or ``""``."""
    path = Path(name).expanduser()
    if not path.parent.is_dir():
        return ""
    siblings = [child.name for child in path.parent.iterdir() if child.is_dir()]
    near = difflib.get_close_matches(path.name, siblings, n=1)
    return f" (did you mean {str(path.parent / near[0])!r}?)" if near else ""


def _closest_known(name: str) -> str | None:
    """The known dataset (its ``genrec prepare`` source) whose name is closest to ``name``, or None."""
    near = difflib.get_close_matches(name.lower(), list(KNOWN_DATASETS), n=1, cutoff=0.6)
    return KNOWN_DATASETS[near[0]] if near else None


def unknown_dataset(name: str, flag: str = "--dataset") -> ValueError:
    """The error for a ``genrec run --dataset`` that is no known name, no existing folder and no Hub id: one line
    naming the closest known name (or, for a path, the closest folder beside it) and what else is accepted."""
    known = ", ".join(sorted(set(KNOWN_DATASETS.values())))
    if _looks_like_path(name):
        return ValueError(f"{flag} {name}: no such folder{_closest_folder(name)}; give a folder (S3-Rec layout, "
                          f"genrec's layout), a known name ({known}) or a Hub id owner/name")
    near = _closest_known(name)
    hint = f" (did you mean {near!r}?)" if near else ""
    return ValueError(f"unknown dataset {name!r}{hint}; known names: {known}; or give a folder (S3-Rec layout, "
                      "genrec's layout) or a Hub id owner/name")


def unknown_hub_dataset(name: str, flag: str = "--path") -> ValueError:
    """The error for ``genrec prepare hub --path NAME`` that is neither a folder nor a Hub id ``owner/name``: a
    close folder beside it, or the source that reads a known name (``ml-100kk``: ``genrec prepare ml-100k``)."""
    if _looks_like_path(name):
        hint = _closest_folder(name)
    else:
        near = _closest_known(name)
        hint = f" (did you mean the source {near}: genrec prepare {near} --out DIR?)" if near else ""
    return ValueError(f"{flag} {name}: no such folder, and not a Hub dataset id owner/name{hint}")
