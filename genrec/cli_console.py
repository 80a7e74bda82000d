"""The console of the ``genrec`` command: log lines that do not land on the end of a progress bar, and genrec's
own progress bars only.

Libraries genrec drives draw bars of their own for steps that take milliseconds here (``Creating parquet from
Arrow format``, ``Loading weights``, ``Writing model shards``): a ``genrec run`` printed fourteen of them. The
command turns those off (``-v`` keeps them) and keeps genrec's bars (training, evaluation, embedding, k-means),
which are drawn on a terminal only. Downloads from the Hub keep their bars: a multi-gigabyte model is worth
watching. In Python, nothing of this applies: a library does not change another library's global settings.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["TqdmLoggingHandler", "setup_console", "silence_library_progress_bars"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


class TqdmLoggingHandler(logging.StreamHandler):
    """A stderr handler that writes through ``tqdm.write``, so that a log line printed while a progress bar is
    drawn goes above the bar instead of onto its end."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError's contract)
            self.handleError(record)


def silence_library_progress_bars() -> None:
    """Turn off the progress bars of ``datasets`` and of ``transformers``' loading and saving (not the Hub's
    download bars); genrec's own bars stay."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when datasets is first imported
    if "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars

        disable_progress_bars()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def setup_console(*, verbose: bool = False, quiet_libraries: bool = True) -> None:
    """Log genrec's INFO lines (DEBUG with ``verbose``) to stderr through tqdm and, unless ``verbose`` or not
    ``quiet_libraries``, silence the libraries' progress bars (:func:`silence_library_progress_bars`)."""
    handler = TqdmLoggingHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if quiet_libraries and not verbose:
        silence_library_progress_bars()
