"""``pipeline("generative-recommendation", model=...)``: item-id histories in, ranked item ids out.

A ``transformers.Pipeline`` registered through ``PIPELINE_REGISTRY`` (transformers' custom-pipeline
mechanism) when genrec is imported, so a genrec UNGER folder or Hub repo works with the one-line pipeline API:

    >>> import genrec
    >>> from transformers import pipeline
    >>> recommend = pipeline("generative-recommendation", model="org/unger-ml-100k")
    >>> recommend("1 50 181", k=5)                         # one history, oldest first, as tokenizer("1 50 181")
    [{'item_id': '...', 'score': -0.71}, ...]
    >>> recommend(["1", "50", "181"], k=5)                 # the same history as a list of item ids
    >>> recommend([["1", "50"], ["7"]], k=5)               # several histories: one list per history

The work is the model's own ``recommend`` (constrained beam search over the model's code table), so the
pipeline ranks exactly as ``model.recommend(histories, tokenizer, k)`` does, with its default of leaving the
history's own items out (``exclude_history=False`` keeps them).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from transformers import Pipeline

__all__ = ["PIPELINE_TASK", "GenerativeRecommendationPipeline"]

PIPELINE_TASK = "generative-recommendation"


def _is_item_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def _is_history(value: Any) -> bool:
    """A list / tuple of item ids (strings, or ints that stand for their decimal strings)."""
    return isinstance(value, (list, tuple)) and all(_is_item_id(item) for item in value)


def as_histories(inputs: Any) -> tuple[list[list[Any]], bool]:
    """The pipeline's inputs as a list of histories, and whether they were a single history.

    The contract: a ``str`` is one history of whitespace-separated item ids (``"1 50 181"``, as
    ``tokenizer("1 50 181")`` reads it); a list / tuple of item ids is one history (``["1", "50", "181"]``; ids
    may hold spaces there, so a list of strings is never split); a non-empty list / tuple of such lists is a
    batch, one result per history. Item ids are strings; an int stands for its decimal string when that is an
    item id. Anything else is a ``TypeError`` that says what is accepted.
    """
    if isinstance(inputs, str):
        return [inputs.split()], True
    if _is_history(inputs):
        return [list(inputs)], True
    if isinstance(inputs, (list, tuple)) and inputs and all(_is_history(h) for h in inputs):
        return [list(h) for h in inputs], False
    raise TypeError(
        'pass one history (a string of whitespace-separated item ids, "1 50 181", or a list of item ids, '
        '["1", "50", "181"], oldest first) or a list of such lists, got '
        f"{type(inputs).__name__}"
    )


class GenerativeRecommendationPipeline(Pipeline):
    """Next-item recommendation with a genrec generative recommender (UNGER).

    Call with one history (``"1 50 181"`` or ``["1", "50", "181"]``, oldest first) or a list of histories (lists);
    see :func:`as_histories`. Keyword arguments: ``k`` (items per history, default 10), ``num_beams``
    (default ``k``), ``on_unknown`` ("raise" or "skip" history items the model does not know),
    ``exclude_history`` (default True: the history's own items are not recommended; False keeps them, the
    ranking evaluation scores). Returns, per history, a list of ``{"item_id", "score"}`` dicts, best first.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def _sanitize_parameters(
        self, k: int | None = None, num_beams: int | None = None, on_unknown: str | None = None,
        exclude_history: bool | None = None, **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; use k=, num_beams=, on_unknown=, exclude_history=")
        forward: dict[str, Any] = {}
        if k is not None:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ValueError(f"k must be a positive int, got {k!r}")
            forward["k"] = k
        if num_beams is not None:
            forward["num_beams"] = num_beams
        if on_unknown is not None:
            forward["on_unknown"] = on_unknown
        if exclude_history is not None:
            if not isinstance(exclude_history, bool):
                raise ValueError(f"exclude_history must be True or False, got {exclude_history!r}")
            forward["exclude_history"] = exclude_history
        return {}, forward, {}

    def __call__(self, inputs: str | Sequence[str] | Sequence[Sequence[str]], **kwargs: Any) -> Any:
        """One history -> one ranked list; a list of histories -> a list of ranked lists."""
        histories, single = as_histories(inputs)
        results = super().__call__(histories, **kwargs)
        return results[0] if single else results

    def preprocess(self, inputs: list[str]) -> dict[str, Any]:
        return {"history": inputs}

    def _forward(self, model_inputs: dict[str, Any], k: int = 10, num_beams: int | None = None,
                 on_unknown: str = "raise", exclude_history: bool | None = None) -> dict[str, Any]:
        if not hasattr(self.model, "recommend"):
            raise TypeError(f"{type(self.model).__name__} is not a genrec recommender (it has no recommend())")
        # exclude_history only when given: the model's own default (True) otherwise
        extra = {} if exclude_history is None else {"exclude_history": exclude_history}
        (ranked,) = self.model.recommend(
            [model_inputs["history"]], self.tokenizer, k=k, num_beams=num_beams, on_unknown=on_unknown, **extra
        )
        return {"ranked": ranked}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"item_id": item, "score": float(score)} for item, score in model_outputs["ranked"]]
