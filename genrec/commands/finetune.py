"""``genrec finetune``: fine-tune an UNGER model on a new domain, or a TTDS LLM recommender.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.finetune` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter, add_report_to_flag, json_object


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        formatter_class=HelpFormatter,
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
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (UNGER: a run folder; TTDS: OUT/final and the training state)")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --from / --base-model")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --dataset")
    unger = p.add_argument_group("UNGER (--from an UNGER model)")
    unger.add_argument("--profile", choices=("default", "quick"), default="default",
                       help="the main job's profile for Stage I and the Stage II schedule")
    unger.add_argument("--stage2-steps", type=int, default=None, help="Stage II steps (default: the profile's)")
    unger.add_argument("--scratch", action="store_true",
                       help="control: same architecture and codes, random initialisation (no transfer)")
    unger.add_argument("--seed", type=int, default=2024, help="one seed for every stage of the main job")
    unger.add_argument("--overwrite", action="store_true", help="recompute every stage of OUT")
    add_report_to_flag(unger)
    ttds = p.add_argument_group("TTDS (--base-model, or --from a TTDS folder / LLaMA model)")
    ttds.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    ttds.add_argument("--config", type=json_object, default={}, help="JSON object of TTDSConfig overrides")
    ttds.add_argument("--training", type=json_object, default={}, help="JSON of TTDSTrainingArguments overrides")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import finetune

    print(finetune(
        args.dataset, args.out, source=args.source, base_model=args.base_model, revision=args.revision,
        data_revision=args.data_revision, profile=args.profile, stage2_steps=args.stage2_steps,
        scratch=args.scratch, seed=args.seed, overwrite=args.overwrite, dtype=args.dtype, config=args.config,
        training=args.training, report_to=args.report_to,
    ))
    return 0
