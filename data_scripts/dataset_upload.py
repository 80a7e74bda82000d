"""Adding configs to a prepared dataset folder and uploading it to the Hub as it is."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset

from . import hub_layout

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, CommitOperationAdd

from .dataset_loading import ITEMS_CONFIG, SEQUENCES_CONFIG, available_configs
from .dataset_report import REPORT_FILENAME

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Adding configs and uploading
# --------------------------------------------------------------------------------------------------


def _require_genrec_folder(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    configs = available_configs(str(folder))
    missing = [name for name in (SEQUENCES_CONFIG, ITEMS_CONFIG) if name not in configs]
    if missing:
        raise ValueError(
            f"{folder} is not a genrec dataset folder: its card declares no config {missing} (configs: {configs}); "
            "build one with `genrec prepare`"
        )
    return configs


def add_config(folder: str | Path, config_name: str, dataset: Dataset, split: str = "train") -> None:
    """Add (or replace) one more config, e.g. a ``code_table``, to a prepared folder: parquet + card YAML.

    The folder stays loadable with ``load_dataset(folder, config_name)`` and uploadable as is. The
    ``sequences`` and ``items`` configs cannot be replaced this way (use :func:`prepare_dataset`).
    """
    folder = Path(folder).expanduser()
    _require_genrec_folder(folder)
    if config_name in (SEQUENCES_CONFIG, ITEMS_CONFIG):
        raise ValueError(
            f"config '{config_name}' is the dataset itself; rebuild it with prepare_dataset instead of add_config"
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"add_config expects a datasets.Dataset, got {type(dataset).__name__}")
    hub_layout.write_config(folder, config_name, dataset, split=split)
    report_path = folder / REPORT_FILENAME
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report["configs"] = sorted(set(report.get("configs", [])) | {config_name})
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    include_embeddings: bool = False,
    extra_operations: Sequence[CommitOperationAdd] = (),
) -> CommitInfo:
    """Upload a prepared folder to a Hub dataset repo as is, in one commit (``HfApi().create_commit``).

    ``extra_operations`` add files or replace the folder's own at the same paths (e.g. a ``code_table``
    config and the card that describes it, :func:`genrec.trainers.jobs.push.code_table_config_operations`).

    Creates the repo when needed. Hidden leftovers (``.*``) are not uploaded, nor the local ``embeddings/``
    cache unless ``include_embeddings``. Returns the commit info. The card states the data owner's terms:
    push MovieLens / Amazon derived data only where they allow it (e.g. a private repo).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder = Path(folder).expanduser()
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a non-empty 'owner/name' string, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {error}") from None
    if not isinstance(private, bool):
        raise TypeError(f"private must be a bool, got {private!r}")
    _require_genrec_folder(folder)
    operations = {op.path_in_repo: op for op in dataset_push_operations(folder, include_embeddings=include_embeddings)}
    operations.update({op.path_in_repo: op for op in extra_operations})
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.create_commit(
        repo_id=repo_id,
        repo_type="dataset",
        operations=[operations[path] for path in sorted(operations)],
        commit_message=commit_message or "Upload genrec dataset",
    )


def dataset_push_operations(folder: str | Path, *, include_embeddings: bool = False) -> list[CommitOperationAdd]:
    """The commit operations that publish a prepared folder: every file but hidden ones and ``embeddings/``."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder).expanduser()
    operations = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if not include_embeddings and relative.startswith("embeddings/"):
            continue
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    return operations
