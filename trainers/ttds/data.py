"""TTDS data: a genrec dataset as the paper's instruction tasks (next item, next user, the user's next
text, item text <-> tokens), with users' interaction sequences and profiles."""


from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genrec.trainers.ttds.args import TASKS, TEXT_TARGET_COLUMNS

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ data


def _user_sequences(sequences: Any) -> tuple[dict[str, list[tuple[str, int]]], dict[str, list[str]]]:
    """Per user: the training interactions ``(item, time)`` and the most recent training history.

    Training interactions are every item of the user's train rows and of the history of the validation row
    (all precede the validation target), deduplicated by (item, time, position); ``time`` is the timestamp
    when the split has a ``timestamps`` column, else the position. The history is the validation row's
    history (the user's most recent training items), or the longest train row when there is no validation.
    """
    interactions: dict[str, dict[tuple[str, int], None]] = {}
    history: dict[str, list[str]] = {}
    for split in ("train", "validation"):
        if split not in sequences:
            continue
        data = sequences[split]
        has_time = "timestamps" in data.column_names
        columns = _columns(data, ["user_id", "item_ids", *(["timestamps"] if has_time else [])])
        for row, (user, items) in enumerate(zip(columns["user_id"], columns["item_ids"], strict=True)):
            user = str(user)
            kept = items if split == "train" else items[:-1]
            times = columns["timestamps"][row] if has_time else list(range(len(items)))
            seen = interactions.setdefault(user, {})
            for item, t in zip(kept, times, strict=False):
                seen[(str(item), int(t))] = None
            if split == "validation" or len(items) > len(history.get(user, [])):
                history[user] = [str(i) for i in kept]
    return {u: sorted(v, key=lambda p: p[1]) for u, v in interactions.items()}, history


def attach_reviews(sequences: Any, reviews: Any, *, column: str = "review") -> Any:
    """``sequences`` with a ``review`` column on its ``train`` split, from a ``reviews`` table.

    ``reviews`` is the ``reviews`` config of an Amazon dataset (``data_scripts.amazon``: ``user_id``,
    ``item_id``, ``timestamp``, ``review``, ``summary``; one row per interaction). Each train row gets a list
    aligned with its ``item_ids``: the review of that (user, item, time) as ``"summary: review"`` (either part
    alone when the other is empty; ``""`` when the interaction has no review). With no ``timestamps`` column
    in the sequences, (user, item) is matched and the first review wins. The TTDS ``user_text`` task then
    asks for the review of each train row's last item (the paper's "user comment" task).
    """
    needed = {"user_id", "item_id", "review", "summary"}
    missing = sorted(needed - set(reviews.column_names))
    if missing:
        raise ValueError(f"the reviews table lacks the columns {missing} (has {reviews.column_names})")
    if "train" not in sequences:
        raise ValueError("attach_reviews needs a 'train' split")
    train = sequences["train"]
    if column in train.column_names:
        raise ValueError(f"the train split already has a {column!r} column")
    with_time = "timestamps" in train.column_names and "timestamp" in reviews.column_names
    table = reviews.select_columns(sorted(needed | ({"timestamp"} if with_time else set()))).to_dict()
    texts: dict[tuple, str] = {}
    for row in range(len(table["user_id"])):
        review, summary = (table["review"][row] or "").strip(), (table["summary"][row] or "").strip()
        text = f"{summary}: {review}" if summary and review else (summary or review)
        key = (str(table["user_id"][row]), str(table["item_id"][row]))
        if with_time:
            key = (*key, int(table["timestamp"][row]))
        texts.setdefault(key, text)
    columns = train.select_columns(["user_id", "item_ids", *(["timestamps"] if with_time else [])]).to_dict()
    values = []
    for row, (user, seq) in enumerate(zip(columns["user_id"], columns["item_ids"], strict=True)):
        if with_time:
            keys = [(str(user), str(i), int(t)) for i, t in zip(seq, columns["timestamps"][row], strict=True)]
        else:
            keys = [(str(user), str(i)) for i in seq]
        values.append([texts.get(key, "") for key in keys])
    out = dict(sequences)
    out["train"] = train.add_column(column, values)
    return type(sequences)(out) if not isinstance(sequences, dict) else out


@dataclass
class TTDSData:
    """Entities, texts and instruction examples of one dataset.

    Build with :meth:`from_datasets`. ``examples`` are small dicts (``task``, slot values); prompts are
    rendered only when a batch is collated, from the code tables of that moment.
    """

    item_ids: list[str]
    item_texts: list[str]
    item_titles: list[str]
    user_ids: list[str]
    user_texts: list[str]
    user_history: dict[str, list[str]]
    examples: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_datasets(
        cls,
        sequences: Any,
        items: Any,
        *,
        users: Any = None,
        tasks: Sequence[str] = TASKS,
        user_tower: bool = True,
        item_text_template: str | None = None,
        user_text_max_items: int = 10,
        max_history: int = 20,
        max_examples_per_task: int | None = None,
        seed: int = 0,
    ) -> TTDSData:
        """Instruction examples from a genrec ``sequences`` DatasetDict and ``items`` (and ``users``) table.

        Every item id in the sequences must be in ``items`` (else a ``ValueError`` naming the id and row).
        ``max_examples_per_task`` keeps a seeded random subset per task (counted in ``skipped``).
        """
        from genrec.data_scripts.embeddings import render_item_texts

        if "train" not in sequences:
            raise ValueError(f"the sequences have no 'train' split (splits: {list(sequences)})")
        item_ids = [str(i) for i in items["item_id"]]
        item_texts = render_item_texts(items, item_text_template)
        titles = [str(t) if t else text for t, text in zip(
            items["title"] if "title" in items.column_names else item_texts, item_texts, strict=True)]
        known = set(item_ids)
        for split in sequences:
            if not _distinct_items(sequences[split]) - known:
                continue  # the common case, checked on the distinct ids only
            for row, seq in enumerate(_columns(sequences[split], ["item_ids"])["item_ids"]):
                for item in seq:
                    if str(item) not in known:
                        raise ValueError(
                            f"sequences[{split!r}] row {row} names item {item!r}, which is not in the items table; "
                            "rebuild the dataset so that every interacted item has an items row"
                        )
        interactions, history = _user_sequences(sequences)
        user_ids = sorted(history, key=_natural_key)
        title_of = dict(zip(item_ids, titles, strict=True))
        profiles = _user_profiles(users) if users is not None else {}
        user_texts = []
        for user in user_ids:
            recent = history[user][-user_text_max_items:]
            watched = "Recently interacted with: " + "; ".join(title_of[i] for i in recent) + "."
            profile = profiles.get(user)
            user_texts.append(f"{profile} {watched}" if profile else watched)

        rng = random.Random(seed)
        examples: list[dict[str, Any]] = []
        skipped: dict[str, int] = {}
        train_cols = sequences["train"].column_names
        # plain lists, read once: iterating a datasets column decodes row by row (~40 s for ML-100K's 97k rows)
        train = _columns(sequences["train"], [c for c in ("user_id", "item_ids", *TEXT_TARGET_COLUMNS)
                                              if c in train_cols])
        for task in tasks:
            made: list[dict[str, Any]] = []
            if task == "seqrec":
                for user, seq in zip(train["user_id"], train["item_ids"], strict=True):
                    seq = [str(i) for i in seq]
                    made.append({"task": "seqrec", "user": str(user), "history": seq[:-1][-max_history:],
                                 "target_item": seq[-1]})
            elif task == "next_user":
                if not user_tower:
                    logger.info("task next_user skipped: the model has no user tower")
                    skipped["next_user:no_user_tower"] = 1
                    continue
                by_item: dict[str, list[tuple[int, int, str]]] = {}
                for rank, user in enumerate(user_ids):
                    for item, t in interactions.get(user, []):
                        by_item.setdefault(item, []).append((t, rank, user))
                for item in sorted(by_item, key=_natural_key):
                    ordered = [u for _, _, u in sorted(by_item[item])]
                    ordered = list(dict.fromkeys(ordered))  # a user re-interacting counts once, at first time
                    for j in range(1, len(ordered)):
                        made.append({"task": "next_user", "item": item, "users": ordered[:j][-max_history:],
                                     "target_user": ordered[j]})
            elif task == "user_text":
                columns = [c for c in TEXT_TARGET_COLUMNS if c in train_cols]
                if not columns:
                    logger.info(
                        "task user_text skipped: the sequences have no %s column (no review / query text)",
                        " or ".join(repr(c) for c in TEXT_TARGET_COLUMNS),
                    )
                    skipped["user_text:no_text_column"] = 1
                    continue
                for column in columns:
                    empty = 0
                    for user, seq, value in zip(train["user_id"], train["item_ids"], train[column], strict=True):
                        text = value[-1] if isinstance(value, (list, tuple)) else value
                        text = str(text).strip() if text is not None else ""
                        if not text:
                            empty += 1
                            continue
                        seq = [str(i) for i in seq]
                        made.append({"task": "user_text", "kind": column, "user": str(user),
                                     "history": seq[:-1][-max_history:], "target_text": text})
                    if empty:
                        skipped[f"user_text:{column}:empty"] = empty
                        logger.info("user_text: %d train rows have an empty %r and give no example", empty, column)
            elif task in ("item2tokens", "tokens2item"):
                made = [{"task": task, "item": item} for item in item_ids]
            if max_examples_per_task is not None and len(made) > max_examples_per_task:
                skipped[f"{task}:over_cap"] = len(made) - max_examples_per_task
                made = rng.sample(made, max_examples_per_task)
            logger.info("task %s: %d examples", task, len(made))
            examples.extend(made)
        if not examples:
            raise ValueError(f"no training examples for tasks {list(tasks)}")
        return cls(item_ids, item_texts, titles, user_ids, user_texts, history, examples, skipped)

    def task_counts(self) -> dict[str, int]:
        """Examples per task."""
        counts: dict[str, int] = {}
        for example in self.examples:
            counts[example["task"]] = counts.get(example["task"], 0) + 1
        return counts


def _columns(dataset: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """The named columns of a ``datasets.Dataset`` as plain Python lists, read in one go."""
    return dataset.select_columns(list(names)).to_dict()


def _distinct_items(split: Any) -> set[str]:
    """The distinct item ids (as str) of a ``datasets.Dataset``'s ``item_ids`` lists, computed by Arrow."""
    import pyarrow.compute as pc

    column = split.with_format("arrow")["item_ids"]
    return {str(i) for i in pc.unique(pc.list_flatten(column)).to_pylist()}


def _natural_key(value: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then the rest alphabetically (stable, platform independent)."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def _user_profiles(users: Any) -> dict[str, str]:
    """``"field: value."`` profile texts from a ``users`` table (``user_id`` + any text columns)."""
    if "user_id" not in users.column_names:
        raise ValueError(f"the users table has no 'user_id' column (columns: {users.column_names})")
    fields = [c for c in users.column_names if c != "user_id"]
    out = {}
    for row in users:
        parts = [f"{c.replace('_', ' ').capitalize()}: {row[c]}." for c in fields if row[c] not in (None, "")]
        if parts:
            out[str(row["user_id"])] = " ".join(parts)
    return out
