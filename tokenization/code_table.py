"""The CodeTable: the one-to-one map between item ids (``str``) and their semantic-ID code tuples.

A quantizer assigns every item a tuple of small integers, one per level (its *semantic* code). Distinct items
may receive the same semantic code; a generative recommender, however, must be able to name every item, so the
table makes codes unique the way TIGER and TTDS do: when semantic codes collide, one extra final *collision
level* is appended to every item, numbering the items of each collision group 0, 1, 2, ... in input order
(items alone in their group get 0). Without any collision no level is added, unless ``always_append=True`` is
asked for (useful for catalogues that will grow: see :meth:`CodeTable.add_items`).

The table also provides what decoding and training need: vectorised lookups both ways, the prefix (trie)
index of the codes in the CSR layout of the project's ``prefix_index`` contract (consumed by
``genrec.modeling.constrained_decoding`` as plain tensors), and a content hash over a canonical byte encoding
that is stable across processes and platforms, so a model can refuse a table it was not trained with.

Everything is built with numpy sorts and boundary detection (no per-item Python loops beyond the unavoidable
``str`` -> row dictionary), so 10^6 items build in seconds with memory proportional to the number of items.

On disk a table is two files in one folder: ``code_table.parquet`` (column ``item_id`` plus one int64 column
per level: ``level_0`` .. ``level_{S-1}`` for the S semantic levels and ``collision`` for the collision level)
and ``code_table.json`` (sizes, levels, collision statistics, content hash, format version). Parquet I/O needs
``pyarrow``, imported lazily by the file I/O in :mod:`.code_table_files`: a deliberate exception to
this folder's import rule (torch / transformers / tokenizers / safetensors / numpy only), acceptable because
``pyarrow`` is always installed with ``datasets``, and kept out of module import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .code_arrays import (
    as_code_array,
    build_prefix_index,
    check_item_ids,
    duplicate_ids,
    edge_keys,
    group_starts,
    lex_order,
    rank_in_groups,
)
from .code_table_files import (
    CODE_TABLE_DATA_FILE,
    CODE_TABLE_FORMAT_VERSION,
    CODE_TABLE_META_FILE,
    COLLISION_COLUMN,
    FORMAT_NAME,
    level_column,
    read_code_table_files,
    write_code_table_files,
)

__all__ = ["CODE_TABLE_DATA_FILE", "CODE_TABLE_FORMAT_VERSION", "CODE_TABLE_META_FILE", "CodeTable", "UnknownItemError"]

logger = logging.getLogger(__name__)


class UnknownItemError(KeyError, ValueError):
    """An item id the code table does not know: bad input, not a bug.

    A ``KeyError`` (what callers have always caught) that is also a ``ValueError``, so that the CLI's
    bad-input handling reports it in one line while a plain ``KeyError`` from a real bug keeps its traceback.
    Its ``str`` is the message itself (``KeyError`` would quote it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

class CodeTable:
    """Item id (``str``) <-> code tuple (one small int per level); every item has a unique code.

    Build it with :meth:`from_codes` (semantic codes from a quantizer, collisions resolved), :meth:`load`
    (a saved folder, hash verified) or :meth:`from_columns` (the Hub dataset config ``code_table``). A table
    is immutable: :meth:`add_items` returns a new table, and ``codes`` is a read-only array, so the cached
    prefix index and hash can never go stale. Treat ``item_ids`` and the tensors of :meth:`prefix_index` as
    read-only too.

    Attributes:
        item_ids: row -> item id.
        codes: (N, D) int64, read-only; row ``i`` is the code of ``item_ids[i]``.
        codebook_sizes: size K_d of each of the D levels (the collision level's size is its largest group).
        num_semantic_levels: number of quantizer levels (D, or D - 1 when a collision level is present).
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: np.ndarray | torch.Tensor,
        codebook_sizes: Sequence[int],
        num_semantic_levels: int,
    ) -> None:
        """A table from full codes (collision level included). Prefer :meth:`from_codes` / :meth:`load`.

        Validates everything (str ids, unique ids, code ranges, unique codes) and raises ``ValueError`` /
        ``TypeError`` naming the offending items.
        """
        ids = check_item_ids(item_ids)
        array = as_code_array(codes)
        sizes = [int(k) for k in codebook_sizes]
        n, depth = array.shape
        if n != len(ids):
            raise ValueError(f"{len(ids)} item ids but {n} code rows: they must match one to one")
        if n == 0:
            raise ValueError("a CodeTable needs at least one item")
        if depth == 0:
            raise ValueError("codes need at least one level")
        if len(sizes) != depth:
            raise ValueError(f"codebook_sizes has {len(sizes)} entries but codes have {depth} levels")
        if any(k <= 0 for k in sizes):
            raise ValueError(f"codebook_sizes must be positive, got {sizes}")
        if not (depth - 1 <= num_semantic_levels <= depth) or num_semantic_levels < 1:
            raise ValueError(
                f"num_semantic_levels={num_semantic_levels} is inconsistent with {depth} levels "
                "(it must be D, or D - 1 when the last level is the collision level)"
            )
        bad_rows = np.nonzero(np.any((array < 0) | (array >= np.asarray(sizes, dtype=np.int64)), axis=1))[0]
        if bad_rows.size:
            first = [(ids[r], tuple(array[r].tolist())) for r in bad_rows[:5]]
            raise ValueError(
                f"{bad_rows.size} item(s) have codes outside 0..K_d-1 for codebook_sizes {sizes}, e.g. {first}"
            )
        index = dict(zip(ids, range(n), strict=True))
        if len(index) != n:
            raise ValueError(f"duplicate item ids (each item must appear once), e.g. {duplicate_ids(ids)}")
        order = lex_order(array, sizes)
        sorted_codes = array[order]
        starts = group_starts(sorted_codes)
        if not starts.all():
            dup = order[np.nonzero(~starts)[0][:5]]
            examples = [(ids[r], tuple(array[r].tolist())) for r in dup]
            raise ValueError(
                f"{int((~starts).sum())} item(s) share a code with another item, e.g. {examples}: every code "
                "must be unique (build the table with CodeTable.from_codes(..., collisions='append'))"
            )
        array.flags.writeable = False
        order.flags.writeable = False
        self._item_ids = ids
        self._codes = array
        self._sizes = sizes
        self._num_semantic = int(num_semantic_levels)
        self._index = index
        self._order = order  # lexicographic order of the full codes (= leaf order of the prefix index)
        self._prefix_index: dict[str, torch.Tensor] | None = None
        self._edge_keys: dict[torch.device, list[torch.Tensor]] = {}
        self._hash: str | None = None
        self._collision_stats: tuple[float, int, int] | None = None

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_codes(
        cls,
        item_ids: Sequence[str],
        codes: np.ndarray | torch.Tensor,
        *,
        codebook_sizes: Sequence[int] | None = None,
        collisions: str = "append",
        always_append: bool = False,
        collision_order: Sequence[float] | np.ndarray | None = None,
    ) -> CodeTable:
        """A table from the semantic codes a quantizer produced, one row per item.

        Args:
            item_ids: N distinct ``str`` ids.
            codes: (N, S) non-negative integer semantic codes (numpy or torch).
            codebook_sizes: the S quantizer codebook sizes; default: ``max + 1`` of each column (pass the real
                sizes so that the tokenizer's vocabulary covers codes no item uses yet).
            collisions: ``"append"`` (default): items whose semantic codes coincide get one extra final level
                numbering them 0, 1, 2, ... within each group in input order (TIGER / TTDS); ``"error"``:
                raise ``ValueError`` listing colliding items.
            always_append: append the collision level (all zeros) even when no codes collide. Default False:
                without collisions the codes are exactly the semantic codes. Set it for a catalogue that will
                receive cold-start items (:meth:`add_items` can only resolve new collisions when the level
                exists).
            collision_order: optional (N,) sort key, one per item: within each collision group the items are
                numbered by ascending key (ties in input order) instead of input order. Minus the training
                counts numbers each group's most frequent item 0, so the collision token, which carries no
                meaning of its own, at least says "the usual one" (docs/quality.md measures it).
        """
        if collisions not in ("append", "error"):
            raise ValueError(f"collisions must be 'append' or 'error', got {collisions!r}")
        if isinstance(item_ids, (str, bytes)):
            raise TypeError("item_ids must be a sequence of str item ids, got a single string")
        ids = list(item_ids)  # validated by the constructor
        semantic = as_code_array(codes)
        n, num_semantic = semantic.shape
        if n != len(ids):
            raise ValueError(f"{len(ids)} item ids but {n} code rows: they must match one to one")
        if n == 0:
            raise ValueError("a CodeTable needs at least one item")
        if num_semantic == 0:
            raise ValueError("codes need at least one level")
        if semantic.min() < 0:
            row = int(np.nonzero(np.any(semantic < 0, axis=1))[0][0])
            raise ValueError(
                f"codes must be non-negative; item {ids[row]!r} has {tuple(semantic[row].tolist())}"
            )
        if codebook_sizes is None:
            sizes = [int(k) for k in semantic.max(axis=0) + 1]
        else:
            sizes = [int(k) for k in codebook_sizes]
            if len(sizes) != num_semantic:
                raise ValueError(
                    f"codebook_sizes has {len(sizes)} entries but codes have {num_semantic} semantic levels"
                )
        if collision_order is None:
            order = lex_order(semantic, sizes)
        else:
            key = np.asarray(collision_order, dtype=np.float64)
            if key.shape != (n,) or not np.isfinite(key).all():
                raise ValueError(f"collision_order must hold {n} finite numbers (one per item), got shape {key.shape}")
            first = np.argsort(key, kind="stable")  # a stable lexicographic sort keeps this order inside a group
            order = first[lex_order(semantic[first], sizes)]
        starts = group_starts(semantic[order])
        if starts.all() and not always_append:
            return cls(ids, semantic, sizes, num_semantic)
        if not starts.all() and collisions == "error":
            group = np.cumsum(starts) - 1
            counts = np.bincount(group)
            shared = order[counts[group] > 1]
            examples = [(ids[r], tuple(semantic[r].tolist())) for r in shared[:6]]
            raise ValueError(
                f"{shared.size} items share their semantic code with another item "
                f"({int((counts > 1).sum())} groups), e.g. {examples}; use collisions='append' to add a "
                "collision level"
            )
        rank = rank_in_groups(starts)
        collision = np.empty(n, dtype=np.int64)
        collision[order] = rank
        full = np.concatenate([semantic, collision[:, None]], axis=1)
        table = cls(ids, full, [*sizes, int(rank.max()) + 1], num_semantic)
        if not starts.all():
            rate, groups, largest = table._collisions()
            logger.info(
                "code table: %d of %d items (%.2f%%) share a semantic code in %d groups (largest %d); "
                "appended a collision level",
                round(rate * n),
                n,
                100 * rate,
                groups,
                largest,
            )
        return table

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Sequence[Any]], *, metadata: Mapping[str, Any] | None = None
    ) -> CodeTable:
        """A table from the columns of :meth:`to_columns` (e.g. the Hub dataset config ``code_table``).

        ``metadata`` (:meth:`metadata`, as stored beside the dataset) restores the exact codebook sizes and
        verifies the content hash; without it the sizes are inferred (``max + 1`` per level), so a code table
        whose quantizer had unused codes then gets smaller sizes (and a different hash).
        """
        if "item_id" not in columns:
            raise ValueError(f"code table columns need 'item_id', got {sorted(columns)}")
        levels = sorted(
            (c for c in columns if c.startswith("level_") and c[6:].isdigit()), key=lambda c: int(c[6:])
        )
        if [level_column(d) for d in range(len(levels))] != levels or not levels:
            raise ValueError(f"code table columns need level_0 .. level_{{S-1}}, got {sorted(columns)}")
        names = [*levels, COLLISION_COLUMN] if COLLISION_COLUMN in columns else levels
        unknown = set(columns) - {"item_id", *names}
        if unknown:
            raise ValueError(f"unexpected code table columns {sorted(unknown)}")
        codes = np.stack([np.asarray(columns[c]) for c in names], axis=1)
        ids = list(columns["item_id"])
        if metadata is None:
            codes = as_code_array(codes)
            if not codes.size:
                raise ValueError("a CodeTable needs at least one item")
            return cls(ids, codes, [int(k) for k in codes.max(axis=0) + 1], len(levels))
        table = cls(ids, codes, metadata["codebook_sizes"], int(metadata["num_semantic_levels"]))
        expected = metadata.get("content_hash")
        if expected is not None and expected != table.content_hash:
            raise ValueError(
                f"code table columns do not match the recorded content hash ({table.content_hash} != "
                f"{expected}): the data or its metadata were edited or belong to different tables"
            )
        return table

    # ------------------------------------------------------------------------------------------ properties

    @property
    def item_ids(self) -> list[str]:
        """Row -> item id (do not mutate)."""
        return self._item_ids

    @property
    def codes(self) -> np.ndarray:
        """(N, D) int64 read-only array of codes, row-aligned with :attr:`item_ids`."""
        return self._codes

    @property
    def num_levels(self) -> int:
        """D: code positions per item (semantic levels plus the collision level when present)."""
        return self._codes.shape[1]

    @property
    def num_semantic_levels(self) -> int:
        """S: the quantizer's levels."""
        return self._num_semantic

    @property
    def has_collision_level(self) -> bool:
        """Whether the last level is the appended collision level."""
        return self.num_levels > self._num_semantic

    @property
    def codebook_sizes(self) -> list[int]:
        """K_d per level (a copy); the collision level's size is its largest collision group."""
        return list(self._sizes)

    @property
    def collision_rate(self) -> float:
        """Fraction of items whose semantic code is shared with at least one other item."""
        return self._collisions()[0]

    @property
    def max_collision_group(self) -> int:
        """Size of the largest group of items sharing a semantic code (1 without collisions)."""
        return self._collisions()[2]

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of a canonical encoding of ids, codes, sizes and semantic levels.

        The encoding is fixed (little-endian int64, UTF-8 JSON for the ids), so the hash is the same in every
        process and on every platform, and any change of an id, a code, a size or the level split changes it.
        """
        if self._hash is None:
            digest = hashlib.sha256()
            header = {
                "format": FORMAT_NAME,
                "version": CODE_TABLE_FORMAT_VERSION,
                "num_items": len(self),
                "num_levels": self.num_levels,
                "num_semantic_levels": self._num_semantic,
                "codebook_sizes": self._sizes,
            }
            digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8"))
            digest.update(b"\x00codes\x00")
            digest.update(self._codes.astype("<i8", copy=False).tobytes(order="C"))
            digest.update(b"\x00item_ids\x00")
            digest.update(
                json.dumps(self._item_ids, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            )
            self._hash = digest.hexdigest()
        return self._hash

    # ------------------------------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodeTable):
            return NotImplemented
        return self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        return (
            f"CodeTable(num_items={len(self)}, num_levels={self.num_levels}, "
            f"codebook_sizes={self._sizes}, collision_level={self.has_collision_level}, "
            f"collision_rate={self.collision_rate:.4f})"
        )

    def index_of(self, item_id: str) -> int:
        """Row of ``item_id``; ``KeyError`` naming the id when the table does not know it."""
        try:
            return self._index[item_id]
        except KeyError:
            raise UnknownItemError(f"item id {item_id!r} is not in the code table ({len(self)} items)") from None

    def code_of(self, item_id: str) -> tuple[int, ...]:
        """The code tuple of ``item_id`` (``KeyError`` naming the id when unknown)."""
        return tuple(int(c) for c in self._codes[self.index_of(item_id)])

    def item_of(self, code: Sequence[int]) -> str | None:
        """The item whose code is ``code`` (D ints), or None when no item has it."""
        row = self.items_for_codes(torch.as_tensor([list(code)], dtype=torch.long))[0]
        return None if row < 0 else self._item_ids[int(row)]

    def lookup_indices(self, item_ids: Iterable[str]) -> np.ndarray:
        """Rows of ``item_ids`` as an int64 array, ``-1`` for ids the table does not know."""
        get = self._index.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64)

    def indices_for(self, item_ids: Sequence[str], *, on_unknown: str = "raise") -> tuple[np.ndarray, int]:
        """Rows of ``item_ids`` and the number of unknown ids skipped.

        ``on_unknown="raise"``: ``KeyError`` naming the unknown ids; ``"skip"``: unknown ids are left out
        (the returned count says how many, and a warning is logged).
        """
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        ids = list(item_ids)
        rows = self.lookup_indices(ids)
        missing = rows < 0
        n_missing = int(missing.sum())
        if n_missing:
            examples = [ids[i] for i in np.nonzero(missing)[0][:5]]
            if on_unknown == "raise":
                raise UnknownItemError(
                    f"{n_missing} item id(s) are not in the code table, e.g. {examples}; pass "
                    "on_unknown='skip' to leave them out (they are counted)"
                )
            logger.warning("skipped %d item id(s) not in the code table, e.g. %s", n_missing, examples)
            rows = rows[~missing]
        return rows, n_missing

    def codes_for(self, item_ids: Sequence[str], *, on_unknown: str = "raise") -> tuple[np.ndarray, int]:
        """Codes (M, D) of ``item_ids`` and the number of unknown ids skipped (see :meth:`indices_for`)."""
        rows, skipped = self.indices_for(item_ids, on_unknown=on_unknown)
        return self._codes[rows], skipped

    def items_for_codes(self, codes: torch.Tensor | np.ndarray) -> torch.LongTensor:
        """Rows of the items with the given codes, vectorised: (..., D) -> (...) int64, ``-1`` where invalid.

        A code is invalid when any position is out of its level's range or no item has the full code. Runs on
        ``codes``' device (the index is moved there once and cached).
        """
        if isinstance(codes, np.ndarray):
            codes = torch.tensor(codes)  # a copy: the table's own codes are a read-only array
        codes = torch.as_tensor(codes)
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.dim() == 0 or codes.shape[-1] != self.num_levels:
            raise ValueError(f"codes must have shape (..., {self.num_levels}), got {tuple(codes.shape)}")
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, self.num_levels).long()
        keys = self._edge_keys_on(flat.device)
        node = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        valid = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
        for d, k in enumerate(self._sizes):
            code = flat[:, d]
            valid &= (code >= 0) & (code < k)
            query = node * k + code.clamp(0, k - 1)
            pos = torch.searchsorted(keys[d], query).clamp_(max=keys[d].numel() - 1)
            valid &= keys[d][pos] == query
            node = torch.where(valid, pos, torch.zeros_like(pos))
        rows = torch.where(valid, keys[-1][node], torch.full_like(node, -1))
        return rows.reshape(lead)

    # ------------------------------------------------------------------------------------------ prefix index

    def prefix_index(self) -> dict[str, torch.Tensor]:
        """The prefix (trie) index of all codes, in the CSR layout of the ``prefix_index`` contract.

        Keys: ``level_sizes`` (D,); ``offsets_{d}`` (N_d + 1,) CSR row pointers and ``codes_{d}``
        (N_{d+1},) edge codes for d in 0..D-1 (edge e leaving depth d is node e at depth d+1; nodes are numbered
        in lexicographic order of their prefixes); ``leaf_items`` (N_D,) the table row of each leaf. All int64
        CPU tensors, built once (O(N log N) sort + O(N D) boundary detection) and cached; treat as read-only
        (a fresh dict is returned each call, the tensors are shared).
        """
        if self._prefix_index is None:
            self._prefix_index = self._build_prefix_index()
        return dict(self._prefix_index)

    def _build_prefix_index(self) -> dict[str, torch.Tensor]:
        return build_prefix_index(self._codes[self._order], self._order, self._sizes)

    def _edge_keys_on(self, device: torch.device) -> list[torch.Tensor]:
        """Per depth: strictly increasing ``parent * K_d + code`` edge keys; last entry: leaf rows."""
        keys = self._edge_keys.get(device)
        if keys is None:
            keys = self._edge_keys[device] = edge_keys(self.prefix_index(), self._sizes, device)
        return keys

    # ------------------------------------------------------------------------------------------ cold start

    def add_items(self, item_ids: Sequence[str], codes: np.ndarray | torch.Tensor) -> CodeTable:
        """A new table with extra items (cold start); existing items keep their codes bit-identically.

        ``codes`` are the new items' *semantic* codes (M, S), within the existing semantic codebook sizes.
        With a collision level, each new item gets the next free collision index of its semantic group
        (existing maximum + 1; new items of one group numbered in input order); when a group outgrows the
        collision level, the level's size grows (a tokenizer rebuilt from the new table then has extra
        collision tokens appended at the end of its vocabulary; existing token ids are unchanged, but a
        trained model needs its embeddings resized). Without a collision level a new collision cannot be
        resolved without changing every existing code, so it raises ``ValueError`` (build tables that will
        grow with ``always_append=True``). Duplicate ids (among the new ones or with existing ones) raise.
        """
        new_ids = check_item_ids(item_ids)
        new_codes = as_code_array(codes)
        m = len(new_ids)
        s = self._num_semantic
        if new_codes.shape[0] != m:
            raise ValueError(f"{m} new item ids but {new_codes.shape[0]} code rows")
        if m == 0:
            return self
        if new_codes.shape[1] != s:
            raise ValueError(
                f"new codes must be the {s} semantic levels of the quantizer (collision indices are assigned "
                f"here), got {new_codes.shape[1]} columns"
            )
        clash = [i for i in new_ids if i in self._index][:5]
        if clash:
            raise ValueError(f"item ids already in the code table (ids must be unique), e.g. {clash}")
        if len(set(new_ids)) != m:
            raise ValueError(f"duplicate ids among the new items, e.g. {duplicate_ids(new_ids)}")
        semantic_sizes = np.asarray(self._sizes[:s], dtype=np.int64)
        bad = np.nonzero(np.any((new_codes < 0) | (new_codes >= semantic_sizes), axis=1))[0]
        if bad.size:
            examples = [(new_ids[r], tuple(new_codes[r].tolist())) for r in bad[:5]]
            raise ValueError(
                f"{bad.size} new item(s) have codes outside the codebook sizes {self._sizes[:s]}, e.g. {examples}"
            )
        ids = self._item_ids + new_ids
        if not self.has_collision_level:
            # The constructor rejects any collision (with existing items or among the new ones).
            try:
                return CodeTable(ids, np.concatenate([self._codes, new_codes]), self._sizes, s)
            except ValueError as error:
                raise ValueError(
                    f"{error}. This table has no collision level, so a colliding new item cannot get a unique "
                    "code without changing existing codes; rebuild it with CodeTable.from_codes(..., "
                    "always_append=True) (or re-quantize)"
                ) from None
        old_n = len(self)
        semantic = np.concatenate([self._codes[:, :s], new_codes])
        order = lex_order(semantic, self._sizes[:s])
        starts = group_starts(semantic[order])
        group = np.empty(old_n + m, dtype=np.int64)
        group[order] = np.cumsum(starts) - 1
        top = np.full(int(starts.sum()), -1, dtype=np.int64)
        np.maximum.at(top, group[:old_n], self._codes[:, s])
        new_group = group[old_n:]
        new_order = np.argsort(new_group, kind="stable")
        rank = np.empty(m, dtype=np.int64)
        rank[new_order] = rank_in_groups(group_starts(new_group[new_order][:, None]))
        collision = top[new_group] + 1 + rank
        sizes = [*self._sizes[:s], max(self._sizes[s], int(collision.max()) + 1)]
        if sizes[s] > self._sizes[s]:
            logger.warning(
                "add_items: the collision level grows from %d to %d codes (a collision group got larger)",
                self._sizes[s],
                sizes[s],
            )
        full = np.concatenate([self._codes, np.concatenate([new_codes, collision[:, None]], axis=1)])
        return CodeTable(ids, full, sizes, s)

    # ------------------------------------------------------------------------------------------ statistics

    def _collisions(self) -> tuple[float, int, int]:
        """(collision rate, number of groups with > 1 item, largest group) over the semantic codes."""
        if self._collision_stats is None:
            if not self.has_collision_level:
                self._collision_stats = (0.0, 0, 1)
            else:
                s = self._num_semantic
                # The full-code order sorts by the semantic prefix first, so it groups semantic codes too.
                starts = group_starts(self._codes[self._order, :s])
                counts = np.diff(np.append(np.flatnonzero(starts), len(self)))
                shared = int(counts[counts > 1].sum())
                self._collision_stats = (shared / len(self), int((counts > 1).sum()), int(counts.max()))
        return self._collision_stats

    def stats(self) -> dict[str, Any]:
        """Sizes, collision statistics, per-level codebook utilisation and prefix-tree node counts."""
        rate, groups, largest = self._collisions()
        used = [int(np.unique(self._codes[:, d]).size) for d in range(self.num_levels)]
        prefix = self.prefix_index()
        return {
            "num_items": len(self),
            "num_levels": self.num_levels,
            "num_semantic_levels": self._num_semantic,
            "has_collision_level": self.has_collision_level,
            "codebook_sizes": list(self._sizes),
            "collision_rate": rate,
            "num_collision_groups": groups,
            "max_collision_group": largest,
            "codes_used_per_level": used,
            "utilisation_per_level": [u / k for u, k in zip(used, self._sizes, strict=True)],
            "prefix_nodes_per_depth": [prefix[f"offsets_{d}"].numel() - 1 for d in range(self.num_levels)]
            + [len(self)],
        }

    def metadata(self) -> dict[str, Any]:
        """What ``code_table.json`` holds: format, version, levels, sizes, collision statistics, hash."""
        rate, groups, largest = self._collisions()
        return {
            "format": FORMAT_NAME,
            "version": CODE_TABLE_FORMAT_VERSION,
            "num_items": len(self),
            "num_levels": self.num_levels,
            "num_semantic_levels": self._num_semantic,
            "has_collision_level": self.has_collision_level,
            "codebook_sizes": list(self._sizes),
            "columns": ["item_id", *self._column_names()],
            "collision_rate": rate,
            "num_collision_groups": groups,
            "max_collision_group": largest,
            "content_hash": self.content_hash,
        }

    # ------------------------------------------------------------------------------------------ serialisation

    def _column_names(self) -> list[str]:
        names = [level_column(d) for d in range(self._num_semantic)]
        return [*names, COLLISION_COLUMN] if self.has_collision_level else names

    def to_columns(self) -> dict[str, list]:
        """Plain columns (``item_id`` + one int column per level) for a ``datasets.Dataset``.

        Store :meth:`metadata` beside them (e.g. in the dataset card) and pass it to :meth:`from_columns` to
        restore the exact codebook sizes and verify the hash.
        """
        columns: dict[str, list] = {"item_id": list(self._item_ids)}
        for d, name in enumerate(self._column_names()):
            columns[name] = self._codes[:, d].tolist()
        return columns

    def save(self, directory: str | os.PathLike) -> None:
        """Writes ``code_table.parquet`` and ``code_table.json`` into ``directory`` (created if needed).

        Each file is written to a temporary name and renamed, so an interrupted save never leaves a
        half-written file under the final name (:mod:`.code_table_files`).
        """
        write_code_table_files(self, Path(directory))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CodeTable:
        """Loads a table saved by :meth:`save`, verifying its content hash.

        A missing, corrupt, truncated or edited file raises ``ValueError`` / ``FileNotFoundError`` naming the
        file and what to do.
        """
        directory = Path(directory)
        return cls.from_files(directory / CODE_TABLE_META_FILE, directory / CODE_TABLE_DATA_FILE)

    @classmethod
    def from_files(cls, meta_path: str | os.PathLike, data_path: str | os.PathLike) -> CodeTable:
        """Loads a table from its two files (``code_table.json``, ``code_table.parquet``) wherever they are."""
        meta_path, data_path = Path(meta_path), Path(data_path)
        ids, codes, sizes, num_semantic, expected_hash = read_code_table_files(meta_path, data_path)
        try:
            table = cls(ids, codes, sizes, num_semantic)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{data_path} does not hold a valid code table: {error}") from None
        if table.content_hash != expected_hash:
            raise ValueError(
                f"{data_path} does not match the content hash recorded in {meta_path} "
                f"({table.content_hash} != {expected_hash}): a file was edited, corrupted or replaced; "
                "restore both files from the same save"
            )
        return table
