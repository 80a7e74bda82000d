"""Constrained decoding and constrained training over semantic IDs.

A generative recommender must only ever emit codes that belong to an item. ``SemanticIDLogitsProcessor`` is a
``transformers.LogitsProcessor`` that, at every decoding step, keeps only the tokens that continue a valid
item code (and, once a full code has been generated, only the end-of-sequence token). It produces exactly the
scores of ``transformers.PrefixConstrainedLogitsProcessor`` driven by a Python prefix trie, hence the same
beams, but vectorised over batch x beams on the scores' device: ``PrefixConstrainedLogitsProcessor`` calls a
Python function once per beam per step, which dominates beam search with 100 beams x 64 users.

The same machinery gives ``teacher_forcing_mask``, the permissible next codes at every position of a target,
with which constrained training (MSCGRec, "constrained sequence learning") normalises the softmax over the
valid children of the target's prefix only.

The processor reads the prefix index of a code table (``CodeTable.prefix_index()``: CSR arrays per depth, see
the project's prefix-index contract) as plain tensors, so this module never imports ``genrec.tokenization``.

How one step works (D = code length, t = generated step, K_t = codebook size of depth t):

1. Walk every row's generated prefix from the root in t <= D tensor steps: at depth d the child of a node is
   found by ``torch.searchsorted`` over the edge keys ``parent * K_d + code`` (strictly increasing, because
   edges are numbered in (parent, code) order). A prefix that leaves the tree lands on a sentinel node N_d
   without children, so invalid rows need no separate bookkeeping.
2. The allowed codes of the node reached become a narrow ``(rows, K_t)`` additive mask (0 allowed, -inf not):
   rows copied (``index_select``) from a dense ``(N_t + 1, K_t)`` float32 table of such masks when depth t is
   dense, else -inf rows with zeros scattered at the node's CSR edge range.
3. The output is -inf everywhere except the depth-t code tokens (``scores + mask``, as
   ``PrefixConstrainedLogitsProcessor`` computes them) and the end token: one full-width fill + narrow work.

A depth is dense when its mask table (4 bytes per node x code) fits in ``dense_max_bytes``; the default
(128 MiB) keeps 3 x 256 codebooks dense at every depth for any number of items (65,537 x 256 x 4 = 64 MiB at
the third level), while e.g. the fourth level of 4 x 256 codebooks with many items falls back to CSR. Index
tensors are moved to a device once, on first use there, and cached. No Python loop runs over rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

__all__ = [
    "DEFAULT_DENSE_MAX_BYTES",
    "SemanticIDLogitsProcessor",
    "code_tree_fingerprint",
    "prefix_index_from_codes",
]

#: Memory limit per depth for the dense table of additive masks (``(N_d + 1) * K_d * 4`` bytes); the masks
#: of a depth above it are built by scattering CSR edge ranges instead.
DEFAULT_DENSE_MAX_BYTES = 128 * 2**20


@dataclass(frozen=True)
class _DeviceIndex:
    """The prefix index on one device, in the forms the walk and the masks need (per depth d)."""

    offsets: tuple[torch.Tensor, ...]  # (N_d + 2,) CSR row pointers, + the sentinel node N_d (no children)
    codes: tuple[torch.Tensor, ...]  # (N_{d+1},) edge codes
    keys: tuple[torch.Tensor, ...]  # (N_{d+1},) parent * K_d + code, strictly increasing
    masks: tuple[torch.Tensor | None, ...]  # (N_d + 1, K_d) float32: 0 where code is a child, else -inf
    degree_range: tuple[torch.Tensor, ...]  # arange(largest out-degree at depth d)


def _as_int64(prefix_index: Mapping[str, Any], key: str) -> torch.Tensor:
    """One 1-D integer entry of the prefix index as a CPU int64 tensor, or a clear error."""
    if key not in prefix_index:
        raise ValueError(
            f"prefix_index has no {key!r} entry (keys: {sorted(prefix_index)}); build it with "
            "CodeTable.prefix_index()"
        )
    value = torch.as_tensor(prefix_index[key])
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise ValueError(f"prefix_index[{key!r}] must hold integers, got dtype {value.dtype}")
    if value.dim() != 1:
        raise ValueError(f"prefix_index[{key!r}] must be 1-D, got shape {tuple(value.shape)}")
    return value.detach().to(device="cpu", dtype=torch.int64).contiguous()


def prefix_index_from_codes(codes: torch.Tensor | np.ndarray, level_sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """The prefix index (CSR layout of ``CodeTable.prefix_index()``) of a ``(num_items, D)`` code matrix.

    Row ``i`` of ``codes`` is item ``i``'s code (table row order). This is what a model that carries its item
    codes (``UngerForGenerativeRecommendation.item_codes``) builds its default constraint from, without
    importing ``genrec.tokenization``; for the same codes it equals ``CodeTable.prefix_index()`` array for
    array (nodes in lexicographic order of their prefixes, ties in row order), which a test checks.
    """
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    array = np.array(codes, dtype=np.int64)
    sizes = [int(k) for k in level_sizes]
    if array.ndim != 2 or array.shape[1] != len(sizes) or array.shape[0] == 0:
        raise ValueError(
            f"codes must be a non-empty (num_items, {len(sizes)}) matrix, got shape {tuple(array.shape)}"
        )
    if (array < 0).any() or (array >= np.asarray(sizes)[None, :]).any():
        raise ValueError(f"codes hold values outside the codebook sizes {sizes} (or unset codes, -1)")
    order = np.lexsort(array.T[::-1])  # stable: rows with equal codes keep their order
    ordered = array[order]
    n = len(order)
    index: dict[str, torch.Tensor] = {"level_sizes": torch.tensor(sizes, dtype=torch.long)}
    new_prefix = np.zeros(n, dtype=bool)
    new_prefix[0] = True
    parent = np.zeros(n, dtype=np.int64)
    num_nodes = 1
    for d in range(len(sizes)):
        if n > 1:
            new_prefix[1:] |= ordered[1:, d] != ordered[:-1, d]
        edge_rows = np.flatnonzero(new_prefix)
        counts = np.bincount(parent[edge_rows], minlength=num_nodes)
        offsets = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        index[f"offsets_{d}"] = torch.from_numpy(offsets)
        index[f"codes_{d}"] = torch.from_numpy(np.ascontiguousarray(ordered[edge_rows, d]))
        parent = np.cumsum(new_prefix, dtype=np.int64) - 1
        num_nodes = edge_rows.size
    index["leaf_items"] = torch.from_numpy(order.astype(np.int64))
    return index


def code_tree_fingerprint(prefix_index: Mapping[str, Any], token_offsets: Sequence[int]) -> str:
    """sha256 of a code tree at its token ids: level sizes, token offsets and the CSR arrays of the prefix
    index (little-endian int64). Equal for equal codes, whatever built the index; what
    ``SemanticIDLogitsProcessor.fingerprint`` holds."""
    sizes = [int(k) for k in _as_int64(prefix_index, "level_sizes").tolist()]
    digest = hashlib.sha256(repr((sizes, [int(o) for o in token_offsets])).encode("utf-8"))
    for d in range(len(sizes)):
        digest.update(b"|")
        digest.update(_as_int64(prefix_index, f"offsets_{d}").numpy().astype("<i8").tobytes())
        digest.update(b"/")
        digest.update(_as_int64(prefix_index, f"codes_{d}").numpy().astype("<i8").tobytes())
    return digest.hexdigest()


class SemanticIDLogitsProcessor(LogitsProcessor):
    """Restricts generation to the codes of existing items (constrained beam search, greedy or sampling).

    Args:
        prefix_index: ``CodeTable.prefix_index()``: ``level_sizes`` (D,), ``offsets_{d}`` (N_d + 1,) CSR row
            pointers, ``codes_{d}`` (N_{d+1},) edge codes, ``leaf_items`` (N_D,), for d in 0..D-1.
        token_offsets: D ints; the code ``c`` at depth ``d`` is token id ``token_offsets[d] + c``.
        prompt_length: number of leading tokens of ``input_ids`` that are not generated codes: 1 for an
            encoder-decoder model (the decoder start token), the (left-padded) prompt length for a
            decoder-only model.
        eos_token_id: the only token allowed once D code tokens have been generated.
        pad_token_id: the end token when no ``eos_token_id`` is given. When neither is given, steps
            ``t >= D`` are left unconstrained (generate with ``max_new_tokens=D`` so that they never happen)
            and an invalid prefix allows no token at all.
        num_beams: rows per batch entry, as ``PrefixConstrainedLogitsProcessor(fn, num_beams)`` takes it. It
            only matters in the corner case that processor guards against: when an earlier processor (e.g.
            ``min_new_tokens``, ``bad_words_ids``) has set every allowed token of every beam of a batch entry
            to ``-inf``, those rows get score 0 on their allowed tokens, so the search still ends on items.
            Pass the ``num_beams`` of ``generate`` to reproduce it exactly; the default 1 applies it per row.
        vocab_size: width of the masks of ``allowed_mask`` / ``teacher_forcing_mask`` when not given there;
            default: the smallest vocabulary holding every code token and eos/pad. (``__call__`` always uses
            the width of ``scores``.)
        dense_max_bytes: per-depth memory limit of the dense table of additive masks (4 bytes per node x
            code); a larger depth scatters CSR edge ranges instead. 0 forces CSR at every depth.
        code_table_hash: content hash of the code table the index comes from (``from_tokenizer`` fills it),
            so that a model can refuse a processor built for another code table (``fingerprint`` catches a
            processor of other codes even without it).

    Generated step ``t`` is ``input_ids.shape[1] - prompt_length``. At ``t < D`` only the depth-t code tokens
    that continue the generated prefix towards an existing item keep their score; at ``t >= D`` only eos (or
    pad). A prefix that is no item's prefix (impossible under this processor, possible with foreign
    ``input_ids``) keeps only eos (or pad), so such a row ends at once. Kept scores are ``scores + 0`` and all
    others ``-inf``, exactly as ``PrefixConstrainedLogitsProcessor`` computes them. Being a logits processor,
    it runs before any top-k / top-p warper. Beam search hands processors ``log_softmax`` scores; any scores
    work (float32 / float16 / bfloat16).

    Attributes: ``depth`` (D), ``num_items``, ``level_sizes``, ``token_offsets``, ``terminal_token_id``,
    ``dense_depths`` (which depths use the dense mask table), ``leaf_items`` (leaf -> table row).
    """

    def __init__(
        self,
        prefix_index: Mapping[str, torch.Tensor],
        token_offsets: Sequence[int],
        *,
        prompt_length: int,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        num_beams: int = 1,
        vocab_size: int | None = None,
        dense_max_bytes: int = DEFAULT_DENSE_MAX_BYTES,
        code_table_hash: str | None = None,
    ) -> None:
        level_sizes = [int(k) for k in _as_int64(prefix_index, "level_sizes").tolist()]
        depth = len(level_sizes)
        if depth == 0:
            raise ValueError("prefix_index['level_sizes'] is empty: a code needs at least one position")
        if any(k <= 0 for k in level_sizes):
            raise ValueError(f"prefix_index['level_sizes'] must be positive, got {level_sizes}")
        token_offsets = [int(o) for o in token_offsets]
        if len(token_offsets) != depth:
            raise ValueError(
                f"token_offsets has {len(token_offsets)} entries but the prefix index has D={depth} code "
                "positions; pass one token offset per code position (tokenizer.code_token_offsets)"
            )
        if any(o < 0 for o in token_offsets):
            raise ValueError(f"token_offsets must be non-negative, got {token_offsets}")
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 0:
            raise ValueError(f"prompt_length must be a non-negative int, got {prompt_length!r}")
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if dense_max_bytes < 0:
            raise ValueError(f"dense_max_bytes must be >= 0, got {dense_max_bytes}")

        offsets, codes, keys, masks, max_degree = [], [], [], [], []
        num_nodes = 1  # N_0: the root
        for d, k in enumerate(level_sizes):
            off = _as_int64(prefix_index, f"offsets_{d}")
            code = _as_int64(prefix_index, f"codes_{d}")
            edges = code.numel()
            if off.numel() != num_nodes + 1:
                raise ValueError(
                    f"prefix_index['offsets_{d}'] has {off.numel()} entries, expected N_{d} + 1 = "
                    f"{num_nodes + 1}"
                )
            degree = off[1:] - off[:-1]
            if int(off[0]) != 0 or int(off[-1]) != edges or bool((degree <= 0).any()):
                raise ValueError(
                    f"prefix_index['offsets_{d}'] is not a valid CSR pointer array over codes_{d} (it must "
                    f"start at 0, end at {edges} and give every node at least one child)"
                )
            if int(code.min()) < 0 or int(code.max()) >= k:
                raise ValueError(f"prefix_index['codes_{d}'] holds codes outside 0..{k - 1} (level size {k})")
            if edges >= 2**31 - 1:
                raise ValueError(f"depth {d + 1} has {edges} nodes; at most 2**31 - 2 are supported")
            parent = torch.repeat_interleave(torch.arange(num_nodes, dtype=torch.int64), degree)
            key = parent * k + code
            if not bool((key[1:] > key[:-1]).all()):
                raise ValueError(
                    f"prefix_index['codes_{d}'] must be strictly ascending within each node (children in "
                    "(parent, code) order, no duplicate codes)"
                )
            offsets.append(torch.cat([off, off[-1:]]))  # the sentinel node N_d has no children
            codes.append(code)
            keys.append(key)
            max_degree.append(int(degree.max()))
            if (num_nodes + 1) * k * 4 <= dense_max_bytes:
                table = torch.full((num_nodes + 1, k), -math.inf)  # the sentinel row allows nothing
                table[parent, code] = 0.0
                masks.append(table)
            else:
                masks.append(None)
            num_nodes = edges
        leaf_items = _as_int64(prefix_index, "leaf_items")
        if leaf_items.numel() != num_nodes:
            raise ValueError(
                f"prefix_index['leaf_items'] has {leaf_items.numel()} entries but there are N_D={num_nodes} "
                "leaves (items)"
            )

        token_ranges = [(o, o + k) for o, k in zip(token_offsets, level_sizes, strict=True)]
        for name, token in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
            if token is None:
                continue
            if token < 0:
                raise ValueError(f"{name} must be non-negative, got {token}")
            for d, (lo, hi) in enumerate(token_ranges):
                if lo <= token < hi:
                    raise ValueError(
                        f"{name}={token} lies inside the code tokens of depth {d} ({lo}..{hi - 1}); the end "
                        "token must not be a code token"
                    )
        specials = [t for t in (eos_token_id, pad_token_id) if t is not None]
        min_vocab = max([hi for _, hi in token_ranges] + [t + 1 for t in specials])
        if vocab_size is not None and vocab_size < min_vocab:
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the largest token id needed ({min_vocab - 1})"
            )

        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        #: The token allowed after a complete code or an invalid prefix: eos, else pad, else None.
        self.terminal_token_id: int | None = eos_token_id if eos_token_id is not None else pad_token_id
        self.num_beams = int(num_beams)
        self.token_offsets: list[int] = token_offsets
        self.level_sizes: list[int] = level_sizes
        self.depth = depth
        self.num_items = num_nodes
        self.vocab_size = int(vocab_size) if vocab_size is not None else min_vocab
        self.dense_max_bytes = int(dense_max_bytes)
        #: Which depths use the dense mask table (the others scatter CSR edge ranges).
        self.dense_depths: list[bool] = [table is not None for table in masks]
        self.leaf_items = leaf_items
        #: Content hash of the code table this processor was built from (None: unknown).
        self.code_table_hash: str | None = None if code_table_hash is None else str(code_table_hash)
        #: sha256 of the code tree (level sizes, token offsets, every CSR array): equal for processors of the
        #: same codes at the same token ids, whatever built them; what a model compares with its own codes.
        self.fingerprint: str = code_tree_fingerprint(prefix_index, token_offsets)
        self._num_nodes = [1] + [c.numel() for c in codes]  # N_0..N_D (also the sentinel id of each depth)
        self._min_vocab = min_vocab
        cpu = _DeviceIndex(
            offsets=tuple(offsets),
            codes=tuple(codes),
            keys=tuple(keys),
            masks=tuple(masks),
            degree_range=tuple(torch.arange(m, dtype=torch.int64) for m in max_degree),
        )
        self._device_cache: dict[torch.device, _DeviceIndex] = {torch.device("cpu"): cpu}

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, *, prompt_length: int = 1, num_beams: int = 1, **kwargs: Any
    ) -> SemanticIDLogitsProcessor:
        """Builds the processor from a semantic-ID tokenizer (duck-typed: ``modeling`` never imports it).

        Reads ``tokenizer.code_table.prefix_index()``, ``tokenizer.code_token_offsets``,
        ``tokenizer.eos_token_id`` and ``tokenizer.pad_token_id``. ``prompt_length`` is 1 for an
        encoder-decoder model; for a decoder-only model pass the padded prompt length. Further keyword
        arguments go to the constructor.
        """
        missing = [a for a in ("code_table", "code_token_offsets") if not hasattr(tokenizer, a)]
        if missing:
            raise TypeError(
                f"{type(tokenizer).__name__} has no {', '.join(missing)}: from_tokenizer needs a semantic-ID "
                "tokenizer (tokenizer.code_table.prefix_index() and tokenizer.code_token_offsets)"
            )
        kwargs.setdefault("code_table_hash", getattr(tokenizer.code_table, "content_hash", None))
        return cls(
            tokenizer.code_table.prefix_index(),
            list(tokenizer.code_token_offsets),
            prompt_length=prompt_length,
            eos_token_id=getattr(tokenizer, "eos_token_id", None),
            pad_token_id=getattr(tokenizer, "pad_token_id", None),
            num_beams=num_beams,
            **kwargs,
        )

    @classmethod
    def from_codes(
        cls,
        codes: torch.Tensor | np.ndarray,
        level_sizes: Sequence[int],
        token_offsets: Sequence[int],
        **kwargs: Any,
    ) -> SemanticIDLogitsProcessor:
        """The processor of a ``(num_items, D)`` code matrix (see :func:`prefix_index_from_codes`).

        Keyword arguments go to the constructor (``prompt_length`` is required there).
        """
        return cls(prefix_index_from_codes(codes, level_sizes), token_offsets, **kwargs)

    # ----------------------------------------------------------------------------------------- internals

    def _index_on(self, device: torch.device) -> _DeviceIndex:
        """The index tensors on ``device``, moved there once and cached."""
        index = self._device_cache.get(device)
        if index is None:
            cpu = self._device_cache[torch.device("cpu")]

            def move(tensors: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor | None, ...]:
                return tuple(None if t is None else t.to(device) for t in tensors)

            index = _DeviceIndex(
                offsets=move(cpu.offsets),
                codes=move(cpu.codes),
                keys=move(cpu.keys),
                masks=move(cpu.masks),
                degree_range=move(cpu.degree_range),
            )
            self._device_cache[device] = index
        return index

    def _check_vocab(self, vocab_size: int) -> None:
        if vocab_size < self._min_vocab:
            raise ValueError(
                f"the scores / mask have {vocab_size} tokens but the code tokens and eos/pad need "
                f"{self._min_vocab} (token_offsets={self.token_offsets}, level_sizes={self.level_sizes}); "
                "resize the model's embeddings or fix the tokenizer's code_token_offsets"
            )

    def _walk(self, index: _DeviceIndex, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Node reached by each row's prefix at depths 0..t (t = tokens.shape[1] <= D); N_d when invalid."""
        node = torch.zeros(tokens.shape[0], dtype=torch.int64, device=tokens.device)
        nodes = [node]
        for d in range(tokens.shape[1]):
            k = self.level_sizes[d]
            code = tokens[:, d] - self.token_offsets[d]
            in_level = (code >= 0) & (code < k)
            keys = index.keys[d]
            query = node * k + code.clamp(0, k - 1)  # the sentinel's queries lie above every key
            child = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
            found = keys[child] == query
            node = torch.where(in_level & found, child, self._num_nodes[d + 1])
            nodes.append(node)
        return nodes

    def _children(self, index: _DeviceIndex, depth: int, node: torch.Tensor) -> torch.Tensor:
        """(rows, K_depth) float32 additive mask: 0 at the children's codes of ``node``, -inf elsewhere."""
        table = index.masks[depth]
        if table is not None:
            return table.index_select(0, node)
        k = self.level_sizes[depth]
        offsets, codes = index.offsets[depth], index.codes[depth]
        edge = offsets[node][:, None] + index.degree_range[depth]
        keep = edge < offsets[node + 1][:, None]
        code = torch.where(keep, codes[edge.clamp_(max=codes.numel() - 1)], k)  # column k absorbs padding
        out = torch.full((node.shape[0], k + 1), -math.inf, device=node.device)
        return out.scatter_(1, code, 0.0)[:, :k]

    def _step(self, prefix_tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The allowed set after the prefixes (rows, t), in narrow form ``(codes, end)``.

        ``codes`` (rows, K_t) additive mask (0 / -inf) over the code tokens of depth t (None when t >= D);
        ``end`` (rows,) bool: the end token is allowed (None: in every row).
        """
        t = prefix_tokens.shape[1]
        if t >= self.depth:
            return None, None
        index = self._index_on(prefix_tokens.device)
        node = self._walk(index, prefix_tokens)[t]
        return self._children(index, t, node), node == self._num_nodes[t]

    def _write_mask(
        self, out: torch.Tensor, depth: int, codes: torch.Tensor | None, end: torch.Tensor | None
    ) -> None:
        """Writes one step's allowed set into the all-False (rows, V) bool tensor ``out`` (a view is fine)."""
        if codes is not None:
            lo = self.token_offsets[depth]
            out[:, lo : lo + codes.shape[1]] = codes == 0
        if self.terminal_token_id is not None:
            out[:, self.terminal_token_id] = True if end is None else end

    # ---------------------------------------------------------------------------------------- public API

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Returns ``scores`` with every token that cannot continue a valid item code set to ``-inf``."""
        step = input_ids.shape[1] - self.prompt_length
        if step < 0:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens but prompt_length={self.prompt_length}; pass the "
                "(padded) prompt length for decoder-only models and 1 for encoder-decoder models"
            )
        rows, vocab_size = scores.shape
        self._check_vocab(vocab_size)
        if rows % self.num_beams:
            raise ValueError(f"{rows} rows of scores are not a multiple of num_beams={self.num_beams}")
        term = self.terminal_token_id
        if step >= self.depth and term is None:
            return scores  # documented: a complete code and no end token -> nothing to constrain
        prefix = input_ids[:, self.prompt_length : self.prompt_length + min(step, self.depth)]
        codes, end = self._step(prefix.to(scores.device))

        # -inf outside this depth's code tokens and the end token: one full-width fill, then narrow work.
        out = torch.full_like(scores, -math.inf)
        best = None
        if codes is not None:
            lo, hi = self.token_offsets[step], self.token_offsets[step] + codes.shape[1]
            narrow = out[:, lo:hi]
            torch.add(scores[:, lo:hi], codes.to(scores.dtype), out=narrow)  # branch-free, as in HF
            best = narrow.amax(dim=-1)
        if term is not None:
            end_mask = None if end is None else torch.where(end, 0.0, -math.inf)
            out[:, term] = scores[:, term] if end_mask is None else scores[:, term] + end_mask
            best = out[:, term] if best is None else torch.maximum(best, out[:, term])

        # PrefixConstrainedLogitsProcessor's guard: a batch entry whose allowed tokens are -inf in every beam
        # (an earlier processor removed them) gets score 0 on its allowed tokens, so the search goes on.
        dead = best.isneginf().view(-1, self.num_beams).all(dim=-1).repeat_interleave(self.num_beams)
        if out.device.type != "cpu" or bool(dead.any()):  # a free check on CPU, a sync elsewhere
            if codes is not None:
                narrow.copy_(torch.where(dead[:, None], codes.to(scores.dtype), narrow))
            if term is not None:
                out[:, term].masked_fill_(dead if end is None else dead & end, 0.0)
        return out

    def allowed_mask(
        self, prefix_tokens: torch.LongTensor, *, vocab_size: int | None = None
    ) -> torch.BoolTensor:
        """(B, V) bool mask of the tokens allowed after each generated code prefix (B, t), t >= 0.

        Rows of length ``t >= D`` (a complete code) allow only eos (or pad); a prefix of no item allows only
        eos (or pad). ``V`` is ``vocab_size`` or the processor's ``vocab_size``. On ``prefix_tokens``' device.
        """
        prefix_tokens = torch.as_tensor(prefix_tokens)
        if prefix_tokens.dim() != 2:
            raise ValueError(f"prefix_tokens must be (batch, t), got shape {tuple(prefix_tokens.shape)}")
        vocab_size = self.vocab_size if vocab_size is None else int(vocab_size)
        self._check_vocab(vocab_size)
        prefix = prefix_tokens[:, : self.depth].long()
        out = torch.zeros(prefix.shape[0], vocab_size, dtype=torch.bool, device=prefix.device)
        self._write_mask(out, prefix.shape[1], *self._step(prefix))
        return out

    def teacher_forcing_mask(
        self, target_tokens: torch.LongTensor, *, vocab_size: int | None = None
    ) -> torch.BoolTensor:
        """(B, L, V) masks for constrained training: position t allows the children of ``target[:, :t]``.

        ``target_tokens`` (B, L) holds target item codes as token ids (L = D, or D + 1 with the eos label;
        positions t >= D allow only eos / pad). Equals stacking ``allowed_mask(target[:, :t])`` over t,
        computed with one walk. MSCGRec normalises the softmax at position t over ``mask[:, t]`` only.
        """
        target_tokens = torch.as_tensor(target_tokens)
        if target_tokens.dim() != 2:
            raise ValueError(f"target_tokens must be (batch, L), got shape {tuple(target_tokens.shape)}")
        vocab_size = self.vocab_size if vocab_size is None else int(vocab_size)
        self._check_vocab(vocab_size)
        rows, length = target_tokens.shape
        device = target_tokens.device
        out = torch.zeros(rows, length, vocab_size, dtype=torch.bool, device=device)
        walked = min(length, self.depth)
        if walked:
            index = self._index_on(device)
            nodes = self._walk(index, target_tokens[:, : walked - 1].long())
            for t in range(walked):
                codes = self._children(index, t, nodes[t])
                self._write_mask(out[:, t], t, codes, nodes[t] == self._num_nodes[t])
        for t in range(walked, length):
            self._write_mask(out[:, t], t, None, None)
        return out
