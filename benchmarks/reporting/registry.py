"""The registry: every row of RESULTS.md, in declaration order."""

from __future__ import annotations

import json
from dataclasses import replace

from genrec.trainers.jobs.profiles import profile_with_changes

from .core import Row
from .perf import perf_rows
from .quality import (
    UNGER_TABLE_BEAUTY,
    beauty_code_source_rows,
    code_ablation_rows,
    genrec_run_row,
    markov_row,
    published_row,
    recbole_row,
    stage1_retriever_row,
    stage2_ablation_rows,
    stage2_variant_row,
    tiger_published_row,
)

# What the paper-profile runs cost on the 2-core CPU machine (docs/quality.md, "The `paper` profile"): more than
# one 3-hour session, and run folders do not outlive a session's machine, so they wait for a GPU or a longer one.
PAPER_PROFILE_COST = {
    "ml-100k": "measured 2026-12-02: Stage II 0.62 s/step at 1 thread beside another job (~3.5 h), 0.33 s/step "
               "at 2 threads alone: ~2.2 h in all, so start it first in a session, OMP_NUM_THREADS=2, nothing beside",
    "beauty": "estimated ~3.5-4 h on 2 CPU cores (docs/quality.md); a GPU run is well under an hour",
}


# the default profile's Stage II network of 2026-12-06 (profiles.py; dropout 0.1, today 0), the control of the
# candidates below, as stage2_variants.py's --config takes it
_DEFAULT_STAGE2 = {"history_mode": "per_item", "constrained_training": True, "history_item_embedding": "integrated",
                   "encoder_layers": 4, "dropout": 0.1, "distillation_weight": 0.1}
# and its training arguments (stage2_variants.py's --train)
_DEFAULT_TRAIN = {"epochs": 6, "lr_schedule": "cosine"}
_DROP0 = {**_DEFAULT_STAGE2, "dropout": 0.0}  # today's default Stage II (no dropout since 2026-12-07)
#: (variant name, what it changes, its --config, its --train, further arguments): the Beauty candidates of
#: docs/quality.md
BEAUTY_CANDIDATES = (
    ("pop", "the collision level numbers each group's items by training count", _DEFAULT_STAGE2, _DEFAULT_TRAIN,
     " --collision-order popularity"),
    ("reassign", "colliding items moved to free last-level centroids (no collision level)", _DEFAULT_STAGE2,
     _DEFAULT_TRAIN, " --resolve-collisions reassign"),
    ("dec8", "8 decoder layers instead of 4 (the paper's Figure 7: gains up to 8)",
     {**_DEFAULT_STAGE2, "decoder_layers": 8}, _DEFAULT_TRAIN, ""),
    ("ls01", "label smoothing 0.1 over the allowed code tokens", {**_DEFAULT_STAGE2, "label_smoothing": 0.1},
     _DEFAULT_TRAIN, ""),
    ("lr2e3", "peak learning rate 2e-3 instead of 1e-3", _DEFAULT_STAGE2, {**_DEFAULT_TRAIN, "lr": 0.002}, ""),
    ("bs128", "batches of 128 instead of 256 (twice the steps in the same 6 epochs)", _DEFAULT_STAGE2,
     {**_DEFAULT_TRAIN, "batch_size": 128}, ""),
    ("drop0", "no dropout instead of 0.1", _DROP0, _DEFAULT_TRAIN, ""),
    # on top of no dropout (today's default): more updates, by length or by batch size
    ("drop0-e16", "no dropout and 16 epochs (the `long` profile's length; 8,224 steps)",
     _DROP0, {**_DEFAULT_TRAIN, "epochs": 16}, ""),
    ("drop0-bs128", "no dropout and batches of 128 (6,162 steps in the default's 6 epochs)",
     _DROP0, {**_DEFAULT_TRAIN, "batch_size": 128}, ""),
    # on top of no dropout: capacity, by depth (the paper's Figure 7) or by width (its Figure 9)
    ("drop0-dec8", "no dropout and 8 decoder layers instead of 4",
     {**_DROP0, "decoder_layers": 8}, _DEFAULT_TRAIN, ""),
    ("drop0-wide", "no dropout and twice the width (d_model 192, feed-forward 512; 6 heads of 32)",
     {**_DROP0, "d_model": 192, "ffn_dim": 512}, _DEFAULT_TRAIN, ""),
)

#: (variant name, what it changes, its --config, its --train, further arguments): candidates on top of today's default
#: Stage II, on the Stage I of the default's end-to-end Beauty run of 2026-12-07 (runs/beauty-z; its own Stage II,
#: the default's, is the control)
BEAUTY_Z_CANDIDATES = (
    ("drop0-kd1", "no dropout and distillation weight λ = 1 (the paper's) instead of 0.1",
     {**_DROP0, "distillation_weight": 1.0}, _DEFAULT_TRAIN, ""),
    ("drop0-kd0", "no dropout and no distillation (λ = 0) instead of λ = 0.1",
     {**_DROP0, "distillation_weight": 0.0}, _DEFAULT_TRAIN, ""),
    ("drop0-kd003", "no dropout and distillation weight λ = 0.03 instead of 0.1",
     {**_DROP0, "distillation_weight": 0.03}, _DEFAULT_TRAIN, ""),
    ("drop0-l4", "no dropout and 4 code levels (the paper's cluster depth, Table 4) instead of 3",
     _DROP0, _DEFAULT_TRAIN, " --levels 4"),
    ("drop0-lr2e3", "no dropout and peak learning rate 2e-3 instead of 1e-3",
     _DROP0, {**_DEFAULT_TRAIN, "lr": 0.002}, ""),
    # the learning rate one step further (2e-3, today's default since the evening of 2026-12-07, moved Recall)
    ("drop0-lr3e3", "no dropout and peak learning rate 3e-3 instead of 1e-3",
     _DROP0, {**_DEFAULT_TRAIN, "lr": 0.003}, ""),
    # today's default Stage II (no dropout, 2e-3) at the `long` profile's length: does length still add?
    ("drop0-lr2e3-e16", "no dropout, peak learning rate 2e-3 and 16 epochs (today's default at `long`'s length)",
     _DROP0, {**_DEFAULT_TRAIN, "epochs": 16, "lr": 0.002}, ""),
)

#: (variant name, what it changes, its --config, its --train): candidates on today's default Stage II (no dropout, peak
#: learning rate 2e-3) with the Stage I, codes and seed 2024 of runs/beauty-z (ninth session; the control is the
#: default-seeds row's seed 2024): what makes the model memorise transitions seen once or twice in training
_DEFAULT_LR = {**_DEFAULT_TRAIN, "lr": 0.002}
BEAUTY_MEMORY_CANDIDATES = (
    ("crop1-e3", "one history-cropped copy of every training row (its last 1..all-but-one items, same target), "
     "3 epochs over the doubled rows (2,820 steps against 3,084)", _DROP0, {**_DEFAULT_LR, "epochs": 3, "crop_copies": 1.0}),
    ("crop1-last-e3", "one copy of every training row that keeps only its last item (same target), 3 epochs over the "
     "doubled rows", _DROP0, {**_DEFAULT_LR, "epochs": 3, "crop_copies": 1.0, "crop_max_items": 1}),
    ("hid-id", "a learned per-item history embedding instead of the integrated one",
     {**_DROP0, "history_item_embedding": "id"}, _DEFAULT_LR),
    ("hid-integrated-id", "a learned per-item history embedding on top of the integrated one",
     {**_DROP0, "history_item_embedding": "integrated+id"}, _DEFAULT_LR),
)

#: (variant name, what it changes, its --config): the Beauty candidates re-measured on ML-100K's three default runs
ML100K_CANDIDATES = (
    ("dec8", "8 decoder layers instead of 4, the default's Stage II otherwise", {**_DEFAULT_STAGE2, "decoder_layers": 8}),
    ("drop0", "no dropout instead of 0.1, the default's Stage II otherwise", _DROP0),
)



def _candidate_command(run: str, work_dir: str, name: str, config: dict, train: dict, extra: str = "", *,
                       given_codes: bool = False) -> str:
    """The ``stage2_variants.py`` command of one candidate on the Stage I and data of the ``genrec run`` folder
    ``run`` (``given_codes``: also its codes and seed, for per-seed rows whose ``run`` holds ``{seed}``)."""
    codes = f" --semantic-ids {run}/semantic_ids" if given_codes else ""
    seed = " --seed {seed}" if given_codes else ""
    return (f"python benchmarks/stage2_variants.py --data {run}/data --integrated "
            f"{run}/stage1/integrated_embeddings.safetensors{codes} --work-dir {work_dir} --name {name}{seed} "
            f"--train '{json.dumps(train)}' --warmup-steps 300 --eval-every 1000 --max-eval-users 5000 --threads 1 "
            f"--config '{json.dumps(config)}'{extra}")


def _profile_variant_rows(data: str, base: str, changes: dict, *, out: str, reuse: str, label: str,
                          label_text: str, note: str) -> list[Row]:
    """The two ``genrec_run_row`` rows (with the prior, the model alone) of a ``benchmarks/profile_variant.py`` run
    of ``base`` with ``changes``; the run records its changed profile's name, which the rows expect."""
    dataset = "" if data == "ml-100k" else " --dataset ../shared/data/amazon-beauty-2014"
    produce = (f"python benchmarks/profile_variant.py{dataset} --set '{json.dumps(changes)}' --out {out} "
               f"--reuse-inputs {reuse}  # {note}")
    name = profile_with_changes(base, changes).name
    return [replace(row, options={**row.options, "profile": name})
            for row in (genrec_run_row(data, base, model_alone=alone, label=label, label_text=label_text,
                                       source=f"{out}/run.json", produce=produce) for alone in (False, True))]


def _default_rows(*, ml_sources: str, ml_produce: str, beauty_source: str, beauty_produce: str, label: str = "",
                  label_text: str = "") -> list[Row]:
    """One version of the `default` profile: its ML-100K rows (seeds 2024-2026; ``ml_sources`` holds ``{seed}``)
    and its Beauty rows, each with the prior and the model alone (``label``: an earlier version)."""
    rows = [genrec_run_row("ml-100k", "default", model_alone=alone, label=label, label_text=label_text,
                           seed_sources={s: ml_sources.format(seed=s) for s in (2024, 2025, 2026)},
                           produce=ml_produce) for alone in (False, True)]
    return rows + [genrec_run_row("beauty", "default", model_alone=alone, label=label, label_text=label_text,
                                  source=beauty_source, produce=beauty_produce) for alone in (False, True)]


def default_rows() -> list[Row]:
    """The registry: every row of RESULTS.md, in declaration order."""
    rows: list[Row] = []
    for data in ("ml-100k", "beauty"):
        rows += [markov_row(data, "pop"), markov_row(data, "markov")]
    rows += [
        recbole_row("ml-100k", "SASRec", seeds=(2024, 2025, 2026), max_minutes=30),
        recbole_row("ml-100k", "GRU4Rec", max_minutes=20),
        recbole_row("ml-100k", "BERT4Rec", max_minutes=30),
        recbole_row("ml-100k", "Pop"),
    ]
    rows += [recbole_row("beauty", m, max_minutes=120 if m != "Pop" else None)
             for m in ("SASRec", "GRU4Rec", "BERT4Rec", "Pop")]
    # SASRec on Beauty until RecBole's early stopping fires (the 120-min row stopped at 25 epochs, still improving):
    # a GPU run (benchmarks/quality_gpu.sh sasrec), or hours of a quiet CPU
    rows.append(recbole_row("beauty", "SASRec", label="converged", use_gpu=True))
    rows += [
        # the default since the evening of 2026-12-07 (seventh session: Stage II's peak learning rate 2e-3): each
        # run folder of the version below (the same data, embeddings, Stage I and codes: same fingerprints) resumed
        # by the genrec that changed the rate, which retrained Stage II and recomputed the prior; at 1 thread, the
        # ML-100K seeds one after the other beside the Beauty run
        *_default_rows(
            ml_sources="runs/z{seed}/run.json",
            ml_produce="genrec run --seed {seed} --out runs/z{seed}  # OMP_NUM_THREADS=1; resumes the run of the "
                       "2026-12-07-lr1e3 row (Stage II and the prior recomputed)",
            beauty_source="runs/beauty-z/run.json",
            beauty_produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --seed 2024 --out runs/beauty-z  "
                           "# OMP_NUM_THREADS=1; resumes the run of the 2026-12-07-lr1e3 row (Stage II and the prior "
                           "recomputed)"),
        # the default of 2026-12-07 with the paper's peak learning rate 1e-3 (sixth session: Stage II without
        # dropout, the prior's smoothing chosen on validation): on ML-100K each seed end to end from an empty folder
        # at both cores, one after the other; on Beauty the fifth session's end-to-end run resumed by the genrec
        # that chose the prior's smoothing, which recomputed only the transition-prior stage. Each run folder kept
        # as a copy (runs/zlr1e3-{seed}, runs/beauty-z-lr1e3) before the seventh session resumed it
        *_default_rows(
            label="2026-12-07-lr1e3", label_text="of 2026-12-07 with Stage II's peak learning rate 1e-3",
            ml_sources="runs/zlr1e3-{seed}/run.json",
            ml_produce="genrec run --seed {seed} --out runs/z{seed}  # genrec 9e96d57; end to end, 2 idle cores; "
                       "copied to runs/zlr1e3-{seed}",
            beauty_source="runs/beauty-z-lr1e3/run.json",
            beauty_produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --seed 2024 --out runs/beauty-z  "
                           "# genrec 9e96d57; OMP_NUM_THREADS=1, nice -n 19; end to end from an empty folder, then "
                           "resumed by the genrec that chose the prior's smoothing; copied to runs/beauty-z-lr1e3"),
        # the default of 2026-12-07 before the smoothing (the plain prior): on ML-100K each run folder a copy of the
        # 2026-12-06 run of its seed (runs/d{seed}) whose data, embeddings, Stage I and codes the run reused (same
        # fingerprints; that Stage I trained on an AMD EPYC), Stage II and the prior retrained, each at 1 thread
        # beside two other jobs; on Beauty the end-to-end run before the resume (its run.json kept aside)
        *(genrec_run_row("ml-100k", "default", model_alone=alone, label="2026-12-07-plain",
                         label_text="of 2026-12-07 before the smoothing (the plain prior)",
                         seed_sources={s: f"runs/zplain{s}/run.json" for s in (2024, 2025, 2026)},
                         produce="genrec run --seed {seed} --out runs/zplain{seed}  # genrec 048e850; OMP_NUM_THREADS=1; "
                                 "runs/zplain{seed} a copy of runs/d{seed}")
          for alone in (False, True)),
        genrec_run_row("beauty", "default", label="2026-12-07-plain",
                       label_text="of 2026-12-07 before the smoothing (the plain prior)",
                       source="runs/beauty-z-run-plain.json",
                       produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --seed 2024 --out "
                               "runs/beauty-z  # genrec 048e850; OMP_NUM_THREADS=1, nice -n 19; end to end from an "
                               "empty folder; its run.json kept as runs/beauty-z-run-plain.json"),
        # the default of 2026-12-06 (Stage II 6 epochs, dropout 0.1): on ML-100K seeds 2024 and 2025 at 1 thread
        # beside each other, seed 2026 alone at both cores; on Beauty seed 2024 at 1 thread beside a Stage II variant
        # (data and text embeddings copied from runs/beauty-tiger): 6 epochs are 3,084 Stage II steps there, 38 % of
        # the 16-epoch recipe's
        *_default_rows(
            label="2026-12-06", label_text="of 2026-12-06 (Stage II dropout 0.1)",
            ml_sources="runs/d{seed}/run.json",
            ml_produce="genrec run --seed {seed} --out runs/d{seed}  # 2024, 2025: OMP_NUM_THREADS=1",
            beauty_source="runs/beauty-def/run.json",
            beauty_produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --out runs/beauty-def  "
                           "# OMP_NUM_THREADS=1"),
        # TIGER (`--profile tiger`: RQ-VAE codes of the text embeddings, no Stage I, distillation or prior), on the
        # default's prepared data and text embeddings (copied from runs/d{seed}), each seed at 1 thread
        genrec_run_row("ml-100k", "tiger", seed_sources={s: f"runs/t{s}/run.json" for s in (2024, 2025, 2026)},
                       produce="genrec run --profile tiger --seed {seed} --out runs/t{seed}  # OMP_NUM_THREADS=1"),
        # TIGER's own network (flattened code history, width 128, 20k steps) on a GPU: benchmarks/quality_gpu.sh tiger
        replace(genrec_run_row("beauty", "tiger-paper", source="runs/beauty-tiger-paper/run.json",
                               produce="bash benchmarks/quality_gpu.sh tiger  # on a GPU"),
                cost="a GPU: 20k flattened steps of TIGER's network; on this CPU 6x a default step (5.4 s), ~30 h"),
        genrec_run_row("beauty", "tiger", source="runs/beauty-tiger/run.json",
                       produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --profile tiger "
                               "--out runs/beauty-tiger  # OMP_NUM_THREADS=1"),
        # the default with the packaged SmolLM2-135M (a LLaMA) as the text encoder instead of all-MiniLM-L6-v2,
        # seed 2025 at 1 thread as runs/d2025 (equal Stage II steps; docs/quality.md pairs the two)
        *(genrec_run_row("ml-100k", "default", model_alone=alone, label="smollm2-encoder",
                         label_text="with the SmolLM2-135M text encoder", source="runs/e2025/run.json",
                         produce="genrec run --seed 2025 --encoder smollm2-135m --out runs/e2025  # OMP_NUM_THREADS=1")
          for alone in (False, True)),
        # the default with Stage I's epoch cap raised from 8 to 30 (patience 2 still decides): on Beauty the 8-epoch
        # Stage I stops at its cap with the best validation at the last step. The prepared data and text embeddings
        # copied from runs/beauty-z; every later stage computed anew, at 1 thread beside a Stage II variant
        *_profile_variant_rows("beauty", "default", {"stage1_epochs": 30}, out="runs/beauty-s1e30",
                               reuse="runs/beauty-z", label="stage1-e30",
                               label_text="with Stage I's epoch cap 30 instead of 8", note="OMP_NUM_THREADS=1"),
        # the default of 2026-12-02 (Stage II 16 epochs; `--profile long` since 2026-12-06), kept beside it
        *(genrec_run_row("ml-100k", "default", model_alone=alone, label="2026-12-02",
                         label_text="of 2026-12-02 (Stage II 16 epochs, today's `long`)",
                         seed_sources={s: f"runs/ml-100k-s{s}/run.json" for s in (2024, 2025, 2026)},
                         produce="genrec run --dataset ml-100k --seed {seed} --out runs/ml-100k-s{seed}")
          for alone in (False, True)),
        # the default profile of 2026-12-01 (Stage II with 1 encoder layer, no dropout, λ = 1), kept beside the
        # current one (4 encoder layers, dropout 0.1, λ = 0.1)
        *(genrec_run_row("ml-100k", "default", model_alone=alone, label="2026-12-01",
                         label_text="of 2026-12-01 (1 encoder layer, λ = 1)",
                         seed_sources={s: f"runs/ml-100k-s{s}-2026-12-01/run.json" for s in (2024, 2025, 2026)},
                         produce="genrec run --dataset ml-100k --seed {seed} --out runs/ml-100k-s{seed}-2026-12-01  "
                                 "# with genrec at commit 5cb3640")
          for alone in (False, True)),
        *(genrec_run_row("beauty", "default", source="runs/beauty-2026-12-01/run.json", model_alone=alone,
                         label="2026-12-01", label_text="of 2026-12-01 (1 encoder layer, λ = 1)",
                         produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --out "
                                 "runs/beauty-2026-12-01  # with genrec at commit 5cb3640")
          for alone in (False, True)),
        replace(genrec_run_row("ml-100k", "paper", source="runs/ml-100k-paper/run.json",
                               produce="genrec run --dataset ml-100k --profile paper --out runs/ml-100k-paper"),
                cost=PAPER_PROFILE_COST["ml-100k"]),
        *(genrec_run_row("beauty", "default", source="runs/beauty/run.json", model_alone=alone, label="2026-12-02",
                         label_text="of 2026-12-02 (Stage II 16 epochs, today's `long`)",
                         produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --out runs/beauty")
          for alone in (False, True)),
        replace(genrec_run_row("beauty", "paper", source="runs/beauty-paper/run.json",
                               produce="genrec run --dataset ../shared/data/amazon-beauty-2014 --profile paper "
                                       "--out runs/beauty-paper"),
                cost=PAPER_PROFILE_COST["beauty"]),
        # issue 33's training candidates: the default's Stage II (6 epochs) with one change each, on the Stage I and
        # data of runs/beauty-def (whose own Stage II is the control), each at 1 thread beside another job
        *(stage2_variant_row("beauty", name, source=f"runs/s2v/{name}.json", what=what,
                             produce=_candidate_command("runs/beauty-def", "runs/s2v", name, config, train, extra))
          for name, what, config, train, extra in BEAUTY_CANDIDATES),
        # on top of no dropout: the paper's distillation weight, on the Stage I of the default's end-to-end Beauty
        # run of 2026-12-07 (runs/beauty-z; its own Stage II, today's default, the control)
        *(stage2_variant_row("beauty", name, source=f"runs/s2v/{name}.json", what=what,
                             produce=_candidate_command("runs/beauty-z", "runs/s2v", name, config, train, extra))
          for name, what, config, train, extra in BEAUTY_Z_CANDIDATES),
        # today's default Stage II retrained with two more seeds (initialisation, data order, validation sample) on
        # the Stage I and codes of runs/beauty-z: how far a retrain alone moves Beauty's test figures. Seed 2024's is
        # the drop0-lr2e3 candidate (codes quantized from the same embeddings with seed 2024; its ranks are
        # byte-identical to the default's Stage II)
        stage2_variant_row(
            "beauty", "default-seeds", what="today's default Stage II, seeds 2024-2026 on one Stage I and one code table",
            seed_sources={2024: "runs/s2v/drop0-lr2e3.json", 2025: "runs/s2v-seeds/default-s2025.json",
                          2026: "runs/s2v-seeds/default-s2026.json"},
            produce=_candidate_command("runs/beauty-z", "runs/s2v-seeds", "default-s{seed}", _DROP0,
                                       {**_DEFAULT_TRAIN, "lr": 0.002}, given_codes=True)),
        # and at the paper's peak learning rate 1e-3 (the default's until the seventh session): is 2e-3's gain larger
        # than a retrain? Seed 2024's run is the row beauty-genrec-default-2026-12-07-lr1e3-model-alone
        stage2_variant_row(
            "beauty", "lr1e3-seeds", what="the default's Stage II at the paper's peak learning rate 1e-3, seeds 2025 and "
            "2026 on the Stage I and codes of runs/beauty-z (seed 2024: the default of 2026-12-07 at 1e-3)",
            seed_sources={2025: "runs/s2v-seeds/lr1e3-s2025.json", 2026: "runs/s2v-seeds/lr1e3-s2026.json"},
            produce=_candidate_command("runs/beauty-z", "runs/s2v-seeds", "lr1e3-s{seed}", _DROP0, _DEFAULT_TRAIN,
                                       given_codes=True)),
        # what makes the model memorise rare transitions (ninth session), on the default's Stage II of runs/beauty-z
        *(stage2_variant_row("beauty", name, source=f"runs/s2v-crop/{name}.json", what=what,
                             produce=_candidate_command("runs/beauty-z", "runs/s2v-crop", name, config, train,
                                                        given_codes=True).replace("{seed}", "2024"))
          for name, what, config, train in BEAUTY_MEMORY_CANDIDATES),
        # Beauty candidates that moved the model alone, on ML-100K: each seed's default run (runs/d{seed}) gives its
        # Stage I, codes and data, and its own Stage II is the control
        *(stage2_variant_row(
            "ml-100k", name, seed_sources={s: f"runs/m2v-{s}/{name}.json" for s in (2024, 2025, 2026)}, what=what,
            produce=_candidate_command("runs/d{seed}", "runs/m2v-{seed}", name, config, _DEFAULT_TRAIN, given_codes=True))
          for name, what, config in ML100K_CANDIDATES),
        # the Beauty candidate on top of no dropout that moved Recall, on ML-100K: each seed's end-to-end default run of
        # the sixth session (runs/z{seed}) gives its Stage I, codes and data; its own Stage II is the control
        stage2_variant_row(
            "ml-100k", "drop0-lr2e3", seed_sources={s: f"runs/m2v-{s}/drop0-lr2e3.json" for s in (2024, 2025, 2026)},
            what="peak learning rate 2e-3 instead of 1e-3, the default's Stage II of the sixth session otherwise",
            produce=_candidate_command("runs/z{seed}", "runs/m2v-{seed}", "drop0-lr2e3", _DROP0,
                                       {**_DEFAULT_TRAIN, "lr": 0.002}, given_codes=True)),
        # one step further, on the same run folders (whose Stage II, retrained at 2e-3 by the seventh session's
        # genrec run, equals drop0-lr2e3's user for user)
        stage2_variant_row(
            "ml-100k", "drop0-lr3e3", seed_sources={s: f"runs/m2v-{s}/drop0-lr3e3.json" for s in (2024, 2025, 2026)},
            what="peak learning rate 3e-3 instead of 1e-3, the default's Stage II of the sixth session otherwise",
            produce=_candidate_command("runs/z{seed}", "runs/m2v-{seed}", "drop0-lr3e3", _DROP0,
                                       {**_DEFAULT_TRAIN, "lr": 0.003}, given_codes=True)),
        # the Beauty memorisation candidate that memorised most (ninth session), on the same ML-100K run folders; today's
        # default Stage II (2e-3) the control
        stage2_variant_row(
            "ml-100k", "hid-integrated-id",
            seed_sources={s: f"runs/m2v-{s}/hid-integrated-id.json" for s in (2024, 2025, 2026)},
            what="a learned per-item history embedding on top of the integrated one, today's default Stage II otherwise",
            produce=_candidate_command("runs/z{seed}", "runs/m2v-{seed}", "hid-integrated-id",
                                       {**_DROP0, "history_item_embedding": "integrated+id"}, _DEFAULT_LR,
                                       given_codes=True)),
        stage2_variant_row(
            "beauty", "default", source="runs/beauty-var/default.json",
            produce="python benchmarks/stage2_variants.py --data runs/beauty/data --integrated "
                    "runs/beauty/stage1/integrated_embeddings.safetensors --semantic-ids runs/beauty/semantic_ids "
                    "--work-dir runs/beauty-var --name default --max-steps 3000 --threads 1 "
                    "--config '{\"history_mode\": \"per_item\", \"constrained_training\": true}'"),
    ]
    rows += [
        stage1_retriever_row("ml-100k", "runs/ml-100k-s2024"),
        stage1_retriever_row("beauty", "runs/beauty"),
        stage1_retriever_row("beauty", "runs/beauty-s1e30", label="stage1-e30",
                             label_text="Stage I to convergence (epoch cap 30: 12 epochs, the best at 10)"),
    ]
    rows += stage2_ablation_rows()
    rows += code_ablation_rows()
    rows += beauty_code_source_rows()
    rows += [published_row(name, values) for name, values in UNGER_TABLE_BEAUTY.items()]
    rows.append(tiger_published_row())
    rows += perf_rows()  # the Speed and Memory and storage sections
    return rows


ROWS = default_rows()
