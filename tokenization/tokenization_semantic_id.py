"""SemanticIDTokenizer: a ``transformers`` fast tokenizer whose tokens are the semantic-ID codes of items.

An item with code ``(12, 3, 0)`` is the token sequence ``<a_12> <b_3> <c_0>``: one token per level, each level
with its own tokens (depth 0 uses ``a``, depth 1 ``b``, ..., the collision level continues the letters), so
the same code value at two depths is two different tokens. The vocabulary is

    <pad>=0, </s>=1 (eos), <s>=2 (bos, decoder start), <unk>=3, <a_0> .. <a_{K0-1}>, <b_0> .. , ...

and the code ``c`` at depth ``d`` is token id ``code_token_offsets[d] + c`` (what the constrained-decoding
processor needs together with the CodeTable's prefix index).

The backend is a plain ``tokenizers.Tokenizer`` (WordLevel vocabulary, whitespace pre-tokenizer), so the saved
``tokenizer.json`` loads anywhere, with ``tokenizers.Tokenizer.from_file`` or
``PreTrainedTokenizerFast(tokenizer_file=...)``, even where genrec is not installed. ``save_pretrained`` writes
the CodeTable (``code_table.parquet`` / ``code_table.json``) beside the tokenizer files and records its content
hash in ``tokenizer_config.json``; ``from_pretrained`` refuses a table whose hash differs, and a
``tokenizer.json`` whose vocabulary does not match the table.

For ``AutoTokenizer.from_pretrained(folder)`` to return a ``SemanticIDTokenizer``, transformers 5 resolves the
``"tokenizer_class": "SemanticIDTokenizer"`` entry of ``tokenizer_config.json`` through the names registered
with ``AutoTokenizer.register(config_class, tokenizer_class=...)``: :func:`register_auto_tokenizer` does that
call (``import genrec`` makes it with genrec's model configs). Without the registration ``AutoTokenizer``
still loads the folder, as a generic ``TokenizersBackend`` with the same vocabulary.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import BatchEncoding, PreTrainedTokenizerFast

from .code_table import CODE_TABLE_DATA_FILE, CODE_TABLE_META_FILE, CodeTable, UnknownItemError

__all__ = [
    "SPECIAL_TOKENS",
    "HistoryEncodingStats",
    "SemanticIDTokenizer",
    "code_token",
    "level_letter",
    "register_auto_tokenizer",
    "semantic_id_vocab",
]

logger = logging.getLogger(__name__)

#: The special tokens, in vocabulary order (ids 0..3).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "</s>", "<s>", "<unk>")
_CODE_TOKEN = re.compile(r"<[a-z]+_[0-9]+>")  # the form of code_token(depth, code)
_SPECIAL_KWARGS = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}
TOKENIZER_FILE = "tokenizer.json"


def level_letter(depth: int) -> str:
    """The letters naming code tokens of ``depth``: a, b, ..., z, aa, ab, ... (spreadsheet-column style)."""
    if depth < 0:
        raise ValueError(f"depth must be non-negative, got {depth}")
    letters = ""
    depth += 1
    while depth:
        depth, rest = divmod(depth - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def code_token(depth: int, code: int) -> str:
    """The token of code ``code`` at ``depth``, e.g. ``code_token(1, 3) == "<b_3>"``."""
    return f"<{level_letter(depth)}_{code}>"


def semantic_id_vocab(level_sizes: Sequence[int]) -> list[str]:
    """The full vocabulary (id -> token) for codebooks of the given sizes: specials, then codes per level."""
    vocab = list(SPECIAL_TOKENS)
    for depth, size in enumerate(level_sizes):
        vocab.extend(code_token(depth, c) for c in range(int(size)))
    return vocab


def _build_backend(level_sizes: Sequence[int]) -> Tokenizer:
    """The ``tokenizers`` backend: WordLevel over :func:`semantic_id_vocab`, split on whitespace."""
    vocab = {token: i for i, token in enumerate(semantic_id_vocab(level_sizes))}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return backend


@dataclass
class HistoryEncodingStats:
    """What :meth:`SemanticIDTokenizer.encode_history` dropped, so that no drop is silent.

    Attributes:
        num_histories: batch size.
        num_items: items in the input histories.
        num_skipped_items: unknown items left out (``on_unknown="skip"``).
        skipped_per_history: unknown items left out, per history.
        num_truncated_items: oldest items dropped by ``max_items``.
        empty_histories: indices of histories with no known item (all-padding rows, attention mask 0).
    """

    num_histories: int
    num_items: int
    num_skipped_items: int = 0
    skipped_per_history: list[int] = field(default_factory=list)
    num_truncated_items: int = 0
    empty_histories: list[int] = field(default_factory=list)


class SemanticIDTokenizer(PreTrainedTokenizerFast):
    """Tokenizer of semantic-ID code tokens, bound to a :class:`~genrec.tokenization.code_table.CodeTable`.

    Build it with :meth:`from_code_table`; reload it with ``from_pretrained`` (or ``AutoTokenizer`` after
    :func:`register_auto_tokenizer`). Histories are padded on the **left** by default (``padding_side``):
    the most recent item then always ends the sequence, right before what a decoder-only model generates, and
    left padding is what batched generation with such models requires; encoder inputs are unaffected as long as
    the attention mask is used. Pass ``padding_side="right"`` (constructor or per call) to change it.
    """

    vocab_files_names = {
        "tokenizer_file": TOKENIZER_FILE,
        "code_table_file": CODE_TABLE_META_FILE,
        "code_table_data_file": CODE_TABLE_DATA_FILE,
    }
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"
    truncation_side = "left"  # plain-text truncation also drops the oldest tokens first

    def __init__(
        self,
        tokenizer_file: str | None = None,
        code_table_file: str | None = None,
        code_table_data_file: str | None = None,
        *,
        code_table: CodeTable | None = None,
        code_table_hash: str | None = None,
        code_level_sizes: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        """Use :meth:`from_code_table` or ``from_pretrained``; the file arguments are filled by the latter.

        Args:
            tokenizer_file: a saved ``tokenizer.json`` (checked against the table's vocabulary).
            code_table_file / code_table_data_file: the saved ``code_table.json`` / ``code_table.parquet``.
            code_table: the table itself (instead of its files).
            code_table_hash / code_level_sizes: what ``tokenizer_config.json`` recorded; a loaded table must
                match them.
        """
        where = Path(code_table_file).parent if code_table_file else None
        if code_table is None:
            if code_table_file is None or code_table_data_file is None:
                raise ValueError(
                    "SemanticIDTokenizer needs its code table: build it with "
                    "SemanticIDTokenizer.from_code_table(table), or load a folder written by save_pretrained "
                    f"(it holds {CODE_TABLE_META_FILE} and {CODE_TABLE_DATA_FILE})"
                )
            code_table = CodeTable.from_files(code_table_file, code_table_data_file)
        if not isinstance(code_table, CodeTable):
            raise TypeError(f"code_table must be a CodeTable, got {type(code_table).__name__}")
        if code_table_hash is not None and code_table_hash != code_table.content_hash:
            raise ValueError(
                f"the code table{f' in {where}' if where else ''} has content hash {code_table.content_hash} but "
                f"tokenizer_config.json records {code_table_hash}: the tokenizer and the code table come from "
                "different runs; restore the code table saved with this tokenizer"
            )
        sizes = code_table.codebook_sizes
        if code_level_sizes is not None and [int(k) for k in code_level_sizes] != sizes:
            raise ValueError(
                f"tokenizer_config.json records code level sizes {list(code_level_sizes)} but the code table has "
                f"{sizes}"
            )
        if kwargs.get("tokenizer_object") is None and tokenizer_file is None:
            kwargs["tokenizer_object"] = _build_backend(sizes)
        for key, value in _SPECIAL_KWARGS.items():
            kwargs.setdefault(key, value)
        super().__init__(
            tokenizer_file=tokenizer_file,
            code_table_hash=code_table.content_hash,
            code_level_sizes=sizes,
            **kwargs,
        )
        # The code table fixes ids 0 .. 4 + sum(K_d) - 1; tokens added after them (e.g. by a model) are allowed.
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        expected = semantic_id_vocab(sizes)
        if any(vocab.get(token) != i for i, token in enumerate(expected)) or any(
            i < len(expected) and expected[i] != token for token, i in vocab.items()
        ):
            source = tokenizer_file or "the given tokenizer_object"
            raise ValueError(
                f"{source} does not hold the vocabulary of the code table (specials {list(SPECIAL_TOKENS)} then "
                f"code tokens for level sizes {sizes}, {len(expected)} tokens): the files do not belong together"
            )
        for key, token in _SPECIAL_KWARGS.items():
            if str(getattr(self, key)) != token:
                raise ValueError(
                    f"{key} must be {token!r} in a SemanticIDTokenizer, got {getattr(self, key)!r}"
                )
        self._code_table = code_table
        offsets = np.cumsum([len(SPECIAL_TOKENS), *sizes[:-1]]).tolist()
        self._code_token_offsets: list[int] = [int(o) for o in offsets]
        self._offsets_t = torch.tensor(self._code_token_offsets, dtype=torch.long)
        self._sizes_t = torch.tensor(sizes, dtype=torch.long)

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Keeps ``tokenizer_file`` as is: ``__init__`` loads it and checks it against the code table."""
        return kwargs

    @classmethod
    def from_code_table(cls, code_table: CodeTable, **kwargs: Any) -> SemanticIDTokenizer:
        """A tokenizer whose vocabulary covers every code of ``code_table`` (keyword args go to ``__init__``).

        Item ids that are tokens of this vocabulary (``<pad>``, ``<a_12>``) are refused: ``tokenizer("<pad>")``
        would read the token, ``encode_history`` the item (``genrec prepare`` refuses such ids already).
        """
        clashes = [i for i in code_table.item_ids if i[:1] == "<" and (i in SPECIAL_TOKENS or _CODE_TOKEN.fullmatch(i))]
        if clashes:
            raise ValueError(
                f"item id(s) {clashes[:5]} of the code table are tokens of the semantic-ID vocabulary (specials "
                f"{list(SPECIAL_TOKENS)} and code tokens like <a_12>); rename those items"
            )
        return cls(code_table=code_table, **kwargs)

    # ------------------------------------------------------------------------------------------ properties

    @property
    def code_table(self) -> CodeTable:
        """The CodeTable this tokenizer encodes."""
        return self._code_table

    @property
    def code_token_offsets(self) -> list[int]:
        """Token id of code 0 at each depth: code ``c`` at depth ``d`` is token ``code_token_offsets[d] + c``."""
        return list(self._code_token_offsets)

    @property
    def num_code_levels(self) -> int:
        """D: code tokens per item."""
        return self._code_table.num_levels

    @property
    def code_level_sizes(self) -> list[int]:
        """K_d: code tokens at each depth."""
        return self._code_table.codebook_sizes

    # ------------------------------------------------------------------------------------------ saving

    def _save_pretrained(
        self,
        save_directory: str | os.PathLike,
        file_names: tuple[str, ...],
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
    ) -> tuple[str, ...]:
        """Writes ``tokenizer.json`` and the code table (``code_table.parquet`` / ``.json``) beside it."""
        if filename_prefix:
            raise ValueError(
                "SemanticIDTokenizer does not support filename_prefix: its code table files have fixed names "
                f"({CODE_TABLE_META_FILE}, {CODE_TABLE_DATA_FILE}); save into a folder of its own"
            )
        files = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        self._code_table.save(save_directory)
        folder = Path(save_directory)
        return (*files, str(folder / CODE_TABLE_META_FILE), str(folder / CODE_TABLE_DATA_FILE))

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Writes the vocabulary files: ``tokenizer.json`` and the code table."""
        return self._save_pretrained(save_directory, (), filename_prefix=filename_prefix)

    # ------------------------------------------------------------------------------------------ encoding

    def _encode_plus(self, text: Any, text_pair: Any = None, *args: Any, **kwargs: Any) -> BatchEncoding:
        """``tokenizer(text)`` reads item ids: each whitespace-separated word that is an item id of the code
        table becomes its D code tokens, a word that is a token (``<a_12>``, ``</s>``) stays one, and any other
        word raises ``ValueError`` (no silent ``<unk>``).

        So ``tokenizer("1 50 181")`` is the history 1, 50, 181 (oldest first) and ``tokenizer(["1 50", "7"],
        padding=True)`` a batch of two; with ``is_split_into_words=True`` a list of item ids is one history
        (ids with spaces). Without truncation this gives the ``input_ids`` of :meth:`encode_history`, which
        also drops the oldest items beyond a maximum and can skip unknown ones.
        """
        split = bool(kwargs.get("is_split_into_words", False))
        text = self._item_text(text, split)
        if text_pair is not None:
            text_pair = self._item_text(text_pair, split)
        return super()._encode_plus(text, text_pair, *args, **kwargs)

    def _item_text(self, text: Any, split: bool) -> Any:
        """``text`` (one or a batch, plain or pre-split) with item ids replaced by their code tokens."""
        if isinstance(text, str):
            if split:
                return self._word_tokens(text)
            return " ".join(token for word in text.split() for token in self._word_tokens(word))
        if isinstance(text, (list, tuple)):
            if split and not any(isinstance(t, (list, tuple)) for t in text):
                return [token for word in text for token in self._word_tokens(str(word))]
            return [self._item_text(t, split) for t in text]
        return text  # let transformers report the wrong type

    def _word_tokens(self, word: str) -> list[str]:
        """The tokens of one word: itself when it is a token, its item's code tokens when it is an item id."""
        if self._tokenizer.token_to_id(word) is not None:
            return [word]
        if word in self._code_table:
            return [code_token(d, c) for d, c in enumerate(self._code_table.code_of(word))]
        examples = self._code_table.item_ids[:3]
        raise ValueError(
            f"{word!r} is neither an item id of this tokenizer's code table ({len(self._code_table)} items, e.g. "
            f"{examples}) nor one of its tokens; pass item ids (tokenizer('id1 id2'), or encode_history with "
            "on_unknown='skip' to leave unknown items out)"
        )

    def item_id(self, value: Any) -> Any:
        """``value`` as an item id of the code table: item ids are strings, and an int (``1``, ``np.int64(1)``)
        whose decimal string (``"1"``) is an item id stands for that item.

        Why: a history read from numbers (pandas, numpy) holds ints, and ``"1"`` is the only item an int ``1``
        can mean; nothing else is converted (a bool, a float or an int whose string is no item stays as it is,
        so the lookup reports it as unknown, with a hint that item ids are strings).
        """
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            text = str(int(value))
            if text in self._code_table:
                return text
        return value

    def _not_a_string_hint(self, value: Any) -> str:
        """`` (int; item ids are strings ...)`` for a non-string id in an error message, else ``""``."""
        if isinstance(value, str):
            return ""
        hint = f" ({type(value).__name__}; item ids are strings"
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            text = str(int(value))
            hint += f": did you mean {text!r}?" if text in self._code_table else f", and {text!r} is not one either"
        return hint + ")"

    def encode_history(
        self,
        histories: Sequence[Sequence[str]],
        *,
        max_items: int | None = None,
        on_unknown: str = "raise",
        padding_side: str | None = None,
        return_tensors: str | None = "pt",
        return_stats: bool = False,
    ) -> BatchEncoding | tuple[BatchEncoding, HistoryEncodingStats]:
        """Item histories (oldest first) -> padded ``input_ids`` + ``attention_mask``, D code tokens per item.

        Args:
            histories: one list of item ids per user, oldest first (an int stands for its decimal string when
                that is an item id, see :meth:`item_id`).
            max_items: keep at most this many of the most recent items per history (the oldest are dropped).
            on_unknown: ``"raise"`` (default): an item id the code table does not know raises ``KeyError``
                naming it, and an empty history raises ``ValueError``; ``"skip"``: unknown items are left
                out and empty histories become all-padding rows, both counted (see ``return_stats``) and logged.
            padding_side: ``"left"`` / ``"right"``; default: the tokenizer's ``padding_side`` (left).
            return_tensors: ``"pt"`` (default), ``"np"`` or None (lists).
            return_stats: also return a :class:`HistoryEncodingStats`.
        """
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be a positive number of items, got {max_items}")
        if isinstance(histories, (str, bytes)):
            raise TypeError("histories must be a list of item-id lists, got a single string")
        histories = list(histories)
        for b, history in enumerate(histories):
            if isinstance(history, (str, bytes)):
                raise TypeError(
                    f"histories[{b}] is a string ({history!r}); each history must be a list of item ids"
                )
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        num_histories = len(histories)
        stats = HistoryEncodingStats(
            num_histories=num_histories, num_items=int(lengths.sum()), skipped_per_history=[0] * num_histories
        )
        if on_unknown == "raise" and (lengths == 0).any():
            empty = np.flatnonzero(lengths == 0)[:5].tolist()
            raise ValueError(
                f"{int((lengths == 0).sum())} empty histories (indices {empty}): a history needs at least one "
                "item (pass on_unknown='skip' to encode them as all-padding rows)"
            )
        flat = [self.item_id(item) for history in histories for item in history]
        rows = self._code_table.lookup_indices(flat)
        owner = np.repeat(np.arange(num_histories, dtype=np.int64), lengths)
        unknown = rows < 0
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            if on_unknown == "raise":
                raise UnknownItemError(
                    f"item id {flat[first]!r}{self._not_a_string_hint(flat[first])} in history {int(owner[first])} "
                    f"is not in the code table ({int(unknown.sum())} unknown item(s) in this batch); pass "
                    "on_unknown='skip' (CLI: --on-unknown skip) to leave unknown items out (they are counted)"
                )
            skipped = np.bincount(owner[unknown], minlength=num_histories)
            stats.num_skipped_items = int(unknown.sum())
            stats.skipped_per_history = skipped.tolist()
            logger.warning(
                "encode_history: skipped %d item id(s) not in the code table in %d of %d histories (e.g. %r)",
                stats.num_skipped_items,
                int((skipped > 0).sum()),
                num_histories,
                flat[first],
            )
            rows, owner = rows[~unknown], owner[~unknown]
        kept = np.bincount(owner, minlength=num_histories)
        if (kept == 0).any():
            stats.empty_histories = np.flatnonzero(kept == 0).tolist()
            logger.warning(
                "encode_history: %d of %d histories have no known item and are all padding (indices %s)",
                len(stats.empty_histories),
                num_histories,
                stats.empty_histories[:10],
            )
        # Position of each kept item counted from the end of its history; keep the max_items most recent.
        start = np.cumsum(kept) - kept
        from_end = kept[owner] - 1 - (np.arange(rows.size) - start[owner])
        if max_items is not None:
            recent = from_end < max_items
            stats.num_truncated_items = int((~recent).sum())
            rows, owner, from_end = rows[recent], owner[recent], from_end[recent]
            kept = np.minimum(kept, max_items)
        depth = self.num_code_levels
        width = int(kept.max(initial=0)) * depth
        tokens = self._code_table.codes[rows] + np.asarray(self._code_token_offsets, dtype=np.int64)
        # Column of each token: the item's slot (counted from the left of its row's content) * D + depth.
        slot = kept[owner] - 1 - from_end
        column = (slot * depth)[:, None] + np.arange(depth, dtype=np.int64)
        if side == "left":
            column += (width - kept[owner] * depth)[:, None]
        input_ids = np.full((num_histories, width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((num_histories, width), dtype=np.int64)
        row_index = np.repeat(owner, depth).reshape(-1, depth)
        input_ids[row_index, column] = tokens
        attention_mask[row_index, column] = 1
        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        encoding = BatchEncoding(data, tensor_type=return_tensors)
        return (encoding, stats) if return_stats else encoding

    def encode_targets(
        self, item_ids: Sequence[str], *, add_eos: bool = True, return_tensors: str = "pt"
    ) -> torch.LongTensor | np.ndarray:
        """Target items -> labels (B, D) code tokens, plus ``</s>`` when ``add_eos`` (B, D + 1).

        Unknown items raise ``KeyError`` naming them (a label cannot be skipped without misaligning the batch).
        """
        if isinstance(item_ids, (str, bytes)):
            raise TypeError("item_ids must be a list of item ids, got a single string")
        rows, _ = self._code_table.indices_for(list(item_ids), on_unknown="raise")
        labels = self._code_table.codes[rows] + np.asarray(self._code_token_offsets, dtype=np.int64)
        if add_eos:
            eos = np.full((labels.shape[0], 1), self.eos_token_id, dtype=np.int64)
            labels = np.concatenate([labels, eos], axis=1)
        if return_tensors == "pt":
            return torch.from_numpy(np.ascontiguousarray(labels))
        if return_tensors == "np":
            return labels
        raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")

    # ------------------------------------------------------------------------------------------ decoding

    def _as_id_matrix(self, ids: Any) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Generated ids (tensor / array / possibly ragged lists) as (R, L) int64 + the leading batch shape."""
        if isinstance(ids, np.ndarray):
            ids = torch.from_numpy(ids)
        if not isinstance(ids, torch.Tensor):
            seqs = list(ids)
            if seqs and all(isinstance(s, (int, np.integer)) for s in seqs):
                seqs = [seqs]  # a single sequence
            seqs = [s.tolist() if isinstance(s, (torch.Tensor, np.ndarray)) else list(s) for s in seqs]
            width = max((len(s) for s in seqs), default=0)
            ids = torch.full((len(seqs), width), int(self.pad_token_id), dtype=torch.long)
            for r, seq in enumerate(seqs):  # only for list input; tensors take the vectorised path
                ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"token ids must be integers, got {ids.dtype}")
        if ids.dim() == 0:
            raise ValueError("decode_items needs sequences of token ids, got a scalar")
        if ids.dim() == 1:
            ids = ids[None]
        lead = tuple(ids.shape[:-1])
        return ids.reshape(-1, ids.shape[-1]).long(), lead

    def decode_item_indices(
        self, ids: torch.Tensor | np.ndarray | Sequence[Sequence[int]]
    ) -> torch.LongTensor:
        """Generated sequences -> code-table rows, ``-1`` where the sequence is not a valid item (vectorised).

        A sequence is read as: optional leading ``<pad>`` / ``<s>`` tokens, then exactly D code tokens of the
        right levels, then only ``</s>`` / ``<pad>``. Anything else (too short, too long, a code token at the
        wrong depth, a special inside the code, a code no item has) is invalid. Input (..., L) gives (...); a
        single 1-D sequence gives shape (1,). For decoder-only models pass only the generated part.
        """
        matrix, lead = self._as_id_matrix(ids)
        device = matrix.device
        num_rows, length = matrix.shape
        depth = self.num_code_levels
        if length < depth:
            return torch.full(lead, -1, dtype=torch.long, device=device)
        leading = (matrix == self.pad_token_id) | (matrix == self.bos_token_id)
        has_start = (~leading).any(dim=1)
        start = (~leading).int().argmax(dim=1)
        positions = start[:, None] + torch.arange(depth, device=device)
        fits = start + depth <= length
        window = matrix.gather(1, positions.clamp(max=length - 1))
        offsets, sizes = self._offsets_t.to(device), self._sizes_t.to(device)
        codes = window - offsets
        in_level = ((codes >= 0) & (codes < sizes)).all(dim=1)
        after = torch.arange(length, device=device)[None, :] >= (start + depth)[:, None]
        closing = (matrix == self.eos_token_id) | (matrix == self.pad_token_id)
        clean_tail = ~(after & ~closing).any(dim=1)
        valid = has_start & fits & in_level & clean_tail
        rows = self._code_table.items_for_codes(torch.where(valid[:, None], codes, torch.zeros_like(codes)))
        rows = torch.where(valid, rows, torch.full_like(rows, -1))
        return rows.reshape(lead)

    def decode_items(
        self,
        ids: Any,
        *,
        num_return_sequences: int | None = None,
        batch_size: int | None = None,
        return_invalid_mask: bool = False,
    ) -> Any:
        """Generated sequences -> item ids (None where the code is not a valid item).

        ``model.generate(**inputs)`` returns ``num_return_sequences`` rows per input history, those of the first
        history first (``B * n`` rows). Which rows belong together is known only to the caller, so:

        * without ``num_return_sequences`` / ``batch_size`` the result is **flat**, one id per row (for one
          history that is its ranked list: ``tokenizer.decode_items(model.generate(**tokenizer("1 50 181",
          return_tensors="pt")))`` gives the 10 ids of ``generation_config.json``'s 10 beams, as it always did);
        * with ``num_return_sequences=n`` (rows per input, e.g. ``model.generation_config.num_return_sequences``)
          or ``batch_size=B`` (number of inputs; give one of the two) it is **one list per input**, best first:
          ``[[n ids of history 0], [n ids of history 1], ...]``. The row count must be a multiple of ``n`` (of
          ``B``), else ``ValueError``: a wrong grouping never passes silently.

        ``ids``: a tensor / array / (ragged) lists of token ids, or a ``generate(..., return_dict_in_generate=
        True)`` output (its ``sequences``). See :meth:`decode_item_indices` for how a sequence is read. With
        ``return_invalid_mask`` also returns the boolean mask of invalid sequences (``mask.sum()`` is the invalid
        count), in the input's batch shape, or ``(B, n)`` when grouped.
        """
        if not isinstance(ids, (torch.Tensor, np.ndarray, list, tuple)) and hasattr(ids, "sequences"):
            ids = ids.sequences  # a GenerateOutput
        rows = self.decode_item_indices(ids)
        item_ids = self._code_table.item_ids
        items = [item_ids[r] if r >= 0 else None for r in rows.reshape(-1).tolist()]
        group = self._group_size(len(items), num_return_sequences, batch_size)
        if group is None:
            return (items, rows < 0) if return_invalid_mask else items
        grouped = [items[start : start + group] for start in range(0, len(items), group)]
        if return_invalid_mask:
            return grouped, (rows < 0).reshape(-1, group)
        return grouped

    @staticmethod
    def _group_size(num_rows: int, num_return_sequences: int | None, batch_size: int | None) -> int | None:
        """Rows per input for :meth:`decode_items` (None: flat), checked against ``num_rows``."""
        if num_return_sequences is not None and batch_size is not None:
            raise ValueError("give num_return_sequences or batch_size, not both")
        for name, value in (("num_return_sequences", num_return_sequences), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_return_sequences is not None:
            if num_rows % num_return_sequences:
                raise ValueError(
                    f"{num_rows} generated rows are not a multiple of num_return_sequences={num_return_sequences}: "
                    "pass the num_return_sequences that generate() used"
                )
            return int(num_return_sequences)
        if batch_size is not None:
            if num_rows % batch_size:
                raise ValueError(
                    f"{num_rows} generated rows are not a multiple of batch_size={batch_size}: pass the number "
                    "of histories given to generate()"
                )
            return max(num_rows // int(batch_size), 1)
        return None


def register_auto_tokenizer(config_class: type) -> None:
    """Makes ``AutoTokenizer.from_pretrained`` return a :class:`SemanticIDTokenizer` for genrec folders.

    transformers 5 resolves ``tokenizer_config.json``'s ``"tokenizer_class": "SemanticIDTokenizer"`` through
    the class names recorded by ``AutoTokenizer.register(config_class, tokenizer_class=...)`` (it takes one
    class in v5), and maps ``config_class`` (a model config, e.g. genrec's UNGER config) to this tokenizer for
    folders without a ``tokenizer_class``. Idempotent.
    """
    from transformers import AutoTokenizer

    AutoTokenizer.register(config_class, tokenizer_class=SemanticIDTokenizer, exist_ok=True)


# Saved folders carry this file, code_table.py and an ``auto_map`` entry in tokenizer_config.json:
# AutoTokenizer loads them with trust_remote_code=True where genrec is not installed.
SemanticIDTokenizer.register_for_auto_class()
