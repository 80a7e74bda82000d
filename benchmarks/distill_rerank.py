"""Re-ranking the beams with the distillation head (issue 33: "scoring beams with the distillation head").

An UNGER Stage II model with distillation has a second view of every (history, item) pair: the distillation token
after the item's codes, projected by ``distillation_proj``, was trained (InfoNCE, cosine / tau) to point at that
item's Stage-I integrated embedding. So ``cos(proj(h_distill(history, item)), integrated[item]) / tau`` is a
matching score of the pair that the beam score (the codes' log-probability) does not contain. This script decodes
the model's ``--beams`` beams (the model alone, no transition prior), scores each beam's item with the head, and
ranks by ``log p_beam + a * match``; ``a`` is chosen on the validation split by NDCG@10 from ``--weights`` (never
on test), then the test split is ranked with it. Re-ranking moves items inside the beams only: Recall@beams is
unchanged, the top of the list can move. Writes both per-user rank files (``a = 0``: the plain beams, equal to
``genrec evaluate --transition-weight 0``) so that ``benchmarks/paired_compare.py`` pairs them.

    python benchmarks/distill_rerank.py --run runs/d2024 --out runs/rerank/d2024 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def beams_and_matches(model: Any, tokenizer: Any, histories: list[list[str]], beams: int,
                      batch_size: int) -> list[list[tuple[str, float, float]]]:
    """Each history's beams as (item, log p_beam, match): the model alone, the plain beam search of evaluation."""
    from transformers.modeling_outputs import BaseModelOutput

    ranked = model.recommend(histories, tokenizer, k=beams, num_beams=beams, batch_size=batch_size,
                             transition_weight=0.0, exclude_history=False)
    table = F.normalize(model.integrated_embeddings.float(), dim=-1)
    rows_of = {item: row for row, item in enumerate(tokenizer.code_table.item_ids)}
    out: list[list[tuple[str, float, float]]] = []
    with torch.no_grad():
        for start in range(0, len(histories), batch_size):
            chunk, found = histories[start:start + batch_size], ranked[start:start + batch_size]
            enc = tokenizer.encode_history(chunk, max_items=model.config.max_history_items, return_tensors="pt")
            states = model.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            items = [item for beams_of in found for item, _ in beams_of]
            counts = torch.tensor([len(beams_of) for beams_of in found])
            labels = tokenizer.encode_targets(items)
            rows = torch.tensor([rows_of[item] for item in items])
            output = model(encoder_outputs=BaseModelOutput(last_hidden_state=states.repeat_interleave(counts, 0)),
                           attention_mask=enc["attention_mask"].repeat_interleave(counts, 0), labels=labels,
                           target_item_indices=rows, use_cache=False)
            query = F.normalize(output.distillation_embeddings.float(), dim=-1)
            match = ((query * table[rows]).sum(-1) / model.config.distillation_temperature).tolist()
            position = 0
            for beams_of in found:
                out.append([(item, score, match[position + j]) for j, (item, score) in enumerate(beams_of)])
                position += len(beams_of)
    return out


def ranks(scored: list[list[tuple[str, float, float]]], targets: list[str], weight: float) -> list[int]:
    """The target's 1-based rank under ``log p + weight * match`` (0: not among the beams), as evaluation writes it."""
    result = []
    for beams_of, target in zip(scored, targets, strict=True):
        order = [item for item, _, _ in sorted(beams_of, key=lambda b: -(b[1] + weight * b[2]))]
        result.append(order.index(target) + 1 if target in order else 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a `genrec run` folder (its stage2/best model)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON results")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    parser.add_argument("--max-validation-users", type=int, default=None, help="default: all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import genrec  # noqa: F401  (registers the model classes)
    from genrec.data_scripts.prepare import load_genrec_dataset
    from genrec.trainers.evaluation.metrics import per_user_scores
    from genrec.trainers.jobs.transition import load_best_model

    model, tokenizer = load_best_model(args.run / "stage2" / "best")
    if not model.config.uses_distillation:
        raise SystemExit(f"{args.run}: the model has no distillation head (distillation_weight=0 or no Stage I)")
    model.eval()
    if model.config.constrained_training:  # the forward pass with labels computes the constrained loss too
        model.set_prefix_index(tokenizer.code_table.prefix_index(), tokenizer.code_token_offsets)
    sequences, _ = load_genrec_dataset(args.run / "data")
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
    result: dict[str, Any] = {"run": str(args.run), "beams": args.beams, "weights": args.weights}
    chosen = None
    for split in ("validation", "test"):
        rows = sequences[split]
        users, seqs = [str(u) for u in rows["user_id"]], [[str(i) for i in s] for s in rows["item_ids"]]
        if split == "validation" and args.max_validation_users:
            users, seqs = users[:args.max_validation_users], seqs[:args.max_validation_users]
        start = time.perf_counter()
        scored = beams_and_matches(model, tokenizer, [s[:-1] for s in seqs], args.beams, args.batch_size)
        targets = [s[-1] for s in seqs]
        weights = args.weights if split == "validation" else sorted({0.0, chosen})
        table = {}
        for weight in weights:
            ranked = ranks(scored, targets, weight)
            table[str(weight)] = {m: round(float(per_user_scores(ranked, m).mean()), 5) for m in metrics}
            if split == "test":
                name = "plain" if weight == 0 else "reranked"
                per_user = {"user_id": users, "target": targets, "rank": ranked, "k": args.beams}
                (args.out / f"test_ranks_{name}.json").write_text(json.dumps(
                    {"model": str(args.run), "split": "test", "metrics": table[str(weight)], "per_user": per_user}))
        if split == "validation":
            chosen = max(args.weights, key=lambda w: (table[str(w)]["ndcg@10"], -w))
        result[split] = {"metrics_by_weight": table, "users": len(users),
                         "seconds": round(time.perf_counter() - start, 1)}
        print(split, json.dumps(table, indent=1))
    result["chosen_weight"] = chosen
    (args.out / "distill_rerank.json").write_text(json.dumps(result, indent=2) + "\n")
    print("chosen weight on validation:", chosen)


if __name__ == "__main__":
    main()
