"""One loader for a trained recommender of any family, from a folder or a Hub repo id.

:func:`identify_model` says what a folder or repo holds (its config, read once, and so its family) with one
clear error for a path that does not exist, a file, or a folder without a config; :func:`load_recommender`
returns an object that answers the same calls for every family:

* ``recommend(histories, k=..., num_beams=..., on_unknown=..., exclude_history=...)`` -> per history a list of
  ``(item_id, score)``, best first (``exclude_history``, default True: without the history's own items);
* ``num_items`` -> the size of the model's item catalogue (the largest ``k``);
* ``check_catalogue(item_ids, where=...)`` -> ``ValueError`` unless the dataset's items are the model's;
* ``evaluate(sequences, split, k_values=..., num_beams=..., ...)`` -> ``{"metrics": {...}, ...}`` (full-corpus
  ranking metrics, with each user's target rank when ``per_user``).

Families: UNGER (``model_type: unger``) and MSCGRec (its config subclasses UNGER's: same generation, same
tokenizer), loaded with ``AutoModel`` / ``AutoTokenizer``; TTDS (``model_type: ttds``), a LLaMA base + LoRA
adapter + item/user towers, loaded with :class:`~genrec.trainers.ttds.recommender.TTDSRecommender`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.trainers.engine.processes import process_device

__all__ = ["ModelSource", "TTDSModel", "UngerModel", "identify_model", "load_recommender"]

TTDS_MODEL_TYPE = "ttds"


@dataclass(frozen=True)
class ModelSource:
    """What a folder or Hub repo holds: the name as given, the revision, and its config (read once)."""

    name: str
    revision: str | None
    config: Any
    what: str = "--model"

    @property
    def model_type(self) -> str:
        return str(self.config.model_type)

    @property
    def family(self) -> str:
        """``"ttds"``, ``"unger"`` (UNGER and the families built on it, e.g. MSCGRec) or the foreign model_type."""
        from genrec.modeling.configuration_unger import UngerConfig

        if self.model_type == TTDS_MODEL_TYPE:
            return TTDS_MODEL_TYPE
        return "unger" if isinstance(self.config, UngerConfig) else self.model_type


def _looks_local(name: str) -> bool:
    """A path rather than a Hub repo id (``org/name``): absolute, ``./``, ``~`` or more than one ``/``."""
    return Path(name).expanduser().is_absolute() or name.startswith((".", "~")) or name.count("/") > 1


def identify_model(path_or_repo: str | Path, revision: str | None = None, *, what: str = "--model") -> ModelSource:
    """The config of the model at ``path_or_repo`` (folder or Hub repo id at ``revision``).

    ``what`` names the argument in the errors (a CLI flag such as ``--model`` or ``--from``):
    ``FileNotFoundError`` for a local path that does not exist (instead of trying it as a Hub repo id),
    ``NotADirectoryError`` for a file, ``OSError`` / ``ValueError`` (transformers') for a folder or repo
    without a readable config.
    """
    from transformers import AutoConfig

    name = str(path_or_repo)
    path = Path(name).expanduser()
    if not path.exists() and _looks_local(name):
        raise FileNotFoundError(f"{what} {name}: no such folder")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {name}: expected a model folder, got a file")
    return ModelSource(name, revision, AutoConfig.from_pretrained(name, revision=revision), what)


def load_recommender(
    path_or_repo: str | Path | ModelSource, revision: str | None = None, *, what: str = "--model",
    transition_weight: float | None = None,
) -> UngerModel | TTDSModel:
    """The trained recommender at ``path_or_repo`` (folder, Hub repo id, or an :func:`identify_model` result).

    The model goes to this process's device: its GPU under ``accelerate launch``, the GPU when there is one,
    else the CPU. ``transition_weight``: the weight ``w`` of the transition prior mixture ``(1 - w) p_model + w p_transition``
    it ranks with (None: the model's own; UNGER families only, a TTDS model refuses it before anything loads).
    ``ValueError`` for a model of another family.
    """
    source = path_or_repo if isinstance(path_or_repo, ModelSource) else identify_model(
        path_or_repo, revision, what=what
    )
    if source.family == TTDS_MODEL_TYPE:
        if transition_weight is not None:
            raise ValueError("--transition-weight is for UNGER models; a TTDS model has no transition prior")
        from genrec.trainers.ttds.recommender import TTDSRecommender

        return TTDSModel(TTDSRecommender.from_pretrained(source.name, revision=source.revision), source.name)
    if source.family != "unger":
        raise ValueError(
            f"{source.what} {source.name} is a {source.model_type!r} model, not a genrec UNGER model "
            "(model_type 'unger'); pass a `genrec run` folder or Stage II's best/ folder"
        )
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(source.name, config=source.config, revision=source.revision)
    tokenizer = AutoTokenizer.from_pretrained(source.name, revision=source.revision)
    model.to(process_device())  # this process's GPU under a launch (or the one GPU), else the CPU
    if transition_weight is not None:
        model.set_transition_weight(transition_weight)
    return UngerModel(model, tokenizer, source.name)


class UngerModel:
    """An UNGER-family model (UNGER, MSCGRec) and its ``SemanticIDTokenizer``, behind the common calls."""

    family = "unger"

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name

    @property
    def num_items(self) -> int:
        """Items in the model's code table: what ``recommend`` can rank (``k`` at most this)."""
        return len(self.tokenizer.code_table)

    def recommend(
        self, histories: Sequence[Sequence[str]], *, k: int = 10, num_beams: int | None = None,
        on_unknown: str = "raise", exclude_history: bool = True, **kwargs: Any,
    ) -> list[list[tuple[str | None, float]]]:
        """``model.recommend`` (``kwargs``: ``batch_size``, ``transition_weight``, ...)."""
        return self.model.recommend(histories, self.tokenizer, k=k, num_beams=num_beams, on_unknown=on_unknown,
                                    exclude_history=exclude_history, **kwargs)

    def check_catalogue(self, item_ids: Sequence[str], *, where: str = "the dataset") -> None:
        from genrec.trainers.evaluation.evaluator import check_catalogue

        check_catalogue(item_ids, self.tokenizer, where=where)

    def evaluate(
        self, sequences: Any, split: str = "test", *, k_values: Sequence[int] = (1, 5, 10, 20), num_beams: int = 20,
        batch_size: int = 256, max_users: int | None = None, per_user: bool = False,
    ) -> dict[str, Any]:
        """:func:`~genrec.trainers.evaluation.evaluator.evaluate_model` on ``sequences[split]``."""
        from genrec.trainers.evaluation.evaluator import evaluate_model

        return evaluate_model(
            self.model, self.tokenizer, sequences, split, k_values=k_values, num_beams=num_beams,
            batch_size=batch_size, max_users=max_users, per_user=per_user,
        )


class TTDSModel:
    """A :class:`~genrec.trainers.ttds.recommender.TTDSRecommender` behind the common calls."""

    family = TTDS_MODEL_TYPE

    def __init__(self, recommender: Any, name: str) -> None:
        self.recommender = recommender
        self.name = name

    @property
    def num_items(self) -> int:
        """Items in the model's item code table: what ``recommend`` can rank (``k`` at most this)."""
        return len(self.recommender.item_table)

    def recommend(
        self, histories: Sequence[Sequence[str]], *, k: int = 10, num_beams: int | None = None,
        on_unknown: str = "raise", exclude_history: bool = True, **kwargs: Any,
    ) -> list[list[tuple[str | None, float]]]:
        """``TTDSRecommender.recommend`` (``kwargs``: ``users``, ``batch_size``, ``template``)."""
        return self.recommender.recommend(histories, k=k, num_beams=num_beams, on_unknown=on_unknown,
                                          exclude_history=exclude_history, **kwargs)

    def check_catalogue(self, item_ids: Sequence[str], *, where: str = "the dataset") -> None:
        """``ValueError`` unless ``item_ids`` are exactly the model's coded items."""
        item_ids = list(item_ids)
        known = set(self.recommender.item_table.item_ids)
        unknown = [i for i in item_ids if i not in known]
        if unknown or len(known) != len(item_ids):
            raise ValueError(
                f"{where}: its {len(item_ids)} items are not the TTDS model's {len(known)} coded items "
                f"(e.g. unknown {unknown[:5]}); evaluate on the dataset the model was trained on"
            )

    def evaluate(
        self, sequences: Any, split: str = "test", *, k_values: Sequence[int] = (1, 5, 10, 20), num_beams: int = 20,
        batch_size: int = 256, max_users: int | None = None, per_user: bool = False,
    ) -> dict[str, Any]:
        """The recommender's own full-corpus evaluation of ``sequences[split]`` (beams at least max(k), batches of
        at most 32 prompts)."""
        metrics = self.recommender.evaluate(
            sequences[split], ks=tuple(k_values), num_beams=max(num_beams, max(k_values)),
            batch_size=min(batch_size, 32), max_users=max_users, per_user=per_user,
        )
        result: dict[str, Any] = {"model": self.name, "split": split, "metrics": metrics}
        if per_user:
            result["per_user"] = metrics.pop("per_user")
        return result
