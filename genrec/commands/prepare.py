"""``genrec prepare``: raw interactions + item text -> a dataset folder in the Hub layout.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.prepare` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import DATA_SOURCES, HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        formatter_class=HelpFormatter,
        help="raw interactions + item text -> dataset folder in the Hub layout",
        description="""Build a genrec dataset folder (configs `sequences` with train/validation/test and `items`,
parquet + README card, exactly the layout `push_to_hub` writes) from raw files.

Reads:  SOURCE's files (see below).  Writes: OUT/ (refuses a non-empty OUT unless --overwrite).
Time:   ML-100K a few seconds; Amazon Beauty (22k users) well under a minute.

Sources:
  ml-100k     MovieLens-100K as shipped inside the recbole 1.2.1 wheel
              (install the files with: pip install --no-deps recbole==1.2.1), or --path DIR with
              ml-100k.inter / ml-100k.item.
  s3rec       --path DIR with sequences.txt ("user item item ...") + items.jsonl (S3-Rec layout).
  amazon2014  --reviews reviews_<Category>_5.json.gz --meta meta_<Category>.json.gz
              ("5-core" reviews + metadata), downloaded by you from the Amazon review data (2014)
              of Julian McAuley's lab: https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html
  amazon2023  --reviews <Category>.jsonl(.gz) --meta meta_<Category>.jsonl(.gz), downloaded by you
              from Amazon Reviews 2023: https://amazon-reviews-2023.github.io/
  hub         --path REPO_ID_OR_FOLDER: any dataset already in genrec's layout.

Split protocol (the papers'): per user the last item is the test target, the one before the
validation target, every earlier prefix a training example; histories keep the --max-history most
recent items.""",
    )
    p.add_argument("source", choices=DATA_SOURCES, help="kind of raw input")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--path", help="input folder (ml-100k, s3rec) or repo id / folder (hub)")
    p.add_argument("--reviews", type=Path, help="Amazon reviews file (amazon2014/amazon2023)")
    p.add_argument("--meta", type=Path, help="Amazon metadata file (amazon2014/amazon2023)")
    p.add_argument("--max-history", type=int, default=20, help="most recent history items kept per example")
    p.add_argument("--kcore", type=int, default=5, help="k-core filter for raw Amazon files")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="malformed input lines: stop with file:line, or skip and count them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    p.add_argument("--revision", default=None, help="hub: branch, tag or commit of the --path repo")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import prepare

    print(prepare(
        args.source, args.out, path=args.path, reviews=args.reviews, meta=args.meta, max_history=args.max_history,
        kcore=args.kcore, overwrite=args.overwrite, on_error=args.on_error, revision=args.revision,
    ))
    return 0
