"""Where the data came from and under which terms, for model and dataset cards.

genrec's data builders read third-party data whose owners set their own terms. The cards say so, link the
terms, and never invite re-publishing data that may not be redistributed. The model weights are derived from
that data, so a model card names the same terms (YAML ``license: other``, with ``license_name`` and
``license_link``); genrec's code itself is Apache-2.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataTerms", "data_terms", "dataset_display_name"]


@dataclass(frozen=True)
class DataTerms:
    """The terms of one data source, as cards state them.

    Attributes:
        name: human-readable source name.
        license: the YAML ``license`` value (``other`` when the owner's own terms apply).
        license_name / license_link: the YAML fields the Hub shows for ``license: other``.
        text: one paragraph for the card (what is allowed, what is not, whom to cite).
        redistributable: whether a copy of the data may be published (False: do not push it to a public repo).
        citation: BibTeX of the data set's paper (empty when there is none).
    """

    name: str
    license: str
    license_name: str | None
    license_link: str | None
    text: str
    redistributable: bool
    citation: str = ""


MOVIELENS = DataTerms(
    name="MovieLens-100K (GroupLens Research)",
    license="other",
    license_name="movielens-usage-license",
    license_link="https://files.grouplens.org/datasets/movielens/ml-100k-README.txt",
    text=(
        "MovieLens-100K is published by GroupLens Research (University of Minnesota) under its own usage "
        "licence: research use, acknowledgement by citing Harper & Konstan (2015), no redistribution without "
        "GroupLens' permission and no commercial use without their permission. Models trained on it inherit "
        "these terms; obtain the data from GroupLens (or the copy inside the `recbole` wheel genrec reads), "
        "do not re-publish it."
    ),
    redistributable=False,
    citation="""@article{harper2015movielens,
  title   = {The MovieLens Datasets: History and Context},
  author  = {Harper, F. Maxwell and Konstan, Joseph A.},
  journal = {ACM Transactions on Interactive Intelligent Systems},
  volume  = {5},
  number  = {4},
  year    = {2015}
}""",
)

AMAZON = DataTerms(
    name="Amazon product reviews (McAuley lab, UC San Diego)",
    license="other",
    license_name="amazon-reviews-research-use",
    license_link="https://cseweb.ucsd.edu/~jmcauley/datasets.html",
    text=(
        "The Amazon review and metadata dumps are distributed by Julian McAuley's lab (UC San Diego) for "
        "research; the reviews and product data belong to Amazon and their authors. Check the terms on the "
        "source page before any use beyond research, cite the data set's papers, and do not re-publish the raw "
        "data or derived interaction sequences without checking that those terms allow it."
    ),
    redistributable=False,
    citation="""@inproceedings{he2016ups,
  title     = {Ups and Downs: Modeling the Visual Evolution of Fashion Trends with One-Class Collaborative Filtering},
  author    = {He, Ruining and McAuley, Julian},
  booktitle = {Proceedings of the 25th International Conference on World Wide Web},
  year      = {2016}
}""",
)

UNKNOWN = DataTerms(
    name="user-provided data",
    license="other",
    license_name="see-training-data",
    license_link=None,
    text=(
        "The training data were supplied by the user of genrec; their terms are those of their owner (see the "
        "dataset's own card). Make sure they allow publishing a model trained on them."
    ),
    redistributable=False,
)

_BY_SOURCE = {
    "ml-100k": MOVIELENS,
    "movielens": MOVIELENS,
    "amazon2014": AMAZON,
    "amazon2018": AMAZON,
    "amazon2023": AMAZON,
    "amazon": AMAZON,
    "s3rec": AMAZON,  # the S3-Rec release of the Amazon 5-core subsets
}


def data_terms(source: str | None) -> DataTerms:
    """The terms of a ``genrec prepare`` source ("ml-100k", "amazon2014", "s3rec", "hub", ...)."""
    return _BY_SOURCE.get((source or "").lower(), UNKNOWN)


def dataset_display_name(dataset: str) -> str:
    """A name for ``dataset`` that carries no local path: a Hub id or a built-in name as is, a folder's name."""
    text = str(dataset)
    if text.lower() in {"ml-100k", "ml100k", "movielens-100k"}:
        return "ml-100k"
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists() or text.startswith((".", "~")):
        return path.resolve().name
    return text
