"""RESULTS.md and the Recall@10 plot from the stored row JSON (what ``--render-only`` runs).

The quality tables are rendered exactly as before the report was split into modules; the speed and memory
sections (``perf``) are appended after them, and every row without a result is listed under "Not run yet".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import DATASETS, METRIC_LABELS, PLOT_NAME, QUALITY_METRICS, REPORT_COMMAND, Context, Row
from .perf import render_sections
from .store import fingerprint, load_row_json, machine_line, render_command


@dataclass
class Status:
    """What the report knows about one row right now."""

    row: Row
    stored: dict[str, Any] | None
    fingerprint: str | None
    reason: str = ""  # why it cannot run here (inputs missing)

    @property
    def stale(self) -> bool:
        return bool(self.stored and self.fingerprint and self.stored.get("fingerprint") != self.fingerprint)

    @property
    def missing_seeds(self) -> list[int]:
        done = {r["seed"] for r in self.stored["runs"]} if self.stored else set()
        return [s for s in self.row.seeds if s not in done]

    def label(self) -> str:
        if self.row.kind == "published":
            return "published"
        if self.stored is None:
            return "not run yet" + (f" ({self.reason})" if self.reason else "")
        if self.stale:
            return "stale (inputs changed)"
        if self.missing_seeds:
            return f"partial: seeds {self.stored.get('seeds_done')} of {list(self.row.seeds)}"
        return "up to date" if self.fingerprint else "stored (inputs not available here to check)"


def row_status(row: Row, ctx: Context) -> Status:
    """Stored JSON + current fingerprint (+ why it cannot run) of ``row``."""
    if row.kind == "published":
        return Status(row, None, None)
    fp = fingerprint(row, ctx)
    reason = "" if fp else (row.missing(row, ctx) if row.missing else "inputs missing")
    return Status(row, load_row_json(ctx, row.id), fp, reason)


def how_to_run(row: Row, ctx: Context) -> str:
    """The command(s) that make a missing row appear."""
    report = f"{REPORT_COMMAND} --only {row.id}"
    if row.kind == "read":
        return f"`{row.produce}`, then `{report}`"
    return f"`{report}`"


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _row_note(status: Status) -> str:
    row, stored = status.row, status.stored
    parts = [row.note] if row.note else []
    if stored and row.kind != "published":
        details = [r.get("details", {}) for r in stored["runs"]]
        if details and "epochs_run" in details[0]:
            epochs = ", ".join(str(d.get("epochs_run")) for d in details)
            best = ", ".join(f"{d.get('best_epoch')} at {_fmt_seconds(d.get('seconds_to_best_validation'))}"
                             for d in details)
            stops = {d.get("stopped_by") for d in details}
            parts.append(f"epochs {epochs} (best {best})" + (f", stopped by {'/'.join(sorted(map(str, stops)))}"
                                                            if stops - {None} else ""))
            for d in details:
                if str(d.get("stopped_by", "")).startswith("time_budget"):
                    patience = (d.get("recbole_config") or {}).get("stopping_step", 10)
                    since = d.get("epochs_run", 0) - 1 - d.get("best_epoch", 0)
                    parts.append(f"validation had not improved for {since} epochs (RecBole stops after "
                                 f"{patience + 1})" if since >= patience else
                                 f"**not converged**: best validation {since} epoch(s) before the budget ran out")
        if details and details[0].get("profile"):
            d = details[0]
            steps = (f"{d['stage2_steps']} Stage II steps (best {d.get('stage2_best_step')})" if d.get("stage2_steps")
                     else f"{d.get('stage2_max_steps')} Stage II steps")
            beams = d.get("test_beams") or d.get("eval_beams")  # test metrics use the test beams
            parts.append(f"{beams} beams at test, {steps}")
            if d.get("stage2_resumed_from"):
                parts.append("Stage II was resumed: the wall time is the last invocation's")
            if d.get("transition_weight") is not None:
                parts.append(f"ranked with the transition prior, (1 - w) p_model + w p_transition, w = "
                             f"{d['transition_weight']} chosen on validation (NDCG@10)")
        if details and details[0].get("variant"):
            parts.append(f"{details[0].get('steps')} steps, {details[0].get('eval_beams')} beams")
        if details and details[0].get("paired_vs_reference"):
            paired = details[0]["paired_vs_reference"]
            comparisons = paired["comparisons"]
            spans = ", ".join(f"{c['metric']} {c['diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
                              for c in comparisons)
            clear = [c["metric"] for c in comparisons if c["ci_low"] > 0 or c["ci_high"] < 0]
            verdict = (f"beyond the noise at {', '.join(clear)}" if clear else "inside the noise")
            parts.append(f"minus `{paired['reference']}`, paired over {comparisons[0]['num_users']} users (95 % "
                         f"bootstrap interval): {spans}, {verdict}")
        if row.kind == "read":
            parts.append(f"read from `{stored.get('source_path')}`")
        if status.stale:
            parts.append("**stale: inputs changed since; rerun**")
    return "; ".join(p for p in parts if p)


def render_markdown(rows: Sequence[Row], ctx: Context, plot_name: str | None = PLOT_NAME) -> str:
    """RESULTS.md: one quality table per dataset, the machine(s), the plot and the "not run yet" list."""
    statuses = [row_status(row, ctx) for row in rows]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{REPORT_COMMAND}` from `benchmarks/results/<row>.json` (see `benchmarks/README.md`); do not "
        "edit by hand. Every row that is not marked *published* was measured by the command stored in its JSON "
        "(with its versions, seed, machine, wall time and input fingerprint). Rows are sorted by Recall@10; "
        "\"± x\" is the sample standard deviation over seeds. Wall times are what the row's run took on the "
        "machine named below, which may have been shared with other jobs (see `machine` in the row's JSON): "
        "they are not speed benchmarks.",
        "",
    ]
    machines = {}
    for status in statuses:
        if status.stored and status.row.kind == "measured" and status.row.section == "quality":
            machines.setdefault(machine_line(status.stored["machine"]), []).append(status.row.id)
    for line, ids in machines.items():
        lines.append(f"**Machine** ({len(ids)} measured rows): {line}.")
    if machines:
        lines.append("")
    datasets = list(dict.fromkeys(row.dataset for row in rows if row.section == "quality"))
    for data in datasets:
        info = DATASETS.get(data, {"name": data, "about": ""})
        groups: dict[str, list[tuple[float, str, list[str]]]] = {}
        sources: dict[str, str] = {}
        for status in statuses:
            row, stored = status.row, status.stored
            if row.dataset != data or row.section != "quality":
                continue
            if row.kind == "published":
                metrics, std, seeds, wall = dict(row.published or {}), {}, "–", "–"
                name = f"{row.title} — *published*"
                label = sources.setdefault(row.source, f"[{len(sources) + 1}]")
                note = "; ".join(p for p in (f"*published* {label}", row.note) if p)
            elif stored:
                metrics, std = stored["metrics"], stored.get("metrics_std", {})
                done = stored.get("seeds_done", [])
                seeds = ", ".join(str(s) for s in done if s is not None) or "–"
                if row.seeds and len(done) < len(row.seeds):
                    seeds += f" ({len(done)} of {len(row.seeds)})"
                wall = _fmt_seconds(stored.get("wall_time_s"))
                name, note = row.title, _row_note(status)
            else:
                continue
            cells = [f"{name} (`{row.id}`)", *(_fmt(metrics.get(k), std.get(k)) for k in QUALITY_METRICS), seeds, wall,
                     note]
            (groups.setdefault(row.options.get("group", ""), [])).append((metrics.get("recall@10", -1.0), row.id, cells))
        lines += [f"## {info['name']}", "", info["about"], ""]
        table = groups.pop("", [])
        if table:
            lines += _quality_table(table)
            for text, label in sources.items():
                lines += ["", f"{label} {text}"]
        else:
            lines.append("No row measured yet.")
        lines.append("")
        for group, grouped in groups.items():  # e.g. the ablations, compared among themselves at equal steps
            lines += [f"### {info['name']}: {group}", "", GROUP_ABOUT.get(group, ""), ""]
            lines += _quality_table(grouped)
            lines.append("")
    if plot_name:
        lines += ["## Recall@10", "", f"![Recall@10 per dataset]({plot_name})", ""]
    lines += render_sections(rows, ctx)  # Speed, Memory and storage (nothing when no such row is declared)
    lines += ["## Not run yet", ""]
    pending = []
    for status in statuses:
        row = status.row
        if row.kind == "published":
            continue
        if status.stored is None:
            why = f" — {status.reason}" if status.reason else ""
            cost = f" ({row.cost})" if row.cost else ""
            pending.append(f"- `{row.id}` ({DATASETS.get(row.dataset, {}).get('name', row.dataset)}): {row.title}{why}. "
                           f"Run: {how_to_run(row, ctx)}{cost}")
        elif status.missing_seeds:
            pending.append(f"- `{row.id}` seeds {', '.join(map(str, status.missing_seeds))}: {row.title}. Run: "
                           f"`{REPORT_COMMAND} --only {row.id}`{f' ({row.cost})' if row.cost else ''}; each seed: "
                           f"`{render_command(row, ctx, status.missing_seeds[0])}`")
    lines += pending or ["Nothing: every declared row has a result."]
    lines.append("")
    return "\n".join(lines)


GROUP_ABOUT = {
    "code source": (
        "Collaborative-only codes (Stage I on item ids alone, then residual k-means) against the default's fused "
        "codes, both with the default profile's Stage II for the same number of steps on one Stage I base, seed "
        "2024, all test users, the model alone (no transition prior); paired user by user with `abl-default`."
    ),
    "ablations": (
        "Each row changes one thing against its reference, the default profile's pipeline on the same data and "
        "Stage I base, seed 2024: `abl-default`, or `abl-default-b2` for the semantic-only, collaborative-only and "
        "concat arms, which ran on a second base built by the same command in a later session (Stage I is not "
        "bit-identical across the two: the two references differ by that much); the `-s2025` pair repeats the "
        "collaborative-only arm with seed 2025 on a base of its own. Every arm is trained for the same "
        "number of Stage II steps (cosine schedule over them; fewer than the main table's default run, so compare "
        "these rows with their reference, not with the table above). Command: `benchmarks/code_ablations.sh` (the "
        "row's command names its arm)."
    ),
}


def _quality_table(table: list[tuple[float, str, list[str]]]) -> list[str]:
    """A quality table's lines, rows sorted by Recall@10 (then id)."""
    lines = ["| Row | " + " | ".join(METRIC_LABELS[k] for k in QUALITY_METRICS) + " | Seeds | Wall time | Notes |",
             "|---|" + "---:|" * len(QUALITY_METRICS) + "---|---:|---|"]
    for _, _, cells in sorted(table, key=lambda t: (-t[0], t[1])):
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_plot(rows: Sequence[Row], ctx: Context, path: Path) -> bool:
    """Bar chart of Recall@10 per dataset (published rows hatched); ``False`` (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the plot", file=sys.stderr)
        return False
    groups: dict[str, list[tuple[str, float, float, bool]]] = {}
    for row in rows:
        if row.kind == "published":
            value, std, published = (row.published or {}).get("recall@10"), 0.0, True
            label = f"{row.title} (published)"
        else:
            stored = load_row_json(ctx, row.id)
            if not stored or "recall@10" not in stored.get("metrics", {}):
                continue
            value, std, published = stored["metrics"]["recall@10"], stored.get("metrics_std", {}).get("recall@10", 0.0), False
            label = row.title.replace("`", "")
        if value is not None:
            groups.setdefault(DATASETS.get(row.dataset, {}).get("name", row.dataset), []).append((label, value, std, published))
    if not groups:
        return False
    heights = [max(len(v), 1) for v in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 0.32 * sum(heights) + 1.2 * len(groups)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, bars) in zip(axes[:, 0], groups.items(), strict=True):
        bars = sorted(bars, key=lambda b: b[1])
        y = range(len(bars))
        ax.barh(list(y), [b[1] for b in bars], xerr=[b[2] for b in bars],
                color=["#bbbbbb" if b[3] else "#3b75af" for b in bars], edgecolor="black", linewidth=0.4)
        for i, b in enumerate(bars):
            ax.text(b[1], i, f" {b[1]:.4f}", va="center", fontsize=7)
        ax.set_yticks(list(y), [b[0] for b in bars], fontsize=7)
        ax.set_title(f"{name}: test Recall@10 (grey = published)", fontsize=9)
        ax.set_xlim(0, max(b[1] for b in bars) * 1.18)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return True


