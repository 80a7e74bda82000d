"""The TTDS-style LLM recommender's training path (paper Sec. 4, 5.1): a LLaMA-architecture causal LM under
LoRA whose item and user code tokens come from learnable residual quantizers trained jointly with it.

One module per idea: ``args`` (arguments, run-folder layout), ``data`` (instruction tasks from a dataset),
``prompts`` (templates, rendering, collator), ``codes`` (dynamic code tables), ``code_updates`` (recomputing
them from the towers), ``trainer`` (the training loop on :mod:`genrec.trainers.engine`), ``recommender``
(inference, save / load), ``tiny`` (tiny bases for tests and benchmarks). The job that runs all of it is
:mod:`genrec.trainers.jobs.ttds`.
"""

from genrec.trainers.ttds.args import (
    CODE_STATE_FILE,
    ITEM_TABLE_DIR,
    TASK_TEMPLATES,
    TASKS,
    TEXT_TARGET_COLUMNS,
    TRAINING_SUMMARY,
    USER_TABLE_DIR,
    TTDSTrainingArguments,
)
from genrec.trainers.ttds.code_updates import compute_tower_codes, update_code_tables
from genrec.trainers.ttds.codes import CodeState, CollisionOverflowError, build_code_table
from genrec.trainers.ttds.data import TTDSData, attach_reviews
from genrec.trainers.ttds.prompts import PromptRenderer, TTDSCollator
from genrec.trainers.ttds.recommender import TTDSRecommender, resolve_recommender_folder
from genrec.trainers.ttds.tiny import (
    create_tiny_base,
    iter_sizes,
    pretrain_tiny_base,
    summarize_metrics,
    template_corpus,
    train_bpe_tokenizer,
)
from genrec.trainers.ttds.trainer import TTDSTrainer

__all__ = [
    "CODE_STATE_FILE",
    "ITEM_TABLE_DIR",
    "TASKS",
    "TASK_TEMPLATES",
    "TEXT_TARGET_COLUMNS",
    "TRAINING_SUMMARY",
    "USER_TABLE_DIR",
    "CodeState",
    "CollisionOverflowError",
    "PromptRenderer",
    "TTDSCollator",
    "TTDSData",
    "TTDSRecommender",
    "TTDSTrainer",
    "TTDSTrainingArguments",
    "attach_reviews",
    "build_code_table",
    "compute_tower_codes",
    "create_tiny_base",
    "iter_sizes",
    "pretrain_tiny_base",
    "resolve_recommender_folder",
    "summarize_metrics",
    "template_corpus",
    "train_bpe_tokenizer",
    "update_code_tables",
]
