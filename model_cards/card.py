"""Model cards written from the actual run (datasets, metrics, settings, usage), on every save.

Following sentence-transformers, a checkpoint's README.md is generated from what the run really did, so a
card never claims a metric or a setting that the run did not produce. Metrics are grouped by split and the
split name is part of the table heading ("test" numbers are the reported ones; "validation" numbers are
labelled as such). The YAML header is written by ``huggingface_hub.ModelCardData``: ``library_name``,
``tags``, ``datasets``, ``base_model``, ``license`` (+ ``license_name``/``license_link`` for ``other``),
``pipeline_tag`` and a ``model-index`` built from the test metrics (``EvalResult``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"

#: The Hub has no recommendation task; "other" is the pipeline tag such models use.
PIPELINE_TAG = "other"

CITATIONS = {
    "unger": "Xiao et al., *UNGER: Generative Recommendation with a Unified Code via Semantic and "
    "Collaborative Integration*, ACM TOIS.",
    "ttds": "Yin et al., *Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic "
    "Semantic Token Generator*.",
    "mscgrec": "Vandenhirtz et al., *Multimodal Generative Recommendation for Fusing Semantic and Collaborative "
    "Signals* (MSCGRec).",
}

#: BibTeX of the papers genrec implements (what the reading copies state; no guessed venue or year).
BIBTEX = {
    "unger": """@article{xiao_unger,
  title   = {UNGER: Generative Recommendation with A Unified Code via Semantic and Collaborative Integration},
  author  = {Xiao and others},
  journal = {ACM Transactions on Information Systems}
}""",
    "ttds": """@misc{yin_ttds,
  title  = {Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic Semantic Token Generator},
  author = {Yin, Jun and Zeng, Zhengxin and Li, Mingzheng and Yan, Hao and Li, Chaozhao and Han, Weihao and
            Zhang, Jianjin and Liu, Ruochen and Sun, Allen and Deng, Denvy and Sun, Feng and Zhang, Qi and
            Pan, Shirui and Wang, Senzhang}
}""",
    "mscgrec": """@misc{vandenhirtz_mscgrec,
  title  = {Multimodal Generative Recommendation for Fusing Semantic and Collaborative Signals},
  author = {Vandenhirtz, Moritz and Hassani, Kaveh and Ghasemlou, Shervin and Shao, Shuai and
            Eghbalzadeh, Hamid and Peng, Fuchun and Liu, Jun and Iuzzolino, Michael Louis}
}""",
}

_METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hr": "HR", "mrr": "MRR"}


def code_table_summary(table: Any) -> dict[str, Any]:
    """The card's "code table" section: size, levels, codebook use, collisions and the content hash of ``table``
    (a ``CodeTable``; duck-typed so that model_cards does not import tokenization)."""
    stats = table.stats()
    return {
        "items": stats["num_items"],
        "levels (semantic + collision)": f"{stats['num_semantic_levels']} + {int(stats['has_collision_level'])}",
        "codebook sizes": stats["codebook_sizes"],
        "codes used per level": stats["codes_used_per_level"],
        "collision rate (items sharing a semantic code)": round(stats["collision_rate"], 4),
        "largest collision group": stats["max_collision_group"],
        "prefix-tree nodes per depth": stats["prefix_nodes_per_depth"],
        "content hash": table.content_hash,
    }


def dataset_fields(terms: Any, dataset: str, hub_id: str | None) -> dict[str, Any]:
    """The :func:`build_model_card` arguments that describe the training data: the dataset (by Hub id when it
    has one), its owner's terms, citation and licence (``terms``: ``data_scripts.provenance.data_terms``)."""
    return {
        "datasets": {hub_id or dataset: f"{terms.name}; leave-one-out splits prepared by `genrec prepare`"},
        "hub_datasets": [hub_id] if hub_id else [],
        "data_terms": terms.text,
        "data_citation": terms.citation,
        "license": terms.license,
        "license_name": terms.license_name,
        "license_link": terms.license_link,
    }


def eval_results(
    metrics: Mapping[str, Any], *, dataset_type: str, dataset_name: str, split: str = "test"
) -> list[EvalResult]:
    """``model-index`` entries for ``metrics`` ("recall@10" -> value); non-numeric values are skipped."""
    results = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        base, _, k = str(key).partition("@")
        name = f"{_METRIC_NAMES.get(base, base)}@{k}" if k else str(key)
        results.append(
            EvalResult(
                task_type="other", task_name="Sequential recommendation (full-corpus ranking)",
                dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=split,
                metric_type=str(key), metric_name=name, metric_value=float(value),
            )
        )
    return results


def build_model_card(
    *,
    title: str,
    summary: str,
    usage: str,
    datasets: Mapping[str, str],
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    papers: tuple[str, ...] = ("unger",),
    tags: tuple[str, ...] = (),
    base_model: str | None = None,
    notes: str = "",
    license: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
    data_terms: str = "",
    data_citation: str = "",
    hub_datasets: Sequence[str] | None = None,
    model_index: Sequence[EvalResult] | None = None,
    model_name: str | None = None,
    code_table: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    run_settings: Mapping[str, Any] | None = None,
    training_curve: str | None = None,
) -> ModelCard:
    """A filled model card; ``metrics`` maps a split name ("test", "validation") to metric -> value.

    ``hyperparameters`` are the settings that differ from the defaults; ``run_settings`` the run's own
    (profile, seed, steps); ``training`` time and hardware; ``code_table`` the code table's statistics;
    ``hub_datasets`` the Hub ids for the YAML ``datasets`` (default: the keys of ``datasets`` that look like
    Hub ids); ``model_index`` the ``EvalResult``s of the YAML ``model-index`` (it needs ``model_name``);
    ``training_curve`` the repo-relative path of a training-curve image shown under the results.
    """
    from genrec._version import __version__

    for split in metrics or {}:
        if split not in {"test", "validation", "train"}:
            raise ValueError(f"metric split must be test, validation or train, got {split!r}")
    if hub_datasets is None:
        hub_datasets = [name for name in datasets if "/" in name]
    card_data = ModelCardData(
        library_name="genrec",
        tags=["generative-recommendation", "sequential-recommendation", "recommendation", "semantic-ids", *tags],
        datasets=list(hub_datasets) or None,
        base_model=base_model,
        pipeline_tag=PIPELINE_TAG,
        license=license,
        license_name=license_name if license == "other" else None,
        license_link=license_link if license == "other" else None,
        model_name=model_name if model_index else None,
        eval_results=list(model_index) if model_index else None,
    )
    citation = "\n".join(f"- {CITATIONS[p]}" for p in papers if p in CITATIONS)
    bibtex = "\n\n".join([BIBTEX[p] for p in papers if p in BIBTEX] + ([data_citation] if data_citation else []))
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=title,
        summary=summary,
        usage=usage.strip(),
        datasets=dict(datasets),
        data_terms=data_terms,
        metrics={split: dict(values) for split, values in (metrics or {}).items()},
        hyperparameters=dict(hyperparameters or {}),
        run_settings=dict(run_settings or {}),
        training=dict(training or {}),
        code_table=dict(code_table or {}),
        notes=notes,
        training_curve=training_curve,
        citation=citation,
        bibtex=bibtex,
        genrec_version=__version__,
    )


def save_model_card(directory: str | Path, card: ModelCard) -> Path:
    """Write ``card`` as ``directory/README.md`` (whole or not at all: a temporary sibling renamed over it, removed
    if anything fails) and return the path."""
    path = Path(directory) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        card.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
