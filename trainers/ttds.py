"""Training, evaluation and packaging of the TTDS-style LLM recommender (paper Sec. 4, 5.1).

What this module adds around :class:`~genrec.modeling.modeling_ttds.TTDSForCausalLM`:

* **Data -> instruction examples** (:class:`TTDSData`): from a genrec dataset (``sequences`` train /
  validation / test, ``items`` with text fields, optionally ``users`` with profile fields) it builds the
  paper's fine-tuning tasks, each with several instruction templates (:data:`TASK_TEMPLATES`):
  ``seqrec`` (next item from a history, with the user's tokens), ``next_user`` (next user from an item's
  chronological user sequence, Sec. 4.2.4), ``user_text`` (the user's next review / search query, from a
  ``review`` / ``query`` column of the sequences when the dataset has one; skipped and logged otherwise),
  ``item2tokens`` / ``tokens2item`` (item text <-> item tokens). Item texts come from
  ``genrec.data_scripts.embeddings.render_item_texts``; user texts are the user's profile fields when a
  ``users`` table exists, followed by the titles of the user's most recent training items (the paper's
  user content is reviews / queries / profile; without them the history titles are the user's text).
* **Dynamic code tables** (:class:`CodeState`): item and user codes are the towers' codes of the current
  LLM representations, made unique by the shared ``CodeTable`` (always with the collision level, so every
  code has ``M + 1`` tokens and the LLM never sees the code length change), recomputed every
  ``code_update_steps`` joint steps; prompts are rendered from the current tables at batch time.
* **Training** (:class:`TTDSTrainer`): Accelerate (``genrec.trainers.accelerate_utils``), AdamW, warm-up of
  the generators with the LLM frozen (lr 1e-3), then joint training (lr 5e-4) with
  ``L = L_LLM + alpha (L_ID + beta L_Token)``; activation checkpointing and bf16 where available; resumable
  checkpoints holding only what trains (LoRA, new token rows, towers) plus optimiser/scheduler/RNG and the
  current code tables.
* **Inference and packaging** (:class:`TTDSRecommender`): constrained beam search over item codes (left
  padded prompts, the shared ``SemanticIDLogitsProcessor``), item ids via ``CodeTable.items_for_codes``,
  full-corpus HR/NDCG via the shared ``compute_metrics``; ``save_pretrained`` / ``from_pretrained`` of
  model + adapter + tokenizer + both code tables (hash-checked against the model config).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.modeling.modeling_ttds import ADAPTER_DIR, TTDSForCausalLM, extend_tokenizer
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.accelerate_utils import (
    CheckpointManager,
    TrainingState,
    build_accelerator,
    deterministic_training,
    epoch_batches,
    log_metrics,
    make_train_dataloader,
)
from genrec.trainers.metrics import compute_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "TASKS",
    "TASK_TEMPLATES",
    "CodeState",
    "CollisionOverflowError",
    "PromptRenderer",
    "TTDSCollator",
    "TTDSData",
    "TTDSRecommender",
    "TTDSTrainer",
    "TTDSTrainingArguments",
    "build_code_table",
    "compute_tower_codes",
    "create_tiny_base",
    "iter_sizes",
    "main",
    "run_ttds",
    "summarize_metrics",
    "template_corpus",
    "train_bpe_tokenizer",
    "update_code_tables",
]

TASKS: tuple[str, ...] = ("seqrec", "next_user", "user_text", "item2tokens", "tokens2item")
TEXT_TARGET_COLUMNS: tuple[str, ...] = ("review", "query")
ITEM_TABLE_DIR = "item_code_table"
USER_TABLE_DIR = "user_code_table"
TRAINING_SUMMARY = "ttds_training.json"
CODE_STATE_FILE = "ttds_codes.json"

#: Instruction templates per task (``user_text`` is keyed by the text column). Slots: ``{user}`` (user
#: tokens), ``{history}`` (item tokens, oldest first), ``{item}`` (item tokens), ``{users}`` (user tokens),
#: ``{text}`` / ``{title}`` (item text / title). The first seqrec template is the paper's (Sec. 4.2.1), the
#: first next_user template the paper's (Sec. 4.2.4); the answer follows "Answer:".
TASK_TEMPLATES: dict[str, tuple[str, ...]] = {
    "seqrec": (
        "You are an expert in sequential recommendation. Please predict the most suitable item for user "
        "{user}, based on the historical interactions: {history}. Answer:",
        "User {user} has interacted with the following items in chronological order: {history}. Which item "
        "will the user interact with next? Answer:",
        "Here is the interaction history of user {user}: {history}. Recommend the next item for this user. "
        "Answer:",
        "Given the items {history} that user {user} interacted with, predict the next item. Answer:",
    ),
    "next_user": (
        "You are an recommendation expert. The item {item} has been clicked by the following users: {users}. "
        "Can you predict another user who is interested in this item? Answer:",
        "Item {item} was interacted with by users {users} in this order. Which user will interact with it "
        "next? Answer:",
        "The users {users} chose item {item}. Predict the next user who will choose it. Answer:",
    ),
    "review": (
        "User {user} has interacted with {history}. Write the review the user gives to the next item. Answer:",
        "Based on the interaction history {history} of user {user}, predict the user's next comment. Answer:",
    ),
    "query": (
        "User {user} has interacted with {history}. What will the user search for next? Answer:",
        "Based on the interaction history {history} of user {user}, predict the user's next search query. "
        "Answer:",
    ),
    "item2tokens": (
        "Which item has the following description? {text} Answer:",
        "An item is described as: {text} What is its index? Answer:",
        'Which item is titled "{title}"? Answer:',
    ),
    "tokens2item": (
        "Describe the item {item}. Answer:",
        "What is item {item} about? Answer:",
    ),
}
_NO_USER_TEXT = "the user"  # what {user} becomes when a user has no code (unknown user or no user tower)


# ------------------------------------------------------------------------------------------------ arguments


@dataclass
class TTDSTrainingArguments:
    """Hyper-parameters of a TTDS run (paper values where the paper gives them, Sec. 5.1.4).

    ``warmup_steps`` optimiser steps train the towers (and the new token rows) with the LLM frozen at
    ``warmup_learning_rate`` (paper: 1e-3); then ``max_steps`` joint steps train everything with AdamW at
    ``learning_rate`` (paper: 5e-4). Codes are recomputed after the warm-up and every ``code_update_steps``
    joint steps (0: never again, the paper's static "TTSS" ablation), but never at the run's last step, so
    the tables saved with the model are always ones the LLM was trained with.
    """

    output_dir: str
    seed: int = 42
    warmup_steps: int = 100
    warmup_learning_rate: float = 1e-3
    max_steps: int = 1000
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    alignment_batch_size: int = 8
    code_update_steps: int = 100
    encode_batch_size: int = 32
    codebook_init_iterations: int = 10
    tasks: tuple[str, ...] = TASKS
    max_examples_per_task: int | None = None
    max_history: int = 20
    max_length: int = 512
    text_max_tokens: int = 64
    user_text_max_items: int = 10
    item_text_template: str | None = None
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    save_steps: int = 0
    keep_last: int = 2
    resume: bool = True
    logging_steps: int = 10
    eval_batch_size: int = 8
    num_beams: int = 10
    ks: tuple[int, ...] = (1, 5, 10)
    eval_template: int = 0
    max_eval_users: int | None = None
    cpu: bool | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown TTDS tasks {unknown}; choose from {list(TASKS)}")
        for name in ("warmup_steps", "max_steps", "code_update_steps", "save_steps", "lr_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("train_batch_size", "alignment_batch_size", "encode_batch_size", "eval_batch_size", "num_beams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if max(self.ks) > self.num_beams:
            raise ValueError(f"num_beams={self.num_beams} cannot rank {max(self.ks)} items (ks={self.ks})")
        self.tasks = tuple(self.tasks)
        self.ks = tuple(int(k) for k in self.ks)

    def resolved_mixed_precision(self) -> str:
        """``"auto"``: bf16 on a GPU that supports it, else full precision (bf16 autocast on CPU is slow)."""
        if self.mixed_precision != "auto":
            return self.mixed_precision
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that define the job (a resume with other values is refused)."""
        # max_steps is left out on purpose: resuming with a larger max_steps continues the same run (the LR
        # schedule does not depend on it).
        skip = {"output_dir", "resume", "logging_steps", "save_steps", "keep_last", "eval_batch_size",
                "max_eval_users", "cpu", "max_steps"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


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
        columns = data.select_columns(["user_id", "item_ids", *(["timestamps"] if has_time else [])]).to_dict()
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
            for row, seq in enumerate(sequences[split]["item_ids"]):
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
        train = sequences["train"]
        train_cols = train.column_names
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


# ------------------------------------------------------------------------------------------------ codes


class CodeState:
    """The current item and user code tables (dynamic: replaced on every code update)."""

    def __init__(self, item_table: CodeTable | None = None, user_table: CodeTable | None = None) -> None:
        self.item_table = item_table
        self.user_table = user_table
        self.updates = 0
        self.rejected = 0
        self.last_update_step = -1

    def table(self, tower: str) -> CodeTable | None:
        """The table of ``tower``."""
        return self.item_table if tower == "item" else self.user_table


class CollisionOverflowError(ValueError):
    """More entities share one semantic code than there are reserved collision tokens."""


def build_code_table(ids: Sequence[str], codes: torch.Tensor, config: TTDSConfig, tower: str) -> CodeTable:
    """A unique-code table for ``ids`` from (B, M) semantic codes, always with the collision level.

    The collision level is always present (``always_append``) so that codes keep ``M + 1`` positions when
    collisions come and go during dynamic training. A collision group larger than the reserved collision
    tokens raises a ``ValueError`` that says how to fix it.
    """
    table = CodeTable.from_codes(
        list(ids), codes.cpu().numpy(), codebook_sizes=[config.codebook_size] * config.num_levels,
        collisions="append", always_append=True,
    )
    if table.codebook_sizes[-1] > config.collision_vocab_size:
        raise CollisionOverflowError(
            f"{tower} codes: {table.max_collision_group} {tower}s share one semantic code but only "
            f"{config.collision_vocab_size} collision tokens are reserved; raise TTDSConfig.num_collision_tokens "
            "or codebook_size, or train the warm-up longer"
        )
    return table


# ------------------------------------------------------------------------------------------------ prompts


class PromptRenderer:
    """Turns examples into token ids: text pieces through the tokenizer, codes spliced in as token ids.

    Codes are inserted as ids (never re-tokenized from strings), so the ids the LLM sees for an item are
    exactly ``token_offsets[d] + code[d]`` whatever the tokenizer's normalisation does around added
    tokens. Text pieces are tokenized without special tokens and cached; a bos is prepended when the
    tokenizer has one.
    """

    def __init__(
        self,
        tokenizer: Any,
        config: TTDSConfig,
        data: TTDSData,
        codes: CodeState,
        *,
        max_length: int = 512,
        text_max_tokens: int = 64,
    ) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.data = data
        self.codes = codes
        self.max_length = max_length
        self.text_max_tokens = text_max_tokens
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ValueError("the tokenizer has no eos token; TTDS answers end with eos")
        self._item_text = dict(zip(data.item_ids, data.item_texts, strict=True))
        self._item_title = dict(zip(data.item_ids, data.item_titles, strict=True))
        self._encode = lru_cache(maxsize=200_000)(self._encode_uncached)
        self.truncated = 0

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_ids(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids of a text piece (cached), cut to ``limit`` tokens."""
        ids = list(self._encode(text))
        return ids if limit is None else ids[:limit]

    def code_ids(self, tower: str, entity: str) -> list[int] | None:
        """Token ids of an item's / user's current code, or None when it has none."""
        table = self.codes.table(tower)
        if table is None or entity not in table:
            return None
        offsets = self.config.token_offsets(tower, table.num_levels)
        return [o + int(c) for o, c in zip(offsets, table.code_of(entity), strict=True)]

    def entity_text_ids(self, tower: str, index: int) -> list[int]:
        """bos + the (truncated) text of item / user ``index`` (the DM-VAE's ``C``)."""
        text = self.data.item_texts[index] if tower == "item" else self.data.user_texts[index]
        limit = self.text_max_tokens if tower == "item" else 2 * self.text_max_tokens
        return self.bos + self.text_ids(text, limit)

    def _fill(self, template: str, slots: Mapping[str, list[int]]) -> list[int]:
        ids = list(self.bos)
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                ids.extend(self.text_ids(literal))
            if name is not None:
                if name not in slots:
                    raise KeyError(f"template slot {{{name}}} has no value in {template!r}")
                ids.extend(slots[name])
        return ids

    def _join(self, tower: str, entities: Sequence[str]) -> list[int]:
        sep = self.text_ids(", ")
        out: list[int] = []
        for n, entity in enumerate(entities):
            code = self.code_ids(tower, entity)
            if code is None:
                raise KeyError(f"{tower} {entity!r} has no code in the current {tower} code table")
            out.extend(code if n == 0 else sep + code)
        return out

    def _user_slot(self, user: str | None) -> list[int]:
        code = self.code_ids("user", user) if (user is not None and self.config.user_tower) else None
        return code if code is not None else self.text_ids(_NO_USER_TEXT)

    def templates(self, example: Mapping[str, Any]) -> tuple[str, ...]:
        """The templates of an example's task."""
        key = example["kind"] if example["task"] == "user_text" else example["task"]
        return TASK_TEMPLATES[key]

    def prompt_ids(self, example: Mapping[str, Any], template_index: int) -> list[int]:
        """Prompt token ids of ``example`` under template ``template_index`` (modulo the task's count).

        History-style prompts drop their oldest history items until prompt + answer fit ``max_length``
        (counted in ``truncated``).
        """
        templates = self.templates(example)
        template = templates[template_index % len(templates)]
        task = example["task"]
        if task in ("seqrec", "user_text"):
            history = list(example["history"])
            while True:
                ids = self._fill(template, {"user": self._user_slot(example.get("user")),
                                            "history": self._join("item", history)})
                if len(ids) + self.config.num_levels + 2 <= self.max_length or len(history) <= 1:
                    return ids
                history = history[1:]
                self.truncated += 1
        if task == "next_user":
            users = list(example["users"])
            while True:
                ids = self._fill(template, {"item": self._join("item", [example["item"]]),
                                            "users": self._join("user", users)})
                if len(ids) + self.config.num_levels + 2 <= self.max_length or len(users) <= 1:
                    return ids
                users = users[1:]
                self.truncated += 1
        item = example["item"]
        text = self._item_text[item]
        return self._fill(template, {
            "item": self._join("item", [item]),
            "text": self.text_ids(" " + text, self.text_max_tokens),
            "title": self.text_ids(self._item_title[item], self.text_max_tokens),
        })

    def answer_ids(self, example: Mapping[str, Any]) -> list[int]:
        """Answer token ids (the labels) of ``example``, ending with eos."""
        task = example["task"]
        if task == "seqrec":
            ids = self.code_ids("item", example["target_item"])
        elif task == "next_user":
            ids = self.code_ids("user", example["target_user"])
        elif task == "item2tokens":
            ids = self.code_ids("item", example["item"])
        elif task == "tokens2item":
            ids = self.text_ids(" " + self._item_text[example["item"]], self.text_max_tokens)
        else:
            ids = self.text_ids(" " + example["target_text"], self.text_max_tokens)
        if ids is None:
            raise KeyError(f"the answer of a {task} example has no code in the current code table: {example}")
        return [*ids, self.eos]


def _template_choice(seed: int, epoch: int, index: int) -> int:
    """Deterministic per-(seed, epoch, example) template draw (so resumed runs render the same prompts)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class _IndexDataset(torch.utils.data.Dataset):
    """Example indices 0..n-1 (the collator renders them)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class TTDSCollator:
    """Renders a batch of example indices into right-padded LM inputs + DM-VAE texts for both towers.

    Called by the training loop at the step that consumes the batch (so prompts always use the current
    codes), not as the DataLoader's ``collate_fn``.
    """

    def __init__(self, renderer: PromptRenderer, *, seed: int, alignment_batch_size: int, pad_token_id: int) -> None:
        self.renderer = renderer
        self.seed = seed
        self.epoch = 0
        self.alignment_batch_size = alignment_batch_size
        self.pad_token_id = pad_token_id
        self._item_index = {item: n for n, item in enumerate(renderer.data.item_ids)}
        self._user_index = {user: n for n, user in enumerate(renderer.data.user_ids)}

    def _texts(self, tower: str, entities: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._item_index if tower == "item" else self._user_index
        rows = [self.renderer.entity_text_ids(tower, index[e]) for e in entities if e in index]
        return _pad_right(rows, self.pad_token_id)

    def __call__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        examples = self.renderer.data.examples
        sequences, labels = [], []
        items: dict[str, None] = {}
        users: dict[str, None] = {}
        for index in indices:
            example = examples[int(index)]
            prompt = self.renderer.prompt_ids(example, _template_choice(self.seed, self.epoch, int(index)))
            answer = self.renderer.answer_ids(example)
            sequences.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
            for key in ("target_item", "item"):
                if key in example:
                    items[example[key]] = None
            for key in ("user", "target_user"):
                if key in example:
                    users[example[key]] = None
        input_ids, attention_mask = _pad_right(sequences, self.pad_token_id)
        label_ids, _ = _pad_right(labels, -100)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}
        if items:
            ids, mask = self._texts("item", list(items)[: self.alignment_batch_size])
            batch["item_text_input_ids"], batch["item_text_attention_mask"] = ids, mask
        if users and self.renderer.config.user_tower:
            ids, mask = self._texts("user", list(users)[: self.alignment_batch_size])
            if ids.shape[0]:
                batch["user_text_input_ids"], batch["user_text_attention_mask"] = ids, mask
        return batch


def _index_batch(indices: Sequence[int]) -> torch.Tensor:
    """The DataLoader's batch: example indices only (rendering happens at the step that uses them)."""
    return torch.tensor(list(indices), dtype=torch.long)


def _pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[n, : len(row)] = 1
    return ids, mask


def _pad_left(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        if row:
            ids[n, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[n, width - len(row) :] = 1
    return ids, mask


# ------------------------------------------------------------------------------------------------ codes


@torch.no_grad()
def compute_tower_codes(
    model: TTDSForCausalLM, renderer: PromptRenderer, tower: str, *, batch_size: int, pad_token_id: int,
    representations: bool = False,
) -> torch.Tensor:
    """(n, M) codes (or (n, hidden) float32 representations) of every item / user, model in eval mode.

    Batches are fixed (entity order, ``batch_size``), so the result is bit-identical across processes.
    """
    n = len(renderer.data.item_ids if tower == "item" else renderer.data.user_ids)
    was_training = model.training
    model.eval()
    device = next(model.llm.parameters()).device
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"{tower} codes", disable=None, leave=False):
        rows = [renderer.entity_text_ids(tower, i) for i in range(start, min(n, start + batch_size))]
        ids, mask = _pad_right(rows, pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        out.append((model.text_representations(ids, mask) if representations
                    else model.compute_codes(tower, ids, mask)).cpu())
    model.train(was_training)
    return torch.cat(out)


def update_code_tables(
    model: TTDSForCausalLM, renderer: PromptRenderer, codes: CodeState, *, batch_size: int, pad_token_id: int
) -> dict[str, float]:
    """Recomputes both towers' codes from the current model and replaces the tables in ``codes``.

    Returns statistics for the log: collision rate, largest collision group and the fraction of items /
    users whose code changed. A tower whose new codes overflow the reserved collision tokens keeps its
    previous table (warning, counted in ``codes.rejected``); with no previous table the error is raised.
    """
    stats: dict[str, float] = {}
    data = renderer.data
    towers = ["item", "user"] if model.config.user_tower else ["item"]
    for tower in towers:
        ids = data.item_ids if tower == "item" else data.user_ids
        semantic = compute_tower_codes(model, renderer, tower, batch_size=batch_size, pad_token_id=pad_token_id)
        old = codes.table(tower)
        try:
            table = build_code_table(ids, semantic, model.config, tower)
        except CollisionOverflowError as error:
            if old is None:
                raise
            # Mid-training, an over-full collision group keeps the previous (valid) table instead of killing
            # the run; counted in the summary and logged.
            logger.warning("code update rejected, keeping the previous %s codes: %s", tower, error)
            codes.rejected += 1
            stats[f"{tower}_update_rejected"] = 1.0
            continue
        if old is not None and old.item_ids == table.item_ids and old.num_levels == table.num_levels:
            stats[f"{tower}_codes_changed"] = float(np.any(old.codes != table.codes, axis=1).mean())
        stats[f"{tower}_collision_rate"] = table.collision_rate
        stats[f"{tower}_max_collision_group"] = float(table.max_collision_group)
        if tower == "item":
            codes.item_table = table
        else:
            codes.user_table = table
    codes.updates += 1
    return stats


# ------------------------------------------------------------------------------------------------ recommender


def resolve_recommender_folder(
    name_or_path: str | Path, *, revision: str | None = None, token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The local folder of a saved :class:`TTDSRecommender`: the folder itself, or a Hub repo's snapshot."""
    directory = Path(name_or_path).expanduser()
    if directory.is_dir():
        return directory
    name = str(name_or_path)
    if directory.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such folder (and not a Hub repo id)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, revision=revision, token=token, cache_dir=cache_dir))


class TTDSRecommender:
    """Model + tokenizer + item/user code tables: what inference needs, saved and loaded together.

    Folder layout (``save_pretrained``): the model's files (``config.json``, ``adapter/``,
    ``generators.safetensors``), the extended tokenizer's files, ``item_code_table/`` and
    ``user_code_table/`` (``CodeTable.save``: parquet + json with a content hash). ``from_pretrained``
    reloads the base LLM by the name recorded in the config, and refuses code tables whose hash differs
    from the config's.
    """

    def __init__(
        self, model: TTDSForCausalLM, tokenizer: Any, item_table: CodeTable, user_table: CodeTable | None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.item_table = item_table
        self.user_table = user_table
        self.codes = CodeState(item_table, user_table)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes model, adapter, towers, tokenizer and both code tables into ``directory``.

        The extended tokenizer is also written next to the adapter (``adapter/``): peft's
        ``AutoPeftModelForCausalLM.from_pretrained(directory, subfolder="adapter")`` (and transformers' own
        adapter loading) resize the base's embeddings to the tokenizer found there before loading the
        adapter's token rows, so the LLM part also loads without genrec.
        """
        directory = Path(directory)
        config = self.model.config
        config.item_code_table_hash = self.item_table.content_hash
        config.item_code_length = self.item_table.num_levels
        if self.user_table is not None:
            config.user_code_table_hash = self.user_table.content_hash
            config.user_code_length = self.user_table.num_levels
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory / ADAPTER_DIR)
        self.item_table.save(directory / ITEM_TABLE_DIR)
        if self.user_table is not None:
            self.user_table.save(directory / USER_TABLE_DIR)
        return directory

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, revision: str | None = None, token: str | bool | None = None,
        cache_dir: str | Path | None = None, **model_kwargs: Any,
    ) -> TTDSRecommender:
        """Reloads everything saved by :meth:`save_pretrained` (hashes and token layout checked).

        ``name_or_path``: the folder, or a Hub repo id holding one (pushed with ``genrec push``); the repo is
        fetched at ``revision`` with ``huggingface_hub.snapshot_download`` (``HF_ENDPOINT``, cache, offline
        mode as usual). The base LLM loads by the name and revision its config records.
        """
        from transformers import AutoTokenizer

        directory = resolve_recommender_folder(name_or_path, revision=revision, token=token, cache_dir=cache_dir)
        model = TTDSForCausalLM.from_pretrained(directory, **model_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        extend_tokenizer(tokenizer, model.config)  # only verifies: every token is already there
        config = model.config
        item_table = CodeTable.load(directory / ITEM_TABLE_DIR)
        user_table = CodeTable.load(directory / USER_TABLE_DIR) if (directory / USER_TABLE_DIR).is_dir() else None
        for tower, table, recorded in (("item", item_table, config.item_code_table_hash),
                                       ("user", user_table, config.user_code_table_hash)):
            if table is None:
                if recorded is not None:
                    raise FileNotFoundError(f"{directory / USER_TABLE_DIR} is missing but the config names one")
                continue
            if recorded != table.content_hash:
                raise ValueError(
                    f"{directory}/{tower}_code_table has content hash {table.content_hash} but the model was "
                    f"saved with {recorded}: the code table does not belong to this model"
                )
        return cls(model, tokenizer, item_table, user_table)

    def _renderer(self, data: TTDSData, max_length: int = 4096) -> PromptRenderer:
        return PromptRenderer(self.tokenizer, self.model.config, data, self.codes, max_length=max_length)

    def prompts(
        self, histories: Sequence[Sequence[str]], users: Sequence[str | None] | None = None, *, template: int = 0,
        max_length: int = 4096,
    ) -> list[list[int]]:
        """seqrec prompt ids for histories (oldest first) and optional users (their codes, when known)."""
        users = list(users) if users is not None else [None] * len(histories)
        data = _InferenceData(self.item_table)
        renderer = self._renderer(data, max_length)  # type: ignore[arg-type]
        return [
            renderer.prompt_ids({"task": "seqrec", "user": u, "history": list(h)}, template)
            for h, u in zip(histories, users, strict=True)
        ]

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        users: Sequence[str | None] | None = None,
        *,
        k: int = 10,
        num_beams: int | None = None,
        batch_size: int = 8,
        template: int = 0,
    ) -> list[list[str | None]]:
        """Top-``k`` item ids per history by constrained beam search over the item codes (best first).

        Unknown history items raise a ``KeyError`` naming the item. ``None`` would mark a generated code
        that is no item (impossible under the constrained decoding; kept so metrics can count it).
        """
        num_beams = max(num_beams or k, k)
        prompts = self.prompts(histories, users, template=template)
        prefix_index = self.item_table.prefix_index()
        device = next(self.model.llm.parameters()).device
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        out: list[list[str | None]] = []
        for start in tqdm(range(0, len(prompts), batch_size), desc="recommend", disable=None, leave=False):
            ids, mask = _pad_left(prompts[start : start + batch_size], pad)
            codes, _ = self.model.recommend(
                ids.to(device), mask.to(device), prefix_index, num_beams=num_beams, num_return_sequences=k,
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=pad,
            )
            rows = self.item_table.items_for_codes(codes.cpu())
            ids_of = self.item_table.item_ids
            out.extend([[ids_of[int(r)] if r >= 0 else None for r in row] for row in rows.tolist()])
        self.model.train(was_training)
        return out

    def evaluate(
        self,
        split: Any,
        *,
        ks: Sequence[int] = (1, 5, 10),
        num_beams: int | None = None,
        batch_size: int = 8,
        template: int = 0,
        max_users: int | None = None,
    ) -> dict[str, float]:
        """Full-corpus HR@K / NDCG@K (and recall, MRR, invalid rate) on a ``sequences`` split (one row per user)."""
        users = [str(u) for u in split["user_id"]]
        seqs = [[str(i) for i in s] for s in split["item_ids"]]
        if max_users is not None:
            users, seqs = users[:max_users], seqs[:max_users]
        k = max(ks)
        recommended = self.recommend(
            [s[:-1] for s in seqs], users, k=k, num_beams=num_beams, batch_size=batch_size, template=template
        )
        return compute_metrics(recommended, [s[-1] for s in seqs], ks)


@dataclass
class _InferenceData:
    """The part of :class:`TTDSData` prompt rendering needs at inference (item ids; no texts)."""

    table: CodeTable

    @property
    def item_ids(self) -> list[str]:
        return self.table.item_ids

    @property
    def item_texts(self) -> list[str]:
        return [""] * len(self.table)

    @property
    def item_titles(self) -> list[str]:
        return [""] * len(self.table)


# ------------------------------------------------------------------------------------------------ trainer


def _is_trained_key(key: str) -> bool:
    """State-dict keys a TTDS checkpoint keeps: LoRA, the new token rows, the towers."""
    return "lora_" in key or "trainable_tokens" in key or "item_generator." in key or "user_generator." in key


class TTDSTrainer:
    """Warm-up + joint training of a :class:`TTDSForCausalLM` with Accelerate (see the module docstring).

    Args:
        model: from ``TTDSForCausalLM.from_base`` (LoRA wrapped, tokenizer extended).
        tokenizer: the extended tokenizer.
        data: :class:`TTDSData` of the training split.
        args: :class:`TTDSTrainingArguments`.
    """

    def __init__(self, model: TTDSForCausalLM, tokenizer: Any, data: TTDSData, args: TTDSTrainingArguments) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.data = data
        self.args = args
        self.codes = CodeState()
        self.renderer = PromptRenderer(
            tokenizer, model.config, data, self.codes, max_length=args.max_length, text_max_tokens=args.text_max_tokens
        )
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token (extend_tokenizer adds one)")
        self.pad = tokenizer.pad_token_id
        self.collator = TTDSCollator(
            self.renderer, seed=args.seed, alignment_batch_size=args.alignment_batch_size, pad_token_id=self.pad
        )
        self.history: list[dict[str, float]] = []

    # --------------------------------------------------------------------------- pieces

    def _fingerprint(self) -> str:
        payload = {
            "args": self.args.fingerprint_fields(),
            "config": {k: v for k, v in self.model.config.to_dict().items()
                       if not k.endswith(("_hash", "_code_length")) and k not in ("transformers_version",)},
            "items": hashlib.sha256("\x00".join(self.data.item_ids).encode()).hexdigest(),
            "users": hashlib.sha256("\x00".join(self.data.user_ids).encode()).hexdigest(),
            "examples": len(self.data.examples),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _warmup_batch(self, step: int, device: torch.device) -> dict[str, torch.Tensor]:
        """DM-VAE texts for warm-up step ``step``: a seeded sample of items (and users), a pure function of step."""
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + step)
        batch: dict[str, torch.Tensor] = {}
        towers = ["item", "user"] if self.model.config.user_tower else ["item"]
        for tower in towers:
            n = len(self.data.item_ids if tower == "item" else self.data.user_ids)
            picks = torch.randperm(n, generator=generator)[: self.args.alignment_batch_size].tolist()
            ids, mask = _pad_right([self.renderer.entity_text_ids(tower, i) for i in picks], self.pad)
            batch[f"{tower}_text_input_ids"], batch[f"{tower}_text_attention_mask"] = ids.to(device), mask.to(device)
        return batch

    def _init_codebooks(self) -> None:
        towers = ["item", "user"] if self.model.config.user_tower else ["item"]
        for tower in towers:
            reps = compute_tower_codes(self.model, self.renderer, tower, batch_size=self.args.encode_batch_size,
                                       pad_token_id=self.pad, representations=True)
            self.model.generator(tower).init_codebooks(
                reps.to(next(self.model.generator(tower).parameters()).device),
                iterations=self.args.codebook_init_iterations, seed=self.args.seed,
            )

    def _is_update_step(self, step: int) -> bool:
        """Whether the codes are recomputed right after optimiser step ``step`` (before the next batch)."""
        args = self.args
        if step == args.warmup_steps:
            return step > 0
        return bool(args.code_update_steps) and step > args.warmup_steps and (
            (step - args.warmup_steps) % args.code_update_steps == 0
        )

    def _update_codes(self, model: TTDSForCausalLM, step: int) -> dict[str, float]:
        stats = update_code_tables(model, self.renderer, self.codes, batch_size=self.args.encode_batch_size,
                                   pad_token_id=self.pad)
        self.codes.last_update_step = step
        return stats

    def _save_code_state(self, folder: Path) -> None:
        """Checkpoint extra: the current code tables and the update counters (weights are filtered to the
        trained ones — LoRA, token rows, towers — by the checkpoint manager)."""
        (folder / CODE_STATE_FILE).write_text(json.dumps(
            {"last_update_step": self.codes.last_update_step, "updates": self.codes.updates,
             "rejected": self.codes.rejected}) + "\n")
        if self.codes.item_table is not None:
            self.codes.item_table.save(folder / ITEM_TABLE_DIR)
        if self.codes.user_table is not None:
            self.codes.user_table.save(folder / USER_TABLE_DIR)

    def _load_code_state(self, folder: Path) -> None:
        """Read back what :meth:`_save_code_state` wrote."""
        try:
            code_state = json.loads((folder / CODE_STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError) as error:
            raise ValueError(f"{folder}/{CODE_STATE_FILE} is missing or corrupt ({error})") from None
        self.codes.last_update_step = int(code_state["last_update_step"])
        self.codes.updates = int(code_state["updates"])
        self.codes.rejected = int(code_state["rejected"])
        self.codes.item_table = CodeTable.load(folder / ITEM_TABLE_DIR)
        if (folder / USER_TABLE_DIR).is_dir():
            self.codes.user_table = CodeTable.load(folder / USER_TABLE_DIR)

    def _lr_lambda(self, step: int) -> float:
        """LR multiplier of ``learning_rate``: the warm-up LR during the generator warm-up, then linear
        LR warm-up over ``lr_warmup_steps`` joint steps and constant (the paper names no decay)."""
        args = self.args
        if step < args.warmup_steps:
            return args.warmup_learning_rate / args.learning_rate
        joint = step - args.warmup_steps
        if args.lr_warmup_steps and joint < args.lr_warmup_steps:
            return (joint + 1) / args.lr_warmup_steps
        return 1.0

    # --------------------------------------------------------------------------- main loop

    @deterministic_training
    def train(self) -> dict[str, Any]:
        """Runs (or resumes) warm-up + joint training; returns a summary (losses, code statistics, timings)."""
        args = self.args
        output_dir = Path(args.output_dir)
        accelerator = build_accelerator(
            output_dir, seed=args.seed, mixed_precision=args.resolved_mixed_precision(),
            gradient_accumulation_steps=args.gradient_accumulation_steps, log_with=None, cpu=args.cpu,
        )
        model = self.model
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.set_phase("joint")  # every parameter that ever trains is in the optimiser
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda)
        dataloader = make_train_dataloader(
            _IndexDataset(len(self.data.examples)), batch_size=args.train_batch_size, seed=args.seed,
            collate_fn=_index_batch,
        )
        model, optimizer, dataloader, scheduler = accelerator.prepare(model, optimizer, dataloader, scheduler)
        manager = CheckpointManager(
            accelerator, output_dir / "checkpoints", keep_last=args.keep_last, model=model, optimizer=optimizer,
            scheduler=scheduler, weights_filter=_is_trained_key, save_extra=self._save_code_state,
            load_extra=self._load_code_state,
        )
        state = TrainingState(fingerprint=self._fingerprint())
        latest = manager.latest() if args.resume else None
        unwrapped: TTDSForCausalLM = accelerator.unwrap_model(model)
        start = time.perf_counter()
        if latest is not None:
            resumed = manager.load(latest)
            if resumed.fingerprint != state.fingerprint:
                raise ValueError(
                    f"{latest} belongs to another job (fingerprint {resumed.fingerprint} != {state.fingerprint}); "
                    "use another output_dir or resume=False"
                )
            state = resumed
            step = state.global_step
            if self._is_update_step(step) and self.codes.last_update_step != step:
                # The checkpoint ended an earlier, shorter run, whose last step skips the update: do it now, as
                # an uninterrupted run would have.
                log_metrics(accelerator, state, self._update_codes(unwrapped, step), step=step, prefix="codes/")
        else:
            if manager.latest() is not None:
                manager.clear()
            self._init_codebooks()
            stats = self._update_codes(unwrapped, 0)
            log_metrics(accelerator, state, stats, step=0, prefix="codes/")
        total = args.warmup_steps + args.max_steps
        device = accelerator.device
        running: dict[str, list[float]] = {}  # loss name -> [sum, count] since the last log

        def flush(step: int) -> None:
            if running:
                means = {k: acc / count for k, (acc, count) in running.items()}
                log_metrics(accelerator, state, means, step=step, prefix="train/")
                self.history.append({"step": step, **means})
                running.clear()

        def after_step(loss_parts: dict[str, float]) -> None:
            state.global_step += 1
            for key, value in loss_parts.items():
                entry = running.setdefault(key, [0.0, 0])
                entry[0] += value
                entry[1] += 1
            step = state.global_step
            # No update at the very last step: the saved tables must be ones the LLM has trained with.
            if step < total and self._is_update_step(step):
                log_metrics(accelerator, state, self._update_codes(unwrapped, step), step=step, prefix="codes/")
            if step % args.logging_steps == 0 or step in (args.warmup_steps, total):
                flush(step)
            if args.save_steps and step % args.save_steps == 0:
                manager.save(state)

        def parts(out: Any) -> dict[str, float]:
            return {name: float(getattr(out, name).detach()) for name in ("loss", "lm_loss", "id_loss", "token_loss")
                    if getattr(out, name) is not None}

        # Phase 1: generator warm-up, LLM frozen (paper Sec. 5.1.4).
        if state.global_step < args.warmup_steps:
            unwrapped.set_phase("warmup")
            model.train()
            progress = tqdm(total=args.warmup_steps, initial=state.global_step, desc="warm-up", disable=None)
            while state.global_step < args.warmup_steps:
                out = model(**self._warmup_batch(state.global_step, device))
                accelerator.backward(out.loss)
                accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                after_step(parts(out))
                progress.update(1)
            progress.close()

        # Phase 2: joint training with dynamic codes.
        unwrapped.set_phase("joint")
        model.train()
        progress = tqdm(total=total, initial=state.global_step, desc="joint", disable=None)
        while state.global_step < total:
            self.collator.epoch = state.epoch
            for indices in epoch_batches(accelerator, dataloader, state):
                state.batches_in_epoch += 1
                # Rendered here, not in the DataLoader: Accelerate prefetches one batch ahead, which would render
                # the batch after a code update with the codes from before it.
                batch = {k: v.to(device) for k, v in self.collator(indices.tolist()).items()}
                with accelerator.accumulate(model):
                    out = model(**batch)
                    accelerator.backward(out.loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, args.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if accelerator.sync_gradients:
                    after_step(parts(out))
                    progress.update(1)
                    if state.global_step >= total:
                        break
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
        progress.close()
        flush(state.global_step)
        if args.save_steps:
            manager.save(state)
        accelerator.end_training()
        self.model = unwrapped
        summary = {
            "global_step": state.global_step,
            "train_seconds": time.perf_counter() - start,
            "code_updates": self.codes.updates,
            "rejected_code_updates": self.codes.rejected,
            "loss_history": self.history,
            "task_counts": self.data.task_counts(),
            "skipped": self.data.skipped,
            "prompt_truncations": self.renderer.truncated,
            "trainable_parameters": unwrapped.num_trainable_parameters(),
            "code_history": [e for e in state.log_history if any(k.startswith("codes/") for k in e)],
        }
        return summary

    def recommender(self) -> TTDSRecommender:
        """The trained model with the current code tables, ready to recommend, evaluate or save."""
        if self.codes.item_table is None:
            raise RuntimeError("no code tables yet: call train() first")
        return TTDSRecommender(self.model, self.tokenizer, self.codes.item_table, self.codes.user_table)


# ------------------------------------------------------------------------------------------------ tiny bases


def train_bpe_tokenizer(corpus: Sequence[str], *, vocab_size: int = 1000) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``corpus`` (bos ``<s>`` added, eos ``</s>``,
    pad ``<pad>``, unk ``<unk>``), for offline experiments with tiny random LLaMA models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def create_tiny_base(
    out_dir: str | Path,
    corpus: Sequence[str],
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Writes a tiny random ``LlamaForCausalLM`` + a BPE tokenizer trained on ``corpus`` into ``out_dir``.

    The folder is then a base model exactly like a Hub name (``TTDSConfig(base_model_name_or_path=out_dir)``),
    which is how tests and the tiny benchmark exercise the 7B code path without a download.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_bpe_tokenizer(corpus, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def template_corpus() -> list[str]:
    """The instruction templates' words (for training tiny tokenizers that cover the prompts)."""
    return [t for templates in TASK_TEMPLATES.values() for t in templates]


def iter_sizes(data: TTDSData) -> Iterator[tuple[str, int]]:
    """(name, count) pairs describing a dataset, for logs."""
    yield "items", len(data.item_ids)
    yield "users", len(data.user_ids)
    yield from data.task_counts().items()


def summarize_metrics(metrics: Mapping[str, float], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The paper's columns: HR@1/5/10, NDCG@5/10 (plus invalid rate), rounded for reports."""
    keys = [f"hr@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k > 1] + ["invalid_rate"]
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics and math.isfinite(metrics[k])}


# ------------------------------------------------------------------------------------------------ job


def run_ttds(
    dataset: str | Path,
    base_model: str | None,
    output_dir: str | Path,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    dtype: str | None = "auto",
    users: Any = None,
    eval_splits: Sequence[str] = ("validation", "test"),
    revision: str | None = None,
    data_revision: str | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """One TTDS job: dataset folder / Hub id + base LLM name -> trained, saved and evaluated recommender.

    ``dataset`` is a genrec dataset (``load_genrec_dataset``, at ``data_revision`` for a Hub id);
    ``base_model`` any LLaMA-architecture causal LM (Hub name or folder, at ``revision``, recorded in the config
    and the adapter so that reloading uses the same base). ``init_from`` (instead of ``base_model``): a saved
    TTDS recommender (folder or Hub id at ``revision``) to continue from on a new domain: its LoRA adapter,
    token rows and towers are the starting point; the codebooks are re-initialised on the new domain's items
    (k-means over the transferred towers' representations, as for a fresh run) so that the codes cover the new
    catalogue. ``config_overrides`` go to :class:`TTDSConfig` (fresh runs only), ``training`` to
    :class:`TTDSTrainingArguments`. ``dtype="auto"``: bf16 weights on a bf16-capable GPU, else float32.
    The recommender is saved to ``output_dir/final`` with a model card (``README.md``); the summary (losses,
    code statistics, metrics per split, timings) to ``output_dir/ttds_training.json`` and returned. Test-split
    numbers are the ones to report; validation numbers are labelled as such.
    """
    from transformers import AutoTokenizer

    from genrec.data_scripts.prepare import load_genrec_dataset

    if (base_model is None) == (init_from is None):
        raise ValueError("run_ttds needs exactly one of base_model (a fresh run) or init_from (a saved TTDS model)")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sequences, items = load_genrec_dataset(dataset, revision=data_revision)
    args = TTDSTrainingArguments(output_dir=str(output_dir), **dict(training or {}))
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if init_from is not None:
        if config_overrides:
            raise ValueError("config overrides apply to a fresh run; a model continued from init_from keeps its config")
        folder = resolve_recommender_folder(init_from, revision=revision)
        model = TTDSForCausalLM.from_pretrained(folder, dtype=torch_dtype, is_trainable=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        extend_tokenizer(tokenizer, model.config)  # verifies the saved tokenizer has every semantic token
        model.train()
        base_model = model.config.base_model_name_or_path
    else:
        tokenizer = AutoTokenizer.from_pretrained(base_model, revision=revision)
        config = TTDSConfig(
            base_model_name_or_path=base_model, base_model_revision=revision, **dict(config_overrides or {})
        )
        model = TTDSForCausalLM.from_base(config, tokenizer, dtype=torch_dtype, seed=args.seed)
    if torch.cuda.is_available() and args.cpu is not True:
        model.to("cuda")
    data = TTDSData.from_datasets(
        sequences, items, users=users, tasks=args.tasks, user_tower=model.config.user_tower,
        item_text_template=args.item_text_template, user_text_max_items=args.user_text_max_items,
        max_history=args.max_history, max_examples_per_task=args.max_examples_per_task, seed=args.seed,
    )
    logger.info("TTDS data: %s", dict(iter_sizes(data)))
    trainer = TTDSTrainer(model, tokenizer, data, args)
    summary = trainer.train()
    recommender = trainer.recommender()
    final_dir = output_dir / "final"
    recommender.save_pretrained(final_dir)
    summary["metrics"] = {}
    for split in eval_splits:
        if split not in sequences:
            continue
        t0 = time.perf_counter()
        metrics = recommender.evaluate(
            sequences[split], ks=args.ks, num_beams=args.num_beams, batch_size=args.eval_batch_size,
            template=args.eval_template, max_users=args.max_eval_users,
        )
        metrics["eval_seconds"] = time.perf_counter() - t0
        summary["metrics"][split] = metrics
        logger.info("%s: %s", split, summarize_metrics(metrics, args.ks))
    summary.update({
        "dataset": str(dataset), "dataset_revision": data_revision, "base_model": base_model,
        "base_model_revision": model.config.base_model_revision,
        "init_from": str(init_from) if init_from is not None else None, "dtype": str(torch_dtype),
        "mixed_precision": args.resolved_mixed_precision(), "config": model.config.to_dict(),
        "training_arguments": asdict(args), "total_seconds": time.perf_counter() - start,
        "item_code_table": recommender.item_table.stats(),
    })
    if recommender.user_table is not None:
        summary["user_code_table"] = recommender.user_table.stats()
    summary.update(_card_inputs(sequences, recommender.item_table, dataset))
    text = json.dumps(summary, indent=2, default=str) + "\n"
    (output_dir / TRAINING_SUMMARY).write_text(text)
    (final_dir / TRAINING_SUMMARY).write_text(text)  # travels with the model (genrec push rewrites its paths)
    write_ttds_card(final_dir, summary)
    return summary


def _card_inputs(sequences: Any, item_table: CodeTable, dataset: str | Path) -> dict[str, Any]:
    """What the model card needs beyond the metrics: a real history for the snippet and the data's source."""
    history: list[str] = []
    if "test" in sequences and len(sequences["test"]):
        row = [str(i) for i in sequences["test"][0]["item_ids"][:-1]]
        history = [i for i in row if i in item_table][-3:]
    source = None
    report = Path(str(dataset)) / "genrec_dataset.json"
    if report.is_file():
        source = json.loads(report.read_text()).get("source")
    return {"example_history": history, "dataset_source": source}


def write_ttds_card(
    directory: str | Path, summary: Mapping[str, Any], *, repo_id: str | None = None, revision: str | None = None,
    dataset_repo: str | None = None,
) -> Path:
    """Write ``directory/README.md``, the model card of the recommender saved there, from its ``summary``.

    ``repo_id`` defaults to the folder's name (``genrec push`` regenerates the card for the repo id); the
    snippet's history is ``summary["example_history"]`` (real item ids of the first test user).
    """
    from genrec.model_cards.card import save_model_card
    from genrec.model_cards.ttds_card import build_ttds_card

    directory = Path(directory)
    config = TTDSConfig.from_pretrained(directory)
    table = CodeTable.load(directory / ITEM_TABLE_DIR)
    card = build_ttds_card(
        summary, config, table, repo_id=repo_id or directory.name, revision=revision,
        history=summary.get("example_history") or None, dataset_source=summary.get("dataset_source"),
        dataset_repo=dataset_repo,
    )
    return save_model_card(directory, card)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m genrec.trainers.ttds --dataset DIR --base-model NAME --output-dir DIR [options]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Train and evaluate a TTDS-style LLM recommender.")
    parser.add_argument("--dataset", required=True, help="genrec dataset folder or Hub id")
    parser.add_argument("--base-model", required=True, help="LLaMA-architecture causal LM (Hub name or folder)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--config", default="{}", help="JSON object of TTDSConfig overrides")
    parser.add_argument("--training", default="{}", help="JSON object of TTDSTrainingArguments overrides")
    parsed = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    summary = run_ttds(parsed.dataset, parsed.base_model, parsed.output_dir, dtype=parsed.dtype,
                       config_overrides=json.loads(parsed.config), training=json.loads(parsed.training))
    print(json.dumps({split: summarize_metrics(m) for split, m in summary["metrics"].items()}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
