"""``genrec push``: upload a run folder or a dataset folder to the Hub.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.push` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        formatter_class=HelpFormatter,
        help="upload a run folder (model + tokenizer + code table + card) or a dataset folder to the Hub",
        description="""Upload a folder to the Hugging Face Hub (needs network and a token: `hf auth login`;
HF_ENDPOINT selects another Hub-compatible server).

Reads:  FOLDER: a run folder / save_pretrained folder (model repo) or a `genrec prepare` folder (--dataset).
Writes: the Hub repository REPO_ID (created if missing), one commit. Model: the folder's top-level files
        (weights, configs, tokenizer, code table, the remote-code *.py), README.md regenerated from run.json
        for REPO_ID and run.json without local paths; stage folders and checkpoints are not uploaded.
        Dataset: the parquet configs and card; the embeddings/ cache is not uploaded (--with-embeddings);
        the semantic IDs of a model become the `code_table` config (--code-table, or RUN/data of a run).
        MovieLens and Amazon data have their owners' terms (see the dataset card): publish them only where
        those terms allow it.
Time:   the upload (model folders are a few MB).""",
    )
    p.add_argument("folder", type=Path, help="run folder / save_pretrained folder, or (--dataset) a dataset folder")
    p.add_argument("repo_id", help="Hub repository, owner/name (created if missing)")
    p.add_argument("--dataset", action="store_true", help="push a prepared dataset (repo type dataset)")
    p.add_argument("--private", action="store_true", help="create the repository private (if it is created)")
    p.add_argument("--revision", default=None,
                   help="model: the revision the card's usage snippet pins (e.g. a tag you create next)")
    p.add_argument("--dataset-repo", default=None,
                   help="model: the Hub dataset it was trained on (the card's YAML `datasets`)")
    p.add_argument("--with-embeddings", action="store_true",
                   help="dataset: also upload the embeddings/ cache (semantic embeddings of the items)")
    p.add_argument("--code-table", type=Path, default=None,
                   help="dataset: add this model's semantic IDs as the `code_table` config (a run folder, best/ "
                        "or tokenizer folder with code_table.json); default: the run's own when FOLDER is RUN/data")
    p.add_argument("--no-code-table", action="store_true", help="dataset: never add a `code_table` config")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import push

    print(push(
        args.folder, args.repo_id, dataset=args.dataset, private=args.private, revision=args.revision,
        dataset_repo=args.dataset_repo, with_embeddings=args.with_embeddings, code_table=args.code_table,
        no_code_table=args.no_code_table,
    ))
    return 0
