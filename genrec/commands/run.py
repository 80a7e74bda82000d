"""``genrec run``: the main job, end to end.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.run` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import DATA_SOURCES, HelpFormatter, add_report_to_flag


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        formatter_class=HelpFormatter,
        help="the main job: prepare -> embed -> stage I -> quantize -> stage II -> test metrics",
        description="""The main job on one dataset, end to end, into one run folder.

prepare the dataset -> embed its items (text encoder) -> UNGER Stage I (integrated semantic +
collaborative embeddings) -> residual k-means semantic IDs -> UNGER Stage II (generative recommender
with distillation) -> test evaluation (constrained beam search over the full corpus) -> transition
prior (profiles default and quick: the training rows' first-order transitions mixed into the
model's ranking, (1 - w) p_model + w p_transition, w and the counts' smoothing c in count / (n + c)
chosen on validation; run.json keeps the model's own test metrics beside the mixture's as
model_test_metrics) -> export.
Run the same command again to resume an interrupted run: a finished stage is reused, an interrupted
training resumes, but only while the stage's fingerprint (OUT/fingerprints/) matches today's settings
and inputs; a stage made with other ones is recomputed, with every stage after it (the log names why).

Reads:  --dataset (default: MovieLens-100K shipped in the recbole wheel, no network).
Writes: OUT/ = save_pretrained folder of the final model (config, model.safetensors, tokenizer, code
        table, README.md model card with the metrics), loadable with AutoModel/AutoTokenizer after
        `import genrec`; OUT/data, OUT/embeddings, OUT/stage1, OUT/semantic_ids, OUT/stage2 (stages),
        OUT/fingerprints, OUT/run.json.
Time:   ML-100K on 2 CPU cores: --profile default 16 min (Stage II 6 epochs), --profile long
        about 40 min (16 epochs), --quick 1-2 min (a smoke run: its metrics mean nothing); --profile
        paper (20k Stage II steps) is for a GPU. docs/main-job.md has the measured times.
--profile tiger runs TIGER instead (the field's reference generative recommender, for side-by-side
figures): the text embeddings -> RQ-VAE codes (3 x 256 + collision level) -> the default's encoder-decoder
trained with plain cross-entropy, no Stage I, distillation or transition prior; --profile tiger-paper is
TIGER's own network (one encoder position per code) at 20k steps, for a GPU (docs/quality.md, "TIGER").""",
    )
    p.add_argument(
        "--dataset",
        default="ml-100k",
        help="ml-100k, or a folder in the S3-Rec layout (s3rec), or a dataset in genrec's layout (folder / Hub id)",
    )
    p.add_argument("--source", choices=DATA_SOURCES, default=None, help="how to read --dataset (default: inferred)")
    p.add_argument("--out", type=Path, default=Path("runs/ml-100k"), help="run folder")
    p.add_argument(
        "--profile", choices=("default", "long", "quick", "paper", "tiger", "tiger-paper"), default="default",
        help="training budget: default (ML-100K under 20 min on 2 cores), long (Stage II 16 epochs instead of 6), "
        "quick (a smoke run, its metrics mean nothing), paper (the UNGER paper's recipe, for a GPU), tiger "
        "(the TIGER recipe: RQ-VAE codes of the text embeddings, no Stage I, distillation or prior), tiger-paper "
        "(TIGER's own network at the paper profile's length, for a GPU)",
    )
    p.add_argument("--quick", action="store_const", const="quick", dest="profile", help="same as --profile quick")
    p.add_argument("--encoder", default=None,
                   help="semantic encoder: HF name or folder, a .gguf file, or smollm2-135m (the packaged "
                        "SmolLM2-135M LLaMA, mean pooling) (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--max-history", type=int, default=20, help="most recent history items kept per example")
    p.add_argument(
        "--levels", type=int, default=None,
        help="semantic-ID levels before the collision level (default: the profile's, 3; paper 4)",
    )
    p.add_argument("--codebook-size", type=int, default=256, help="codes per level")
    p.add_argument(
        "--seed", type=int, default=2024,
        help="one seed for every stage (initialisations, data order, k-means, validation samples)",
    )
    p.add_argument("--overwrite", action="store_true", help="recompute every stage even if OUT has it")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --dataset")
    p.add_argument(
        "--model", choices=("unger", "mscgrec"), default="unger",
        help="model family: UNGER (unified codes) or MSCGRec (per-modality codes: collaborative + text + --modality)",
    )
    p.add_argument(
        "--modality", action="append", default=[], metavar="NAME=FILE",
        help="mscgrec: an extra modality from a per-item ItemEmbeddings .safetensors file keyed by the dataset's "
             "item ids (items it lacks miss the modality); repeatable",
    )
    p.add_argument("--decode-modality", default="collaborative", help="mscgrec: the modality the model generates")
    p.add_argument(
        "--mask-probability", type=float, default=0.0,
        help="mscgrec: chance that one modality of a history item is masked in training (paper: 0.75)",
    )
    p.add_argument(
        "--history-feed", choices=("item_sum", "stacked"), default="item_sum",
        help="mscgrec: one encoder position per history item (sum of its codes), or the paper's stacked feed "
             "(every code of every modality a position, relative position biases; several times the cost)",
    )
    p.add_argument(
        "--stage2-steps", type=int, default=None,
        help="Stage II optimiser steps instead of the profile's length (comparisons at equal steps)",
    )
    p.add_argument(
        "--until", choices=("embed", "stage1", "quantize"), default=None,  # = jobs.profiles.STOP_STAGES (lazy import)
        help="stop after this stage (embed: data + text embeddings; stage1: + integrated embeddings; quantize: "
             "+ the code table), e.g. for ablations or the Stage I retriever; rerun without it to go on",
    )
    p.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
        help="Stage I and II training precision on a GPU (bf16 on Ampere or newer); recorded in their fingerprints",
    )
    add_report_to_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import run as run_job

    print(run_job(
        args.dataset, args.out, source=args.source, encoder=args.encoder, max_history=args.max_history,
        levels=args.levels, codebook_size=args.codebook_size, seed=args.seed, profile=args.profile,
        overwrite=args.overwrite, revision=args.revision, model=args.model, modality=args.modality,
        decode_modality=args.decode_modality, mask_probability=args.mask_probability,
        stage2_steps=args.stage2_steps, history_feed=args.history_feed, until=args.until,
        mixed_precision=args.mixed_precision, report_to=args.report_to,
    ))
    return 0
