"""Shapley-style modality contribution of a trained MSCGRec model (``../shared/papers/mscgrec.md`` §4.3, Table 3b).

The paper measures "MSCGRec's performance for each subset of modalities" and attributes it to the modalities
with exact Shapley values (few modalities, so every subset is evaluated). Here a subset S of the model's
modalities is *present* in the history and every other modality is replaced by the model's learnable mask
tokens for every history item (:meth:`MSCGRecForGenerativeRecommendation.hide_modalities`, the same tokens a
model trained with ``mask_probability > 0`` learnt for missing modalities). The decoder always generates the
decoding modality's codes, so ranking and metrics are the usual full-corpus ones
(:func:`genrec.trainers.evaluation.evaluator.evaluate_model`). The value of a subset is a metric of that evaluation;
the Shapley value of modality i is

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + {i}) - v(S)),

and the values add up to v(all modalities) - v(no modality) (efficiency), which the report checks.
The paper reports Shapley values "with respect to MSCGRec with masking": a model trained without masking has
never seen the mask tokens of a present modality, so its values say less (the report notes the probability).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_METRICS", "modality_contribution", "render_markdown", "shapley_values"]

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
RESULT_JSON, RESULT_MD = "shapley.json", "shapley.md"


def shapley_values(values: Mapping[frozenset[str], float], players: Sequence[str]) -> dict[str, float]:
    """Exact Shapley values of ``players`` for the game ``values`` (subset of players -> payout).

    ``values`` must hold every subset of ``players`` (the empty one included); ``KeyError`` names a missing one.
    """
    players = list(players)
    n = len(players)
    for size in range(n + 1):
        for subset in itertools.combinations(players, size):
            if frozenset(subset) not in values:
                raise KeyError(f"no value for the subset {sorted(subset)} of {players}")
    out = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                base = frozenset(subset)
                total += weight * (values[base | {player}] - values[base])
        out[player] = total
    return out


def modality_contribution(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    split: str = "test",
    metrics: Sequence[str] = DEFAULT_METRICS,
    num_beams: int = 20,
    batch_size: int = 256,
    max_users: int | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate an MSCGRec model with every subset of its modalities present; Shapley value per modality.

    Args:
        run_dir: a folder with the model's ``save_pretrained`` files and tokenizer (``genrec run --model mscgrec``
            writes one); its ``modality_tables/`` (when present) are checked against the model's hashes.
        data: the prepared dataset (default ``run_dir/data``).
        split: "test" (default) or "validation".
        metrics: metric names of :func:`~genrec.trainers.evaluation.evaluator.evaluate_model` to attribute.
        num_beams, batch_size, max_users: as for ``evaluate_model`` (``max_users``: the first N users only).
        out_dir: where ``shapley.json`` and ``shapley.md`` go (default ``run_dir``).

    Returns:
        ``{"modalities", "subsets": [{"present": [...], "metrics": {...}, "seconds"}], "shapley": {metric:
        {modality: value}}, "full", "empty", ...}`` (also written to ``shapley.json``).
    """
    from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
    from genrec.trainers.evaluation.evaluator import evaluate_model
    from genrec.trainers.jobs.run_mscgrec import MODALITY_TABLES_DIR, load_run_modality_tables

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model in {run_dir} (config.json missing): pass an MSCGRec run folder")
    config = json.loads((run_dir / "config.json").read_text())
    if config.get("model_type") != "mscgrec":
        raise ValueError(
            f"{run_dir} holds a {config.get('model_type')!r} model; the modality contribution needs an MSCGRec model "
            "(genrec run --model mscgrec)"
        )
    model = MSCGRecForGenerativeRecommendation.from_pretrained(run_dir).eval()
    if model.config.num_transitions:  # the modalities' contribution to the model, not to the mixture: the
        model.set_transition_weight(0.0)  # transition prior reads no modality and would lift every subset alike
    tokenizer = SemanticIDTokenizer.from_pretrained(str(run_dir))
    coverage = None
    if (run_dir / MODALITY_TABLES_DIR).is_dir():
        coverage = load_run_modality_tables(run_dir, model).coverage()
    data = Path(data) if data is not None else run_dir / "data"
    players = model.modality_names
    scores: dict[frozenset[str], dict[str, float]] = {}
    subsets = []
    for size in range(len(players) + 1):
        for present in itertools.combinations(players, size):
            hidden = [name for name in players if name not in present]
            start = time.perf_counter()
            with model.hide_modalities(hidden):
                result = evaluate_model(
                    model, tokenizer, data, split, num_beams=num_beams, batch_size=batch_size,
                    max_users=max_users, show_progress=show_progress,
                )
            missing = [m for m in metrics if m not in result["metrics"]]
            if missing:
                raise ValueError(f"unknown metrics {missing}; evaluate_model reports {sorted(result['metrics'])}")
            values = {m: float(result["metrics"][m]) for m in metrics}
            scores[frozenset(present)] = values
            subsets.append({
                "present": list(present), "masked": hidden, "metrics": values,
                "num_users": int(result["num_users"]), "seconds": round(time.perf_counter() - start, 1),
            })
            logger.info("modalities present %s: %s", list(present) or "(none)", values)
    shapley = {
        m: shapley_values({s: v[m] for s, v in scores.items()}, players) for m in metrics
    }
    report = {
        "run_dir": str(run_dir), "split": split, "num_beams": num_beams, "max_users": max_users,
        "modalities": players, "decode_modality": players[0],
        "mask_probability": float(model.config.mask_probability), "coverage": coverage,
        "subsets": subsets, "shapley": shapley,
        "full": scores[frozenset(players)], "empty": scores[frozenset()],
    }
    target = Path(out_dir) if out_dir is not None else run_dir
    target.mkdir(parents=True, exist_ok=True)
    (target / RESULT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (target / RESULT_MD).write_text(render_markdown(report))
    return report


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as two markdown tables: the metrics per subset of present modalities, the Shapley values."""
    metrics = list(report["shapley"])
    players = list(report["modalities"])
    lines = [
        f"# Modality contribution ({report['split']} split, {report['subsets'][0]['num_users']} users, "
        f"{report['num_beams']} beams)",
        "",
        f"Model: `{report['run_dir']}` (decodes {report['decode_modality']!r}; trained with modality mask "
        f"probability {report['mask_probability']}). Masked modalities use the model's mask tokens for every "
        "history item.",
        "",
        "| modalities present | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for subset in report["subsets"]:
        name = " + ".join(subset["present"]) or "(none)"
        lines.append(f"| {name} | " + " | ".join(f"{subset['metrics'][m]:.4f}" for m in metrics) + " |")
    lines += ["", "| Shapley value | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for player in players:
        lines.append(f"| {player} | " + " | ".join(f"{report['shapley'][m][player]:.4f}" for m in metrics) + " |")
    lines.append(
        "| sum (= all - none) | "
        + " | ".join(f"{sum(report['shapley'][m].values()):.4f}" for m in metrics) + " |"
    )
    if report["mask_probability"] == 0:
        lines += ["", "Note: this model was trained without modality masking (p = 0); the paper's Shapley values are "
                  "for a model trained with masking, which has learnt what a missing modality means."]
    return "\n".join(lines) + "\n"
