"""``pipeline("generative-recommendation", model=...)``: item-id histories in, ranked item ids out.

A ``transformers.Pipeline`` registered through ``PIPELINE_REGISTRY`` (transformers' custom-pipeline
mechanism) when genrec is imported, so a genrec UNGER folder or Hub repo works with the one-line pipeline API:

    >>> import genrec
    >>> from transformers import pipeline
    >>> recommend = pipeline("generative-recommendation", model="org/unger-ml-100k")
    >>> recommend(["1", "50", "181"], k=5)                 # one history, oldest first
    [{'item_id': '...', 'score': -0.71}, ...]
    >>> recommend([["1", "50"], ["7"]], k=5)               # several histories: one list per history

The work is the model's own ``recommend`` (constrained beam search over the model's code table), so the
pipeline ranks exactly as ``model.recommend(histories, tokenizer, k)`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import Pipeline

__all__ = ["PIPELINE_TASK", "GenerativeRecommendationPipeline"]

PIPELINE_TASK = "generative-recommendation"


def _is_history(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


class GenerativeRecommendationPipeline(Pipeline):
    """Next-item recommendation with a genrec generative recommender (UNGER).

    Call with one history (a list of item-id strings, oldest first) or a list of histories; keyword
    arguments: ``k`` (items per history, default 10), ``num_beams`` (default ``k``), ``on_unknown``
    ("raise" or "skip" history items the model does not know). Returns, per history, a list of
    ``{"item_id", "score"}`` dicts, best first.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def _sanitize_parameters(
        self, k: int | None = None, num_beams: int | None = None, on_unknown: str | None = None, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; use k=, num_beams=, on_unknown=")
        forward: dict[str, Any] = {}
        if k is not None:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ValueError(f"k must be a positive int, got {k!r}")
            forward["k"] = k
        if num_beams is not None:
            forward["num_beams"] = num_beams
        if on_unknown is not None:
            forward["on_unknown"] = on_unknown
        return {}, forward, {}

    def __call__(self, inputs: Sequence[str] | Sequence[Sequence[str]], **kwargs: Any) -> Any:
        """One history -> one ranked list; a list of histories -> a list of ranked lists."""
        if _is_history(inputs):
            return super().__call__([list(inputs)], **kwargs)[0]
        if isinstance(inputs, (list, tuple)) and inputs and all(_is_history(h) for h in inputs):
            return super().__call__([list(h) for h in inputs], **kwargs)
        raise TypeError(
            "pass one history (a list of item-id strings, oldest first) or a list of such histories, got "
            f"{type(inputs).__name__}"
        )

    def preprocess(self, inputs: list[str]) -> dict[str, Any]:
        return {"history": inputs}

    def _forward(self, model_inputs: dict[str, Any], k: int = 10, num_beams: int | None = None,
                 on_unknown: str = "raise") -> dict[str, Any]:
        if not hasattr(self.model, "recommend"):
            raise TypeError(f"{type(self.model).__name__} is not a genrec recommender (it has no recommend())")
        (ranked,) = self.model.recommend(
            [model_inputs["history"]], self.tokenizer, k=k, num_beams=num_beams, on_unknown=on_unknown
        )
        return {"ranked": ranked}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"item_id": item, "score": float(score)} for item, score in model_outputs["ranked"]]
