"""Model cards written from the actual run (datasets, metrics, settings, usage), on every save.

Following sentence-transformers, a checkpoint's README.md is generated from what the run really did, so a
card never claims a metric or a setting that the run did not produce. Metrics are grouped by split and the
split name is part of the table heading ("test" numbers are the reported ones; "validation" numbers are
labelled as such).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"

CITATIONS = {
    "unger": "Xiao et al., *UNGER: Generative Recommendation with a Unified Code via Semantic and "
    "Collaborative Integration*, ACM TOIS.",
    "ttds": "Yin et al., *Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic "
    "Semantic Token Generator*.",
    "mscgrec": "*Multimodal Generative Recommendation for Fusing Semantic and Collaborative Signals* "
    "(MSCGRec).",
}


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
) -> ModelCard:
    """A filled model card; ``metrics`` maps a split name ("test", "validation") to metric -> value."""
    from genrec import __version__

    for split in metrics or {}:
        if split not in {"test", "validation", "train"}:
            raise ValueError(f"metric split must be test, validation or train, got {split!r}")
    card_data = ModelCardData(
        library_name="genrec",
        tags=["generative-recommendation", "semantic-ids", *tags],
        datasets=[name for name in datasets if "/" in name] or None,
        base_model=base_model,
        pipeline_tag=None,
    )
    citation = "\n".join(f"- {CITATIONS[p]}" for p in papers if p in CITATIONS)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=title,
        summary=summary,
        usage=usage.strip(),
        datasets=dict(datasets),
        metrics={split: dict(values) for split, values in (metrics or {}).items()},
        hyperparameters=dict(hyperparameters or {}),
        notes=notes,
        citation=citation,
        genrec_version=__version__,
    )


def save_model_card(directory: str | Path, card: ModelCard) -> Path:
    """Write ``card`` as ``directory/README.md`` and return the path."""
    path = Path(directory) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path
