"""Publishing a run folder as a Hub model repo: exactly the files a user needs, nothing local.

``genrec push RUN_DIR org/name`` uploads, in one commit, the top-level files of the run folder: weights,
config, ``generation_config.json``, tokenizer files, the code table, the remote-code sources (``*.py``) and
two files rewritten for the repo: ``README.md`` (the model card regenerated from ``run.json`` so that its
usage snippet names ``org/name``) and ``run.json`` (paths relative to the run folder). Stage sub-folders
(``data/``, ``stage1/``, ``semantic_ids/``, ``stage2/``: checkpoints, caches) are not uploaded. A text file that
still holds the run folder's absolute path is refused before anything is sent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd

from genrec.trainers.jobs.profiles import RUN_SUMMARY_FILE

logger = logging.getLogger(__name__)

__all__ = ["CODE_TABLE_CONFIG", "code_table_config_operations", "find_run_code_table", "model_push_operations",
           "push_run_folder"]

#: The dataset config that carries a model's semantic IDs when its dataset is pushed.
CODE_TABLE_CONFIG = "code_table"

CARD_FILE = "README.md"
_TEXT_SUFFIXES = {".json", ".md", ".py", ".txt", ".yaml", ".yml"}


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or "/" not in repo_id:
        raise ValueError(f"repo_id must be 'owner/name', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {error}") from None


def model_push_operations(
    folder: str | Path, repo_id: str, *, revision: str | None = None, dataset_repo: str | None = None
) -> list[CommitOperationAdd]:
    """The commit operations that publish ``folder`` as ``repo_id`` (sorted by path in the repo).

    ``revision`` pins the snippet of the regenerated card to a revision (e.g. a tag you will create);
    ``dataset_repo`` names the Hub dataset the model was trained on (the card's YAML ``datasets``).
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: push a run folder or a best/ folder")
    _validate_repo_id(repo_id)
    contents: dict[str, bytes] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".tmp"):
            contents[path.name] = path.read_bytes()
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    summary_path = folder / RUN_SUMMARY_FILE
    if model_type == "ttds":
        contents.update(_ttds_contents(folder, repo_id, revision=revision, dataset_repo=dataset_repo))
    elif summary_path.is_file():
        from transformers import AutoConfig

        from genrec.model_cards.run_card import build_run_card, public_summary
        from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(folder)  # UNGER or MSCGRec (whose config has fields UNGER's lacks)
        tokenizer = SemanticIDTokenizer.from_pretrained(str(folder))
        card = build_run_card(
            folder, summary, config, tokenizer, repo_id=repo_id, revision=revision, dataset_repo=dataset_repo
        )
        contents[CARD_FILE] = str(card).encode("utf-8")
        contents[RUN_SUMMARY_FILE] = (json.dumps(public_summary(summary, folder), indent=2) + "\n").encode("utf-8")
    local = str(folder).encode("utf-8")
    for name, data in contents.items():
        if Path(name).suffix in _TEXT_SUFFIXES and local in data:
            raise ValueError(
                f"{name} holds the local path {folder}: it would be published; regenerate it (genrec run) or "
                "remove the path before pushing"
            )
    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in sorted(contents.items())]


def _ttds_contents(
    folder: Path, repo_id: str, *, revision: str | None, dataset_repo: str | None
) -> dict[str, bytes]:
    """A TTDS recommender folder: its sub-folders (adapter, code tables) and a card regenerated for ``repo_id``."""
    from genrec.model_cards.run_card import public_summary
    from genrec.trainers.jobs.ttds import write_ttds_card
    from genrec.trainers.ttds import ITEM_TABLE_DIR, TRAINING_SUMMARY, USER_TABLE_DIR

    contents: dict[str, bytes] = {}
    for sub in ("adapter", ITEM_TABLE_DIR, USER_TABLE_DIR):
        for path in sorted((folder / sub).glob("*")):
            if path.is_file() and not path.name.startswith("."):
                contents[f"{sub}/{path.name}"] = path.read_bytes()
    summary_path = folder / TRAINING_SUMMARY
    if summary_path.is_file():
        import tempfile

        summary = public_summary(json.loads(summary_path.read_text(encoding="utf-8")), folder)
        contents[TRAINING_SUMMARY] = (json.dumps(summary, indent=2, default=str) + "\n").encode("utf-8")
        with tempfile.TemporaryDirectory() as scratch:  # the card is written next to a copy of config + table
            tmp = Path(scratch)
            (tmp / "config.json").write_bytes((folder / "config.json").read_bytes())
            (tmp / ITEM_TABLE_DIR).mkdir()
            for path in (folder / ITEM_TABLE_DIR).glob("*"):
                (tmp / ITEM_TABLE_DIR / path.name).write_bytes(path.read_bytes())
            card = write_ttds_card(tmp, summary, repo_id=repo_id, revision=revision, dataset_repo=dataset_repo)
            contents[CARD_FILE] = card.read_bytes()
    return contents


def push_run_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    dataset_repo: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> CommitInfo:
    """Create ``repo_id`` if needed and upload the run folder in one commit (see :func:`model_push_operations`).

    ``api`` is an ``HfApi`` (default: a new one with ``token``; ``HF_ENDPOINT`` selects the server).
    """
    from huggingface_hub import HfApi

    operations = model_push_operations(folder, repo_id, revision=revision, dataset_repo=dataset_repo)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.create_commit(
        repo_id=repo_id,
        repo_type="model",
        operations=operations,
        commit_message=commit_message or "Upload genrec model",
    )
    logger.info("pushed %d files to %s (%s)", len(operations), repo_id, info.oid)
    return info


def find_run_code_table(dataset_folder: str | Path) -> Path | None:
    """The code table of the run a dataset folder belongs to (``RUN/data`` next to ``RUN/code_table.json``)."""
    folder = Path(dataset_folder).expanduser().resolve()
    if folder.name == "data" and (folder.parent / "code_table.json").is_file():
        return folder.parent
    return None


def code_table_config_operations(
    dataset_folder: str | Path, code_table_dir: str | Path, *, repo_id: str = "REPO_ID"
) -> list[CommitOperationAdd]:
    """Commit operations that add the code table of ``code_table_dir`` to a dataset push as config ``code_table``.

    The config holds one row per item (``item_id``, ``level_0`` .. ``level_{S-1}`` and ``collision`` when the
    table has a collision level: :meth:`CodeTable.to_columns`), ``code_table/code_table.json`` its metadata
    (codebook sizes, content hash), and the card (``README.md``, replacing the folder's in the push) gains the
    config's YAML entry and a section that describes it. The local folder is not changed: everything is built
    in a scratch copy of the card. The table must cover exactly the dataset's items. ``repo_id`` is the dataset
    repo the card's snippet loads.
    """
    import tempfile

    from datasets import Dataset

    from genrec.data_scripts.hub_layout import read_card, update_card, write_config
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.tokenization.code_table import CodeTable

    folder = Path(dataset_folder).expanduser()
    table = CodeTable.load(code_table_dir)
    _, items = load_genrec_dataset(folder)
    ids = [str(i) for i in items["item_id"]]
    if set(ids) != set(table.item_ids) or len(ids) != len(table):
        missing = sorted(set(ids) - set(table.item_ids))[:5]
        extra = sorted(set(table.item_ids) - set(ids))[:5]
        raise ValueError(
            f"the code table in {code_table_dir} ({len(table)} items) is not this dataset's catalogue ({len(ids)} "
            f"items; missing e.g. {missing}, not in the dataset e.g. {extra}): pass the code table of a model "
            "trained on this dataset"
        )
    metadata = table.metadata()
    stats = table.stats()
    levels = ", ".join(f"`level_{d}`" for d in range(table.num_semantic_levels))
    section = f"""
## Semantic IDs (`{CODE_TABLE_CONFIG}` config)

The `{CODE_TABLE_CONFIG}` config holds the semantic ID of every item, as the model trained on this data uses
it: one row per item with `item_id`, {levels} (the semantic code at each level of the residual quantizer){
", and `collision` (the item's rank among the items sharing its semantic code, so that every code is unique)"
if table.has_collision_level else ""}. Codebook sizes per level: `{stats["codebook_sizes"]}`; collision rate
{stats["collision_rate"]:.4f}; content hash `{table.content_hash}` (the model's `code_table_hash`).
`{CODE_TABLE_CONFIG}/code_table.json` holds this metadata.

```python
from datasets import load_dataset
from genrec import CodeTable

rows = load_dataset("{repo_id}", "{CODE_TABLE_CONFIG}", split="train")
table = CodeTable.from_columns(rows.to_dict(), metadata={json.dumps(metadata, sort_keys=True)})
```
"""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        (tmp / CARD_FILE).write_text(str(read_card(folder)), encoding="utf-8")
        write_config(tmp, CODE_TABLE_CONFIG, Dataset.from_dict(table.to_columns()))
        body = read_card(tmp).text.rstrip("\n")
        update_card(tmp, body=body.split(f"\n## Semantic IDs (`{CODE_TABLE_CONFIG}` config)")[0] + "\n" + section)
        (tmp / CODE_TABLE_CONFIG / "code_table.json").write_text(
            json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return [
            CommitOperationAdd(path_in_repo=path.relative_to(tmp).as_posix(), path_or_fileobj=path.read_bytes())
            for path in sorted(tmp.rglob("*")) if path.is_file() and not path.name.startswith(".")
        ]
