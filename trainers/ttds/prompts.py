"""TTDS prompts: the instruction templates per task, their rendering from the current code tables, and the
collator that renders batches at batch time."""


from __future__ import annotations

import hashlib
import logging
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch

from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.trainers.ttds.args import TASK_TEMPLATES
from genrec.trainers.ttds.codes import CodeState
from genrec.trainers.ttds.data import TTDSData

logger = logging.getLogger(__name__)


_NO_USER_TEXT = "the user"  # what {user} becomes when a user has no code (unknown user or no user tower)


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
        return self._fill_labeled(template, slots, {})[0]

    def _fill_labeled(
        self, template: str, slots: Mapping[str, list[int]], slot_labels: Mapping[str, list[int]]
    ) -> tuple[list[int], list[int]]:
        """Token ids of ``template`` with its slots filled, and their labels: -100 everywhere except inside the
        slots ``slot_labels`` gives labels for (aligned with that slot's ids)."""
        ids, labels = list(self.bos), [-100] * len(self.bos)
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                piece = self.text_ids(literal)
                ids.extend(piece)
                labels.extend([-100] * len(piece))
            if name is not None:
                if name not in slots:
                    raise KeyError(f"template slot {{{name}}} has no value in {template!r}")
                ids.extend(slots[name])
                labels.extend(slot_labels.get(name, [-100] * len(slots[name])))
        return ids, labels

    def _join(self, tower: str, entities: Sequence[str]) -> list[int]:
        return self._join_labeled(tower, entities)[0]

    def _join_labeled(self, tower: str, entities: Sequence[str]) -> tuple[list[int], list[int]]:
        """The entities' code tokens separated by ", ", and labels that are the code tokens themselves (-100 on
        the separators)."""
        sep = self.text_ids(", ")
        out: list[int] = []
        labels: list[int] = []
        for n, entity in enumerate(entities):
            code = self.code_ids(tower, entity)
            if code is None:
                raise KeyError(f"{tower} {entity!r} has no code in the current {tower} code table")
            if n:
                out.extend(sep)
                labels.extend([-100] * len(sep))
            out.extend(code)
            labels.extend(code)
        return out, labels

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
        return self.prompt_ids_and_labels(example, template_index)[0]

    def prompt_ids_and_labels(
        self, example: Mapping[str, Any], template_index: int, *, history_labels: bool = False
    ) -> tuple[list[int], list[int]]:
        """:meth:`prompt_ids` and the prompt's labels: all -100, except, with ``history_labels`` on a seqrec
        example, the code tokens of every history item (each item predicted from the ones before it, as a
        sequential recommender is trained on every position; see ``TTDSTrainingArguments.history_loss``)."""
        templates = self.templates(example)
        template = templates[template_index % len(templates)]
        task = example["task"]
        if task in ("seqrec", "user_text"):
            history = list(example["history"])
            while True:
                joined, joined_labels = self._join_labeled("item", history)
                labeled = {"history": joined_labels} if (history_labels and task == "seqrec") else {}
                ids, labels = self._fill_labeled(
                    template, {"user": self._user_slot(example.get("user")), "history": joined}, labeled
                )
                if len(ids) + self.config.num_levels + 2 <= self.max_length or len(history) <= 1:
                    return ids, labels
                history = history[1:]
                self.truncated += 1
        if task == "next_user":
            users = list(example["users"])
            while True:
                ids = self._fill(template, {"item": self._join("item", [example["item"]]),
                                            "users": self._join("user", users)})
                if len(ids) + self.config.num_levels + 2 <= self.max_length or len(users) <= 1:
                    return ids, [-100] * len(ids)
                users = users[1:]
                self.truncated += 1
        item = example["item"]
        text = self._item_text[item]
        ids = self._fill(template, {
            "item": self._join("item", [item]),
            "text": self.text_ids(" " + text, self.text_max_tokens),
            "title": self.text_ids(self._item_title[item], self.text_max_tokens),
        })
        return ids, [-100] * len(ids)

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


class IndexDataset(torch.utils.data.Dataset):
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

    def __init__(
        self, renderer: PromptRenderer, *, seed: int, alignment_batch_size: int, pad_token_id: int,
        history_loss: bool = False,
    ) -> None:
        self.renderer = renderer
        self.history_loss = history_loss
        self.seed = seed
        self.epoch = 0
        self.alignment_batch_size = alignment_batch_size
        self.pad_token_id = pad_token_id
        self._item_index = {item: n for n, item in enumerate(renderer.data.item_ids)}
        self._user_index = {user: n for n, user in enumerate(renderer.data.user_ids)}

    def _texts(self, tower: str, entities: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._item_index if tower == "item" else self._user_index
        rows = [self.renderer.entity_text_ids(tower, index[e]) for e in entities if e in index]
        return pad_right(rows, self.pad_token_id)

    def __call__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        examples = self.renderer.data.examples
        sequences, labels = [], []
        items: dict[str, None] = {}
        users: dict[str, None] = {}
        for index in indices:
            example = examples[int(index)]
            prompt, prompt_labels = self.renderer.prompt_ids_and_labels(
                example, _template_choice(self.seed, self.epoch, int(index)), history_labels=self.history_loss
            )
            answer = self.renderer.answer_ids(example)
            sequences.append(prompt + answer)
            labels.append(prompt_labels + answer)
            for key in ("target_item", "item"):
                if key in example:
                    items[example[key]] = None
            for key in ("user", "target_user"):
                if key in example:
                    users[example[key]] = None
        input_ids, attention_mask = pad_right(sequences, self.pad_token_id)
        label_ids, _ = pad_right(labels, -100)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}
        if items:
            ids, mask = self._texts("item", list(items)[: self.alignment_batch_size])
            batch["item_text_input_ids"], batch["item_text_attention_mask"] = ids, mask
        if users and self.renderer.config.user_tower:
            ids, mask = self._texts("user", list(users)[: self.alignment_batch_size])
            if ids.shape[0]:
                batch["user_text_input_ids"], batch["user_text_attention_mask"] = ids, mask
        return batch


def index_batch(indices: Sequence[int]) -> torch.Tensor:
    """The DataLoader's batch: example indices only (rendering happens at the step that uses them)."""
    return torch.tensor(list(indices), dtype=torch.long)


def pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[n, : len(row)] = 1
    return ids, mask


def pad_left(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        if row:
            ids[n, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[n, width - len(row) :] = 1
    return ids, mask
