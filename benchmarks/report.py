"""Side-by-side benchmark report: regenerate ``benchmarks/RESULTS.md`` from one registry of rows, with one command.

    python benchmarks/report.py                       # run stale/missing rows whose inputs exist, then render
    python benchmarks/report.py --list                # every row, its status and its command; runs nothing
    python benchmarks/report.py --only ml100k-pop ml100k-markov
    python benchmarks/report.py --force ml100k-recbole-sasrec
    python benchmarks/report.py --skip 'beauty-recbole-*'   # ids or shell patterns everywhere
    python benchmarks/report.py --render-only         # rewrite RESULTS.md + plots from the stored JSON only

Why: a table of "this model vs that baseline" is only worth something if every number in it was measured on
the same split with the same metrics and can be re-measured by anyone. Each row below (``ROWS``) names its
dataset, the exact command line behind it and its inputs. A row's *input fingerprint* is the SHA-256 of its
command template, the content of its input files (the prepared split, the scripts that compute it) and the
relevant package versions; the row's result lives in ``benchmarks/results/<row_id>.json`` together with that
fingerprint, the command, versions, seed(s), machine, wall time and date. Running the report recomputes only
rows whose JSON is missing or whose fingerprint changed (``--force`` recomputes on demand, ``--only``
restricts what is computed; the rendered report always shows every row). Rows whose inputs are not there
(a dataset that cannot be prepared here, a genrec run that has not finished) are listed as "not run yet"
with the command that produces them; a row whose inputs are gone but whose JSON exists keeps its JSON.

Row kinds:

* ``pop`` / ``markov``: ``benchmarks/markov_baseline.py``'s ``evaluate_baselines`` (called, not copied).
* ``recbole-*``: RecBole 1.2.1 models trained by RecBole's own code on our exact split
  (``benchmarks/recbole_runner.py``, run with the interpreter of a separate environment,
  ``runs/recbole-venv``, that this script creates: RecBole's pins never reach genrec's environment).
* ``genrec-*``: read the result JSON of a ``genrec run`` folder (``run.json``) or of
  ``benchmarks/stage2_variants.py`` or ``benchmarks/stage1_retriever.py --json`` (Stage I alone); the lead's
  long runs produce them. ``--source ROW=PATH`` points a row
  at another file (remembered in the row's JSON).
* published: numbers copied from a paper, marked "published" with their source; never recomputed.
* speed / memory (``reporting/perf.py``): ``serving_speed.py``, ``scaling.py`` and ``memory_storage.py`` run in a
  child process with one thread and write a JSON that the row stores under ``details``; they render as the
  "Speed" and "Memory and storage" sections (plus ``RESULTS_scaling.png``), not as quality tables.

Code layout (``benchmarks/reporting/``, one idea per module): ``core`` (paths, datasets, ``Context``, ``Row``),
``store`` (fingerprints, versions, machine, row JSON, computing a row), ``quality`` (the quality row kinds),
``perf`` (speed, memory and storage rows), ``render`` (RESULTS.md and plots), ``registry`` (``ROWS``),
``cli`` (the driver). This file is the command line and re-exports their names.

Datasets are prepared on first use into ``runs/bench-data/`` (``genrec prepare ml-100k`` is offline and
takes seconds; Beauty needs ``../shared/data/amazon-beauty-2014``); ``--ml100k-data`` / ``--beauty-data``
use folders prepared elsewhere (the fingerprint hashes their content, not their path).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# reporting/ is a package beside this file: ``python benchmarks/report.py`` puts benchmarks/ first on sys.path
from reporting import cli
from reporting.cli import build_context, expand_ids, print_list, run_report  # noqa: F401
from reporting.core import (  # noqa: F401
    ABLATION_PLOT_NAME,
    BENCH_DIR,
    DATASETS,
    HEADLINE_ROWS,
    METRIC_LABELS,
    PLOT_NAME,
    QUALITY_METRICS,
    RECBOLE_VENV,
    REPO,
    REPORT_COMMAND,
    RESULTS_DIR,
    RESULTS_MD,
    Context,
    Row,
    ensure_dataset,
    recbole_python,
)
from reporting.quality import (  # noqa: F401
    RECBOLE_EXPORT_FORMAT,
    RECBOLE_REQUIREMENTS,
    REIMPLEMENTED_BY_UNGER,
    UNGER_SOURCE,
    UNGER_TABLE_BEAUTY,
    code_ablation_rows,
    compute_genrec_run,
    compute_markov,
    compute_recbole,
    compute_stage1_retriever,
    compute_stage2_variant,
    ensure_recbole_env,
    export_recbole,
    genrec_run_row,
    markov_row,
    published_row,
    recbole_dataset_name,
    recbole_row,
    stage1_retriever_row,
    stage2_variant_row,
)
from reporting.registry import ROWS, default_rows  # noqa: F401
from reporting.render import (  # noqa: F401
    Status,
    ablation_panels,
    headline_panels,
    how_to_run,
    render_ablation_plot,
    render_markdown,
    render_plot,
    row_status,
)
from reporting.store import (  # noqa: F401
    compute_row,
    fingerprint,
    fingerprint_payload,
    genrec_versions,
    load_row_json,
    machine_info,
    machine_line,
    render_command,
    row_json_path,
    sha256_file,
    source_path,
    summarize,
    write_json,
)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring): ``cli.main`` with this file's help text."""
    return cli.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
