"""The TTDS comparison table: a pretrained base (SmolLM2-135M) with dynamic (TTDS) and static (TTSS) codes, the
tiny base trained from scratch, most-popular and the first-order Markov chain, on the same test users, with
paired bootstrap intervals (``benchmarks/paired_compare.py``).

Reads a work folder written by ``benchmarks/ttds_ml100k.py --compare --variant V --work-dir W`` runs (each
variant's ``--json-out W/V.json`` and its run folder's ``test_ranks.json``) and by ``benchmarks/markov_baseline.py
W/data --per-user W/floors``; writes ``--out`` (JSON: every figure, interval and the code statistics) and the
same as Markdown next to it (``.md``: the section ``benchmarks/report.py`` puts into RESULTS.md).

    python benchmarks/ttds_table.py --work-dir runs/ttds-smol-cmp --out benchmarks/results/ml100k-ttds-smollm2.json

``--ranks-dir D`` takes each arm's ranks from ``D/<run folder name>.json`` instead, written by
``genrec evaluate --model W/<run>/final --data W/data --beams 10 --k 1 5 10 --per-user --out D/<run>.json``: the
same trained models evaluated on every test user (the training run evaluated the first 300). Every row's
figures are computed from the ranks it is paired on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]
#: label, summary JSON, run folder (holding test_ranks.json); relative to the work folder
ARMS = {
    "smol-ttds": ("SmolLM2-135M, TTDS (dynamic codes)", "ttds.json", "run-ttds-smollm2-135m"),
    "smol-ttss": ("SmolLM2-135M, TTSS (static codes)", "ttss.json", "run-ttss-smollm2-135m"),
    "tiny-ttds": ("tiny LLaMA from scratch, TTDS", "tiny-ttds.json", "run-ttds-train-base"),
    "tiny-ttss": ("tiny LLaMA from scratch, TTSS", "tiny-ttss.json", "run-ttss-train-base"),
}
RANKS_COMMAND = ("genrec evaluate --model WORK/RUN/final --data WORK/data --beams 10 --k 1 5 10 --batch-size 8 "
                 "--per-user --out RANKS_DIR/RUN.json  # OMP_NUM_THREADS=1")
FLOOR_LABELS = {"pop": "most popular", "markov": "first-order Markov chain"}
PAIRS = [("smol-ttds", "smol-ttss"), ("smol-ttds", "markov"), ("smol-ttss", "markov"), ("smol-ttds", "tiny-ttds"),
         ("smol-ttss", "tiny-ttss"), ("tiny-ttds", "tiny-ttss")]


def _command(args: dict[str, Any]) -> str:
    """The ttds_ml100k.py command line of a variant's recorded arguments."""
    parts = ["python benchmarks/ttds_ml100k.py"]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts.append(" ".join([flag, *map(str, value)]))
        elif value not in (None, False):
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--ranks-dir", type=Path, default=None,
                        help="each arm's per-user ranks from here (genrec evaluate --per-user, every test user)")
    args = parser.parse_args()
    from paired_compare import compare  # the sibling script (benchmarks/ is on sys.path when this one runs)

    work = args.work_dir
    arms: dict[str, dict[str, Any]] = {}
    for key, (label, summary_file, run) in ARMS.items():
        summary_path, ranks = work / summary_file, work / run / "test_ranks.json"
        if args.ranks_dir is not None:
            ranks = args.ranks_dir / f"{run}.json"
        if not summary_path.is_file() or not ranks.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        report = next(v for k, v in summary.items() if k in ("ttds", "ttss"))
        arms[key] = {"label": label, "ranks": ranks, "report": report, "command_args": summary.get("command_args")}
    if not arms:
        raise SystemExit(f"no finished variant in {work}")
    floors = {name: work / "floors" / f"{name}.json" for name in ("pop", "markov")}
    users = json.loads(next(iter(arms.values()))["ranks"].read_text())["per_user"]["user_id"]
    from genrec.trainers.evaluation.metrics import per_user_scores

    def scores(ranks: list[int]) -> dict[str, float]:
        return {m: round(float(per_user_scores(ranks, m).mean()), 4) for m in METRICS}

    rows = []
    for arm in arms.values():
        ranked = json.loads(arm["ranks"].read_text())["per_user"]
        if ranked["user_id"] != users:
            raise SystemExit(f"{arm['ranks']} ranks other users than the first arm's: pair them on the same users")
        rows.append({"label": arm["label"], "metrics": scores(ranked["rank"]),
                     "steps": arm["report"]["steps"], "code_updates": arm["report"]["code_updates"],
                     "code_history": arm["report"]["code_history"], "seconds": arm["report"]["seconds"],
                     "command": _command(arm["command_args"] or {})})
    keep = set(users)
    for name, path in floors.items():  # the floors on the same users (their files rank every test user)
        ranked = json.loads(path.read_text())["per_user"]
        sub = [r for u, r in zip(ranked["user_id"], ranked["rank"], strict=True) if u in keep]
        rows.append({"label": FLOOR_LABELS[name], "metrics": scores(sub)})
    comparisons = []
    labels = {**FLOOR_LABELS, **{k: v["label"] for k, v in arms.items()}}
    for a, b in PAIRS:
        if a not in arms or (b != "markov" and b not in arms):
            continue
        path_b = floors["markov"] if b == "markov" else arms[b]["ranks"]
        result = compare(arms[a]["ranks"], path_b, METRICS, resamples=args.resamples, common_users=True)
        comparisons.append({"a": labels[a], "b": labels[b], "comparisons": result["comparisons"]})
    out = {"what": __doc__.split("\n\n")[0], "work_dir": str(work), "num_users": len(users), "rows": rows,
           **({"ranks_dir": str(args.ranks_dir), "ranks_command": RANKS_COMMAND} if args.ranks_dir else {}),
           "paired": comparisons, "resamples": args.resamples}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(out) + "\n")
    print(render(out))


def render(out: dict[str, Any]) -> str:
    """The Markdown section: the table, then each paired difference at HR@10 and NDCG@10 with its interval."""
    lines = ["| Row | " + " | ".join(m.upper() for m in METRICS) + " | steps |",
             "|---|" + "---:|" * (len(METRICS) + 1)]
    for row in out["rows"]:
        cells = [f"{row['metrics'][m]:.4f}" for m in METRICS]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {row.get('steps', '–')} |")
    lines += ["", f"Paired over the same {out['num_users']} test users ({out['resamples']:,} bootstrap resamples; "
                  "A - B with its 95 % interval):", ""]
    for pair in out["paired"]:
        parts = []
        for c in pair["comparisons"]:
            if c["metric"] in ("hr@10", "ndcg@10"):
                verdict = "beyond the noise" if c["ci_low"] > 0 or c["ci_high"] < 0 else "inside the noise"
                parts.append(f"{c['metric']} {c['diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] ({verdict})")
        lines.append(f"- {pair['a']} minus {pair['b']}: " + "; ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
