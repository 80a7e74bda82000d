"""What ``genrec run`` prints when it ends: the stages' times, the test figures of the model alone and with the
transition prior side by side (labelled, and flagged as meaningless for the quick profile), where everything
is, and the next commands to try.

A new user reads this block and nothing else, so it answers "what happened, is it good, where is it, what
now" without sending them into ``run.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrec.model_cards.run_card import example_history, test_rankings

__all__ = ["HEADLINE_METRICS", "format_run_report"]

#: the columns of the closing table (hr@K equals recall@K under leave-one-out: one target per user)
HEADLINE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _metric_table(rankings: dict[str, dict[str, float]]) -> list[str]:
    rows = list(rankings.items()) or [("model alone", {})]
    width = max(len(label) for label, _ in rows) + 2
    lines = ["  " + "".ljust(width) + "".join(name.rjust(11) for name in HEADLINE_METRICS)]
    for label, metrics in rows:
        values = "".join(
            (f"{metrics[name]:.4f}" if name in metrics else "-").rjust(11) for name in HEADLINE_METRICS
        )
        lines.append("  " + label.ljust(width) + values)
    return lines


def _logs_line(out: Path) -> str:
    logged = [name for name, folder in (("Stage I", "stage1"), ("Stage II", "stage2")) if (out / folder / "logs").is_dir()]
    if logged:
        return f"  logs      tensorboard --logdir {out}   ({' and '.join(logged)} training curves)"
    return "  logs      none written (pip install tensorboard, or --report-to a tracker you have)"


def format_run_report(summary: dict[str, Any], out: str | Path, *, dataset: str) -> str:
    """The closing block of ``genrec run`` for ``summary`` (``run.json``'s content) of the run folder ``out``."""
    out = Path(out)
    stages = summary.get("stages", {})
    width = max([len(name) for name in stages] + [len("total")]) + 2
    lines = ["stage".ljust(width) + "seconds".rjust(9) + "  output"]
    for name, stage in stages.items():  # run.json's paths are relative to the run folder
        seconds = stage.get("seconds")  # None: reused from a sitting that was killed before it wrote run.json
        shown = f"{seconds:9.1f}" if isinstance(seconds, int | float) else "unknown".rjust(9)
        lines.append(name.ljust(width) + shown + f"  {out / stage['path']}")
    if summary.get("total_seconds") is not None:
        lines.append("total".ljust(width) + f"{summary['total_seconds']:9.1f}"
                     + f"  ({summary['total_seconds'] / 60:.1f} min; reused stages show the time they took)")
    if summary.get("stopped_after"):
        lines.append(f"stopped after {summary['stopped_after']} (--until): {out}; rerun without --until to go on")
        return "\n".join(lines)

    profile = summary.get("profile") or {}
    profile_name = profile.get("name", "?")
    test = summary.get("test_metrics") or {}
    beams = profile.get("test_beams") or profile.get("eval_beams", 20)
    users = int(test["num_users"]) if "num_users" in test else "?"
    lines += ["", f"test ({dataset}, {users} users, the full catalogue, {beams} beams; profile {profile_name}):"]
    lines += _metric_table(test_rankings(summary))
    if profile_name == "quick":
        lines += [
            "  ! the quick profile is a smoke test (a few dozen training steps): these figures say that every",
            "    stage ran, nothing about quality. Real figures: `genrec run` (ML-100K: under 20 minutes on 2 cores).",
        ]
    elif summary.get("transition_prior"):
        lines.append("  (the prior mixes in the training rows' last-item -> next-item counts; papers compare the model alone)")

    model = out / summary.get("model_dir", ".")
    lines += [
        "",
        f"run folder {out}",
        f"  model     {model}   (AutoModel / AutoTokenizer.from_pretrained after `import genrec`)",
        f"  card      {model / 'README.md'}",
        f"  metrics   {out / 'run.json'}   (every stage's settings and times; test_metrics"
        + (", model_test_metrics)" if summary.get("model_test_metrics") else ")"),
        _logs_line(out),
        "next",
    ]
    items = example_history(out / "data") or ["ITEM_ID", "ITEM_ID"]
    history, history_list = " ".join(items), "[" + ", ".join(f'\"{item}\"' for item in items) + "]"
    lines += [
        f"  genrec recommend --model {model} --history {history} -k 10",
        f"  genrec recommend --model {model} --data {out / 'data'} --split test --out {out / 'topk.parquet'}",
        "  python    import genrec; from transformers import AutoModel, AutoTokenizer",
        f"            AutoModel.from_pretrained(\"{model}\").recommend([{history_list}], "
        f"AutoTokenizer.from_pretrained(\"{model}\"), k=10)",
    ]
    return "\n".join(lines)
