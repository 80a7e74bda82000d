"""Array helpers of :class:`~genrec.tokenization.code_table.CodeTable`: input checks, lexicographic order of
code rows, collision groups, and the prefix (trie) index in the CSR layout of the ``prefix_index`` contract.

Pure numpy / torch functions over (N, D) int64 code arrays, kept apart from the table class so that the class
reads as the map it is (ids <-> codes, lookups, hashing, files) and these can be tested and reused alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

MAX_PACKED_KEY = 2**62  # codes pack into one int64 sort key while the product of the level sizes stays below


def as_code_array(codes: Any, what: str = "codes") -> np.ndarray:
    """``codes`` (numpy array, torch tensor or nested sequence) as a C-contiguous (N, D) int64 array."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    array = np.asarray(codes)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (num_items, num_levels), got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what} hold values that do not fit in int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def check_item_ids(item_ids: Sequence[str], what: str = "item_ids") -> list[str]:
    """``item_ids`` as a list of non-empty, unique ``str`` (clear error otherwise)."""
    if isinstance(item_ids, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of str item ids, got a single {type(item_ids).__name__}")
    ids = list(item_ids)
    foreign = set(map(type, ids)) - {str}
    if foreign and all(issubclass(t, str) for t in foreign):
        ids = list(map(str, ids))  # e.g. numpy.str_: store plain str (the hash encodes the text only)
    elif foreign:
        bad = next((n, i) for n, i in enumerate(ids) if not isinstance(i, str))
        raise TypeError(
            f"{what}[{bad[0]}] is {bad[1]!r} of type {type(bad[1]).__name__}: item ids are always str "
            "(convert them with str() when building the table)"
        )
    if not all(ids):
        raise ValueError(f"{what}[{ids.index('')}] is the empty string: item ids must be non-empty")
    return ids


def duplicate_ids(ids: Sequence[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` ids that occur more than once (only called on the error path)."""
    return [item for item, count in Counter(ids).items() if count > 1][:limit]


def radix_weights(sizes: Sequence[int]) -> np.ndarray | None:
    """Mixed-radix weights packing a code row into one int64 key (lexicographic order), or None on overflow."""
    if math.prod(int(k) for k in sizes) >= MAX_PACKED_KEY:
        return None
    weights = np.ones(len(sizes), dtype=np.int64)
    for d in range(len(sizes) - 2, -1, -1):
        weights[d] = weights[d + 1] * int(sizes[d + 1])
    return weights


def lex_order(codes: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Stable permutation sorting the rows of ``codes`` lexicographically (ties keep input order)."""
    if codes.shape[1] == 0:
        return np.arange(codes.shape[0], dtype=np.int64)
    weights = radix_weights(sizes)
    if weights is not None:
        return np.argsort(codes @ weights, kind="stable")
    return np.lexsort(codes.T[::-1])


def group_starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Boolean (N,): True where a row of lexicographically sorted codes differs from the previous row."""
    n = sorted_codes.shape[0]
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = np.any(sorted_codes[1:] != sorted_codes[:-1], axis=1)
    return starts


def rank_in_groups(starts: np.ndarray) -> np.ndarray:
    """For rows sorted into groups (``starts`` marks each group's first row): each row's rank in its group."""
    positions = np.arange(starts.size, dtype=np.int64)
    first = np.maximum.accumulate(np.where(starts, positions, 0))
    return positions - first


def build_prefix_index(sorted_codes: np.ndarray, order: np.ndarray, sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """The CSR prefix (trie) index of codes sorted lexicographically (``sorted_codes = codes[order]``): see
    :meth:`CodeTable.prefix_index` for the layout. O(N D) boundary detection on the sorted rows."""
    n = len(order)
    index: dict[str, torch.Tensor] = {"level_sizes": torch.tensor(sizes, dtype=torch.long)}
    new_prefix = np.zeros(n, dtype=bool)  # row starts a new prefix of the current length
    new_prefix[0] = True
    parent = np.zeros(n, dtype=np.int64)  # node id (at depth d) of each row's length-d prefix
    num_nodes = 1
    for d in range(sorted_codes.shape[1]):
        if n > 1:
            new_prefix[1:] |= sorted_codes[1:, d] != sorted_codes[:-1, d]
        edge_rows = np.flatnonzero(new_prefix)
        edge_parent = parent[edge_rows]
        counts = np.bincount(edge_parent, minlength=num_nodes)
        offsets = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        index[f"offsets_{d}"] = torch.from_numpy(offsets)
        index[f"codes_{d}"] = torch.from_numpy(np.ascontiguousarray(sorted_codes[edge_rows, d]))
        parent = np.cumsum(new_prefix, dtype=np.int64) - 1
        num_nodes = edge_rows.size
    index["leaf_items"] = torch.from_numpy(np.array(order, dtype=np.int64))
    return index


def edge_keys(prefix: Mapping[str, torch.Tensor], sizes: Sequence[int], device: torch.device) -> list[torch.Tensor]:
    """Per depth, the strictly increasing ``parent * K_d + code`` keys of the index's edges (searchsorted
    lookups walk the trie with them), then the leaf rows; all on ``device``."""
    keys = []
    for d, k in enumerate(sizes):
        offsets = prefix[f"offsets_{d}"]
        parents = torch.repeat_interleave(torch.arange(offsets.numel() - 1), offsets.diff())
        keys.append((parents * k + prefix[f"codes_{d}"]).to(device))
    keys.append(prefix["leaf_items"].to(device))
    return keys
