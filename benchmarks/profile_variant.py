"""The main job (`genrec run`) with some of a profile's fields changed: one candidate, end to end, into one run folder.

A candidate that changes an early stage (Stage I's length, the code levels) cannot be measured by
`benchmarks/stage2_variants.py`, which reuses a run's Stage I and codes. This script runs the whole pipeline with
``PipelineProfile`` fields overridden from JSON; the run folder is an ordinary `genrec run` folder (resumable,
`genrec evaluate --model OUT` reads it, `run.json` holds the model alone's and the mixture's test metrics), and the
overridden fields enter the stages' fingerprints like any profile's.

    python benchmarks/profile_variant.py --dataset ../shared/data/amazon-beauty-2014 --profile default \\
        --set '{"stage1_epochs": 30}' --out runs/beauty-s1e30 [--reuse-inputs runs/beauty-z]

--reuse-inputs copies the prepared data and the text embeddings of a finished run of the same dataset and seed
(their fingerprints decide whether the job may reuse them, as for any run folder), which saves the embedding
pass; every later stage is computed under the changed profile.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from genrec.trainers.jobs.profiles import PROFILES, PipelineProfile, profile_with_changes
from genrec.trainers.jobs.run import run_pipeline

INPUT_STAGES = ("data", "embeddings")
INPUT_FINGERPRINTS = ("prepare.json",)


def changed_profile(base: str, changes: dict[str, Any]) -> PipelineProfile:
    """``profile_with_changes`` for the command line: a bad field or value ends the script with its message."""
    try:
        return profile_with_changes(base, changes)
    except (TypeError, ValueError) as error:
        raise SystemExit(str(error)) from None


def reuse_inputs(source: Path, out: Path) -> None:
    """Copy ``source``'s prepared data and text embeddings (and their fingerprints) into a new run folder."""
    if out.exists() and any(out.iterdir()):
        return  # a run folder in progress keeps what it has
    needed = [source / stage for stage in INPUT_STAGES] + [source / "fingerprints" / n for n in INPUT_FINGERPRINTS]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise SystemExit(f"--reuse-inputs {source}: not a finished run folder (missing {', '.join(missing)})")
    for stage in INPUT_STAGES:
        shutil.copytree(source / stage, out / stage)
    (out / "fingerprints").mkdir(parents=True, exist_ok=True)
    for name in INPUT_FINGERPRINTS:
        shutil.copy2(source / "fingerprints" / name, out / "fingerprints" / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument("--set", default="{}", help="JSON object of PipelineProfile fields to change")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--reuse-inputs", type=Path, help="a finished run folder of the same dataset and seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    changes = json.loads(args.set)
    if not isinstance(changes, dict):
        raise SystemExit("--set must be a JSON object")
    profile = changed_profile(args.profile, changes)
    if args.reuse_inputs is not None:
        reuse_inputs(args.reuse_inputs, args.out)
    summary = run_pipeline(args.dataset, args.out, seed=args.seed, profile=profile)
    print(json.dumps({"profile": profile.name, "test_metrics": summary.get("test_metrics"),
                      "model_test_metrics": summary.get("model_test_metrics")}, indent=1))


if __name__ == "__main__":
    main()
