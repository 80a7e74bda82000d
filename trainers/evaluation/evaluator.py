"""Full-corpus evaluation of a generative recommender: constrained beam search, then the shared metrics.

``evaluate_model(model, tokenizer, data, split="test")`` takes every user (row) of a split of a prepared genrec
dataset (``sequences`` config: the LAST element of ``item_ids`` is the target, the elements before it the
history), recommends the top-K items of the whole corpus with constrained beam search (only codes of existing
items can be generated, so ``invalid_rate`` reads 0), and scores the ranked lists with
:func:`genrec.trainers.evaluation.metrics.compute_metrics`, the one metric implementation of genrec. The output names
its split: test numbers are the ones to report; trainers evaluate the ``validation`` split for model
selection and label those numbers as validation numbers.

Rows without any history item are skipped and counted (``num_skipped_no_history``); a history item or
target missing from the tokenizer's code table is an error naming the split, row and item.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.trainers.engine.processes import map_batches
from genrec.trainers.evaluation.metrics import DEFAULT_KS, compute_metrics, target_ranks

logger = logging.getLogger(__name__)

__all__ = [
    "EvaluationExamples", "check_catalogue", "evaluate_model", "load_examples", "per_user_ranks",
    "write_per_user_ranks",
]


@dataclass
class EvaluationExamples:
    """The evaluated rows of one split: histories (oldest first, capped), targets and the skip count."""

    split: str
    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]
    num_skipped_no_history: int = 0


def _split_rows(data: Any, split: str) -> Any:
    """The rows of ``split`` from a dataset folder / Hub id, a ``DatasetDict`` or a ``Dataset``."""
    from datasets import Dataset, DatasetDict

    if isinstance(data, (str, Path)):
        from genrec.data_scripts.prepare import load_genrec_dataset

        sequences, _ = load_genrec_dataset(data)
        data = sequences
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"the sequences data has no {split!r} split (splits: {list(data)})")
        return data[split]
    if isinstance(data, Dataset):
        return data
    raise TypeError(
        f"data must be a prepared dataset folder / Hub id, a DatasetDict or a Dataset, got {type(data).__name__}"
    )


SUBSAMPLE_SEED = 0  # fixed: every quick evaluation of a split sees the same users


def load_examples(
    data: Any, split: str = "test", *, max_history: int | None = 20, max_users: int | None = None
) -> EvaluationExamples:
    """Histories (the ``max_history`` most recent items; None: every item before the target) and targets of
    ``split`` (``data``: a folder / Hub id, a ``DatasetDict``, or the split's ``Dataset`` itself).

    ``max_users`` keeps a seeded random sample of that many rows (in their original order), not the first
    rows: split files are ordered by user, and on Beauty the first 2,000 users score visibly lower than the
    whole split, so a prefix would bias quick evaluations and model selection.
    """
    rows = _split_rows(data, split)
    if "item_ids" not in rows.column_names:
        raise ValueError(f"split {split!r} has no 'item_ids' column (columns: {rows.column_names})")
    if max_users is not None:
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1 or None, got {max_users}")
        if max_users < len(rows):
            sample = np.random.default_rng(SUBSAMPLE_SEED).choice(len(rows), size=max_users, replace=False)
            rows = rows.select(np.sort(sample).tolist())
    # [:]: one Arrow conversion, not row-by-row formatting (and indexing) of a datasets Column
    sequences = rows["item_ids"][:]
    users = rows["user_id"][:] if "user_id" in rows.column_names else [str(i) for i in range(len(sequences))]
    out = EvaluationExamples(split=split, user_ids=[], histories=[], targets=[])
    for row, sequence in enumerate(sequences):
        if sequence is None or len(sequence) < 2:
            out.num_skipped_no_history += 1
            continue
        out.user_ids.append(str(users[row]))
        history = sequence[:-1] if max_history is None else sequence[:-1][-max_history:]
        out.histories.append([str(i) for i in history])
        out.targets.append(str(sequence[-1]))
    if out.num_skipped_no_history:
        logger.warning("%s: skipped %d rows without a history item", split, out.num_skipped_no_history)
    return out


def _check_known(examples: EvaluationExamples, tokenizer: Any) -> None:
    table = tokenizer.code_table
    for row, (history, target) in enumerate(zip(examples.histories, examples.targets, strict=True)):
        for item in (*history, target):
            if item not in table:
                raise ValueError(
                    f"split {examples.split!r}, user {examples.user_ids[row]!r}: item {item!r} is not in the "
                    "tokenizer's code table; the model, its code table and the dataset must come from the same run"
                )


def check_catalogue(item_ids: Sequence[str], tokenizer: Any, *, where: str = "the dataset") -> None:
    """Refuse a dataset whose item catalogue is not the model's (its code table's item ids).

    A model only ranks the items of its code table; a dataset from another preparation whose ids merely
    overlap (e.g. "1".."50" against ML-100K's "1".."1682") would otherwise be scored without a word, with
    numbers that mean nothing. The catalogues must hold the same item ids.
    """
    table = tokenizer.code_table
    ours = set(table.item_ids)
    theirs = {str(item) for item in item_ids}
    if ours == theirs:
        return
    missing, extra = sorted(theirs - ours), sorted(ours - theirs)
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its {len(theirs)} items are not in the model's code table (e.g. {missing[:3]})")
    if extra:
        parts.append(f"{len(extra)} of the model's {len(ours)} items are not in it (e.g. {extra[:3]})")
    raise ValueError(
        f"{where} is not the dataset the model was trained on: {'; '.join(parts)}. Evaluate the model on the "
        "dataset folder of its run (OUT/data of `genrec run`)"
    )


def evaluate_model(
    model: Any,
    tokenizer: Any,
    data: Any,
    split: str = "test",
    *,
    k_values: Sequence[int] = DEFAULT_KS,
    num_beams: int = 20,
    batch_size: int = 256,
    max_users: int | None = None,
    show_progress: bool = True,
    check_items: bool = True,
    per_user: bool = False,
) -> dict[str, Any]:
    """Recall/HR/NDCG/MRR@K and invalid-item rate of ``model`` on ``split``, ranking the full corpus.

    Args:
        model: an ``UngerForGenerativeRecommendation`` (anything with its ``recommend`` and ``config``).
        tokenizer: the model's ``SemanticIDTokenizer`` (its code table is checked against the model).
        data: a prepared dataset (folder / Hub id), its ``sequences`` ``DatasetDict``, or one split's ``Dataset``.
        split: which split to evaluate ("test" gives the reported numbers; "validation" is for selection).
        k_values: cut-offs; the beam search returns ``max(k_values)`` items per user.
        num_beams: beam width (>= max(k_values); the UNGER paper uses 100 for its tables, we default to 20).
        batch_size: users per beam search.
        max_users: evaluate a seeded random sample of N rows (quick checks, validation; see :func:`load_examples`); None = every user.
        show_progress: tqdm bar over batches (silent when not on a TTY; the main process's only).
        check_items: for a dataset folder / Hub id, refuse it unless its ``items`` catalogue is the model's
            (see :func:`check_catalogue`).
        per_user: also return each user's target rank (``per_user``: ``user_id``, ``target``, ``rank``; 1-based,
            0 = not in the top ``max(k_values)``), which paired comparisons of two models need
            (:func:`~genrec.trainers.evaluation.metrics.paired_bootstrap`, ``benchmarks/paired_compare.py``).

    Under a multi-process launch (``accelerate launch`` / ``torchrun``) every process must call it: the batches of
    users are split across the processes and gathered back in order
    (:func:`~genrec.trainers.engine.processes.map_batches`), so every process returns the one-process result.

    Returns:
        ``{"split": split, "metrics": {metric: value}, "num_users", "num_skipped_no_history", "num_beams",
        "k_values"}``; ``metrics`` holds ``recall@K``, ``hr@K``, ``ndcg@K``, ``mrr@K``, ``invalid_rate`` and
        ``num_users`` exactly as :func:`~genrec.trainers.evaluation.metrics.compute_metrics` computes them.
    """
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1:
        raise ValueError(f"k_values must be positive integers, got {list(k_values)}")
    top = min(ks[-1], len(tokenizer.code_table))
    if num_beams < top:
        raise ValueError(f"num_beams ({num_beams}) must be >= max(k_values) ({top})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.check_tokenizer(tokenizer)
    if isinstance(data, (str, Path)) and check_items:
        from genrec.data_scripts.prepare import load_genrec_dataset

        sequences, items = load_genrec_dataset(data)
        check_catalogue(items["item_id"], tokenizer, where=f"dataset {data}")
        data = sequences
    examples = load_examples(data, split, max_history=model.config.max_history_items, max_users=max_users)
    _check_known(examples, tokenizer)

    def recommend(histories: Sequence[Sequence[str]]) -> list[list[str | None]]:
        # the plain ranking: the leave-one-out protocol scores it with the history items in (never excluded)
        ranked = model.recommend(histories, tokenizer, k=top, num_beams=num_beams, batch_size=batch_size,
                                 exclude_history=False)
        return [[item for item, _ in row] for row in ranked]

    # users split across the processes of a multi-process launch, gathered back in order (identical results)
    recommended = map_batches(recommend, examples.histories, batch_size, desc=f"evaluate {split}",
                              show_progress=show_progress)
    metrics = compute_metrics(recommended, examples.targets, ks) if examples.targets else {}
    if metrics and metrics["invalid_rate"] > 0:
        logger.warning("%s: %.4f of the recommended entries are not items", split, metrics["invalid_rate"])
    result = {
        "split": split,
        "metrics": metrics,
        "num_users": len(examples.targets),
        "num_skipped_no_history": examples.num_skipped_no_history,
        "num_beams": int(num_beams),
        "k_values": ks,
    }
    if per_user:
        result["per_user"] = per_user_ranks(examples.user_ids, recommended, examples.targets, top)
    return result


def per_user_ranks(
    user_ids: Sequence[str], recommended: Sequence[Sequence[str | None]], targets: Sequence[str], k: int
) -> dict[str, list]:
    """Each user's 1-based target rank in its top ``k`` (0 = absent), keyed by user: the per-user record that
    ``benchmarks/paired_compare.py`` pairs between two models."""
    ranks = target_ranks([list(items)[:k] for items in recommended], targets)
    return {"user_id": [str(u) for u in user_ids], "target": [str(t) for t in targets], "rank": ranks.tolist(),
            "k": int(k)}


def write_per_user_ranks(
    path: str | Path, *, model: str, split: str, metrics: dict[str, Any], per_user: dict[str, list], **extra: Any
) -> None:
    """The per-user ranks file (``genrec evaluate --per-user``'s layout: ``model``, ``split``, ``metrics``,
    ``per_user`` from :func:`per_user_ranks`, plus ``extra`` keys) that ``benchmarks/paired_compare.py`` reads;
    the one writer for Stage II, TTDS runs and the floors. A local ``model`` folder inside the file's output folder
    is recorded relative to the file's folder (:func:`~genrec.trainers.engine.files.recorded_path`: Stage II's
    ``test_ranks.json`` says ``best``), so that the file stays true when its folder moves."""
    from genrec.trainers.engine.files import recorded_path, write_text_atomic

    model = recorded_path(model, Path(path).parent)
    write_text_atomic(path, json.dumps(
        {"model": str(model), "split": split, "metrics": metrics, "per_user": per_user, **extra}) + "\n")
