"""The model card of a ``genrec run`` folder, built from its ``run.json``, config and code table.

What goes in (issue 12): YAML ``library_name``/``tags``/``datasets``/``license``/``pipeline_tag`` and a
``model-index`` of the test metrics; the settings that differ from the defaults; training time and hardware;
code-table statistics; a usage snippet with the repo id and real item ids of the data, which runs as written
(``tests/test_model_cards.py`` executes it); BibTeX. Issue 30: an "Intended use and limitations" section; a run
with the transition prior shows its test metrics for the model alone (``run.json``'s ``model_test_metrics``)
beside the model + prior (``test_metrics``, what ``recommend`` ranks by); a ``quick``-profile run says its
figures mean nothing. Nothing carries a local path: the dataset is named by its
Hub id or folder name, and :func:`public_summary` rewrites ``run.json``'s paths relative to the run folder for
upload.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from genrec.data_scripts.provenance import data_terms, dataset_display_name
from genrec.model_cards.card import (
    build_model_card,
    code_table_summary,
    dataset_fields,
    duplicate_hr_note,
    eval_results,
    intended_use_section,
)

__all__ = [
    "build_run_card",
    "describe_hardware",
    "example_history",
    "non_default_settings",
    "public_summary",
    "stage2_log_history",
    "test_rankings",
    "usage_snippet",
    "write_training_curve",
]

#: The training-curve figure of a run folder (pushed with the model, shown in its card).
CURVE_FILE = "training_curve.png"

# Config fields that bind the model to its code table or are bookkeeping: not "settings".
_NOT_SETTINGS = frozenset(
    {
        "vocab_size", "num_code_levels", "codebook_sizes", "code_token_offsets", "code_table_hash", "num_items",
        "integrated_dim", "integrated_embeddings_hash", "transformers_version", "architectures", "auto_map",
        "_name_or_path", "dtype", "torch_dtype", "model_type", "genrec_version", "output_attentions",
        "output_hidden_states", "return_dict", "chunk_size_feed_forward", "id2label", "label2id",
        "problem_type", "tokenizer_class", "_attn_implementation_autoset",
    }
)


def describe_hardware() -> dict[str, Any]:
    """The machine a run trained on: CPU model and cores, accelerator, OS, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    accelerator = "none (CPU)"
    if torch.cuda.is_available():
        accelerator = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        accelerator = "Apple MPS"
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "accelerator": accelerator,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def non_default_settings(config: Any) -> dict[str, Any]:
    """The fields of ``config`` whose values differ from a default instance of its class (binding excluded)."""
    defaults = type(config)().to_dict()
    return {
        key: value
        for key, value in sorted(config.to_dict().items())
        if key not in _NOT_SETTINGS and defaults.get(key, object()) != value
    }


def example_history(data_dir: str | Path, tokenizer: Any = None, *, max_items: int = 3) -> list[str]:
    """Real item ids for the usage snippet (and ``genrec run``'s suggested commands): the most recent history
    items of the first test user.

    With a ``tokenizer``, only items of its code table, falling back to the table's first items when the prepared
    data cannot be read; without one, the data's items as they are, or an empty list.
    """
    table = tokenizer.code_table if tokenizer is not None else None
    fallback = list(table.item_ids[:max_items]) if table is not None else []
    if not Path(data_dir).is_dir():
        return fallback
    try:
        from genrec.data_scripts.prepare import load_genrec_dataset

        sequences, _ = load_genrec_dataset(data_dir)
        row = sequences["test"][0]["item_ids"]
        history = [str(item) for item in row[:-1] if table is None or item in table]  # the last one is the target
        if history:
            return history[-max_items:]
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return fallback


def usage_snippet(repo_id: str, history: Sequence[str], *, revision: str | None = None) -> str:
    """Python that loads the model by ``repo_id`` (remote code, no genrec needed) and recommends."""
    pin = f', revision="{revision}"' if revision else ""
    return f"""
from transformers import AutoModel, AutoTokenizer

# The repository carries genrec's modeling and tokenizer code (trust_remote_code=True); with genrec
# installed, `import genrec` first and trust_remote_code is not needed.
model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True{pin})
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True{pin})

history = {list(history)!r}  # one user's item ids, oldest first
for item_id, score in model.recommend([history], tokenizer, k=10)[0]:
    print(item_id, round(score, 3))

# Plain generate() is a beam search over existing items only (defaults in generation_config.json).
inputs = tokenizer(history, is_split_into_words=True, return_tensors="pt")
print(tokenizer.decode_items(model.generate(**inputs)))
"""


def stage2_log_history(stage2_dir: str | Path) -> list[dict[str, Any]]:
    """The logged training losses and validation metrics of a Stage II run (its newest checkpoint's state)."""
    import json

    states = sorted(Path(stage2_dir).glob("checkpoints/step-*/trainer_state.json"))
    if not states:
        return []
    try:
        return list(json.loads(states[-1].read_text(encoding="utf-8")).get("log_history") or [])
    except (OSError, ValueError):
        return []


def write_training_curve(run_dir: str | Path, log_history: Sequence[Mapping[str, Any]]) -> Path | None:
    """Plot Stage II's training loss and validation Recall@10 per step into ``run_dir/training_curve.png``.

    Returns the file, or None when there is nothing to plot or matplotlib (the ``analysis`` extra) is not
    installed: the card then simply has no figure.
    """
    loss = [(row["step"], row["train/loss"]) for row in log_history if "train/loss" in row]
    recall = [(row["step"], row["validation/recall@10"]) for row in log_history if "validation/recall@10" in row]
    if not loss and not recall:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, left = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    if loss:
        left.plot(*zip(*loss, strict=True), color="tab:blue", label="training loss")
        left.set_ylabel("training loss", color="tab:blue")
    left.set_xlabel("Stage II step")
    if recall:
        right = left.twinx()
        right.plot(*zip(*recall, strict=True), color="tab:orange", marker="o", label="validation Recall@10")
        right.set_ylabel("validation Recall@10", color="tab:orange")
    left.set_title("UNGER Stage II")
    fig.tight_layout()
    path = Path(run_dir) / CURVE_FILE
    fig.savefig(path, metadata={"Software": None})  # no version string: the same run gives the same bytes
    plt.close(fig)
    return path


def public_summary(summary: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """``summary`` with every absolute path made relative to ``run_dir`` (or reduced to its name) for upload."""
    root = Path(run_dir).resolve()

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, key) for v in value]
        if isinstance(value, str):
            if key == "dataset":
                return dataset_display_name(value)
            if os.path.isabs(value):
                path = Path(value).resolve()
                return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        return value

    return clean(dict(summary))


def test_rankings(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> test metrics of each ranking a run measured (``run.json``'s ``summary``): the model alone
    (``model_test_metrics``) and then ``model + transition prior (w = ...)`` (``test_metrics``; ``w = ..., c =
    ...`` when the prior's counts were smoothed) for a run with the prior; the model alone (``test_metrics``) for a
    run without. What the card and ``genrec run``'s closing block show, labelled the same way."""
    test = dict(summary.get("test_metrics") or {})
    prior = summary.get("transition_prior")
    if not prior:
        return {"model alone": test} if test else {}
    rankings = {}
    if summary.get("model_test_metrics"):
        rankings["model alone"] = dict(summary["model_test_metrics"])
    if test:
        smoothing = f", c = {prior['smoothing']}" if prior.get("smoothing") else ""
        rankings[f"model + transition prior (w = {prior.get('weight')}{smoothing})"] = test
    return rankings


def _metric_table(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if "@" in str(key) or key == "invalid_rate"}


def build_run_card(
    run_dir: str | Path,
    summary: Mapping[str, Any],
    config: Any,
    tokenizer: Any,
    *,
    repo_id: str,
    revision: str | None = None,
    dataset_repo: str | None = None,
    training_curve: bool | None = None,
) -> ModelCard:
    """The model card of the run folder ``run_dir`` for the repo ``repo_id`` (used by the snippet).

    ``summary`` is the run's ``run.json``; ``config``/``tokenizer`` the exported model's; ``dataset_repo``
    the Hub id of the training data when it was pushed (the YAML ``datasets``); ``training_curve``: whether the
    card shows the training curve beside it (default: whether ``run_dir`` holds one; an export that writes the
    root through a staging folder says it).
    """
    run_dir = Path(run_dir)
    dataset = dataset_display_name(str(summary.get("dataset", "")))
    hub_id = dataset_repo or (dataset if summary.get("source") == "hub" and "/" in dataset else None)
    terms = data_terms(summary.get("source"))
    stages = summary.get("stages", {})
    test = _metric_table(summary.get("test_metrics") or {})
    validation = _metric_table(summary.get("validation_metrics") or {})
    code_table = code_table_summary(tokenizer.code_table)
    profile = summary.get("profile", {})
    tiger = profile.get("stage1") is False  # the `tiger` profile: no Stage I, RQ-VAE codes of the text embeddings
    run_settings = {
        "profile": profile.get("name"),
        "seed": summary.get("seed"),
        "semantic-ID levels x codebook size": f"{summary.get('num_levels')} x {summary.get('codebook_size')}",
        "Stage I steps (best)": "none (TIGER: the text embeddings are quantized)" if tiger
        else f"{stages.get('stage1', {}).get('steps')} ({stages.get('stage1', {}).get('best_step')})",
        "Stage II steps (best)": f"{stages.get('stage2', {}).get('steps')} ({stages.get('stage2', {}).get('best_step')})",
        "Stage II learning-rate schedule": profile.get("stage2_lr_schedule"),
        "validation / test beams": f"{profile.get('eval_beams')} / {profile.get('test_beams') or profile.get('eval_beams')}",
        "validation users": profile.get("max_eval_users") or "all",
    }
    if "stage2_lr" in profile:  # recorded since the field exists (earlier runs trained at the paper's 1e-3)
        run_settings["Stage II peak learning rate"] = profile["stage2_lr"]
    prior = summary.get("transition_prior")
    metric_columns: dict[str, dict[str, dict[str, Any]]] = {}
    if prior:
        smoothing = prior.get("smoothing")
        run_settings["transition prior (weight chosen on validation)"] = (
            f"w = {prior.get('weight')}" + (f", smoothing c = {smoothing}" if smoothing else "")
            + f" over {prior.get('num_transitions')} training pairs; recommend() ranks by (1 - w) p_model + w "
            + ("count(last -> item) / (count(last -> *) + c)" if smoothing else "p_transition")
        )
        rankings = {label: _metric_table(metrics) for label, metrics in test_rankings(summary).items()}
        if rankings:
            metric_columns["test"] = rankings
        if validation:  # Stage II's model selection: the model alone
            metric_columns["validation"] = {"model alone": validation}
    finetune = summary.get("finetune") or {}
    base_model = None
    if finetune:
        origin = dataset_display_name(str(finetune.get("source", "")))
        if finetune.get("revision"):
            origin += f" @ {finetune['revision']}"
        run_settings["Stage II initialised from"] = origin if finetune.get("transfer") else "random (control run)"
        if finetune.get("transfer") and _is_hub_id(str(finetune.get("source", ""))):
            base_model = str(finetune["source"])
    training: dict[str, Any] = {}
    for name in ("prepare", "embed", "stage1", "quantize", "stage2", "transition_prior", "export"):
        if "seconds" in stages.get(name, {}):  # None: reused from a killed sitting that left no time behind
            seconds = stages[name]["seconds"]
            training[f"{name} (s)"] = seconds if isinstance(seconds, int | float) else "unknown"
    known = [value for value in training.values() if isinstance(value, int | float)]
    training["total (s)"] = summary.get("total_seconds", round(sum(known), 2))
    for key, value in (summary.get("hardware") or {}).items():
        training[key.replace("_", " ")] = value
    history = example_history(run_dir / "data", tokenizer)
    mscgrec = getattr(config, "model_type", None) == "mscgrec"
    if mscgrec:
        run_settings["modalities (decoding first)"] = ", ".join(
            [str(config.decode_modality), *map(str, config.history_modalities)]
        )
        run_settings["modality mask probability"] = config.mask_probability
    family = "MSCGRec" if mscgrec else "TIGER-style" if tiger else "UNGER"
    return build_model_card(
        title=f"{family} generative recommender on {dataset}",
        summary=(
            "An MSCGRec model trained by `genrec run --model mscgrec`: every item quantized per modality (residual "
            "k-means of a sequential recommender's item embeddings and of the text embeddings, each with its own "
            "collision level); the encoder reads every modality of each history item, the decoder generates the "
            "next item's codes in one modality under a prefix constraint. Metrics rank the full item corpus "
            "(leave-one-out test split)."
            if mscgrec
            else "A TIGER-style model trained by `genrec run --profile tiger`: each item's code is an RQ-VAE "
            "quantization of its text embedding (plus a collision level where codes collide); an encoder-decoder "
            "(genrec's UNGER class, without Stage I fusion, distillation or transition prior) reads the history's "
            "code sequence and generates the next item's codes under a prefix constraint. Metrics rank the full "
            "item corpus (leave-one-out test split)."
            if tiger
            else "An UNGER model trained by `genrec run`: unified semantic-collaborative item codes (Stage I + "
            "residual hierarchical k-means) and an encoder-decoder that generates the next item's codes under "
            "a prefix constraint (Stage II with intra-modality distillation). Metrics rank the full item corpus "
            "(leave-one-out test split)."
        ),
        usage=usage_snippet(repo_id, history, revision=revision),
        **dataset_fields(terms, dataset, hub_id),
        metrics={"test": test, "validation": validation},
        metric_columns=metric_columns,
        results_note=_results_note(profile.get("name"), prior, test, validation,
                                   _metric_table(summary.get("model_test_metrics") or {})),
        intended_use=intended_use_section(
            model="TIGER" if tiger else family, dataset=dataset, data_name=terms.name,
            num_items=len(tokenizer.code_table.item_ids),
            new_items=(
                "A new item has no codes: adding items means quantizing them in every modality (new code "
                "tables) and retraining the model" if mscgrec else
                "A new item has no code: adding items means re-quantizing (a new code table) and retraining "
                "Stage II"
            ) + (", and refitting the transition prior." if prior else "."),
            transition_weight=prior.get("weight") if prior else None,
            model_alone_call="`model.recommend(..., transition_weight=0.0)`",
        ),
        model_name=repo_id.split("/")[-1],
        model_index=eval_results(
            {k: v for k, v in test.items() if "@" in k}, dataset_type=hub_id or dataset, dataset_name=dataset
        ),
        hyperparameters=non_default_settings(config),
        run_settings=run_settings,
        training=training,
        code_table=code_table,
        papers=("mscgrec",) if mscgrec else ("tiger",) if tiger else (
            ("unger", "mscgrec") if getattr(config, "constrained_training", False) else ("unger",)
        ),
        tags=("mscgrec",) if mscgrec else ("tiger",) if tiger else ("unger",),
        base_model=base_model,
        training_curve=CURVE_FILE if (
            (run_dir / CURVE_FILE).is_file() if training_curve is None else training_curve
        ) else None,
    )


def _results_note(profile: str | None, prior: Mapping[str, Any] | None, *metrics: Mapping[str, Any]) -> str:
    """What the run card's result tables can say: the protocol (and where HR went, ``metrics``: the tables'),
    the two test columns, a quick run's warning."""
    note = " ".join(filter(None, ["Test: each user's last item, ranked against every item of the catalogue "
                                  "(leave-one-out).", duplicate_hr_note(*metrics)]))
    if prior:
        note += (" The test table shows the model alone and the model with the transition prior that its "
                 "`recommend()` uses (see *Intended use and limitations*).")
    if profile == "quick":
        note = ("**This run used the `quick` profile**, a smoke test (a tiny model trained for a few steps, at "
                "most 128 validation users): its figures only show that every stage ran and mean nothing about the "
                "model's quality. " + note)
    return note


def _is_hub_id(name: str) -> bool:
    """Whether ``name`` is a Hub repo id ("org/name") rather than a local folder."""
    return name.count("/") == 1 and not os.path.isabs(name) and not name.startswith((".", "~")) and not Path(name).exists()
