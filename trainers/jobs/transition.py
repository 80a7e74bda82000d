"""The main job's transition-prior step: fit the training rows' first-order transitions into Stage II's best
model, choose the mixing weight on validation, evaluate test with it (:mod:`genrec.trainers.stages.transition_prior`
holds the prior itself), and record it in the run's summary.

Stage II's best model is loaded once (:func:`load_best_model`) and handed to this step and then to the export,
so the prior is fitted once and the exported model is the one the test metrics were measured with.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import modified_time, write_text_atomic
from genrec.trainers.engine.processes import on_main_process
from genrec.trainers.jobs.run_context import RunContext

logger = logging.getLogger(__name__)

__all__ = ["TRANSITION_DIR", "TRANSITION_FILE", "load_best_model", "run_transition_stage", "stage2_model_class",
           "transition_stage_into_summary"]

TRANSITION_DIR = "transition_prior"
TRANSITION_FILE = "transition_prior.json"


def stage2_model_class(best_dir: Path) -> type:
    """The generative model class of a Stage II folder: MSCGRec's for ``model_type: mscgrec``, else UNGER's
    (MSCGRec subclasses it, so the transition prior works the same on both)."""
    model_type = json.loads((Path(best_dir) / "config.json").read_text()).get("model_type")
    if model_type == "mscgrec":
        from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation

        return MSCGRecForGenerativeRecommendation
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation

    return UngerForGenerativeRecommendation


def load_best_model(best_dir: Path) -> tuple[Any, Any]:
    """Stage II's best model and its tokenizer, loaded once for the transition prior and the export."""
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    model = stage2_model_class(best_dir).from_pretrained(best_dir)
    tokenizer = SemanticIDTokenizer.from_pretrained(str(best_dir))
    if not model.has_code_table:  # a Stage II folder written before models carried their item codes
        model.set_code_table(tokenizer)
    return model, tokenizer


def transition_stage_into_summary(
    context: RunContext, model: Any, tokenizer: Any, profile: dict[str, Any], *,
    smoothings: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Run (or reuse) the transition-prior stage on ``model`` (the prior stays installed in it, with the chosen
    weight and smoothing; ``smoothings``: the c searched beside the weights, 0 alone = the plain prior; None:
    the profile's ``transition_smoothing``) and record it in the run's summary; returns the stage's result."""
    from genrec.trainers.stages.transition_smoothing import smoothing_candidates

    if smoothings is None:
        smoothings = smoothing_candidates(profile.get("transition_smoothing"))
    start = time.perf_counter()
    test_beams = profile.get("test_beams") or profile.get("eval_beams", 20)
    stage_dir = context.out_dir / TRANSITION_DIR
    result_file = stage_dir / TRANSITION_FILE
    recorded_before = modified_time(result_file)
    settings = {"stage2": context.stage2_digest, "max_eval_users": profile.get("max_eval_users"),
                "eval_beams": profile.get("eval_beams", 20), "test_beams": test_beams}
    if tuple(float(c) for c in smoothings) != (0.0,):  # the plain prior keeps the fingerprint it always had
        settings["smoothings"] = [float(c) for c in smoothings]
    transition = run_transition_stage(model, tokenizer, context.data_dir, stage_dir, context.ledger, settings,
                                      show_progress=context.show_progress)
    reused = recorded_before is not None and modified_time(result_file) == recorded_before
    smoothing = {"smoothing": transition["smoothing"]} if transition.get("smoothing") else {}
    context.record_stage("transition_prior", start, reused=reused, path=stage_dir, weight=transition["weight"],
                         num_transitions=transition["num_transitions"], **smoothing)
    summary = context.summary
    context.record(
        model_test_metrics=summary.get("model_test_metrics") or summary["test_metrics"],
        test_metrics=transition["test_metrics"],
        transition_prior={**{k: transition[k] for k in ("weight", "num_transitions", "validation")}, **smoothing},
    )
    return transition


def run_transition_stage(
    model: Any, tokenizer: Any, data_dir: Path, stage_dir: Path, ledger: Any, settings: dict[str, Any], *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fit the transition prior on the training rows into ``model``, choose its weight on validation, evaluate
    test with it; the prior stays installed in ``model`` with the chosen weight.

    ``ledger`` None (a run folder without fingerprints): always computed. Otherwise reused when
    ``stage_dir/transition_prior.json`` exists and the fingerprint (Stage II's, the weight grid, the evaluation
    sizes) is the same; the prior is then fitted with the recorded weight. Returns that JSON's content.
    """
    from genrec.trainers.evaluation.evaluator import evaluate_model, load_examples
    from genrec.trainers.stages.transition_prior import (
        SELECTION_METRIC,
        TRANSITION_WEIGHTS,
        choose_transition_mixture,
        fit_transition_prior,
        times_left,
        training_transitions,
    )

    settings = {**settings, "weights": list(TRANSITION_WEIGHTS), "metric": SELECTION_METRIC}
    smoothings = settings.get("smoothings", [0.0])
    result_file = stage_dir / TRANSITION_FILE
    if ledger is None:  # no fingerprints to compare with: never reuse
        on_main_process(lambda: result_file.unlink(missing_ok=True))
    else:
        ledger.claim("transition_prior", settings, [stage_dir])
    if result_file.is_file():
        logger.info("reusing the transition prior in %s", stage_dir)
        result = json.loads(result_file.read_text())
        fit_transition_prior(model, tokenizer, data_dir, weight=result["weight"],
                             smoothing=result.get("smoothing", 0.0))
        return result
    sources, targets = training_transitions(tokenizer, data_dir)  # read once, fitted plain and then smoothed
    model.set_transition_prior(sources, targets)
    pairs = int(model.config.num_transitions)
    examples = load_examples(data_dir, "validation", max_history=model.config.max_history_items,
                             max_users=settings["max_eval_users"])
    weight, smoothing, table = choose_transition_mixture(
        model, tokenizer, examples.histories, examples.targets, num_beams=settings["eval_beams"],
        smoothings=smoothings, left=times_left(sources, len(tokenizer.code_table)) if any(smoothings) else None,
    )
    logger.info("transition prior: %d pairs; validation %s by weight%s %s; chosen %s", pairs, SELECTION_METRIC,
                "/smoothing" if any(smoothings) else "",
                {w: round(m[SELECTION_METRIC], 4) for w, m in table.items()},
                f"w = {weight}, c = {smoothing}" if any(smoothings) else weight)
    if smoothing:
        model.set_transition_prior(sources, targets, smoothing=smoothing)
    model.set_transition_weight(weight)
    test = evaluate_model(model, tokenizer, data_dir, "test", num_beams=settings["test_beams"],
                          show_progress=show_progress)
    result = {"weight": weight, **({"smoothing": smoothing} if any(smoothings) else {}), "num_transitions": pairs,
              "validation_users": len(examples.targets), "validation": table, "test_metrics": test["metrics"]}
    stage_dir.mkdir(parents=True, exist_ok=True)
    on_main_process(lambda: write_text_atomic(result_file, json.dumps(result, indent=2) + "\n"))
    return result
