"""Batch inference: the top-``k`` items of every user (row) of a split of a prepared dataset, in one parquet file.

``genrec recommend --model M --data D --split test --out topk.parquet`` calls :func:`recommend_split`. Each row of
a ``sequences`` split is one user; its LAST item id is the target that evaluation holds out and the items before it
are the history, read by evaluation's own :func:`~genrec.trainers.evaluation.evaluator.load_examples`. Batch
inference recommends for exactly that history, so its lists are the ones evaluation scores (bit for bit with ``exclude_history=False``
and evaluation's ``k`` / beams / batch size), and a row's file entries equal ``recommend([history])`` for it.
Rows without a history item (one item only) get no entries and are counted, as evaluation skips them.

The file (:data:`TOPK_COLUMNS`): ``user`` (the row's ``user_id``; the row index as a string for data without one),
``rank`` (1..k, best first), ``item`` (item id, a string) and ``score`` (the recommender's score, float64), one
row per recommendation. Under ``accelerate launch --num_processes N`` the users are split across the processes
(:func:`~genrec.trainers.engine.processes.map_batches`: every process decodes every N-th batch, the lists are
gathered in row order) and the main process writes the file; the file equals a one-process run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import write_atomic
from genrec.trainers.engine.processes import map_batches, on_main_process
from genrec.trainers.evaluation.evaluator import load_examples

__all__ = ["TOPK_COLUMNS", "SplitRecommendations", "recommend_split", "write_topk_parquet"]

#: The columns of the top-k parquet file, in order.
TOPK_COLUMNS = ("user", "rank", "item", "score")


@dataclass
class SplitRecommendations:
    """The top-``k`` lists of a split: one per recommended user, in row order, and the rows left out."""

    users: list[str]
    ranked: list[list[tuple[str | None, float]]]
    num_skipped_no_history: int = 0

    @property
    def num_rows(self) -> int:
        """Entries (user, rank) of the file."""
        return sum(len(row) for row in self.ranked)

    def columns(self) -> dict[str, list[Any]]:
        """The file's columns (:data:`TOPK_COLUMNS`): one entry per recommendation, best first per user."""
        out: dict[str, list[Any]] = {name: [] for name in TOPK_COLUMNS}
        for user, row in zip(self.users, self.ranked, strict=True):
            for rank, (item, score) in enumerate(row, start=1):
                out["user"].append(user)
                out["rank"].append(rank)
                out["item"].append(item)
                out["score"].append(float(score))
        return out


def recommend_split(
    recommender: Any,
    rows: Any,
    *,
    k: int = 10,
    num_beams: int | None = None,
    batch_size: int = 256,
    on_unknown: str = "raise",
    exclude_history: bool = True,
    desc: str = "recommend",
    show_progress: bool = True,
) -> SplitRecommendations:
    """The top-``k`` of every row of ``rows`` (one ``sequences`` split) by ``recommender`` (a
    :func:`~genrec.trainers.jobs.load.load_recommender` result, any family), in batches of ``batch_size`` users
    with a progress bar, split across the processes of a launch (every process returns the whole result).

    ``exclude_history`` (default True, as ``recommend``'s): the history's own items are left out of its list;
    False gives the plain ranking that evaluation scores. A TTDS model also reads each row's user id (its codes go
    into the prompt), as its evaluation does.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > recommender.num_items:
        raise ValueError(f"-k {k} is more than the catalogue's {recommender.num_items} items")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, got {batch_size!r}")
    # the rows as evaluation reads them (history = the row without its target), but every history item kept:
    # the model truncates to its own max_history_items, and the whole history is what exclude_history leaves out
    examples = load_examples(rows, desc, max_history=None)
    users, histories, skipped = examples.user_ids, examples.histories, examples.num_skipped_no_history
    pass_users = getattr(recommender, "family", None) == "ttds"

    def recommend(batch: Sequence[tuple[str, list[str]]]) -> list[list[tuple[str | None, float]]]:
        extra: dict[str, Any] = {"users": [user for user, _ in batch]} if pass_users else {}
        return recommender.recommend(
            [history for _, history in batch], k=k, num_beams=num_beams, on_unknown=on_unknown,
            exclude_history=exclude_history, batch_size=batch_size, **extra,
        )

    ranked = map_batches(recommend, list(zip(users, histories, strict=True)), batch_size, desc=desc,
                         unit="batch", show_progress=show_progress)
    return SplitRecommendations(users=users, ranked=ranked, num_skipped_no_history=skipped)


def write_topk_parquet(path: str | Path, result: SplitRecommendations) -> Path:
    """Write ``result`` as the top-k parquet file (:data:`TOPK_COLUMNS`) at ``path``, whole or not at all; under
    a launch only the main process writes (the others wait, and see its error if it fails)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = result.columns()
    table = pa.table({
        "user": pa.array(columns["user"], type=pa.string()),
        "rank": pa.array(columns["rank"], type=pa.int32()),
        "item": pa.array(columns["item"], type=pa.string()),
        "score": pa.array(columns["score"], type=pa.float64()),
    })
    path = Path(path)

    def write() -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, lambda tmp: pq.write_table(table, tmp))

    return on_main_process(write)
