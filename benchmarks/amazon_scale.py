"""`genrec prepare amazon2023|amazon2014` on synthetic raw Amazon files of 10^5-10^7 review lines: time, peak RSS.

Writes a synthetic category in the published formats, streamed to gzip in chunks (bounded memory whatever the
size):

* 2023: ``Synthetic.jsonl.gz`` (``rating``, ``title``, ``text``, ``images``, ``asin``, ``parent_asin``,
  ``user_id``, ``timestamp`` in ms, ``helpful_vote``, ``verified_purchase``) and ``meta_Synthetic.jsonl.gz``
  (``main_category``, ``title``, ``average_rating``, ``rating_number``, ``features``, ``description``,
  ``price``, ``images``, ``videos``, ``store``, ``categories``, ``details``, ``parent_asin``,
  ``bought_together``), one metadata line per item.
* 2014: ``reviews_Synthetic_5.json.gz`` (``reviewerID``, ``asin``, ``reviewerName``, ``helpful``,
  ``reviewText``, ``overall``, ``summary``, ``unixReviewTime``, ``reviewTime``) and ``meta_Synthetic.json.gz``
  (Python-literal lines: ``asin``, ``title``, ``brand``, ``price``, ``salesRank``, ``categories``,
  ``description``, ``related``).

Users and items are drawn from power laws (``u ** alpha`` on a uniform ``u``: a heavy head, a long tail of
one-review users and items), so a realistic share of the reviews survives the 5-core; review texts are
10-80 random words. Then ``genrec prepare`` runs in a **child process**; its wall seconds, lines/s and peak
RSS (``ru_maxrss`` from ``os.wait4``) and the prepared dataset's size (``genrec_dataset.json``) go to
``--json`` (default ``benchmarks/results/amazon_scale.json``; entries are keyed by release and size and
replaced on a rerun, so sizes can be run one at a time).

    python benchmarks/amazon_scale.py --lines 100000 1000000                  # ~3 min on 2 cores
    nohup python benchmarks/amazon_scale.py --lines 10000000 > /tmp/amazon_scale.log 2>&1 &   # ~13 min, 7.4 GiB
    python benchmarks/amazon_scale.py --lines 1000000 --release 2014
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "amazon_scale.json"
WORDS = ["great", "product", "works", "well", "love", "this", "quality", "price", "fast", "shipping", "would", "buy", "again", "color", "size", "fits", "perfect", "nice", "smell", "skin", "hair", "soft", "light", "heavy", "cheap", "broke", "after", "week", "month", "returned", "recommend", "friends", "gift", "daughter", "easy", "use", "clean", "bottle", "pump", "cap", "box", "small", "large", "smooth", "shiny", "matte", "brush", "nail", "polish", "cream", "lotion", "soap"]
CHUNK = 50_000


def _ids(prefix: str, codes: np.ndarray, width: int) -> list[str]:
    """Opaque-looking fixed-width ids (a scramble of the code, bijective below 36**12, in base 36)."""
    scrambled = (codes.astype(np.uint64) * np.uint64(2654435761) + np.uint64(97)) % np.uint64(36 ** min(width, 12))
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for value in scrambled.tolist():
        chars = []
        for _ in range(width):
            value, rest = divmod(value, 36)
            chars.append(digits[rest])
        out.append(prefix + "".join(chars))  # width > 12: zero-padded on the right (still unique)
    return out


def _words(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(np.asarray(WORDS)[rng.integers(0, len(WORDS), rng.integers(low, high))].tolist())


def _pool(rng: np.random.Generator, low: int, high: int, size: int = 4096) -> list[str]:
    """``size`` random texts of ``low``-``high`` words, drawn from per line (generating each is the slow part)."""
    return [_words(rng, low, high) for _ in range(size)]


def generate(out: Path, lines: int, release: str, *, seed: int = 0, alpha: float = 2.2) -> tuple[Path, Path, dict]:
    """Write the reviews + meta files of ``lines`` reviews; returns their paths and the generator's figures."""
    rng = np.random.default_rng(seed)
    n_users = max(10, lines // 6)
    n_items = max(10, lines // 12)
    out.mkdir(parents=True, exist_ok=True)
    if release == "2023":
        reviews, meta = out / "Synthetic.jsonl.gz", out / "meta_Synthetic.jsonl.gz"
    else:
        reviews, meta = out / "reviews_Synthetic_5.json.gz", out / "meta_Synthetic.json.gz"
    if reviews.is_file() and meta.is_file():  # kept from an earlier run (--keep): the same seeded content
        return reviews, meta, {"generate_seconds": None, "synthetic_users": n_users, "synthetic_items": n_items,
                               "reviews_mib": round(reviews.stat().st_size / 2**20, 1),
                               "meta_mib": round(meta.stat().st_size / 2**20, 1)}
    start = time.perf_counter()
    t0 = 1_400_000_000  # seconds
    partial_reviews, partial_meta = reviews.with_name(reviews.name + ".partial"), meta.with_name(meta.name + ".partial")
    texts, titles = _pool(rng, 10, 80), _pool(rng, 2, 8)
    with gzip.open(partial_reviews, "wt", encoding="utf-8", compresslevel=1) as handle:
        for begin in range(0, lines, CHUNK):
            n = min(CHUNK, lines - begin)
            users = np.minimum((rng.random(n) ** alpha * n_users).astype(np.int64), n_users - 1)
            items = np.minimum((rng.random(n) ** alpha * n_items).astype(np.int64), n_items - 1)
            stamps = t0 + rng.integers(0, 300_000_000, n)
            ratings = rng.integers(1, 6, n)
            user_ids = _ids("A", users, 27)
            item_ids = _ids("B0", items, 8)
            pick = rng.integers(0, len(texts), (n, 2)).tolist()
            rows = []
            for i in range(n):
                text, title = texts[pick[i][0]], titles[pick[i][1]]
                if release == "2023":
                    record = {
                        "rating": float(ratings[i]), "title": title, "text": text, "images": [],
                        "asin": item_ids[i][:-1] + "X", "parent_asin": item_ids[i], "user_id": user_ids[i],
                        "timestamp": int(stamps[i]) * 1000 + i % 1000, "helpful_vote": int(i % 7),
                        "verified_purchase": bool(i % 3),
                    }
                else:
                    record = {
                        "reviewerID": user_ids[i], "asin": item_ids[i], "reviewerName": "Reviewer",
                        "helpful": [int(i % 5), int(i % 7)], "reviewText": text, "overall": float(ratings[i]),
                        "summary": title, "unixReviewTime": int(stamps[i]) // 86400 * 86400,
                        "reviewTime": "01 1, 2014",
                    }
                rows.append(json.dumps(record))
            handle.write("\n".join(rows) + "\n")
    with gzip.open(partial_meta, "wt", encoding="utf-8", compresslevel=1) as handle:
        for begin in range(0, n_items, CHUNK):
            codes = np.arange(begin, min(n_items, begin + CHUNK))
            item_ids = _ids("B0", codes, 8)
            rows = []
            for key in item_ids:
                title = _words(rng, 3, 12)
                if release == "2023":
                    record = {
                        "main_category": "All Beauty", "title": title, "average_rating": 4.2,
                        "rating_number": 17, "features": [_words(rng, 3, 10), _words(rng, 3, 10)],
                        "description": [_words(rng, 10, 40)], "price": 9.99, "images": [], "videos": [],
                        "store": "Store " + key[-3:], "categories": ["Beauty", "Makeup"],
                        "details": {"Brand": "Brand " + key[-2:]}, "parent_asin": key, "bought_together": None,
                    }
                    rows.append(json.dumps(record))
                else:
                    record = {
                        "asin": key, "title": title, "brand": "Brand " + key[-2:], "price": 9.99,
                        "salesRank": {"Beauty": 1234}, "categories": [["Beauty", "Makeup"]],
                        "description": _words(rng, 10, 40), "related": {"also_bought": [key]},
                    }
                    rows.append(repr(record))
            handle.write("\n".join(rows) + "\n")
    partial_reviews.replace(reviews)
    partial_meta.replace(meta)
    figures = {
        "generate_seconds": round(time.perf_counter() - start, 1),
        "synthetic_users": n_users,
        "synthetic_items": n_items,
        "reviews_mib": round(reviews.stat().st_size / 2**20, 1),
        "meta_mib": round(meta.stat().st_size / 2**20, 1),
    }
    return reviews, meta, figures


def run_prepare(release: str, reviews: Path, meta: Path, out: Path) -> dict:
    """``genrec prepare`` in a child process: wall seconds and peak RSS (``ru_maxrss``, KiB on Linux)."""
    command = [sys.executable, "-m", "genrec.cli", "prepare", f"amazon{release}", "--reviews", str(reviews),
               "--meta", str(meta), "--out", str(out), "--overwrite"]
    start = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, "TQDM_DISABLE": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    report = json.loads((out / "genrec_dataset.json").read_text())
    return {
        "command": " ".join(command[1:]),
        "prepare_seconds": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "users": report.get("users"),
        "items": report.get("items"),
        "interactions": report.get("interactions"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--release", choices=["2023", "2014"], default="2023")
    parser.add_argument("--work", type=Path, default=Path("/tmp/genrec-amazon-scale"),
                        help="where the synthetic files and prepared folders go (removed per size unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": []}
    for lines in args.lines:
        work = args.work / f"{args.release}-{lines}"
        reviews, meta, figures = generate(work / "raw", lines, args.release)
        print(f"generated {lines} lines in {figures['generate_seconds']} s", flush=True)
        entry = {"release": args.release, "lines": lines, **figures,
                 **run_prepare(args.release, reviews, meta, work / "prepared")}
        entry["lines_per_second"] = round(lines / entry["prepare_seconds"])
        entry["rss_mib_per_million_lines"] = round(entry["peak_rss_mib"] / (lines / 1e6), 1)
        entry["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
        entry["date"] = time.strftime("%Y-%m-%d")
        print(json.dumps(entry), flush=True)
        results["runs"] = [r for r in results["runs"] if (r["release"], r["lines"]) != (args.release, lines)]
        results["runs"].append(entry)
        results["runs"].sort(key=lambda r: (r["release"], r["lines"]))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
