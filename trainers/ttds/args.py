"""Arguments of the TTDS trainer, its tasks and their instruction templates, and the file layout of a TTDS run folder."""


from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("seqrec", "next_user", "user_text", "item2tokens", "tokens2item")
TEXT_TARGET_COLUMNS: tuple[str, ...] = ("review", "query")

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

ITEM_TABLE_DIR = "item_code_table"
USER_TABLE_DIR = "user_code_table"
TRAINING_SUMMARY = "ttds_training.json"
CODE_STATE_FILE = "ttds_codes.json"


# ------------------------------------------------------------------------------------------------ arguments


@dataclass
class TTDSTrainingArguments:
    """Hyper-parameters of a TTDS run (paper values where the paper gives them, Sec. 5.1.4).

    ``warmup_steps`` optimiser steps train the towers (and the new token rows) with the LLM frozen at
    ``warmup_learning_rate`` (paper: 1e-3); then ``max_steps`` joint steps train everything with AdamW at
    ``learning_rate`` (paper: 5e-4). Codes are recomputed after the warm-up and every ``code_update_steps``
    joint steps (0: never again, the paper's static "TTSS" ablation), but never at the run's last step, so
    the tables saved with the model are always ones the LLM was trained with.

    ``tower_learning_rate`` (None: ``learning_rate``) is the towers' encoders' and decoders' LR (scaled by
    the same schedule, so 2x during the warm-up with the paper's LRs): at 1e-3 the towers' encoders moved the
    latents of unchanged inputs across cell borders within 15 steps (half of all level-1 codes changed on
    ML-100K) and their commitment term pulled all latents together; at 1e-4 about 3% of the level-1 codes
    change per 15 steps and the collision rate stays flat (docs/ttds.md).

    ``code_update_until`` (None: to the end) is the last joint step at which the codes may be recomputed; the
    rest of the run trains the LLM on the final tables. Each update re-draws most codes on a small LLM, and the
    LLM then relearns which tokens name which item, so updates that stop early leave it time to fit the final,
    collaboratively informed codes (the paper gives no update schedule).

    Code updates are damped: an entity keeps its previous code unless the new one quantises its latent
    better by more than ``code_update_margin`` (relative; 0 = plain argmin), and with ``reset_dead_codes``
    the towers' unused centroids are moved onto current latents before each update (RQ-VAE practice);
    with ``refresh_input_statistics`` the towers' input standardisation follows the LLM's representations.
    ``code_update_refit`` re-fits the codebooks by residual k-means at each update instead (ids renumbered
    to keep persisting cells' tokens; off by default, measured in docs/ttds.md).

    ``history_loss`` (not in the paper, off by default): a seqrec example's loss also covers the code tokens of
    every item in its history, each predicted from the items before it, the way SASRec-style models learn
    from every position of a sequence; the answer alone gives one target per ~100-200 prompt tokens.
    """

    output_dir: str
    seed: int = 42
    warmup_steps: int = 100
    warmup_learning_rate: float = 1e-3
    max_steps: int = 1000
    learning_rate: float = 5e-4
    tower_learning_rate: float | None = 1e-4
    weight_decay: float = 0.01
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    alignment_batch_size: int = 8
    code_update_steps: int = 100
    code_update_until: int | None = None
    code_update_margin: float = 0.2
    code_update_refit: bool = False
    reset_dead_codes: bool = True
    refresh_input_statistics: bool = True
    encode_batch_size: int = 32
    codebook_init_iterations: int = 10
    tasks: tuple[str, ...] = TASKS
    max_examples_per_task: int | None = None
    max_history: int = 20
    history_loss: bool = False
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
        if self.code_update_until is not None and self.code_update_until < 0:
            raise ValueError(f"code_update_until must be >= 0 or None, got {self.code_update_until}")
        if self.tower_learning_rate is not None and self.tower_learning_rate < 0:
            raise ValueError(f"tower_learning_rate must be >= 0, got {self.tower_learning_rate}")
        if self.code_update_margin < 0:
            raise ValueError(f"code_update_margin must be >= 0, got {self.code_update_margin}")
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
        # options added after runs existed count only when set, so that those runs still resume
        skip |= {k for k, default in _ADDED_LATER.items() if getattr(self, k) == default}
        return {k: v for k, v in asdict(self).items() if k not in skip}


#: Arguments added after TTDS run folders already existed, with the value that means "as before".
_ADDED_LATER: dict[str, Any] = {"code_update_until": None, "code_update_refit": False}
