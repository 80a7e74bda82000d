"""The main job's profiles (how long and how big each trained stage is), the stages it can stop after, the
model families it trains, and how it reads a ``--dataset`` argument."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from genrec.data_scripts.dataset_names import KNOWN_DATASETS, is_hub_repo_id, unknown_dataset
from genrec.trainers.stages.stage2_defaults import PAPER_LR, PAPER_MAX_STEPS, PAPER_WARMUP_STEPS
from genrec.trainers.stages.transition_smoothing import parse_transition_smoothing

__all__ = [
    "MODEL_FAMILIES",
    "PROFILES",
    "RUN_SUMMARY_FILE",
    "STOP_STAGES",
    "PipelineProfile",
    "SAMPLED_LOSS_ABOVE_ITEMS",
    "SAMPLED_NEGATIVES",
    "for_catalogue",
    "infer_source",
    "resolve_profile",
]

#: the run folder's summary (written by the main job, read by fine-tuning, push and the transition prior)
RUN_SUMMARY_FILE = "run.json"


@dataclass(frozen=True)
class PipelineProfile:
    """How long and how big each trained stage of the main job is.

    ``default`` is the full job sized for a 2-core CPU (under 20 min on ML-100K); ``long`` trains Stage II
    16 epochs instead of 6 (the default until 2026-12-06); ``quick`` is a smoke run for
    CI (a minute or two) whose numbers mean nothing beyond "every stage ran"; ``paper`` is the UNGER
    paper's recipe (Table 4), sized for a GPU; ``tiger`` is TIGER (Rajput et al., 2023) with genrec's parts:
    no Stage I (``stage1=False``: the text embeddings themselves are quantized, by an RQ-VAE), Stage II
    without distillation or integrated history, no transition prior, at the default's size and budget;
    ``tiger-paper`` is TIGER's own network at the paper profile's length, for a GPU. ``stage2_epochs`` (when set) overrides
    ``stage2_max_steps`` with that many passes over the training rows, so one profile fits catalogues of any
    size. ``quantizer`` / ``quantizer_config`` choose the code-table quantizer
    (:func:`genrec.trainers.stages.quantize.build_quantizer`) and its settings.
    """

    name: str
    stage1_epochs: int | None = 20
    stage1_max_steps: int | None = None
    stage1_patience: int | None = 5
    stage1_max_eval_examples: int | None = None
    stage1_config: dict[str, Any] = field(default_factory=dict)
    stage2_max_steps: int = 3000  # a field default for custom profiles: every shipped profile sets its own length
    stage2_epochs: float | None = None
    stage2_warmup_steps: int = 300
    stage2_eval_every: int | None = 500
    stage2_patience: int | None = None
    stage2_config: dict[str, Any] = field(default_factory=dict)
    stage2_lr_schedule: str = "constant"
    stage2_lr: float = PAPER_LR  # Stage II's peak learning rate (after the warm-up)
    max_eval_users: int | None = None
    eval_beams: int = 20
    test_beams: int | None = None
    num_levels: int = 3
    transition_prior: bool = False
    # the prior's additive smoothing c (p_transition = count / (n(last) + c)): a number, or "auto" to choose it
    # on validation with the weight from TRANSITION_SMOOTHINGS (0 among them)
    transition_smoothing: str | float = 0.0
    stage1: bool = True
    quantizer: str = "residual_kmeans"
    quantizer_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a custom profile's bad smoothing fails here, not after Stage II has trained
        object.__setattr__(self, "transition_smoothing", parse_transition_smoothing(self.transition_smoothing))
        # and a bad learning rate before Stage I, not as a NaN loss (or no training at all) in Stage II
        lr = self.stage2_lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"profile {self.name!r}: stage2_lr must be a positive number (Stage II's peak "
                             f"learning rate; the paper's is {PAPER_LR}), got {lr!r}")


# The default until 2026-12-06, now the `long` profile (about an hour on ML-100K at 1 thread of a shared CPU).
# Stage I: at most 8 epochs (ML-100K validation Recall@10 is near its later best by then); Stage II:
# per_item history (~3x cheaper per step than flattened on CPU), constrained training (+22 % test
# Recall@10 on Beauty at equal steps), 16 epochs with a cosine decay (Beauty validation Recall@10 was
# still rising fast at 3k steps = 6 epochs); each history item also feeds its Stage-I integrated
# embedding to the encoder (history_item_embedding="integrated": Beauty validation Recall@10 0.094 vs
# 0.085 at 7k steps); a larger, regularised Stage II — 4 encoder layers, dropout 0.1, distillation
# λ = 0.1 — (test Recall@10 of the model alone at equal steps and codes: ML-100K 0.1368 vs 0.1198, Beauty
# 0.0763 vs 0.0710); validation on a seeded 5,000-user sample. docs/stage2.md and docs/quality.md have
# the measurements.
_LONG = PipelineProfile(
    name="long",
    # Beauty's Stage I stops at this cap while still improving; to convergence (cap 30: 12 epochs, validation
    # Recall@10 +4.5 %) every later stage was level on test (docs/quality.md, 2026-12-07): the cap stays
    stage1_epochs=8,
    stage1_patience=2,
    stage2_epochs=16,
    stage2_warmup_steps=300,
    stage2_eval_every=1000,
    stage2_lr_schedule="cosine",
    stage2_config={
        "history_mode": "per_item", "constrained_training": True, "history_item_embedding": "integrated",
        "encoder_layers": 4, "dropout": 0.1, "distillation_weight": 0.1,
    },
    max_eval_users=5000,
    # the model mixed with the training rows' first-order transitions, its weight chosen on validation
    # (trainers/stages/transition_prior.py; docs/quality.md: the model misses rare exact pairs the chain keeps)
    transition_prior=True,
)


PROFILES: dict[str, PipelineProfile] = {
    # `long` with Stage II cut to 6 epochs (the cosine decay over those 6), so that the main job on ML-100K
    # finishes in under 20 minutes on 2 idle cores; ML-100K validation Recall@10 peaks by about 3,000 steps
    # (8 epochs) in every measured run. No dropout in Stage II (the UNGER paper's value; 0.1 until 2026-12-07):
    # on the same Stage I and codes, the model alone gained +0.0091 Recall@10 / +0.0061 NDCG@10 on Beauty
    # (paired, beyond the noise) and was level on ML-100K (3 seeds). Both profiles' test figures: docs/quality.md.
    # The prior's smoothing c is chosen on validation with its weight (since 2026-12-07; `long` keeps the plain
    # prior its figures were measured with): Beauty test Recall@10 +0.0020 paired, beyond the noise, NDCG@10 level.
    # Stage II's peak learning rate 2e-3 (the paper's 1e-3 until the evening of 2026-12-07): on the same Stage I
    # and codes the model alone gained Recall@10 +0.0026 on Beauty (paired, beyond the noise; NDCG@10 level) and was level on
    # ML-100K (pooled over 3 seeds +0.0064, NDCG@10 +0.0025), where it put the model alone above the Markov
    # chain at Recall@10 beyond the noise.
    "default": replace(_LONG, name="default", stage2_epochs=6, stage2_lr=2e-3,
                       stage2_config={**_LONG.stage2_config, "dropout": 0.0}, transition_smoothing="auto"),
    "long": _LONG,
    "quick": PipelineProfile(
        name="quick",
        stage1_epochs=None,
        stage1_max_steps=30,
        stage1_patience=None,
        stage1_max_eval_examples=200,
        stage2_max_steps=30,
        stage2_warmup_steps=10,
        stage2_eval_every=30,
        stage2_config={
            "d_model": 48, "ffn_dim": 96, "num_attention_heads": 4, "decoder_layers": 2,
            "history_item_embedding": "integrated",  # the default profile's wiring, exercised by CI
        },
        max_eval_users=128,
        transition_prior=True,
        transition_smoothing="auto",  # the default profile's prior search, exercised by CI
    ),
    # The UNGER paper (§4.1.3, Table 4): Stage I to convergence (early stopping on validation Recall@10, no
    # epoch cap that binds), cluster depth 4, Stage II 20k steps with a 2k-step warm-up from 1e-7 to 1e-3,
    # the flattened code-sequence history feed, plain (unconstrained) training, no early stop (the best
    # validation checkpoint is kept), 100 beams at test. Validation (model selection only, which the paper
    # does not describe) uses 20 beams on a seeded 5,000-user sample so that it stays affordable on a CPU.
    "paper": PipelineProfile(
        name="paper",
        stage1_epochs=200,
        stage1_patience=5,
        stage2_max_steps=PAPER_MAX_STEPS,
        stage2_warmup_steps=PAPER_WARMUP_STEPS,
        stage2_eval_every=1000,
        stage2_patience=None,
        stage2_config={"history_mode": "flattened"},
        max_eval_users=5000,
        eval_beams=20,
        test_beams=100,
        num_levels=4,
    ),
    # TIGER (Rajput et al., NeurIPS 2023, §3-4), the field's reference generative recommender, assembled from
    # genrec's parts for side-by-side runs with UNGER on the same split: the items' text embeddings -> RQ-VAE
    # (MLP 512-256-128 -> 32, 3 levels x 256 codes, k-means initialised, 500 epochs: 50 left 68 % of ML-100K's
    # items colliding, 500 leaves 2 %; the CodeTable appends a collision level where codes still collide) -> an
    # encoder-decoder trained with plain cross-entropy (no distillation, no Stage I embeddings in the history,
    # no constrained softmax) and decoded by constrained beam search; no transition prior. `tiger` keeps the
    # default profile's Stage II size, feed and budget (per-item history, width 96, 4 + 4 layers, 6 epochs,
    # cosine), so that it runs in the default's time on a CPU and the two differ only by what UNGER adds, with
    # TIGER's own dropout 0.1 and peak learning rate 1e-3 (the default took the UNGER paper's dropout 0 on
    # 2026-12-07 and a peak learning rate of 2e-3 later that day; `tiger`'s rows are at 0.1 and 1e-3);
    # `tiger-paper` is TIGER's own network (one encoder position per code, width 128, feed-forward 1024, 4 + 4
    # layers, dropout 0.1: 6x the default's step, measured) at the paper profile's length, for a GPU. Interpretations
    # (docs/quality.md, "TIGER"): 4 heads of 32 (TIGER's T5 has 6 heads of 64 projected back to 128; genrec's
    # attention ties head width to d_model), no hashed user-id token, Adam with warm-up instead of TIGER's
    # inverse-square-root decay over 200k steps, the RQ-VAE trained with Adam (TIGER: 20k epochs of Adagrad).
    "tiger": replace(
        _LONG, name="tiger", stage1=False, stage1_epochs=None, stage1_patience=None, stage2_epochs=6,
        quantizer="rqvae", quantizer_config={"epochs": 500}, transition_prior=False,
        stage2_config={"history_mode": "per_item", "encoder_layers": 4, "dropout": 0.1, "distillation_weight": 0.0},
    ),
    "tiger-paper": PipelineProfile(
        name="tiger-paper",
        stage1=False,
        stage1_epochs=None,
        stage1_patience=None,
        quantizer="rqvae",
        quantizer_config={"epochs": 500},
        stage2_max_steps=PAPER_MAX_STEPS,
        stage2_warmup_steps=PAPER_WARMUP_STEPS,
        stage2_eval_every=1000,
        stage2_config={
            "history_mode": "flattened", "d_model": 128, "num_attention_heads": 4, "ffn_dim": 1024,
            "encoder_layers": 4, "decoder_layers": 4, "dropout": 0.1, "distillation_weight": 0.0,
        },
        max_eval_users=5000,
        eval_beams=20,
        test_beams=100,
    ),
}


# the stages ``run_pipeline(until=...)`` / ``genrec run --until`` can stop after, in pipeline order
STOP_STAGES = ("embed", "stage1", "quantize")


def infer_source(dataset: str) -> str:
    """Which ``genrec prepare`` source reads ``dataset`` (a known name, a folder or a Hub id ``owner/name``).

    Anything else (a typo such as ``ml-100kk``, a folder that does not exist) is a ``ValueError`` at once, naming
    the closest known name, instead of a Hub download that fails much later (:mod:`~genrec.data_scripts.dataset_names`).
    """
    if dataset.lower() in KNOWN_DATASETS:
        return KNOWN_DATASETS[dataset.lower()]
    path = Path(dataset)
    if path.is_dir():
        if (path / "sequences.txt").is_file():
            return "s3rec"
        if (path / "ml-100k.inter").is_file():
            return "ml-100k"
        return "hub"
    if path.exists():
        raise ValueError(f"--dataset {dataset}: expected a folder or a dataset name, got a file")
    if is_hub_repo_id(dataset):
        return "hub"  # a Hub dataset id in genrec's layout
    raise unknown_dataset(dataset)


def profile_with_changes(base: str, changes: Mapping[str, Any]) -> PipelineProfile:
    """The shipped profile ``base`` with some fields changed, named after the changes (``default+stage1_epochs=30``)
    so that a run folder's recorded profile says what differed from the shipped one (benchmarks/profile_variant.py).
    An unknown field is a ``ValueError`` naming the known ones; the profile's own checks apply to the values."""
    known = {f.name for f in fields(PipelineProfile)} - {"name"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown PipelineProfile field(s) {unknown}; known: {sorted(known)}")
    name = base + "+" + ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(changes.items()))
    return replace(resolve_profile(base), name=name, **changes)


def resolve_profile(profile: str | PipelineProfile) -> PipelineProfile:
    """The shipped profile named ``profile`` (a :class:`PipelineProfile` passes through); ``ValueError`` names
    the known ones."""
    if isinstance(profile, PipelineProfile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[profile]


#: Above this many items the main job trains Stage I with a sampled softmax and Stage II's distillation with
#: sampled negatives, unless the profile sets them: measured on synthetic catalogues (benchmarks/RESULTS.md,
#: "Scale"), a full-softmax step costs ~2x a sampled one at 10^4 items, 17x (Stage I) and 3x (Stage II) at
#: 10^5, and at 10^6 a Stage I epoch with the full softmax would take weeks on a CPU.
SAMPLED_LOSS_ABOVE_ITEMS = 50_000
#: negatives per batch of those sampled losses
SAMPLED_NEGATIVES = 1024


def for_catalogue(profile: PipelineProfile, num_items: int) -> tuple[PipelineProfile, list[str]]:
    """``profile`` for a catalogue of ``num_items`` items: above :data:`SAMPLED_LOSS_ABOVE_ITEMS`, Stage I's
    ``loss_type`` becomes ``"sampled"`` and Stage II's ``distillation_negatives`` :data:`SAMPLED_NEGATIVES`
    where the profile does not set them. Returns the profile and what changed (empty: unchanged)."""
    if num_items <= SAMPLED_LOSS_ABOVE_ITEMS:
        return profile, []
    changes = []
    stage1, stage2 = dict(profile.stage1_config), dict(profile.stage2_config)
    if profile.stage1 and "loss_type" not in stage1:
        stage1.update(loss_type="sampled", num_negatives=stage1.get("num_negatives", SAMPLED_NEGATIVES))
        changes.append(f"Stage I: sampled softmax ({stage1['num_negatives']} negatives)")
    if profile.stage1 and "distillation_negatives" not in stage2:  # no Stage I: no distillation either
        stage2["distillation_negatives"] = SAMPLED_NEGATIVES
        changes.append(f"Stage II distillation: {SAMPLED_NEGATIVES} sampled negatives")
    return replace(profile, stage1_config=stage1, stage2_config=stage2), changes


MODEL_FAMILIES = ("unger", "mscgrec")
