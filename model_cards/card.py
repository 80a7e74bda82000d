"""Model cards written from the actual run (datasets, metrics, settings, usage), on every save.

Following sentence-transformers, a checkpoint's README.md is generated from what the run really did, so a
card never claims a metric or a setting that the run did not produce. Metrics are grouped by split and the
split name is part of the table heading ("test" numbers are the reported ones; "validation" numbers are
labelled as such). The YAML header is written by ``huggingface_hub.ModelCardData``: ``library_name``,
``tags``, ``datasets``, ``base_model``, ``license`` (+ ``license_name``/``license_link`` for ``other``),
``pipeline_tag`` and a ``model-index`` built from the test metrics (``EvalResult``).

Leave-one-out splits have one target per user, so ``hr@K`` (a hit in the top K) and ``recall@K`` (the share of
the user's targets in the top K) are the same number; the evaluation keeps both names (``run.json`` and other
tools read either), the cards print ``recall@K`` only (:func:`without_duplicate_hr`). A split's table may have
several columns (``metric_columns``), e.g. the model alone beside the model with the transition prior.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"

#: The Hub has no recommendation task; "other" is the pipeline tag such models use.
PIPELINE_TAG = "other"

CITATIONS = {
    "unger": "Xiao et al., *UNGER: Generative Recommendation with A Unified Code via Semantic and "
    "Collaborative Integration*, ACM TOIS.",
    "ttds": "Yin et al., *Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic "
    "Semantic Token Generator*.",
    "mscgrec": "Vandenhirtz et al., *Multimodal Generative Recommendation for Fusing Semantic and Collaborative "
    "Signals* (MSCGRec).",
    "tiger": "Rajput et al., *Recommender Systems with Generative Retrieval* (TIGER), NeurIPS 2023.",
}

#: BibTeX of the papers genrec implements, as their arXiv records give them (identifier, year, authors; the
#: reading copies in ``../shared/papers/`` lost their date lines in extraction), braces keeping acronyms' capitals.
BIBTEX = {
    "unger": """@article{xiao2025unger,
  title   = {{UNGER}: Generative Recommendation with {A} Unified Code via Semantic and Collaborative Integration},
  author  = {Xiao, Longtao and Wang, Haozhao and Wang, Cheng and Ji, Linfei and Wang, Yifan and Zhu, Jieming and
             Dong, Zhenhua and Zhang, Rui and Li, Ruixuan},
  journal = {arXiv preprint arXiv:2502.06269},
  year    = {2025}
}""",
    "ttds": """@article{yin2024ttds,
  title   = {Unleash {LLMs} Potential for Recommendation by Coordinating Twin-Tower Dynamic Semantic Token Generator},
  author  = {Yin, Jun and Zeng, Zhengxin and Li, Mingzheng and Yan, Hao and Li, Chaozhao and Han, Weihao and
             Zhang, Jianjin and Liu, Ruochen and Sun, Allen and Deng, Denvy and Sun, Feng and Zhang, Qi and
             Pan, Shirui and Wang, Senzhang},
  journal = {arXiv preprint arXiv:2409.09253},
  year    = {2024}
}""",
    "tiger": """@article{rajput2023tiger,
  title   = {Recommender Systems with Generative Retrieval},
  author  = {Rajput, Shashank and Mehta, Nikhil and Singh, Anima and Keshavan, Raghunandan H. and Vu, Trung and
             Heldt, Lukasz and Hong, Lichan and Tay, Yi and Tran, Vinh Q. and Samost, Jonah and Kula, Maciej and
             Chi, Ed H. and Sathiamoorthy, Maheswaran},
  journal = {arXiv preprint arXiv:2305.05065},
  year    = {2023}
}""",
    "mscgrec": """@article{vandenhirtz2026mscgrec,
  title   = {Multimodal Generative Recommendation for Fusing Semantic and Collaborative Signals},
  author  = {Vandenhirtz, Moritz and Hassani, Kaveh and Ghasemlou, Shervin and Shao, Shuai and
             Eghbalzadeh, Hamid and Peng, Fuchun and Liu, Jun and Iuzzolino, Michael Louis},
  journal = {arXiv preprint arXiv:2602.03713},
  year    = {2026}
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


def without_duplicate_hr(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` less each ``hr@K`` that equals its ``recall@K``.

    With one target per user (leave-one-out) a hit in the top K and the recall of the user's targets at K are
    the same number, so a card that printed both would show every figure twice; an ``hr@K`` that differs (a
    split with several targets per user) or has no ``recall@K`` beside it is kept.
    """

    def duplicate(key: str, value: Any) -> bool:
        base, _, k = key.partition("@")
        recall = metrics.get(f"recall@{k}")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, recall))
        return base == "hr" and numbers and math.isclose(value, recall, rel_tol=1e-9, abs_tol=1e-12)

    return {key: value for key, value in metrics.items() if not duplicate(str(key), value)}


def duplicate_hr_note(*metrics: Mapping[str, Any]) -> str:
    """The sentence a card's results carry when :func:`without_duplicate_hr` left an ``hr@K`` out of any of
    ``metrics`` (empty otherwise), so that a reader looking for HR knows where it went."""
    dropped = any(len(without_duplicate_hr(values)) < len(values) for values in metrics)
    return "One target per user, so HR@K equals Recall@K: only Recall@K is shown." if dropped else ""


def intended_use_section(
    *,
    model: str,
    dataset: str,
    data_name: str,
    num_items: int | None,
    new_items: str,
    transition_weight: float | None = None,
    model_alone_call: str = "",
    extra: Sequence[str] = (),
) -> str:
    """The card's "Intended use and limitations" section (Markdown) for ``model`` trained on ``dataset``.

    Why in every card: a checkpoint on the Hub is found without its paper or this repository, so the card
    itself says what the model is for (ranking this catalogue's next items for a user's history, as a research
    baseline) and where its figures stop meaning anything: a closed catalogue (``new_items``: what a new item
    takes), one public dataset with a leave-one-out split and offline metrics, the popularity skew of
    interaction data, the data owners' terms (``data_name``), and, when the run mixes in the first-order
    transition prior (``transition_weight``), how much of the figures that prior is (``model_alone_call``:
    how to rank with the model alone). ``extra``: further bullets (e.g. a base model's licence).
    """
    items = f"the {num_items:,} items" if num_items else "the items"
    lines = [
        f"**Intended use.** Ranking the next items of this catalogue for one user's interaction history (item ids "
        f"of {dataset}, oldest first), the task {model} was trained and evaluated on; a research baseline for "
        "generative recommendation with semantic IDs, to reproduce, compare with and build on. It is not a "
        "tested production recommender.",
        "",
        "**Limitations.**",
        "",
        f"- **Closed catalogue.** It only recommends {items} of its code table and cannot represent others. "
        f"{new_items}",
        f"- **One dataset, offline figures.** Trained on {dataset} alone, with a leave-one-out split (each "
        "user's last item is the test target, the one before it the validation target). The figures below are "
        "offline ranking metrics on that split, not measured effects on people, and do not carry over to another "
        "catalogue, period or population.",
        "- **Popularity bias.** Fitted to interaction logs, it repeats their popularity skew: often-seen items "
        "are favoured and long-tail items seldom recommended; the offline metrics reward the same skew.",
        f"- **The data's terms.** The weights are derived from {data_name}; the data owners' terms (under *Training "
        "data*) apply to using and sharing them.",
    ]
    if transition_weight is not None:
        lines.append(
            "- **Transition prior.** Recommendations mix the model's scores with a first-order transition prior "
            "counted on the training rows' consecutive item pairs: (1 - w) p_model + w p_transition(item | last "
            f"history item), with w = {transition_weight} chosen on validation. The \"model + transition prior\" "
            "figures therefore include a Markov-chain component fitted to the training data, not the generative "
            "model alone; the \"model alone\" column is the model without it"
            + (f" ({model_alone_call})." if model_alone_call else ".")
        )
    lines += [f"- {bullet}" for bullet in extra]
    return "\n".join(lines)


def eval_results(
    metrics: Mapping[str, Any], *, dataset_type: str, dataset_name: str, split: str = "test"
) -> list[EvalResult]:
    """``model-index`` entries for ``metrics`` ("recall@10" -> value); non-numeric values and each ``hr@K``
    equal to its ``recall@K`` (:func:`without_duplicate_hr`) are skipped."""
    results = []
    for key, value in without_duplicate_hr(metrics).items():
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


def _format_metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def metric_tables(
    metrics: Mapping[str, Mapping[str, Any]], metric_columns: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """The card's result tables: ``{"split", "columns", "rows"}`` per split, the ``metric_columns`` splits
    first; ``rows`` are ``[metric, value per column...]`` formatted to 4 decimals ("–" where a column lacks the
    metric), without the ``hr@K`` that repeat ``recall@K``; a split without any metric has no table."""
    splits: dict[str, dict[str, Mapping[str, Any]]] = {split: dict(columns) for split, columns in metric_columns.items()}
    for split, values in metrics.items():
        splits.setdefault(split, {"value": values})
    tables = []
    for split, columns in splits.items():
        cleaned = {label: without_duplicate_hr(values) for label, values in columns.items()}
        keys = list(dict.fromkeys(key for values in cleaned.values() for key in values))
        rows = [[key, *(_format_metric(values[key]) if key in values else "–" for values in cleaned.values())]
                for key in keys]
        if rows:  # a split that was not evaluated gets no empty table
            tables.append({"split": split, "columns": list(cleaned), "rows": rows})
    return tables


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
    metric_columns: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    results_note: str = "",
    intended_use: str = "",
) -> ModelCard:
    """A filled model card; ``metrics`` maps a split name ("test", "validation") to metric -> value.

    ``metric_columns`` maps a split to column label -> metric -> value, for a split shown in several columns
    (e.g. "model alone" and "model + transition prior"); it replaces that split's ``metrics`` table and comes
    first. Every table leaves out the ``hr@K`` equal to ``recall@K`` (:func:`without_duplicate_hr`).
    ``results_note`` is printed above the tables (what the figures can and cannot say); ``intended_use`` is
    the "Intended use and limitations" section (Markdown). ``hyperparameters`` are the settings that differ
    from the defaults; ``run_settings`` the run's own (profile, seed, steps); ``training`` time and hardware;
    ``code_table`` the code table's statistics; ``hub_datasets`` the Hub ids for the YAML ``datasets``
    (default: the keys of ``datasets`` that look like Hub ids); ``model_index`` the ``EvalResult``s of the
    YAML ``model-index`` (it needs ``model_name``); ``training_curve`` the repo-relative path of a
    training-curve image shown under the results.
    """
    from genrec._version import __version__

    for split in [*(metrics or {}), *(metric_columns or {})]:
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
        metric_tables=metric_tables(metrics or {}, metric_columns or {}),
        results_note=results_note,
        intended_use=intended_use.strip(),
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
