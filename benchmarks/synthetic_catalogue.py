"""A synthetic catalogue of any size in the S3-Rec layout (``sequences.txt`` + ``items.jsonl``), for scale
measurements and for the GPU check's dry run.

What makes it more than noise: item popularity follows a power law (Zipf, exponent ``--zipf``), as in Amazon's
5-core data; sequences have real sequential structure (each item belongs to one of ``n_items / 50`` topics and a
user's next item is, with probability ``--follow``, one of the few items that follow the current one in its
topic, otherwise a popular item); item texts are generated sentences of a realistic length (title, brand,
category and a ~25-word description, ~40 words in all). About ``--interactions-per-item`` interactions per item
(default 10: Beauty has 8.9), 5 to 12 per user. Written streaming, in bounded memory, with a fixed seed.

    python benchmarks/synthetic_catalogue.py --items 100000 --out /tmp/synth-1e5
    genrec run --dataset /tmp/synth-1e5 --out runs/synth-1e5 --quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ADJECTIVES = ["gentle", "bold", "matte", "glossy", "fresh", "rich", "light", "deep", "soft", "bright", "classic",
              "natural", "hydrating", "long-lasting", "vegan", "organic", "silky", "velvet", "radiant", "pure"]
NOUNS = ["lipstick", "shampoo", "conditioner", "serum", "cleanser", "moisturizer", "mascara", "eyeliner", "perfume",
         "toner", "mask", "balm", "foundation", "powder", "brush", "nail polish", "body wash", "sunscreen", "cream"]
CATEGORIES = ["Skin Care", "Hair Care", "Makeup", "Fragrance", "Bath & Body", "Tools & Accessories", "Nail Care"]
WORDS = ["formula", "skin", "hair", "daily", "use", "with", "vitamin", "extract", "oil", "for", "all", "types", "dry", "sensitive", "smooth", "finish", "color", "lasting", "wear", "gentle", "scent", "travel", "size", "pack", "of", "value", "set", "free", "paraben", "cruelty", "tested", "dermatologist", "recommended", "lightweight", "texture", "absorbs", "quickly", "leaves", "glow", "natural", "look"]


def item_text(rng: np.random.Generator, item: int) -> dict:
    words = rng.choice(WORDS, size=int(rng.integers(18, 32)))
    return {
        "item_id": str(item),
        "title": f"{ADJECTIVES[item % len(ADJECTIVES)]} {NOUNS[(item // 7) % len(NOUNS)]} no. {item}",
        "brand": f"brand{item % 997}",
        "categories": CATEGORIES[(item // 50) % len(CATEGORIES)],
        "description": " ".join(words).capitalize() + ".",
    }


def write_synthetic(
    folder: str | Path, n_items: int, *, interactions_per_item: float = 10.0, zipf: float = 1.1,
    follow: float = 0.6, seed: int = 0, chunk_users: int = 50_000,
) -> Path:
    """Write the catalogue into ``folder`` (created); returns it."""
    if n_items < 10:
        raise ValueError(f"n_items must be >= 10, got {n_items}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # popularity: Zipf over a random permutation of the items (popular items spread over the topics)
    weights = 1.0 / np.arange(1, n_items + 1) ** zipf
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = weights / weights.sum()
    cumulative = np.cumsum(popularity)
    topic_size = 50
    n_users = max(1, int(round(n_items * interactions_per_item / 8.5)))  # 5..12 items per user: 8.5 on average
    with (folder / "sequences.txt").open("w") as out:
        for first in range(0, n_users, chunk_users):
            users = min(chunk_users, n_users - first)
            lengths = rng.integers(5, 13, size=users)
            steps = int(lengths.max())
            seq = np.empty((users, steps), dtype=np.int64)
            seq[:, 0] = np.minimum(np.searchsorted(cumulative, rng.random(users)), n_items - 1)
            for t in range(1, steps):
                prev = seq[:, t - 1]
                topic_start = (prev // topic_size) * topic_size
                successor = topic_start + (prev - topic_start + rng.integers(1, 4, size=users)) % topic_size
                successor = np.minimum(successor, n_items - 1)
                popular = np.minimum(np.searchsorted(cumulative, rng.random(users)), n_items - 1)
                seq[:, t] = np.where(rng.random(users) < follow, successor, popular)
            lines = []
            for u in range(users):
                items = seq[u, : lengths[u]] + 1  # item ids 1..n_items
                lines.append(" ".join(map(str, (first + u + 1, *items.tolist()))))
            out.write("\n".join(lines) + "\n")
    text_rng = np.random.default_rng(seed + 1)
    with (folder / "items.jsonl").open("w") as out:
        for item in range(1, n_items + 1):
            out.write(json.dumps(item_text(text_rng, item)) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interactions-per-item", type=float, default=10.0)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--follow", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_synthetic(args.out, args.items, interactions_per_item=args.interactions_per_item, zipf=args.zipf,
                    follow=args.follow, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
