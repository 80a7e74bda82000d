"""Recommendation as a new user expects it (issue 30, "the first ten minutes").

* ``exclude_history``: ``model.recommend``, the pipeline and ``genrec recommend`` leave a history's own items out
  by default, still return ``k`` items, and ``exclude_history=False`` is the old output bit for bit; evaluation
  (``evaluate_model``, TTDS's ``evaluate``, the transition weight search) still scores the plain ranking.
* the pipeline reads a string history as the tokenizer does; ``decode_items`` groups ``generate()`` rows per
  history on request; int item ids stand for their strings; ``k`` above the catalogue is an error.
* batch inference: ``genrec recommend --data D --split test --out topk.parquet`` writes every user's top-k, equal
  to ``model.recommend`` of that user's history (the row without its target, as evaluation reads it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fault_fixtures import save_random_unger
from testing_utils import free_port, write_dataset

import genrec  # noqa: F401  (registers the pipeline task and the Auto classes)
from genrec.cli import main
from genrec.modeling.modeling_unger import (
    EXCLUSION_STEP,
    UngerForGenerativeRecommendation,
    recommend_excluding_history,
)
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.evaluation.evaluator import evaluate_model, load_examples
from genrec.trainers.evaluation.metrics import compute_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = [str(i) for i in range(1, 41)]  # the catalogue: item ids "1".."40"
HISTORIES = [["1", "2", "3"], ["7"], ["12", "5", "30", "31", "9", "2"], ["40", "39"]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_unger(IDS, tmp_path_factory.mktemp("model") / "run")


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> tuple[UngerForGenerativeRecommendation, SemanticIDTokenizer]:
    model = UngerForGenerativeRecommendation.from_pretrained(model_dir).eval()
    return model, SemanticIDTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Users over the model's catalogue; test rows of 2-12 items, and one row without a history item."""
    rng = random.Random(0)
    splits: dict[str, list[tuple[str, list[str]]]] = {"train": [], "validation": [], "test": []}
    for u in range(23):
        seq = rng.sample(IDS, rng.randint(4, 14))
        splits["train"].append((f"u{u}", seq[:-2]))
        splits["validation"].append((f"u{u}", seq[:-1]))
        splits["test"].append((f"u{u}", seq))
    splits["test"].append(("lonely", ["5"]))  # no history item: no recommendations, counted
    return write_dataset(tmp_path_factory.mktemp("data") / "d", splits, IDS)


def _plain(model, tok, histories, k, num_beams):
    """The ranking of the code before exclusion existed: one constrained beam search, decoded per history."""
    enc = tok.encode_history(histories, max_items=model.config.max_history_items)
    sequences, scores = model.generate_codes(
        enc["input_ids"], enc["attention_mask"], model.logits_processor_for(tok, num_beams), k=k, num_beams=num_beams
    )
    items = tok.decode_items(sequences, num_return_sequences=k)
    values = scores.view(len(histories), k).tolist()
    return [list(zip(row, vals, strict=True)) for row, vals in zip(items, values, strict=True)]


# ---------------------------------------------------------------------------------------- exclude_history


def test_false_is_the_old_output_and_the_default_drops_the_history(loaded) -> None:
    model, tok = loaded
    plain = model.recommend(HISTORIES, tok, k=5, num_beams=8, exclude_history=False)
    assert plain == _plain(model, tok, HISTORIES, 5, 8)  # bit for bit
    assert any(i in h for h, row in zip(HISTORIES, plain, strict=True) for i, _ in row)  # the problem shows
    default = model.recommend(HISTORIES, tok, k=5, num_beams=8)
    width = max(8, 5 + EXCLUSION_STEP)  # short histories: one pass of k + EXCLUSION_STEP beams
    wide = model.recommend(HISTORIES, tok, k=width, num_beams=width, exclude_history=False)
    for history, row, candidates in zip(HISTORIES, default, wide, strict=True):
        assert len(row) == 5 and not {i for i, _ in row} & set(history)
        assert row == [(i, s) for i, s in candidates if i not in history][:5]  # the plain scores, in order
    assert model.recommend(HISTORIES, tok, k=5, num_beams=8, exclude_history=True) == default


def test_a_history_gets_the_same_items_alone_and_in_a_batch(loaded) -> None:
    model, tok = loaded
    batch = model.recommend(HISTORIES, tok, k=5)
    for history, row in zip(HISTORIES, batch, strict=True):
        (alone,) = model.recommend([history], tok, k=5)
        assert [i for i, _ in alone] == [i for i, _ in row]
        assert [s for _, s in alone] == pytest.approx([s for _, s in row], abs=1e-5)


def test_fewer_than_k_remain_only_when_the_catalogue_runs_out(loaded) -> None:
    model, tok = loaded
    history = IDS[:35]
    (row,) = model.recommend([history], tok, k=10)
    assert sorted(i for i, _ in row) == sorted(IDS[35:])  # all five items outside the history
    everything = model.recommend([IDS], tok, k=3)
    assert everything == [[]]


def test_the_second_pass_widens_only_for_long_histories_ranked_high() -> None:
    calls = []

    def ranking(rows: list[int], width: int) -> list[list[tuple[str, float]]]:  # one global order: 1, 2, 3, ...
        calls.append((list(rows), width))
        return [[(IDS[j], -float(j)) for j in range(min(width, len(IDS)))] for _ in rows]

    histories = [IDS[:12], ["40"], IDS[20:22]]  # the first holds the 12 best items
    out = recommend_excluding_history(ranking, histories, k=5, num_beams=5, num_items=len(IDS),
                                      is_item=set(IDS).__contains__)
    assert out[0] == [(IDS[j], -float(j)) for j in range(12, 17)]
    assert out[1] == [(IDS[j], -float(j)) for j in range(5)]
    assert calls == [([0, 1, 2], 5 + EXCLUSION_STEP), ([0], 5 + 2 * EXCLUSION_STEP)]


def test_exclusion_with_the_transition_prior(model_dir: Path) -> None:
    model = UngerForGenerativeRecommendation.from_pretrained(model_dir).eval()
    tok = SemanticIDTokenizer.from_pretrained(str(model_dir))
    rows = tok.code_table.lookup_indices(IDS)
    model.set_transition_prior(rows[:-1], rows[1:], weight=0.5)  # 1 -> 2 -> 3 ...
    width = 5 + EXCLUSION_STEP
    wide = model.recommend(HISTORIES, tok, k=width, num_beams=width, exclude_history=False)
    for history, row, candidates in zip(HISTORIES, model.recommend(HISTORIES, tok, k=5), wide, strict=True):
        assert row == [(i, s) for i, s in candidates if i not in history][:5]
    # the validation weight search decodes the plain beams
    candidates = model.transition_candidates(HISTORIES, tok, num_beams=8)
    beams = model.recommend(HISTORIES, tok, k=8, num_beams=8, transition_weight=0.0, exclude_history=False)
    for row, beam in zip(candidates, beams, strict=True):
        assert [i for i, _, _ in row][:8] == [i for i, _ in beam]


def test_evaluation_still_scores_the_plain_ranking(loaded, data_dir: Path) -> None:
    model, tok = loaded
    result = evaluate_model(model, tok, str(data_dir), "test", num_beams=20, batch_size=7, show_progress=False)
    examples = load_examples(str(data_dir), "test")
    plain = []
    for start in range(0, len(examples.histories), 7):  # evaluation's batches, the old algorithm
        plain += _plain(model, tok, examples.histories[start : start + 7], 20, 20)
    expected = compute_metrics([[i for i, _ in row] for row in plain], examples.targets, (1, 5, 10, 20))
    assert result["metrics"] == expected
    # TTDS's evaluation asks its recommend for the plain ranking too
    seen = []

    def recommend(histories, users, **kwargs):
        seen.append(kwargs)
        return [[("1", 0.0)] for _ in histories]

    from genrec.trainers.ttds.recommender import TTDSRecommender

    stub = SimpleNamespace(recommend=recommend, item_table=IDS)
    split = {"user_id": ["a", "b"], "item_ids": [["1", "2"], ["3", "4"]]}
    TTDSRecommender.evaluate(stub, split, ks=(1, 5, 50))
    assert seen and all(kwargs["exclude_history"] is False and kwargs["k"] == len(IDS) for kwargs in seen)


# ---------------------------------------------------------------------------------------- inputs and outputs


def test_pipeline_reads_a_string_like_the_tokenizer(model_dir: Path, loaded) -> None:
    from transformers import pipeline

    model, tok = loaded
    recommend = pipeline("generative-recommendation", model=str(model_dir))
    as_list = recommend(["1", "5", "18"], k=4)
    assert recommend("1 5 18", k=4) == as_list == recommend([1, 5, 18], k=4)
    assert [r["item_id"] for r in as_list] == [i for i, _ in model.recommend([["1", "5", "18"]], tok, k=4)[0]]
    assert not {r["item_id"] for r in as_list} & {"1", "5", "18"}  # excluded by default
    kept = recommend("1 5 18", k=4, exclude_history=False)
    assert [(r["item_id"], r["score"]) for r in kept] == model.recommend(
        [["1", "5", "18"]], tok, k=4, exclude_history=False)[0]
    batch = recommend([["1", "5"], ["7"]], k=3)
    assert len(batch) == 2 and all(len(rows) == 3 for rows in batch)
    with pytest.raises(TypeError, match="list of item ids"):
        recommend({"1": 2})


def test_decode_items_groups_generate_rows_per_history(loaded) -> None:
    model, tok = loaded
    model.set_code_table(tok)
    inputs = tok(["1 2 3", "7"], padding=True, return_tensors="pt")
    out = model.generate(**inputs)
    n = model.generation_config.num_return_sequences
    flat = tok.decode_items(out)
    assert len(flat) == 2 * n  # the default stays flat, one id per row
    grouped = tok.decode_items(out, num_return_sequences=n)
    assert grouped == [flat[:n], flat[n:]] == tok.decode_items(out, batch_size=2)
    items, invalid = tok.decode_items(out, num_return_sequences=n, return_invalid_mask=True)
    assert items == grouped and invalid.shape == (2, n) and not invalid.any()
    as_dict = model.generate(**inputs, return_dict_in_generate=True)
    assert tok.decode_items(as_dict, batch_size=2) == grouped
    single = model.generate(**tok("1 2 3", return_tensors="pt"))  # the README's one-history snippet: its list
    assert len(tok.decode_items(single)) == n and tok.decode_items(single) == tok.decode_items(single, batch_size=1)[0]
    with pytest.raises(ValueError, match="not a multiple"):
        tok.decode_items(out, num_return_sequences=3)
    with pytest.raises(ValueError, match="not both"):
        tok.decode_items(out, num_return_sequences=n, batch_size=2)


def test_int_item_ids_stand_for_their_strings(loaded) -> None:
    model, tok = loaded
    expected = model.recommend([["1", "5", "18"]], tok, k=4)
    assert model.recommend([[1, 5, 18]], tok, k=4) == expected
    assert model.recommend([np.array([1, 5, 18])], tok, k=4) == expected
    assert model.recommend([[np.int64(1), "5", 18]], tok, k=4) == expected
    assert torch.equal(tok.encode_history([[1, 5]])["input_ids"], tok.encode_history([["1", "5"]])["input_ids"])
    with pytest.raises(ValueError, match="item ids are strings"):
        model.recommend([[1, 500]], tok, k=4)
    with pytest.raises(ValueError, match="did you mean '5'"):
        tok.encode_history([[5.0]])
    with pytest.raises(TypeError, match="single string"):
        model.recommend("1 5 18", tok, k=4)


def test_k_above_the_catalogue_is_an_error(loaded, model_dir: Path, capsys) -> None:
    model, tok = loaded
    with pytest.raises(ValueError, match="k \\(41\\) is more than the catalogue's 40 items"):
        model.recommend(HISTORIES, tok, k=41)
    assert len(model.recommend([["1"]], tok, k=40, exclude_history=False)[0]) == 40
    from genrec.trainers.ttds.recommender import TTDSRecommender

    with pytest.raises(ValueError, match="more than the catalogue's 40 items"):
        TTDSRecommender.recommend(SimpleNamespace(item_table=IDS), [["1"]], k=41)
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "-k", "5000"]) == 2
    err = capsys.readouterr().err
    assert "genrec recommend: error: -k 5000 is more than the catalogue's 40 items" in err
    assert "Traceback" not in err


def test_cli_excludes_by_default_and_says_so(loaded, model_dir: Path, capsys) -> None:
    model, tok = loaded
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "5", "18", "-k", "4", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = model.recommend([["1", "5", "18"]], tok, k=4)[0]
    assert [(r["item_id"], r["score"]) for r in shown] == expected
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "5", "18", "-k", "4", "--json",
                 "--no-exclude-history"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert [(r["item_id"], r["score"]) for r in kept] == model.recommend(
        [["1", "5", "18"]], tok, k=4, exclude_history=False)[0]
    with pytest.raises(SystemExit):  # one of --history / --data
        main(["recommend", "--model", str(model_dir)])
    capsys.readouterr()
    assert main(["recommend", "--model", str(model_dir), "--history", "1", "--out", "x.parquet"]) == 2
    assert "--out is for batch inference" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- batch inference


def _read(path: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.column_names == ["user", "rank", "item", "score"]
    return table.to_pydict()


def _by_user(columns: dict[str, list]) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for user, rank, item, score in zip(columns["user"], columns["rank"], columns["item"], columns["score"],
                                       strict=True):
        out.setdefault(user, []).append((item, score))
        assert rank == len(out[user])  # 1..k, best first
    return out


def test_batch_inference_writes_every_users_top_k(loaded, model_dir: Path, data_dir: Path, tmp_path: Path,
                                                  capsys) -> None:
    model, tok = loaded
    out = tmp_path / "topk.parquet"
    assert main(["recommend", "--model", str(model_dir), "--data", str(data_dir), "--split", "test", "--out",
                 str(out), "-k", "5", "--batch-size", "4"]) == 0
    assert "23 users of test x top 5 (115 rows)" in capsys.readouterr().out
    got = _by_user(_read(out))
    from datasets import load_dataset

    test = load_dataset(str(data_dir), "sequences", split="test")
    rows = {u: s for u, s in zip(test["user_id"], test["item_ids"], strict=True) if len(s) > 1}
    assert set(got) == set(rows)  # "lonely" has no history item
    for user, sequence in rows.items():
        history = sequence[:-1]  # the row without its target, as evaluation reads it
        (expected,) = model.recommend([history], tok, k=5)
        assert [i for i, _ in got[user]] == [i for i, _ in expected]
        assert [s for _, s in got[user]] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert not {i for i, _ in got[user]} & set(history)
    assert [p.name for p in tmp_path.iterdir()] == ["topk.parquet"]  # no temporary file left

    # --no-exclude-history with evaluation's k, beams and batch size: evaluation's own lists
    assert main(["recommend", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out), "-k", "20",
                 "--beams", "20", "--batch-size", "7", "--no-exclude-history"]) == 0  # replaces the file
    plain = _by_user(_read(out))
    result = evaluate_model(model, tok, str(data_dir), "test", num_beams=20, batch_size=7, show_progress=False,
                            per_user=True)
    ranks = dict(zip(result["per_user"]["user_id"], result["per_user"]["rank"], strict=True))
    for user, sequence in rows.items():
        items = [i for i, _ in plain[user]]
        assert ranks[user] == (items.index(sequence[-1]) + 1 if sequence[-1] in items else 0)


def test_batch_inference_refuses_bad_requests(model_dir: Path, data_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["recommend", "--model", str(model_dir), "--data", str(data_dir)]
    assert main(base) == 2
    assert "give --out" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "t.parquet"), "-k", "41"]) == 2
    assert "-k 41 is more than the catalogue's 40 items" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def ttds(tmp_path_factory: pytest.TempPathFactory):
    """A briefly trained tiny TTDS recommender (test_ttds_trainer's data and base) and its sequences."""
    from test_ttds_trainer import _args, _items, _model, _sequences

    from genrec.trainers.ttds import TTDSData, TTDSTrainer, create_tiny_base, template_corpus

    corpus = template_corpus() + list(_items()["title"]) + ["Title: Year: Genres: Recently interacted with:"]
    base = create_tiny_base(tmp_path_factory.mktemp("ttds") / "base", corpus, vocab_size=400)
    model, tokenizer = _model(base)
    sequences = _sequences()
    data = TTDSData.from_datasets(sequences, _items(), seed=0)
    trainer = TTDSTrainer(model, tokenizer, data, _args(tmp_path_factory.mktemp("run"), warmup_steps=1, max_steps=2,
                                                         code_update_steps=1))
    trainer.train()
    return trainer.recommender(), sequences


def test_ttds_recommend_excludes_the_history_and_batch_inference_reads_users(ttds) -> None:
    from genrec.trainers.jobs.batch_recommend import recommend_split
    from genrec.trainers.jobs.load import TTDSModel

    recommender, sequences = ttds
    histories, users = [["1", "2", "3"], ["30"]], ["1", None]
    width = 5 + EXCLUSION_STEP
    wide = recommender.recommend(histories, users, k=width, exclude_history=False)
    default = recommender.recommend(histories, users, k=5)
    for history, row, candidates in zip(histories, default, wide, strict=True):
        assert len(row) == 5 and not {i for i, _ in row} & set(history)
        assert row == [(i, s) for i, s in candidates if i not in history][:5]
    test = sequences["test"]
    result = recommend_split(TTDSModel(recommender, "tiny"), test, k=5, batch_size=4, show_progress=False)
    assert result.users == [str(u) for u in test["user_id"]]
    for user, sequence, row in zip(result.users, test["item_ids"], result.ranked, strict=True):
        (alone,) = recommender.recommend([sequence[:-1]], [user], k=5)
        assert [i for i, _ in row] == [i for i, _ in alone]


WORKER = """
import sys
sys.argv = ["genrec"] + sys.argv[1:]
from genrec.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_batch_inference_under_two_processes_equals_one(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """Two CPU processes (gloo) split the users; the main process writes the same file as one process."""
    port = free_port()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = ["recommend", "--model", str(model_dir), "--data", str(data_dir), "-k", "5", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(script), *args, "--out", str(tmp_path / "two.parquet")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert main([*args, "--out", str(tmp_path / "one.parquet")]) == 0
    assert _read(tmp_path / "two.parquet") == _read(tmp_path / "one.parquet")
