"""Candidate scoring and the first-order transition prior of UNGER's ``recommend``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_unger_model import HISTORIES, IDS, make_tokenizer, register_auto, tiny_model

from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.modeling.transition_prior import mix_transition_scores
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.stages.transition_prior import (
    choose_transition_mixture,
    choose_transition_weight,
    mixture_key,
    transition_pairs,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok() -> SemanticIDTokenizer:
    return make_tokenizer()


def _rows(tok: SemanticIDTokenizer, items: list[str]) -> np.ndarray:
    return tok.code_table.lookup_indices(items)


@pytest.mark.parametrize("constrained", [False, True])
def test_score_items_gives_the_beam_score_of_every_beam_item(tok: SemanticIDTokenizer, constrained: bool) -> None:
    model = tiny_model(tok, constrained_training=constrained)
    beams = model.recommend(HISTORIES, tok, k=8, num_beams=8)
    scores = model.score_items(HISTORIES, tok, [[item for item, _ in row] for row in beams])
    for row, values in zip(beams, scores, strict=True):
        assert values == pytest.approx([score for _, score in row], abs=1e-4)
    # every item's probability under the constrained softmax sums to one over the corpus
    everything = model.score_items(HISTORIES[:1], tok, [IDS], renormalize=True)[0]
    assert sum(math.exp(v) for v in everything) == pytest.approx(1.0, abs=1e-4)


def test_score_items_bad_inputs(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok)
    with pytest.raises(ValueError, match="candidate lists"):
        model.score_items(HISTORIES, tok, [[IDS[0]]])
    with pytest.raises(KeyError):
        model.score_items(HISTORIES[:1], tok, [["not-an-item"]])
    assert model.score_items([["unknown"]], tok, [[IDS[0]]], on_unknown="skip") == [[None]]


def test_set_transition_prior_stores_conditional_probabilities_most_probable_first(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok)
    src = _rows(tok, ["item1", "item1", "item1", "item1", "item2"])
    dst = _rows(tok, ["item5", "item7", "item7", "item7", "item9"])
    model.set_transition_prior(src, dst, weight=0.4)
    assert model.config.num_transitions == 3 and model.config.transition_weight == 0.4
    row = model.transition_successors(int(src[0]))
    assert [t for t, _ in row] == list(_rows(tok, ["item7", "item5"]))
    assert [p for _, p in row] == pytest.approx([0.75, 0.25])
    assert model.transition_successors(int(src[-1])) == [(int(dst[-1]), 1.0)]
    assert model.transition_successors(int(_rows(tok, ["item3"])[0])) == []


def test_weight_one_ranks_the_last_items_successors_first_and_weight_zero_is_the_model(
    tok: SemanticIDTokenizer,
) -> None:
    model = tiny_model(tok)
    plain = model.recommend(HISTORIES, tok, k=5, num_beams=10)
    last = HISTORIES[0][-1]
    model.set_transition_prior(_rows(tok, [last] * 3), _rows(tok, ["item20", "item20", "item33"]))
    assert model.recommend(HISTORIES, tok, k=5, num_beams=10) == plain  # config weight 0: the model alone
    mixed = model.recommend(HISTORIES, tok, k=5, num_beams=10, transition_weight=1.0)
    assert [item for item, _ in mixed[0][:2]] == ["item20", "item33"]
    assert [score for _, score in mixed[0][:2]] == pytest.approx([math.log(2 / 3), math.log(1 / 3)])
    half = model.recommend(HISTORIES, tok, k=5, num_beams=10, transition_weight=0.5)
    assert all(len(row) == 5 for row in half)
    assert [s for _, s in half[0]] == sorted((s for _, s in half[0]), reverse=True)
    # users whose last item has no successor keep the model's ranking (scores shifted by log(1 - w))
    assert [i for i, _ in half[1]] == [i for i, _ in plain[1]]
    assert [s for _, s in half[1]] == pytest.approx([s + math.log(0.5) for _, s in plain[1]], abs=1e-4)


def test_transition_prior_survives_save_and_auto_load(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    from transformers import AutoModel

    register_auto()
    model = tiny_model(tok)
    model.set_transition_prior(_rows(tok, ["item2", "item2"]), _rows(tok, ["item4", "item6"]), weight=0.3)
    expected = model.recommend(HISTORIES, tok, k=5, num_beams=10)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, UngerForGenerativeRecommendation) and loaded.has_transition_prior
    assert loaded.config.transition_weight == 0.3
    assert loaded.recommend(HISTORIES, tok, k=5, num_beams=10) == expected


def test_transition_prior_bad_inputs(tok: SemanticIDTokenizer) -> None:
    model = tiny_model(tok)
    with pytest.raises(ValueError, match="set_transition_prior"):
        model.recommend(HISTORIES, tok, k=5, transition_weight=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.recommend(HISTORIES, tok, k=5, transition_weight=1.5)
    with pytest.raises(ValueError, match="code-table rows"):
        model.set_transition_prior([0, 1], [2, len(tok.code_table)])
    with pytest.raises(ValueError, match="one entry per pair"):
        model.set_transition_prior([0, 1], [2])
    with pytest.raises(ValueError, match="positive"):
        model.set_transition_prior([0], [1], [0])
    with pytest.raises(ValueError, match="transition_weight"):
        type(model.config)(transition_weight=2.0)
    model.set_transition_prior([1], [2], weight=0.5)
    model.set_transition_prior([], [], weight=0.5)  # no pairs (a tiny dataset): no table, the model alone
    assert not model.has_transition_prior and model.config.transition_weight == 0.0
    assert "transition_probs" not in model.state_dict()


def test_new_config_fields_at_their_defaults_keep_the_config_hash(tok: SemanticIDTokenizer) -> None:
    """Runs started before the transition prior existed must still resume (the hash is in their fingerprint)."""
    config = tiny_model(tok).config
    before = config.config_hash()
    values = config.init_values()
    values.pop("num_transitions"), values.pop("transition_weight"), values.pop("transition_smoothing")
    assert type(config)(**values).config_hash() == before
    assert type(config)(**{**values, "transition_weight": 0.2}).config_hash() != before


def test_choose_transition_weight_picks_the_weight_that_validation_prefers(tok: SemanticIDTokenizer) -> None:
    torch.manual_seed(0)
    model = tiny_model(tok)
    histories = [[IDS[i], IDS[i + 1]] for i in range(0, 30, 2)]
    targets = [IDS[i + 5] for i in range(0, 30, 2)]  # a fixed successor per last item: the chain knows it
    src, dst = transition_pairs([h + [t] for h, t in zip(histories, targets, strict=True)], tok)
    model.set_transition_prior(src, dst)
    best, table = choose_transition_weight(model, tok, histories, targets, num_beams=10, weights=(0.0, 0.5, 1.0))
    assert best == 0.5  # the smallest weight that puts every target first
    assert table["0.5"]["recall@1"] == 1.0 and table["0.0"]["recall@1"] < 1.0


def test_mix_transition_scores_is_the_log_of_the_mixture() -> None:
    ranked = mix_transition_scores([("a", math.log(0.5), 0.0), ("b", math.log(0.1), 1.0)], 0.5)
    assert ranked == [("b", pytest.approx(math.log(0.55))), ("a", pytest.approx(math.log(0.25)))]


def test_smoothing_divides_by_the_items_total_plus_c_and_is_recorded(tok: SemanticIDTokenizer, tmp_path: Path) -> None:
    from transformers import AutoModel

    register_auto()
    model = tiny_model(tok)
    src = _rows(tok, ["item1", "item1", "item1", "item1", "item2"])
    dst = _rows(tok, ["item5", "item7", "item7", "item7", "item9"])
    model.set_transition_prior(src, dst, weight=0.4, smoothing=2.0)
    assert model.config.transition_smoothing == 2.0
    assert [p for _, p in model.transition_successors(int(src[0]))] == pytest.approx([3 / 6, 1 / 6])
    assert model.transition_successors(int(src[-1])) == [(int(dst[-1]), pytest.approx(1 / 3))]
    expected = model.recommend(HISTORIES, tok, k=5, num_beams=10)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.transition_smoothing == 2.0
    assert loaded.recommend(HISTORIES, tok, k=5, num_beams=10) == expected
    model.set_transition_prior(src, dst)  # refitted plain: the record follows the table
    assert model.config.transition_smoothing == 0.0
    for bad in (-1.0, math.inf, math.nan, True):
        with pytest.raises(ValueError, match="smoothing"):
            model.set_transition_prior(src, dst, smoothing=bad)
    with pytest.raises(ValueError, match="transition_smoothing"):
        type(model.config)(transition_smoothing=-0.5)


def test_choose_transition_mixture_scores_each_smoothing_as_the_smoothed_table_would(tok: SemanticIDTokenizer) -> None:
    """What validation measures for (w, c) is what the table fitted with c then recommends: the candidates'
    probabilities rescaled by n / (n + c) equal the smoothed table's, user by user."""
    torch.manual_seed(0)
    model = tiny_model(tok)
    histories = [[IDS[i], IDS[i + 1]] for i in range(0, 30, 2)]
    # item IDS[1]'s row was left 3 times, every other last item once: smoothing moves them differently
    rows = [h + [IDS[i * 2 + 5]] for i, h in enumerate(histories)] + [[IDS[1], IDS[7]], [IDS[1], IDS[9]]]
    targets = [IDS[i + 5] for i in range(0, 30, 2)]
    src, dst = transition_pairs(rows, tok)
    left = np.bincount(src, minlength=len(tok.code_table))
    model.set_transition_prior(src, dst)
    weight, smoothing, table = choose_transition_mixture(
        model, tok, histories, targets, num_beams=10, weights=(0.0, 0.3, 0.9), smoothings=(0.0, 1.0, 4.0), left=left)
    assert set(table) == {"0.0"} | {mixture_key(w, c) for w in (0.3, 0.9) for c in (0.0, 1.0, 4.0)}
    assert mixture_key(0.3, 0.0) == "0.3" and mixture_key(0.3, 4.0) == "0.3/c=4.0"
    plain_w, plain_table = choose_transition_weight(model, tok, histories, targets, num_beams=10,
                                                    weights=(0.0, 0.3, 0.9))
    assert all(table[key] == plain_table[key] for key in plain_table)  # c = 0: the plain search, unchanged
    best_metric = table[mixture_key(weight, smoothing)]["ndcg@10"]
    assert best_metric == max(m["ndcg@10"] for m in table.values())
    plain_candidates = model.transition_candidates(histories, tok, num_beams=10)
    model.set_transition_prior(src, dst, smoothing=4.0)
    smoothed_candidates = model.transition_candidates(histories, tok, num_beams=10)
    for history, plain, smoothed in zip(histories, plain_candidates, smoothed_candidates, strict=True):
        n = int(left[int(_rows(tok, [history[-1]])[0])])
        assert [p * n / (n + 4.0) for _, _, p in plain] == pytest.approx([p for _, _, p in smoothed])
    with pytest.raises(ValueError, match="plain table"):
        choose_transition_mixture(model, tok, histories, targets, num_beams=10)
    model.set_transition_prior(src, dst)
    with pytest.raises(ValueError, match="times_left"):
        choose_transition_mixture(model, tok, histories, targets, num_beams=10, smoothings=(0.0, 1.0))


def test_a_profiles_smoothing_setting_is_checked_when_the_profile_is_made() -> None:
    """`auto` or a number c >= 0; anything else fails before a stage runs, and the grid keeps the plain prior."""
    import dataclasses

    from genrec.trainers.jobs.profiles import PROFILES
    from genrec.trainers.stages.transition_smoothing import TRANSITION_SMOOTHINGS, smoothing_candidates

    assert PROFILES["default"].transition_smoothing == "auto" and PROFILES["long"].transition_smoothing == 0.0
    assert dataclasses.replace(PROFILES["long"], transition_smoothing="5").transition_smoothing == 5.0
    for bad in ("often", -1.0, float("nan"), float("inf"), True, None):
        with pytest.raises(ValueError, match="'auto' or a finite number >= 0"):
            dataclasses.replace(PROFILES["default"], transition_smoothing=bad)
    assert 0.0 in TRANSITION_SMOOTHINGS and smoothing_candidates("auto") == TRANSITION_SMOOTHINGS
    assert smoothing_candidates(None) == (0.0,) and smoothing_candidates(2) == (2.0,)
