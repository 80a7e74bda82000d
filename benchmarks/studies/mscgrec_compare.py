"""Side-by-side test metrics of finished `genrec run` folders (UNGER and MSCGRec arms), as a markdown table.

    python benchmarks/studies/mscgrec_compare.py runs/h16-unger runs/h16-msc-p0 runs/h16-msc-p75 [--shapley runs/h16-msc-p75]

Reads each folder's ``run.json`` (written when the run finished) and, with ``--shapley``, that folder's
``shapley.md`` (``genrec shapley``); prints the table docs/mscgrec.md quotes. Reads only; trains nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def describe(summary: dict[str, Any]) -> str:
    """A run's arm name: the model family and, for MSCGRec, its modalities and mask probability."""
    if summary.get("model") != "mscgrec":
        return "UNGER (unified codes, Stage-I distillation + integrated history embedding)"
    m = summary["mscgrec"]
    feed = "" if m.get("history_feed", "item_sum") == "item_sum" else f", {m['history_feed']} feed"
    return f"MSCGRec ({' + '.join([m['decode_modality'], *m['history_modalities']])}, p = {m['mask_probability']}{feed})"


def table(runs: list[Path]) -> str:
    """Markdown rows: arm, Stage II steps, test metrics, users, Stage II seconds."""
    lines = [
        "| arm | Stage II steps | " + " | ".join(METRICS) + " | users | Stage II s |",
        "|---|---|" + "---|" * len(METRICS) + "---|---|",
    ]
    for run in runs:
        summary = json.loads((run / "run.json").read_text())
        test, stage2 = summary["test_metrics"], summary["stages"]["stage2"]
        lines.append(
            f"| {describe(summary)} (`{run.name}`) | {stage2['steps']} | "
            + " | ".join(f"{test[m]:.4f}" for m in METRICS)
            + f" | {int(test['num_users'])} | {stage2['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--shapley", type=Path, default=None, help="a run folder holding shapley.md")
    args = parser.parse_args()
    print(table(args.runs))
    if args.shapley is not None:
        print()
        print((args.shapley / "shapley.md").read_text())


if __name__ == "__main__":
    main()
