"""The trained TTDS recommender: constrained beam search over item codes, full-corpus metrics, and
``save_pretrained`` / ``from_pretrained`` of model + adapter + tokenizer + code tables."""


from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.modeling.modeling_unger import recommend_excluding_history
from genrec.modeling.tokenization_ttds import extend_tokenizer
from genrec.modeling.ttds_folder import ADAPTER_DIR
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.engine.processes import map_batches
from genrec.trainers.evaluation.metrics import compute_metrics
from genrec.trainers.ttds.args import ITEM_TABLE_DIR, USER_TABLE_DIR
from genrec.trainers.ttds.codes import CodeState
from genrec.trainers.ttds.data import TTDSData
from genrec.trainers.ttds.prompts import PromptRenderer, pad_left

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ recommender


def resolve_recommender_folder(
    name_or_path: str | Path, *, revision: str | None = None, token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The local folder of a saved :class:`TTDSRecommender`: the folder itself, or a Hub repo's snapshot."""
    directory = Path(name_or_path).expanduser()
    if directory.is_dir():
        return directory
    name = str(name_or_path)
    if directory.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such folder (and not a Hub repo id)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, revision=revision, token=token, cache_dir=cache_dir))


class TTDSRecommender:
    """Model + tokenizer + item/user code tables: what inference needs, saved and loaded together.

    Folder layout (``save_pretrained``): the model's files (``config.json``, ``adapter/``,
    ``generators.safetensors``), the extended tokenizer's files, ``item_code_table/`` and
    ``user_code_table/`` (``CodeTable.save``: parquet + json with a content hash). ``from_pretrained``
    reloads the base LLM by the name recorded in the config, and refuses code tables whose hash differs
    from the config's.
    """

    def __init__(
        self, model: TTDSForCausalLM, tokenizer: Any, item_table: CodeTable, user_table: CodeTable | None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.item_table = item_table
        self.user_table = user_table
        self.codes = CodeState(item_table, user_table)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes model, adapter, towers, tokenizer and both code tables into ``directory``.

        The extended tokenizer is also written next to the adapter (``adapter/``): peft's
        ``AutoPeftModelForCausalLM.from_pretrained(directory, subfolder="adapter")`` (and transformers' own
        adapter loading) resize the base's embeddings to the tokenizer found there before loading the
        adapter's token rows, so the LLM part also loads without genrec.
        """
        directory = Path(directory)
        config = self.model.config
        config.item_code_table_hash = self.item_table.content_hash
        config.item_code_length = self.item_table.num_levels
        if self.user_table is not None:
            config.user_code_table_hash = self.user_table.content_hash
            config.user_code_length = self.user_table.num_levels
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory / ADAPTER_DIR)
        self.item_table.save(directory / ITEM_TABLE_DIR)
        if self.user_table is not None:
            self.user_table.save(directory / USER_TABLE_DIR)
        return directory

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, revision: str | None = None, token: str | bool | None = None,
        cache_dir: str | Path | None = None, **model_kwargs: Any,
    ) -> TTDSRecommender:
        """Reloads everything saved by :meth:`save_pretrained` (hashes and token layout checked).

        ``name_or_path``: the folder, or a Hub repo id holding one (pushed with ``genrec push``); the repo is
        fetched at ``revision`` with ``huggingface_hub.snapshot_download`` (``HF_ENDPOINT``, cache, offline
        mode as usual). The base LLM loads by the name and revision its config records.
        """
        from transformers import AutoTokenizer

        directory = resolve_recommender_folder(name_or_path, revision=revision, token=token, cache_dir=cache_dir)
        model = TTDSForCausalLM.from_pretrained(directory, **model_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        extend_tokenizer(tokenizer, model.config)  # only verifies: every token is already there
        config = model.config
        item_table = CodeTable.load(directory / ITEM_TABLE_DIR)
        user_table = CodeTable.load(directory / USER_TABLE_DIR) if (directory / USER_TABLE_DIR).is_dir() else None
        for tower, table, recorded in (("item", item_table, config.item_code_table_hash),
                                       ("user", user_table, config.user_code_table_hash)):
            if table is None:
                if recorded is not None:
                    raise FileNotFoundError(f"{directory / USER_TABLE_DIR} is missing but the config names one")
                continue
            if recorded != table.content_hash:
                raise ValueError(
                    f"{directory}/{tower}_code_table has content hash {table.content_hash} but the model was "
                    f"saved with {recorded}: the code table does not belong to this model"
                )
        return cls(model, tokenizer, item_table, user_table)

    def _renderer(self, data: TTDSData, max_length: int = 4096) -> PromptRenderer:
        return PromptRenderer(self.tokenizer, self.model.config, data, self.codes, max_length=max_length)

    def prompts(
        self, histories: Sequence[Sequence[str]], users: Sequence[str | None] | None = None, *, template: int = 0,
        max_length: int = 4096,
    ) -> list[list[int]]:
        """seqrec prompt ids for histories (oldest first) and optional users (their codes, when known)."""
        users = list(users) if users is not None else [None] * len(histories)
        data = _InferenceData(self.item_table)
        renderer = self._renderer(data, max_length)  # type: ignore[arg-type]
        return [
            renderer.prompt_ids({"task": "seqrec", "user": u, "history": list(h)}, template)
            for h, u in zip(histories, users, strict=True)
        ]

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        users: Sequence[str | None] | None = None,
        *,
        k: int = 10,
        num_beams: int | None = None,
        batch_size: int = 8,
        template: int = 0,
        on_unknown: str = "raise",
        exclude_history: bool = True,
    ) -> list[list[tuple[str | None, float]]]:
        """Top-``k`` ``(item_id, score)`` per history (item ids, oldest first), best first: constrained beam
        search over the item codes; the score is the beam's log-probability (length penalty 0).

        The same contract as UNGER's ``UngerForGenerativeRecommendation.recommend`` (histories in,
        ``(item_id, score)`` lists out), so ``genrec recommend`` / ``evaluate`` serve both. ``users``: the
        users' ids, whose codes go into the prompt when known. Unknown history items raise a ``KeyError``
        naming the item (``on_unknown="raise"``) or are left out (``"skip"``; a history with nothing left gets
        an empty list). ``None`` would mark a generated code that is no item (impossible under the constrained
        decoding; kept so metrics can count it). ``k`` above the number of items is a ``ValueError``.

        ``exclude_history`` (default True, as UNGER's): a history's own items are dropped from its list, and
        each history is decoded with enough beams that ``k`` items remain when the catalogue has them
        (:func:`~genrec.modeling.modeling_unger.recommend_excluding_history`; fewer remain only when fewer than
        ``k`` items lie outside the history). ``False`` is the plain beam search that :meth:`evaluate` scores.
        """
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        num_items = len(self.item_table)
        if k > num_items:
            raise ValueError(f"k ({k}) is more than the catalogue's {num_items} items")
        num_beams = max(num_beams or k, k)
        histories = [[str(i) for i in h] for h in histories]
        users = list(users) if users is not None else [None] * len(histories)
        if len(users) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(users)} users")
        if exclude_history:
            return recommend_excluding_history(
                lambda rows, width: self.recommend(
                    [histories[r] for r in rows], [users[r] for r in rows], k=min(width, num_items),
                    num_beams=width, batch_size=batch_size, template=template, on_unknown=on_unknown,
                    exclude_history=False,
                ),
                histories, k=k, num_beams=num_beams, num_items=num_items, is_item=self.item_table.__contains__,
            )
        if on_unknown == "skip":
            histories = [[i for i in h if i in self.item_table] for h in histories]
        keep = [n for n, h in enumerate(histories) if h]
        prompts = self.prompts([histories[n] for n in keep], [users[n] for n in keep], template=template)
        prefix_index = self.item_table.prefix_index()
        device = next(self.model.llm.parameters()).device
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        ranked: list[list[tuple[str | None, float]]] = []
        ids_of = self.item_table.item_ids
        for start in tqdm(range(0, len(prompts), batch_size), desc="recommend", disable=None, leave=False):
            ids, mask = pad_left(prompts[start : start + batch_size], pad)
            codes, scores = self.model.generate_item_codes(
                ids.to(device), mask.to(device), prefix_index, num_beams=num_beams, num_return_sequences=k,
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=pad,
            )
            rows = self.item_table.items_for_codes(codes.cpu())
            for row, row_scores in zip(rows.tolist(), scores.cpu().tolist(), strict=True):
                ranked.append([(ids_of[int(r)] if r >= 0 else None, float(sc))
                               for r, sc in zip(row, row_scores, strict=True)])
        self.model.train(was_training)
        out: list[list[tuple[str | None, float]]] = [[] for _ in histories]
        for n, row in zip(keep, ranked, strict=True):
            out[n] = row
        return out

    def evaluate(
        self,
        split: Any,
        *,
        ks: Sequence[int] = (1, 5, 10),
        num_beams: int | None = None,
        batch_size: int = 8,
        template: int = 0,
        max_users: int | None = None,
        per_user: bool = False,
    ) -> dict[str, Any]:
        """Full-corpus HR@K / NDCG@K (and recall, MRR, invalid rate) on a ``sequences`` split (one row per user).

        ``per_user``: the result also holds ``per_user`` (each user's target rank, as
        :func:`genrec.trainers.evaluation.evaluator.per_user_ranks` writes it) for paired comparisons of two models.
        """
        users = [str(u) for u in split["user_id"]]
        seqs = [[str(i) for i in s] for s in split["item_ids"]]
        if max_users is not None:
            users, seqs = users[:max_users], seqs[:max_users]
        k = max(ks)

        top = min(k, len(self.item_table))

        def recommend(rows: Sequence[tuple[list[str], str]]) -> list[list[tuple[str | None, float]]]:
            # the plain ranking: the leave-one-out protocol does not exclude history items
            return self.recommend([h for h, _ in rows], [u for _, u in rows], k=top, num_beams=num_beams,
                                  batch_size=batch_size, template=template, exclude_history=False)

        # users split across the processes of a multi-process launch, gathered back in order
        recommended = map_batches(recommend, [(s[:-1], u) for s, u in zip(seqs, users, strict=True)], batch_size,
                                  desc="evaluate", show_progress=False)
        lists = [[item for item, _ in row] for row in recommended]
        targets = [s[-1] for s in seqs]
        metrics: dict[str, Any] = compute_metrics(lists, targets, ks)
        if per_user:
            from genrec.trainers.evaluation.evaluator import per_user_ranks

            metrics["per_user"] = per_user_ranks(users, lists, targets, k)
        return metrics


@dataclass
class _InferenceData:
    """The part of :class:`TTDSData` prompt rendering needs at inference (item ids; no texts)."""

    table: CodeTable

    @property
    def item_ids(self) -> list[str]:
        return self.table.item_ids

    @property
    def item_texts(self) -> list[str]:
        return [""] * len(self.table)

    @property
    def item_titles(self) -> list[str]:
        return [""] * len(self.table)
