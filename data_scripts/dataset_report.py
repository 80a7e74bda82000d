"""The report of a ``genrec prepare`` run (counts, skips, source, max_history), saved as
``genrec_dataset.json`` next to the data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)

REPORT_FILENAME = "genrec_dataset.json"
REPORT_FORMAT = "genrec.dataset_report"


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` wrote: counts, every skip with its count, source and settings.

    ``skipped`` holds what was removed (by reason), ``counts`` other numbers worth knowing (input
    sizes, users re-sorted, items kept without a title or metadata, ...). ``seconds`` and ``out_dir``
    are not written to disk (the files stay identical across runs).
    """

    source: str
    max_history: int
    kcore: int | None
    users: int
    items: int
    interactions: int
    rows: dict[str, int]
    skipped: dict[str, int]
    counts: dict[str, int]
    configs: list[str]
    files: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    out_dir: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The json written to ``genrec_dataset.json`` (no timings, no absolute paths)."""
        return {
            "format": REPORT_FORMAT,
            "source": self.source,
            "max_history": self.max_history,
            "kcore": self.kcore,
            "users": self.users,
            "items": self.items,
            "interactions": self.interactions,
            "rows": dict(self.rows),
            "skipped": dict(self.skipped),
            "counts": dict(self.counts),
            "configs": list(self.configs),
            "files": [dict(f) for f in self.files],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        rows = ", ".join(f"{split} {n:,}" for split, n in self.rows.items())
        lines = [
            f"{self.source}: {self.users:,} users, {self.items:,} items, {self.interactions:,} interactions; "
            f"rows {rows}; max_history {self.max_history}"
            + (f"; {self.kcore}-core" if self.kcore else "")
            + (f" ({self.seconds:.1f} s)" if self.seconds else ""),
        ]
        nonzero = {k: v for k, v in self.skipped.items() if v}
        lines.append("skipped: " + (", ".join(f"{k} {v:,}" for k, v in nonzero.items()) if nonzero else "nothing"))
        notable = {k: v for k, v in self.counts.items() if v}
        if notable:
            lines.append("counts: " + ", ".join(f"{k} {v:,}" for k, v in notable.items()))
        return "\n".join(lines)
