"""The body and licence metadata of a prepared dataset's card (source, counts, split protocol, every skip,
the data owner's terms)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .provenance import data_terms
from .splits import (
    MIN_INTERACTIONS,
)

if TYPE_CHECKING:
    pass

from .dataset_loading import ITEMS_CONFIG, SEQUENCES_CONFIG
from .dataset_report import PrepareReport

logger = logging.getLogger(__name__)

def dataset_title(source: str, files: list[Path], path: str | Path | None) -> str:
    if source == "ml-100k":
        return "MovieLens-100K"
    if source == "s3rec" and path is not None:
        return f"{Path(path).name} (S3-Rec format)"
    if source in ("amazon2014", "amazon2023") and files:
        match = re.match(r"^(?:reviews_)?(.+?)(?:_5)?\.jsonl?(?:\.gz)?$", files[0].name)
        category = match.group(1) if match else files[0].name
        return f"Amazon {source[-4:]} {category.replace('_', ' ')}"
    return str(path)


def card_body(title: str, report: PrepareReport, item_columns: list[str], source_label: str) -> str:
    """The markdown body of the dataset card (what the data is, how it was split, what it is for and where it
    stops, what was skipped)."""
    from genrec._version import __version__

    rows = report.rows
    n = lambda value: f"{value:,}"  # noqa: E731
    lines = [
        f"# {title} — genrec dataset",
        "",
        f"Built by `genrec prepare {report.source}` (genrec {__version__}) from {source_label}.",
        "",
        "| | |",
        "|---|---|",
        f"| users | {n(report.users)} |",
        f"| items | {n(report.items)} |",
        f"| interactions | {n(report.interactions)} |",
        f"| rows (train / validation / test) | {n(rows['train'])} / {n(rows['validation'])} / {n(rows['test'])} |",
        f"| max history | {report.max_history} |",
    ]
    if report.kcore:
        lines.append(f"| k-core | {report.kcore} |")
    lines += [
        "",
        "## Configs",
        "",
        "- `sequences` (default): `user_id` (string), `item_ids` (list of strings), `timestamps` (list of int64); "
        "splits `train`, `validation`, `test`. Each row is one example: the **last** element of `item_ids` is "
        "the target, the elements before it are the history (oldest first); `timestamps` is aligned with "
        "`item_ids`.",
        f"- `items` (split `train`): {', '.join(f'`{c}`' for c in item_columns)}.",
    ]
    for extra in report.configs:
        if extra == "users":
            lines.append("- `users` (split `train`): `user_id` and the `original_user_id` of the source files.")
        elif extra not in (SEQUENCES_CONFIG, ITEMS_CONFIG):
            lines.append(f"- `{extra}`")
    lines += [
        "",
        "## Split protocol",
        "",
        "Leave-one-out per user, in chronological order (the protocol of the UNGER, TIGER and S3-Rec papers): "
        "the last interaction is the test target, the second-to-last the validation target, and every "
        "earlier interaction after the first is the target of one training example. A user with n "
        f"interactions gives n - 3 train rows, 1 validation row and 1 test row; users with fewer than "
        f"{MIN_INTERACTIONS} interactions are skipped. Histories keep the {report.max_history} most recent "
        f"items (a row holds at most {report.max_history + 1} items). Interactions are sorted per user with a "
        "stable sort (ties keep the source order); a repeated item at the same time as the interaction "
        "before it is dropped as a duplicate.",
        "",
        "## Intended use and limitations",
        "",
        "For training and evaluating sequential recommenders offline: predict each user's next item from the "
        "items before it. What the split can and cannot say:",
        "",
        "- One target per user in validation and test (leave-one-out), so HR@K and Recall@K are the same number; "
        "the figures are offline ranking metrics on this one public dataset, not measured effects on people, and "
        "do not carry over to another catalogue or period.",
        "- Interaction logs carry a popularity skew (a few items take many of the interactions); a model fitted to "
        "them, and metrics computed on them, favour popular items."
        + (f" The {report.kcore}-core filter keeps only users and items with at least {report.kcore} "
           "interactions, so short histories and rare items are under-represented." if report.kcore else ""),
        "- The data belong to their owners, whose terms (below) apply to every copy and to models trained on it.",
        "",
        "## Source",
        "",
    ]
    lines += [f"- {note}" for note in report.notes]
    for record in report.files:
        lines.append(f"- `{record['name']}`: {n(record['bytes'])} bytes, sha256 `{record['sha256']}`")
    lines += ["", "## Skipped (removed, by reason)", ""]
    lines += [f"- {key}: {n(value)}" for key, value in report.skipped.items()] or ["- nothing"]
    lines += ["", "## Other counts", ""]
    lines += [f"- {key}: {n(value)}" for key, value in report.counts.items()] or ["- none"]
    terms = data_terms(report.source)
    lines += ["", "## Licence and provenance", "", terms.text, ""]
    if terms.license_link:
        lines += [f"Terms: <{terms.license_link}>.", ""]
    if not terms.redistributable:
        lines += [
            "This folder is a derived copy for local use. Keep any Hub copy private (or do not upload it) "
            "unless the owner's terms allow publishing it.",
            "",
        ]
    if terms.citation:
        lines += ["```bibtex", terms.citation, "```", ""]
    lines += [
        "## Files",
        "",
        "- `sequences/`, `items/` (and other configs): parquet shards, described by this card's YAML.",
        "- `prepare_report.json`: the counts above, machine-readable.",
        "- `embeddings/` (created by `genrec embed` / `genrec run`, if present): a local cache of the items' "
        "semantic embeddings (safetensors, keyed by encoder and item texts). `genrec push --dataset` leaves it "
        "out unless `--with-embeddings`.",
        "",
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'sequences = load_dataset("<this folder or repo id>", "sequences")  # train / validation / test',
        'items = load_dataset("<this folder or repo id>", "items", split="train")',
        "```",
        "",
        "Pass `revision=` (a tag or commit) to pin a version; `genrec.data_scripts.prepare.load_genrec_dataset("
        "repo_id, revision=...)` loads and validates both configs.",
        "",
    ]
    return "\n".join(lines)



def license_metadata(source: str) -> dict[str, Any]:
    """The card's YAML licence fields for a source (``license: other`` + name and link of the owner's terms)."""
    terms = data_terms(source)
    meta: dict[str, Any] = {"license": terms.license}
    if terms.license == "other" and terms.license_name:
        meta["license_name"] = terms.license_name
    if terms.license == "other" and terms.license_link:
        meta["license_link"] = terms.license_link
    return meta
