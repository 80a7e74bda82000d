"""RESULTS.md and the Recall@10 plot from the stored row JSON (what ``--render-only`` runs).

The quality tables are rendered exactly as before the report was split into modules; the speed and memory
sections (``perf``) are appended after them, and every row without a result is listed under "Not run yet".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import (
    BENCH_DIR,
    DATASETS,
    HEADLINE_ROWS,
    METRIC_LABELS,
    PLOT_NAME,
    QUALITY_METRICS,
    REPORT_COMMAND,
    Context,
    Row,
)
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
            sittings = [d.get("sittings", 1) for d in details]
            if max(sittings) > 1:
                parts.append(f"trained in {', '.join(map(str, sittings))} sittings (resumed): its time is the "
                             "training of every sitting (RecBole's timer, data loading excluded)")
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
            resumed = [run for run in stored["runs"] if (run.get("details") or {}).get("wall_time_from_stages")]
            if resumed:
                which = "" if len(stored["runs"]) == 1 else " (seed " + ", ".join(str(r.get("seed")) for r in resumed) + ")"
                parts.append(f"a resumed run{which}: its wall time is every stage's own time summed (the last "
                             f"invocation took " + ", ".join(f"{r['details'].get('last_invocation_seconds')} s"
                                                             for r in resumed) + ")")
            # every seed's choice, in the seeds' order (each run chose its own on validation)
            weights = ", ".join(str(x.get("transition_weight")) for x in details)
            if d.get("transition_weight") is not None and any(x.get("transition_smoothing") for x in details):
                chosen = ", ".join(f"({x.get('transition_weight')}, {x.get('transition_smoothing') or 0.0})"
                                   for x in details)
                parts.append(f"ranked with the smoothed transition prior, (1 - w) p_model + w count / (n(last) + c), "
                             f"(w, c) = {chosen} chosen on validation (NDCG@10)")
            elif d.get("transition_weight") is not None:
                parts.append(f"ranked with the transition prior, (1 - w) p_model + w p_transition, w = "
                             f"{weights} chosen on validation (NDCG@10)")
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


def render_markdown(rows: Sequence[Row], ctx: Context, plot_name: str | None = PLOT_NAME,
                    ablation_plot_name: str | None = None) -> str:
    """RESULTS.md: one quality table per dataset, the machine(s), the plots (``plot_name``: the headline rows;
    ``ablation_plot_name``: the Stage II variants and ablations; None: not drawn) and the "not run yet" list."""
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
    if plot_name or ablation_plot_name:
        lines += ["## Recall@10", ""]
    if plot_name:
        lines += ["The headline rows of each dataset (`HEADLINE_ROWS` in `benchmarks/reporting/core.py`); every row "
                  "is in the tables above.", "",
                  f"![Test Recall@10 per dataset: genrec default with and without the transition prior, SASRec, "
                  f"first-order Markov, most popular, published figures]({plot_name})", ""]
    if ablation_plot_name:
        lines += ["The Stage II variants and ablations: each panel's rows ran at equal Stage II steps, so compare a "
                  "row with its panel's reference, not across panels or with the plot above.", "",
                  f"![Test Recall@10 of the Stage II variants and ablations]({ablation_plot_name})", ""]
    lines += render_ttds_section()
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


#: written by benchmarks/ttds_table.py from the TTDS comparison's runs (the figures, intervals and commands in the
#: JSON beside it)
# every test user (the same trained models as ml100k-ttds-smollm2.md, which holds the first 300 users' table)
TTDS_TABLE = BENCH_DIR / "results" / "ml100k-ttds-smollm2-943.md"


def render_ttds_section() -> list[str]:
    """The TTDS section: a pretrained base vs the tiny one, dynamic vs static codes, the floors (when measured)."""
    if not TTDS_TABLE.is_file():
        return []
    return ["## ML-100K: the LLM recommender (TTDS)", "",
            "HR@K / NDCG@K on all 943 test users (leave-one-out, full catalogue, 10 beams; the trained models "
            "re-evaluated by `genrec evaluate`, whose ranks of the first 300 users equal those of the training runs' "
            "own evaluation), every arm at equal steps; the command, the code statistics and every interval are in "
            f"`benchmarks/results/{TTDS_TABLE.with_suffix('.json').name}` (`benchmarks/ttds_table.py`); "
            "discussion in docs/ttds.md.", "", TTDS_TABLE.read_text().rstrip(), ""]


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


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the plot", file=sys.stderr)
        return None
    return plt


@dataclass
class PlotBar:
    """One bar of a Recall@10 plot: its label, value, std over seeds (0: one run), seed count and colour role."""

    label: str
    value: float
    std: float
    seeds: int
    role: str  # "genrec" | "genrec-alone" | "learned" | "floor" | "published" | "reference"


_COLOURS = {"genrec": "#1f4e8c", "genrec-alone": "#86aedc", "learned": "#e08a2e", "floor": "#a6a6a6",
            "published": "#ffffff", "reference": "#e08a2e"}


def _bar(row: Row, ctx: Context, label: str) -> PlotBar | None:
    """``row``'s Recall@10 as a bar (None without a stored value); the role picks the colour."""
    if row.kind == "published":
        value = (row.published or {}).get("recall@10")
        return None if value is None else PlotBar(label, value, 0.0, 1, "published")
    stored = load_row_json(ctx, row.id)
    value = (stored or {}).get("metrics", {}).get("recall@10")
    if value is None:
        return None
    std = stored.get("metrics_std", {}).get("recall@10") or 0.0
    seeds = len([s for s in stored.get("seeds_done", []) if s is not None]) or 1
    if "-genrec-" in row.id:
        role = "genrec-alone" if row.options.get("metrics") == "model" else "genrec"
    else:
        role = "learned" if "recbole" in row.id else "floor"
    return PlotBar(label, value, std, seeds, role)


def _draw_bars(ax: Any, bars: Sequence[PlotBar], title: str, fontsize: float) -> None:
    """Horizontal bars, the first on top, each with its value (± std over seeds) printed after it."""
    y = list(range(len(bars)))[::-1]
    ax.barh(y, [b.value for b in bars], height=0.7, color=[_COLOURS[b.role] for b in bars],
            hatch=["//" if b.role == "published" else "" for b in bars], edgecolor="black", linewidth=0.6)
    spread = [(pos, b) for pos, b in zip(y, bars, strict=True) if b.std]
    if spread:  # error bars only where there is a spread over seeds (no empty caps on one-run bars)
        ax.errorbar([b.value for _, b in spread], [pos for pos, _ in spread], xerr=[b.std for _, b in spread],
                    fmt="none", ecolor="black", elinewidth=1.0, capsize=3)
    top = max(b.value + b.std for b in bars)
    for pos, b in zip(y, bars, strict=True):
        text = f"{b.value:.4f}" + (f" ± {b.std:.4f}" if b.std else "")
        ax.text(b.value + b.std + top * 0.02, pos, text, va="center", fontsize=fontsize)
    ax.set_yticks(y, [b.label for b in bars], fontsize=fontsize)
    ax.set_xlim(0, top * 1.45)
    ax.set_title(title, fontsize=fontsize + 1, loc="left")
    ax.tick_params(axis="x", labelsize=fontsize - 1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig: Any, plt: Any, path: Path) -> None:
    """Write ``fig`` at a fixed pixel size (no tight bounding box) with no version string, so that the same
    rows give the same bytes."""
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def headline_panels(rows: Sequence[Row], ctx: Context,
                    headline: Mapping[str, Sequence[tuple[str, str]]] = HEADLINE_ROWS) -> dict[str, list[PlotBar]]:
    """The bars of :func:`render_plot`: dataset name -> the ``headline`` rows that have a Recall@10, in the
    declared order with their short labels; without any of them, every quality row with a Recall@10 (titles as
    labels, best first)."""
    by_id = {row.id: row for row in rows}
    panels: dict[str, list[PlotBar]] = {}
    for data, entries in headline.items():
        bars = [bar for row_id, label in entries if row_id in by_id
                for bar in [_bar(by_id[row_id], ctx, label)] if bar is not None]
        if bars:
            panels[DATASETS.get(data, {}).get("name", data)] = bars
    if panels:
        return panels
    for row in rows:
        bar = _bar(row, ctx, row.title.replace("`", "")) if row.section == "quality" else None
        if bar is not None:
            panels.setdefault(DATASETS.get(row.dataset, {}).get("name", row.dataset), []).append(bar)
    return {name: sorted(bars, key=lambda b: -b.value) for name, bars in panels.items()}


def render_plot(rows: Sequence[Row], ctx: Context, path: Path,
                headline: Mapping[str, Sequence[tuple[str, str]]] = HEADLINE_ROWS) -> bool:
    """The main Recall@10 plot: one panel per dataset with its ``headline`` rows (id, short label; top to
    bottom), values printed on the bars, ± the std over seeds, published figures hatched; about 1200 x 600.

    Why so few bars: the plot is read at a glance (the README shows it), so it holds what a reader compares
    (genrec's default with and without the transition prior against SASRec, the floors and the paper); every
    row is in RESULTS.md's tables and the variants have :func:`render_ablation_plot`. A registry with none of
    the ``headline`` rows (e.g. a test's) plots every quality row that has a Recall@10 instead. ``False``
    (with a warning) without matplotlib or without any bar.
    """
    panels = headline_panels(rows, ctx, headline)
    if not panels:
        return False
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 6), squeeze=False, layout="constrained")
    for ax, (name, bars) in zip(axes[0], panels.items(), strict=True):
        _draw_bars(ax, bars, name, fontsize=11)
    fig.suptitle("Test Recall@10 (leave-one-out, every item ranked; higher is better)", fontsize=12)
    seeds = sorted({b.seeds for bars in panels.values() for b in bars if b.std})
    notes = [f"± and error bars: std over {'/'.join(map(str, seeds))} seeds; other bars: one run."] if seeds else []
    if any(b.role == "published" for bars in panels.values() for b in bars):
        notes.append("Hatched: the paper's published figure (not re-measured).")
    notes.append("Each panel has its own scale.")
    fig.supxlabel(" ".join(notes), fontsize=9)
    _save(fig, plt, path)
    return True


def ablation_panels(rows: Sequence[Row], ctx: Context) -> dict[str, dict[str, list[PlotBar]]]:
    """The bars of :func:`render_ablation_plot`: dataset name -> panel title -> bars (the variant names), each
    panel one table group or one Stage II step count of the ungrouped variants; panels of one bar left out."""
    columns: dict[str, dict[str, list[PlotBar]]] = {}
    for row in sorted(rows, key=lambda r: list(DATASETS).index(r.dataset) if r.dataset in DATASETS else len(DATASETS)):
        variant = row.options.get("variant")
        if not variant or row.section != "quality":
            continue
        bar = _bar(row, ctx, str(variant))
        if bar is None:
            continue
        bar.role = "reference" if variant == "default" or str(variant).startswith("abl-default") else "genrec"
        steps = {r.get("details", {}).get("steps") for r in (load_row_json(ctx, row.id) or {}).get("runs", [])}
        panel = row.options.get("group") or "Stage II variants"
        if len(steps) == 1 and None not in steps:
            panel += f", {steps.pop()} steps"
        name = DATASETS.get(row.dataset, {}).get("name", row.dataset)
        columns.setdefault(name, {}).setdefault(panel, []).append(bar)
    return {name: kept for name, panels in columns.items()
            if (kept := {panel: bars for panel, bars in panels.items() if len(bars) > 1})}


def render_ablation_plot(rows: Sequence[Row], ctx: Context, path: Path) -> bool:
    """Recall@10 of the Stage II variants and ablations (rows with a ``variant``): one column per dataset, one
    panel per table group (e.g. the ablations) or, for the ungrouped variants, per Stage II step count, so that
    a panel's bars ran at equal steps and compare with each other; sorted by value, references
    (``abl-default*``, ``default``) in orange. A panel of one bar compares nothing and is left out (its row
    stays in the tables). ``False`` without matplotlib or without such rows."""
    columns = ablation_panels(rows, ctx)
    if not columns:
        return False
    plt = _pyplot()
    if plt is None:
        return False
    tallest = max(sum(len(bars) for bars in panels.values()) + 1.5 * len(panels) for panels in columns.values())
    fig = plt.figure(figsize=(6.5 * len(columns), 0.34 * tallest + 1.0), layout="constrained")
    subfigs = fig.subfigures(1, len(columns), squeeze=False)[0]
    for subfig, (name, panels) in zip(subfigs, columns.items(), strict=True):
        sizes = [len(bars) + 1.5 for bars in panels.values()]
        spare = tallest - sum(sizes)  # a shorter column keeps the same bar thickness, blank below
        axes = subfig.subplots(len(panels) + (spare > 0), 1, squeeze=False,
                               height_ratios=sizes + ([spare] if spare > 0 else []))[:, 0]
        for ax, (group, bars) in zip(axes, panels.items(), strict=False):
            _draw_bars(ax, sorted(bars, key=lambda b: -b.value), f"{name}: {group}", fontsize=9)
        if spare > 0:
            axes[-1].axis("off")
    fig.suptitle("Test Recall@10 of the Stage II variants and ablations", fontsize=12)
    fig.supxlabel("Bars compare within a panel only (its rows ran at equal Stage II steps); orange: a reference "
                  "(RESULTS.md's tables say which arms it pairs with and what each variant changes).", fontsize=9)
    _save(fig, plt, path)
    return True
