"""Test helpers shared by several test modules: synthetic genrec dataset folders of users walking an item ring."""

from __future__ import annotations

import random
import socket
import uuid
from pathlib import Path

from datasets import Dataset

Splits = dict[str, list[tuple[str, list[str]]]]

DATASET_CARD = """---
configs:
- config_name: sequences
  data_files:
  - split: train
    path: sequences/train-*.parquet
  - split: validation
    path: sequences/validation-*.parquet
  - split: test
    path: sequences/test-*.parquet
- config_name: items
  data_files:
  - split: train
    path: items/train-*.parquet
---
{description}
"""


def write_dataset(
    root: Path, splits: Splits, item_ids: list[str], *, description: str = "Synthetic test data."
) -> Path:
    """A genrec dataset folder (parquet shards + YAML card) readable by ``load_dataset(root, config)``.

    The folder name gets a unique suffix: datasets caches a local folder under its *name* and card only (not
    its files), so two folders called ``data`` with the same card would share a cache entry.
    """
    root = root.with_name(f"{root.name}-{uuid.uuid4().hex}")
    (root / "sequences").mkdir(parents=True)
    (root / "items").mkdir()
    for name, rows in splits.items():
        Dataset.from_dict(
            {
                "user_id": [user for user, _ in rows],
                "item_ids": [items for _, items in rows],
                "timestamps": [list(range(len(items))) for _, items in rows],
            }
        ).to_parquet(root / "sequences" / f"{name}-00000-of-00001.parquet")
    Dataset.from_dict({"item_id": item_ids, "title": [f"title {i}" for i in item_ids]}).to_parquet(
        root / "items" / "train-00000-of-00001.parquet"
    )
    (root / "README.md").write_text(DATASET_CARD.format(description=description))
    return root


def ring_splits(num_items: int, num_users: int, seed: int = 0) -> tuple[Splits, list[str]]:
    """Leave-one-out splits of users walking a ring of items in steps of 1 or 2 (learnable: next = last + step)."""
    rng = random.Random(seed)
    ids = [f"i{k}" for k in range(num_items)]
    splits: Splits = {"train": [], "validation": [], "test": []}
    for u in range(num_users):
        start, step = rng.randrange(num_items), rng.choice([1, 2])
        seq = [ids[(start + step * k) % num_items] for k in range(rng.randint(5, 8))]
        for t in range(1, len(seq) - 2):
            splits["train"].append((f"u{u}", seq[max(0, t - 20) : t + 1]))
        splits["validation"].append((f"u{u}", seq[:-1][-21:]))
        splits["test"].append((f"u{u}", seq[-21:]))
    return splits, ids


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (a gloo rendezvous, a loopback Hub server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
