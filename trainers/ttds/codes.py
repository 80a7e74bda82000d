"""TTDS's dynamic code tables: the towers' codes of the current LLM representations made unique by a
``CodeTable`` (always with the collision level), recomputed during training."""


from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from genrec.modeling.configuration_ttds import TTDSConfig
from genrec.tokenization.code_table import CodeTable

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ codes


class CodeState:
    """The current item and user code tables (dynamic: replaced on every code update)."""

    def __init__(self, item_table: CodeTable | None = None, user_table: CodeTable | None = None) -> None:
        self.item_table = item_table
        self.user_table = user_table
        self.updates = 0
        self.rejected = 0
        self.last_update_step = -1

    def table(self, tower: str) -> CodeTable | None:
        """The table of ``tower``."""
        return self.item_table if tower == "item" else self.user_table


class CollisionOverflowError(ValueError):
    """More entities share one semantic code than there are reserved collision tokens."""


def build_code_table(ids: Sequence[str], codes: torch.Tensor, config: TTDSConfig, tower: str) -> CodeTable:
    """A unique-code table for ``ids`` from (B, M) semantic codes, always with the collision level.

    The collision level is always present (``always_append``) so that codes keep ``M + 1`` positions when
    collisions come and go during dynamic training. A collision group larger than the reserved collision
    tokens raises a ``ValueError`` that says how to fix it.
    """
    table = CodeTable.from_codes(
        list(ids), codes.cpu().numpy(), codebook_sizes=[config.codebook_size] * config.num_levels,
        collisions="append", always_append=True,
    )
    if table.codebook_sizes[-1] > config.collision_vocab_size:
        raise CollisionOverflowError(
            f"{tower} codes: {table.max_collision_group} {tower}s share one semantic code but only "
            f"{config.collision_vocab_size} collision tokens are reserved; raise TTDSConfig.num_collision_tokens "
            "or codebook_size, or train the warm-up longer"
        )
    return table
