"""Modality balance (UNGER §4.3): KL-based relative similarity of fused embeddings to S vs C, and the plot."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from genrec.trainers.analysis import modality_balance as mb
from genrec.trainers.analysis.modality_balance import (
    modality_balance,
    plot_embeddings,
    similarity_log_distributions,
)


def _sets(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 24, generator=g), torch.randn(n, 8, generator=g)


def test_fused_equal_to_one_modality_is_all_that_modality() -> None:
    s, c = _sets()
    semantic = modality_balance(s, s, c)
    assert semantic["semantic"] == pytest.approx(1.0) and semantic["kl_semantic"] == pytest.approx(0.0, abs=1e-9)
    collaborative = modality_balance(c * 3.0, s, c)  # cosine similarities: scale does not matter
    assert collaborative["collaborative"] == pytest.approx(1.0)
    assert semantic["semantic"] + semantic["collaborative"] == pytest.approx(1.0)


def test_shares_follow_the_mix_and_match_the_kl_formula() -> None:
    s, c = _sets()
    shares = []
    for weight in (0.2, 1.0, 5.0):  # weight of the (normalised) semantic half in a concatenation
        fused = torch.cat([weight * F.normalize(s, dim=-1), F.normalize(c, dim=-1)], dim=1)
        out = modality_balance(fused, s, c, sample=None)
        assert out["semantic"] == pytest.approx(out["kl_collaborative"] / (out["kl_semantic"] + out["kl_collaborative"]))
        shares.append(out["semantic"])
    assert shares[0] < 0.5 < shares[2] and shares == sorted(shares)


def test_kl_by_hand_on_a_tiny_example() -> None:
    s, c = _sets(5)
    f = s + 0.5 * torch.randn(5, 24, generator=torch.Generator().manual_seed(1))
    out = modality_balance(f, s, c, temperature=0.5, sample=None)

    def dist(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.double(), dim=-1)
        rows = []
        for i in range(5):
            others = [j for j in range(5) if j != i]
            rows.append(torch.softmax(torch.stack([x[i] @ x[j] / 0.5 for j in others]), 0))
        return torch.stack(rows)

    pf, ps, pc = dist(f), dist(s), dist(c)
    kl_s = (pf * (pf / ps).log()).sum(1).mean().item()
    kl_c = (pf * (pf / pc).log()).sum(1).mean().item()
    assert out["kl_semantic"] == pytest.approx(kl_s, rel=1e-9)
    assert out["kl_collaborative"] == pytest.approx(kl_c, rel=1e-9)
    log_p = similarity_log_distributions(s, 0.5)
    assert torch.all(log_p.diagonal() == float("-inf"))


def test_sampling_is_seeded_and_inputs_are_checked() -> None:
    s, c = _sets(300)
    fused = torch.cat([F.normalize(s, dim=-1), F.normalize(c, dim=-1)], dim=1)
    a = modality_balance(fused, s, c, sample=50, seed=1)
    assert a == modality_balance(fused, s, c, sample=50, seed=1)
    assert a["num_items"] == 50
    with pytest.raises(ValueError, match="same items"):
        modality_balance(fused[:-1], s, c)
    with pytest.raises(ValueError, match="non-finite"):
        modality_balance(fused, s * float("nan"), c)
    with pytest.raises(ValueError, match="temperature"):
        modality_balance(fused, s, c, temperature=0)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_writes_a_png(tmp_path) -> None:
    s, c = _sets(120)
    fused = torch.cat([F.normalize(s, dim=-1), F.normalize(c, dim=-1)], dim=1)
    path = plot_embeddings(fused, s, c, tmp_path / "fig" / "balance.png", method="pca", n_clusters=4,
                           balance=modality_balance(fused, s, c))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(mb.importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    s, c = _sets(20)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_embeddings(s, s, c, tmp_path / "x.png")
