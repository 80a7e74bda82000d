"""``genrec`` subcommands that train, evaluate, serve and publish models (thin wrappers, see ``genrec.cli``).

Each ``_add_*`` registers one verb; each ``_run_*`` calls one library function and prints what it wrote.
Heavy imports stay inside the handlers so that ``genrec --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from genrec.trainers.stages import stage2_defaults


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps hand-made line breaks in descriptions and shows defaults."""


def _json_object(text: str) -> dict[str, Any]:
    """A ``--config '{...}'`` value: a JSON object (never evaluated as code)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------- stage1


def add_stage1(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stage1",
        formatter_class=_Formatter,
        help="UNGER Stage I: integrated semantic + collaborative item embeddings",
        description="""Train UNGER's Stage I fusion model (DIN over item ids + AdaLN-adapted text embeddings,
InfoNCE alignment, next-item prediction) and export the integrated item embeddings.

Reads:  --data (prepared dataset), --embeddings (semantic item embeddings from `genrec embed`).
Writes: OUT/integrated_embeddings.safetensors (-> `genrec quantize`), OUT/best/ (model), OUT/checkpoints/
        (resume after interruption: run the same command again), OUT/stage1_result.json.
Time:   ML-100K: a few minutes; Beauty: under 20 minutes on 2 CPU cores (early stopping).""",
    )
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--embeddings", required=True, type=Path, help="semantic ItemEmbeddings .safetensors")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mode", choices=("unger", "semantic_only", "collaborative_only", "concat"), default="unger")
    p.add_argument("--fusion", choices=("sum", "gate", "mlp"), default=None, help="default: the config's")
    p.add_argument("--encoder", choices=("din", "sasrec"), default="din", help="collaborative encoder")
    p.add_argument("--config", type=_json_object, default={}, help="JSON object of UngerFusionConfig overrides")
    p.add_argument("--epochs", type=int, default=None, help="default 20 (with early stopping)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--patience", type=int, default=5, help="evaluations without a better validation Recall@10")
    p.add_argument("--time-budget-min", type=float, default=None, help="stop (resumably) after this long")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--restart", action="store_true", help="delete checkpoints in OUT and start over")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    p.set_defaults(handler=run_stage1)


def run_stage1(args: argparse.Namespace) -> int:
    from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
    from genrec.trainers.stages.stage1 import train_stage1

    values = {"mode": args.mode, "collaborative_encoder": args.encoder, **args.config}
    if args.fusion:
        values["fusion"] = args.fusion
    result = train_stage1(
        args.data,
        args.embeddings,
        args.out,
        config=UngerFusionConfig(**values),
        epochs=args.epochs,
        max_steps=args.max_steps,
        patience=args.patience,
        time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        resume=not args.restart,
        data_revision=args.data_revision,
    )
    print(
        f"stage1: {result.global_step} steps in {result.wall_time_s:.0f} s ({result.stop_reason}); best step "
        f"{result.best_step}: validation Recall@10 {result.validation_recall_at_10:.4f}, "
        f"NDCG@10 {result.validation_ndcg_at_10:.4f} -> {result.embeddings_path}"
    )
    return 0


# ---------------------------------------------------------------------------------------------- balance


def add_balance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "balance",
        formatter_class=_Formatter,
        help="modality balance of fused item embeddings (UNGER §4.3)",
        description="""How much of the fused embeddings' neighbourhood structure comes from the semantic vs the
collaborative embeddings (relative similarity from KL divergences between similarity distributions).

Reads:  --fused, --semantic, --collaborative (.safetensors ItemEmbeddings; rows matched by item id).
Writes: stdout (JSON); --plot PNG (2-D projection of the three sets, k-means colours; needs matplotlib).
Time:   seconds (2,000 sampled items).""",
    )
    p.add_argument("--fused", required=True, type=Path)
    p.add_argument("--semantic", required=True, type=Path)
    p.add_argument("--collaborative", required=True, type=Path)
    p.add_argument("--sample", type=int, default=2000)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--plot", type=Path, default=None, help="write the figure to this PNG")
    p.set_defaults(handler=run_balance)


def run_balance(args: argparse.Namespace) -> int:
    from genrec.data_scripts.embeddings import ItemEmbeddings
    from genrec.trainers.analysis.modality_balance import modality_balance, plot_embeddings

    fused = ItemEmbeddings.load(args.fused)
    semantic = ItemEmbeddings.load(args.semantic).reorder(fused.item_ids)
    collaborative = ItemEmbeddings.load(args.collaborative).reorder(fused.item_ids)
    balance = modality_balance(
        fused.embeddings, semantic.embeddings, collaborative.embeddings, sample=args.sample, seed=args.seed
    )
    if args.plot:
        balance["figure"] = str(
            plot_embeddings(
                fused.embeddings, semantic.embeddings, collaborative.embeddings, args.plot,
                sample=args.sample, seed=args.seed, balance=balance,
            )
        )
    print(json.dumps(balance, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- train


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        formatter_class=_Formatter,
        help="UNGER Stage II: the generative recommender over semantic IDs",
        description="""Train UNGER's encoder-decoder on the users' histories as semantic-ID codes, with the
intra-modality distillation loss when Stage I's integrated embeddings are given; validate by constrained
beam search, keep the best model, report its test metrics.

Reads:  --data (prepared dataset), --tokenizer (OUT/tokenizer of `genrec quantize`),
        --integrated-embeddings (Stage I export, optional: enables distillation).
Writes: OUT/best/ (model + tokenizer, loadable with AutoModel / AutoTokenizer), OUT/checkpoints/ (resume:
        run the same command again), OUT/stage2_result.json (validation + test metrics).
Time:   ~0.13 s (per_item, default) / ~0.35 s (flattened) per batch-256 step on 2 CPU cores; ML-100K
        3,000 steps: ~7 min; the paper's 20k steps on Beauty: hours on CPU, minutes on a GPU.""",
    )
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--tokenizer", required=True, help="SemanticIDTokenizer folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--integrated-embeddings", type=Path, default=None)
    p.add_argument("--history-mode", choices=("flattened", "per_item"), default=None, help="default: config's")
    p.add_argument("--constrained-training", action="store_true", help="softmax over valid children only")
    p.add_argument("--distillation-weight", type=float, default=None, help="lambda (default 1)")
    p.add_argument("--config", type=_json_object, default={}, help="JSON object of UngerConfig overrides")
    p.add_argument("--max-steps", type=int, default=stage2_defaults.PAPER_MAX_STEPS)
    p.add_argument("--warmup-steps", type=int, default=stage2_defaults.PAPER_WARMUP_STEPS)
    p.add_argument("--batch-size", type=int, default=stage2_defaults.PAPER_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=stage2_defaults.PAPER_LR)
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default: epoch)")
    p.add_argument("--eval-beams", type=int, default=20)
    p.add_argument("--max-eval-users", type=int, default=None, help="validate on the first N users only")
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--restart", action="store_true", help="delete checkpoints in OUT and start over")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.trainers.evaluation.metrics import format_metrics
    from genrec.trainers.stages.stage2 import train_stage2

    values = dict(args.config)
    if args.history_mode:
        values["history_mode"] = args.history_mode
    if args.constrained_training:
        values["constrained_training"] = True
    if args.distillation_weight is not None:
        values["distillation_weight"] = args.distillation_weight
    result = train_stage2(
        args.data,
        args.tokenizer,
        args.out,
        config=UngerConfig(**values),
        integrated_embeddings=args.integrated_embeddings,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        eval_beams=args.eval_beams,
        max_eval_users=args.max_eval_users,
        patience=args.patience,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        resume=not args.restart,
        data_revision=args.data_revision,
    )
    print(f"stage2: {result.global_step} steps in {result.wall_time_s:.0f} s; best step {result.best_step}")
    print(format_metrics(result.test_metrics, title=f"test ({result.best_model_dir})"))
    return 0


# ---------------------------------------------------------------------------------------------- evaluate


def _load_unger(model_dir: str, revision: str | None = None) -> tuple[Any, Any]:
    """Model + tokenizer of a genrec UNGER folder or Hub repo; ``ValueError``/``OSError`` for anything else.

    The config is read first, so a folder of another model family is refused before its weights load, and
    a local path that does not exist is named as such (instead of being tried as a Hub repo id).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    import genrec  # noqa: F401  (registers the Auto classes)
    from genrec.modeling.configuration_unger import UngerConfig

    path = Path(model_dir).expanduser()
    looks_local = path.is_absolute() or model_dir.startswith((".", "~")) or model_dir.count("/") > 1
    if not path.exists() and looks_local:
        raise FileNotFoundError(f"--model {model_dir}: no such folder")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--model {model_dir}: expected a model folder, got a file")
    config = AutoConfig.from_pretrained(model_dir, revision=revision)
    if not isinstance(config, UngerConfig):
        raise ValueError(
            f"--model {model_dir} is a {config.model_type!r} model, not a genrec UNGER model "
            f"(model_type {UngerConfig.model_type!r}); pass a `genrec run` folder or Stage II's best/ folder"
        )
    return (AutoModel.from_pretrained(model_dir, config=config, revision=revision),
            AutoTokenizer.from_pretrained(model_dir, revision=revision))


def _ttds_folder(model_dir: str, revision: str | None) -> Any:
    """The local folder of a TTDS recommender at ``model_dir`` (folder or Hub id), or None for anything else."""
    from genrec.trainers.ttds.recommender import resolve_recommender_folder

    path = Path(model_dir).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            return None
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            return None
        return path if model_type == "ttds" else None
    if path.exists() or model_dir.count("/") != 1:
        return None
    from transformers import AutoConfig

    import genrec  # noqa: F401  (registers the Auto classes)

    try:
        model_type = AutoConfig.from_pretrained(model_dir, revision=revision).model_type
    except (OSError, ValueError):
        return None  # the UNGER loader reports the problem
    return resolve_recommender_folder(model_dir, revision=revision) if model_type == "ttds" else None


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        formatter_class=_Formatter,
        help="Recall/NDCG/MRR@K of a trained UNGER or TTDS model on a split",
        description="""Evaluate a trained UNGER or TTDS model by constrained beam search over the full item corpus.

Reads:  --model (a run folder or Stage II's best/: model + tokenizer; or a TTDS folder, `genrec finetune`'s
        OUT/final: base by name + adapter + towers + code tables), --data (prepared dataset; its item
        catalogue must be the model's code table, e.g. OUT/data of the same `genrec run`).
Writes: stdout (metric table); --out JSON with every metric (--per-user: and each user's target rank).
Time:   ML-100K test (943 users, 20 beams): seconds to a minute; Beauty (22,363 users): minutes on CPU.""",
    )
    p.add_argument("--model", required=True, help="model folder (or Hub id) with its tokenizer")
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 20], help="cut-offs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    p.add_argument("--per-user", action="store_true",
                   help="also write each user's target rank into --out (benchmarks/paired_compare.py pairs two "
                        "such files: is one model ahead of another beyond the test set's noise?)")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model")
    p.add_argument("--transition-weight", type=float, default=None,
                   help="w of the transition prior mixture (1 - w) p_model + w p_transition; default: the "
                        "model's own (a `genrec run` folder carries the weight chosen on validation); 0: the "
                        "model alone")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.evaluator import check_catalogue, evaluate_model

    if args.per_user and args.out is None:
        raise ValueError("--per-user writes the ranks into the --out JSON; give --out too")
    ttds = _ttds_folder(args.model, args.revision)
    if ttds is not None:
        if args.transition_weight is not None:
            raise ValueError("--transition-weight is for UNGER models; a TTDS model has no transition prior")
        return _evaluate_ttds(args, ttds)
    model, tokenizer = _load_unger(args.model, args.revision)
    if args.transition_weight is not None:
        model.set_transition_weight(args.transition_weight)
    sequences, items = load_genrec_dataset(args.data, revision=args.data_revision)
    check_catalogue(items["item_id"], tokenizer, where=f"dataset {args.data}")
    result = evaluate_model(
        model, tokenizer, sequences, args.split, k_values=args.k, num_beams=args.beams,
        batch_size=args.batch_size, max_users=args.max_users, per_user=args.per_user,
    )
    return _report_evaluation(args, result)


def _report_evaluation(args: argparse.Namespace, result: dict[str, Any]) -> int:
    from genrec.trainers.evaluation.metrics import format_metrics

    print(format_metrics(result["metrics"], title=f"{args.split} ({args.model})"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out)  # never a half-written report
    return 0


def _evaluate_ttds(args: argparse.Namespace, folder: Path) -> int:
    """``genrec evaluate`` of a TTDS folder: the recommender's own full-corpus evaluation on ``--split``."""
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.ttds.recommender import TTDSRecommender

    recommender = TTDSRecommender.from_pretrained(folder)
    sequences, items = load_genrec_dataset(args.data, revision=args.data_revision)
    known = set(recommender.item_table.item_ids)
    unknown = [i for i in items["item_id"] if i not in known]
    if unknown or len(known) != items.num_rows:
        raise ValueError(
            f"dataset {args.data}: its {items.num_rows} items are not the TTDS model's {len(known)} coded items "
            f"(e.g. unknown {unknown[:5]}); evaluate on the dataset the model was trained on"
        )
    metrics = recommender.evaluate(sequences[args.split], ks=tuple(args.k), num_beams=max(args.beams, max(args.k)),
                                   batch_size=min(args.batch_size, 32), max_users=args.max_users,
                                   per_user=args.per_user)
    result = {"model": str(args.model), "split": args.split, "metrics": metrics}
    if args.per_user:
        result["per_user"] = metrics.pop("per_user")
    return _report_evaluation(args, result)


# ---------------------------------------------------------------------------------------------- recommend


def add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        formatter_class=_Formatter,
        help="top-k next items for one history",
        description="""Recommend the next items for a history of item ids (oldest first) with a trained model.

Reads:  --model (UNGER run folder / best/ / Hub id, or a TTDS folder / Hub id), --history item ids.
Writes: stdout (one "item_id<TAB>score" line per recommendation, best first; --json for JSON).
Time:   well under a second per history on CPU.""",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--history", required=True, nargs="+", help="item ids, oldest first")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--beams", type=int, default=None, help="default: k")
    p.add_argument("--on-unknown", choices=("raise", "skip"), default="raise",
                   help="history item ids the model does not know: stop with an error, or leave them out "
                        "(a history with no known item left gets no recommendations)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model")
    p.add_argument("--transition-weight", type=float, default=None,
                   help="w of the transition prior mixture (1 - w) p_model + w p_transition; default: the "
                        "model's own (a `genrec run` folder carries the weight chosen on validation); 0: the "
                        "model alone")
    p.set_defaults(handler=run_recommend)


def run_recommend(args: argparse.Namespace) -> int:
    ttds = _ttds_folder(args.model, args.revision)
    if ttds is not None:
        from genrec.trainers.ttds.recommender import TTDSRecommender

        if args.transition_weight is not None:
            raise ValueError("--transition-weight is for UNGER models; a TTDS model has no transition prior")
        recommender = TTDSRecommender.from_pretrained(ttds)
        (ranked,) = recommender.recommend([args.history], k=args.k, num_beams=args.beams, on_unknown=args.on_unknown)
    else:
        model, tokenizer = _load_unger(args.model, args.revision)
        (ranked,) = model.recommend(
            [args.history], tokenizer, k=args.k, num_beams=args.beams, on_unknown=args.on_unknown,
            transition_weight=args.transition_weight,
        )
    if not ranked:
        raise ValueError(f"none of the history's item ids is known to the model: {args.history}")
    if args.json:
        print(json.dumps([{"item_id": item, "score": score} for item, score in ranked]))
    else:
        for item, score in ranked:
            print(f"{item}\t{score:.4f}")
    return 0


# ---------------------------------------------------------------------------------------------- finetune


def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        formatter_class=_Formatter,
        help="fine-tune a trained UNGER model on a new domain (--from), or a TTDS LLM recommender with LoRA",
        description="""Fine-tune, dispatching on what --from (or --base-model) is:

* --from an UNGER model (a `genrec run` folder or a Hub repo id): transfer it to the new domain --dataset in
  one command. Runs the main job on the new domain (prepare -> embed -> Stage I -> semantic IDs with the
  source's levels, codebook size and collision level) and starts Stage II from the source's transformer and
  code-token rows (the new domain's catalogue: its own codes and Stage-I embeddings). --scratch trains the
  same architecture on the same codes from a random start (the control). See docs/finetune.md.
* --from a TTDS recommender folder (`genrec finetune` output, OUT/final): start from its LoRA adapter, token
  rows and item/user towers, and train on --dataset (the towers give the new items their codes).
* --base-model (or --from) a LLaMA-architecture causal LM (Hub name or folder, e.g.
  meta-llama/Llama-2-7b-hf): TTDS-style LoRA fine-tuning that jointly learns item and user semantic tokens.

Reads:  --from / --base-model (folder or Hub id at --revision), --dataset (prepared folder, Hub id, or
        anything `genrec run --dataset` takes for UNGER).
Writes: UNGER: OUT/ = a run folder (fine-tuned model + tokenizer + card at its root, stages below, run.json
        with the transfer report). TTDS: OUT/final/ (adapter, towers, code tables, model card; the base
        weights are referenced, not copied), OUT/ttds_training.json.
Time:   UNGER on ML-100K (Stage I + 2,000 Stage II steps): ~30 min at 1 thread on a busy 2-core CPU
        (docs/finetune.md). TTDS: a tiny test
        LLaMA on ML-100K: minutes on CPU; a 7B model: GPU hours.""",
    )
    p.add_argument("--dataset", required=True, help="the (new) domain: dataset folder or Hub id (UNGER: also ml-100k)")
    p.add_argument("--from", dest="source", default=None,
                   help="model to start from: UNGER run folder / Hub repo, TTDS folder, or a LLaMA base")
    p.add_argument("--base-model", default=None, help="TTDS: LLaMA-architecture causal LM (Hub name or folder)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --from / --base-model")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --dataset")
    unger = p.add_argument_group("UNGER (--from an UNGER model)")
    unger.add_argument("--profile", choices=("default", "quick"), default="default",
                       help="the main job's profile for Stage I and the Stage II schedule")
    unger.add_argument("--stage2-steps", type=int, default=None, help="Stage II steps (default: the profile's)")
    unger.add_argument("--scratch", action="store_true",
                       help="control: same architecture and codes, random initialisation (no transfer)")
    unger.add_argument("--seed", type=int, default=2024)
    unger.add_argument("--overwrite", action="store_true", help="recompute every stage of OUT")
    ttds = p.add_argument_group("TTDS (--base-model, or --from a TTDS folder / LLaMA model)")
    ttds.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    ttds.add_argument("--config", type=_json_object, default={}, help="JSON object of TTDSConfig overrides")
    ttds.add_argument("--training", type=_json_object, default={}, help="JSON of TTDSTrainingArguments overrides")
    p.set_defaults(handler=run_finetune)


def _source_model_type(source: str, revision: str | None) -> str:
    """``model_type`` of the config at ``source`` (folder or Hub id)."""
    from transformers import AutoConfig

    import genrec  # noqa: F401  (registers the Auto classes)

    path = Path(source).expanduser()
    if not path.exists() and (path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1):
        raise FileNotFoundError(f"--from {source}: no such folder")
    return str(AutoConfig.from_pretrained(source, revision=revision).model_type)


def run_finetune(args: argparse.Namespace) -> int:
    if args.source and args.base_model:
        raise ValueError("give --from or --base-model, not both")
    if not (args.source or args.base_model):
        raise ValueError("give --from (an UNGER model, a TTDS folder or a LLaMA base) or --base-model (TTDS)")
    model_type = "llama-base" if args.base_model else _source_model_type(args.source, args.revision)
    if model_type == "unger":
        from genrec.trainers.evaluation.metrics import format_metrics
        from genrec.trainers.jobs.finetune import finetune_unger

        summary = finetune_unger(
            args.source, args.dataset, args.out, revision=args.revision, profile=args.profile,
            data_revision=args.data_revision, stage2_steps=args.stage2_steps, seed=args.seed, transfer=not args.scratch, overwrite=args.overwrite,
        )
        what = "from scratch (control)" if args.scratch else f"fine-tuned from {args.source}"
        print(format_metrics(summary["test_metrics"], title=f"test metrics ({args.dataset}, {what})"))
        print(f"model: {args.out}")
        return 0
    if args.scratch or args.stage2_steps is not None:
        raise ValueError("--scratch / --stage2-steps apply to UNGER sources only")
    from genrec.trainers.jobs.ttds import run_ttds
    from genrec.trainers.ttds import summarize_metrics

    base = args.base_model
    init_from = None
    if model_type == "ttds":
        init_from, base = args.source, None
    elif args.source:
        base = args.source
    summary = run_ttds(
        args.dataset, base, args.out, dtype=args.dtype, config_overrides=args.config, training=args.training,
        revision=args.revision, data_revision=args.data_revision, init_from=init_from,
    )
    print(json.dumps({split: summarize_metrics(m) for split, m in summary["metrics"].items()}, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- push


def add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        formatter_class=_Formatter,
        help="upload a run folder (model + tokenizer + code table + card) or a dataset folder to the Hub",
        description="""Upload a folder to the Hugging Face Hub (needs network and a token: `hf auth login`;
HF_ENDPOINT selects another Hub-compatible server).

Reads:  FOLDER: a run folder / save_pretrained folder (model repo) or a `genrec prepare` folder (--dataset).
Writes: the Hub repository REPO_ID (created if missing), one commit. Model: the folder's top-level files
        (weights, configs, tokenizer, code table, the remote-code *.py), README.md regenerated from run.json
        for REPO_ID and run.json without local paths; stage folders and checkpoints are not uploaded.
        Dataset: the parquet configs and card; the embeddings/ cache is not uploaded (--with-embeddings);
        the semantic IDs of a model become the `code_table` config (--code-table, or RUN/data of a run).
        MovieLens and Amazon data have their owners' terms (see the dataset card): publish them only where
        those terms allow it.
Time:   the upload (model folders are a few MB).""",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("repo_id")
    p.add_argument("--dataset", action="store_true", help="push a prepared dataset (repo type dataset)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None,
                   help="model: the revision the card's usage snippet pins (e.g. a tag you create next)")
    p.add_argument("--dataset-repo", default=None,
                   help="model: the Hub dataset it was trained on (the card's YAML `datasets`)")
    p.add_argument("--with-embeddings", action="store_true",
                   help="dataset: also upload the embeddings/ cache (semantic embeddings of the items)")
    p.add_argument("--code-table", type=Path, default=None,
                   help="dataset: add this model's semantic IDs as the `code_table` config (a run folder, best/ "
                        "or tokenizer folder with code_table.json); default: the run's own when FOLDER is RUN/data")
    p.add_argument("--no-code-table", action="store_true", help="dataset: never add a `code_table` config")
    p.set_defaults(handler=run_push)


def run_push(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise FileNotFoundError(f"{args.folder} is not a folder")
    if args.dataset:
        from genrec.data_scripts.prepare import push_dataset_folder
        from genrec.trainers.jobs.push import code_table_config_operations, find_run_code_table

        source = None if args.no_code_table else (args.code_table or find_run_code_table(args.folder))
        extra = [] if source is None else code_table_config_operations(args.folder, source, repo_id=args.repo_id)
        if source is not None:
            print(f"adding the code table of {source} as the `code_table` config")
        url = push_dataset_folder(
            args.folder, args.repo_id, private=args.private, include_embeddings=args.with_embeddings,
            extra_operations=extra,
        )
    else:
        if not (args.folder / "config.json").is_file():
            raise FileNotFoundError(f"{args.folder} has no config.json: push a run folder or a best/ folder")
        from genrec.trainers.jobs.push import push_run_folder

        url = push_run_folder(
            args.folder, args.repo_id, private=args.private, revision=args.revision, dataset_repo=args.dataset_repo
        )
    print(url)
    return 0



# ---------------------------------------------------------------------------------------------- shapley


def add_shapley(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shapley",
        formatter_class=_Formatter,
        help="MSCGRec: each modality's Shapley contribution (every subset of history modalities)",
        description="""Evaluate a trained MSCGRec model with every subset of its modalities present in the history
(the others replaced by the model's mask tokens) and attribute each metric to the modalities with exact
Shapley values (MSCGRec paper, §4.3 / Table 3b). Best on a model trained with --mask-probability 0.75.

Reads:  RUN (an MSCGRec run folder from `genrec run --model mscgrec`), RUN/data (or --data).
Writes: OUT/shapley.json and OUT/shapley.md (OUT defaults to RUN).
Time:   2^D full evaluations for D modalities: 4 for text + collaborative (ML-100K: a few minutes on
        2 CPU cores; Beauty's 22k test users: ~4 x 10 minutes).""",
    )
    p.add_argument("run", help="MSCGRec run folder")
    p.add_argument("--data", default=None, help="prepared dataset (default RUN/data)")
    p.add_argument("--split", choices=("test", "validation"), default="test")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to attribute (default recall/ndcg @10, @20)")
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-users", type=int, default=None, help="evaluate the first N users only")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN)")
    p.set_defaults(handler=run_shapley)


def run_shapley(args: argparse.Namespace) -> int:
    from genrec.trainers.analysis.shapley import DEFAULT_METRICS, RESULT_MD, modality_contribution

    modality_contribution(
        args.run, data=args.data, split=args.split, metrics=args.metrics or DEFAULT_METRICS, num_beams=args.beams,
        batch_size=args.batch_size, max_users=args.max_users, out_dir=args.out,
    )
    out = args.out or Path(args.run)
    print((out / RESULT_MD).read_text(), end="")
    print(f"wrote {out / 'shapley.json'} and {out / RESULT_MD}")
    return 0

VERBS = (add_stage1, add_balance, add_train, add_evaluate, add_recommend, add_finetune, add_push, add_shapley)
