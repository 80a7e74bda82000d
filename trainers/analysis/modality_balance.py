"""How much of each modality a fused item embedding keeps (UNGER §4.3, "semantic domination").

The paper compares the fused embeddings F (concatenation, or UNGER's integrated embedding) with the
semantic embeddings S and the collaborative embeddings C "using KL divergence to assess the similarity of
their distribution", and turns the two divergences into relative similarities (its eqs. 18-19 are lost in
our copy). Our reading, which only compares *neighbourhood structure* and therefore works across
embedding sets of different widths:

1. take the same sample of items from F, S and C (``sample`` rows, seeded);
2. for each set X and each sampled item i, ``P_X(i, .)`` = softmax over the other sampled items j of
   ``cos(x_i, x_j) / temperature`` (the item itself excluded);
3. ``KL_S`` = mean over rows of KL(P_F(i, .) || P_S(i, .)), ``KL_C`` likewise with C;
4. relative similarity to S = ``(1/KL_S) / (1/KL_S + 1/KL_C)`` = ``KL_C / (KL_S + KL_C)``, to C = the rest.

F = S gives 100 % semantic; F = C gives 100 % collaborative. On Beauty the paper reports concat
97.33 % / 2.67 % and UNGER 59.89 % / 40.11 % (semantic / collaborative). The absolute numbers depend on the
temperature (a sharper softmax weighs the nearest neighbours more); compare methods at the same one.

:func:`plot_embeddings` draws the paper's Figure 6 style picture: a 2-D projection (t-SNE when
scikit-learn is installed, else PCA) of each set, coloured by k-means clusters. matplotlib is optional
(``pip install genrec[analysis]``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = ["modality_balance", "modality_balance_of_files", "plot_embeddings", "similarity_log_distributions"]


def _as_matrix(name: str, x: Any) -> torch.Tensor:
    tensor = x.embeddings if hasattr(x, "embeddings") and hasattr(x, "item_ids") else x
    tensor = torch.as_tensor(tensor).detach().float().cpu()
    if tensor.dim() != 2 or tensor.shape[0] < 3:
        raise ValueError(f"{name} embeddings must be an (items, dims) matrix with >= 3 items, got {tuple(tensor.shape)}.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} embeddings hold non-finite values.")
    return tensor


def _sample_rows(n: int, sample: int | None, seed: int) -> torch.Tensor:
    if sample is None or sample >= n:
        return torch.arange(n)
    if sample < 3:
        raise ValueError(f"sample must be >= 3 items, got {sample}.")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:sample].sort().values


def similarity_log_distributions(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row-wise log-softmax of cosine similarities / temperature, each row over the *other* items."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    normed = F.normalize(x.double(), dim=-1)
    logits = normed @ normed.T / temperature
    logits.fill_diagonal_(float("-inf"))
    return logits.log_softmax(dim=-1)


def _mean_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """Mean over rows of KL(P || Q) for row-wise log-distributions (diagonal entries are 0-probability)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return float(terms.sum(dim=-1).mean())


def modality_balance(
    fused: Any,
    semantic: Any,
    collaborative: Any,
    *,
    sample: int | None = 2000,
    seed: int = 2024,
    temperature: float = 0.1,
) -> dict[str, float]:
    """Relative similarity of ``fused`` to the semantic vs the collaborative embeddings (see module doc).

    The three arguments are (items, dims) tensors (or ``ItemEmbeddings``) whose rows are the same items in
    the same order; their widths may differ. Returns ``semantic`` and ``collaborative`` (fractions that sum
    to 1), ``kl_semantic``, ``kl_collaborative``, ``num_items`` and ``temperature``. When F matches both
    perfectly (both KLs are 0) the split is 0.5 / 0.5.
    """
    f, s, c = _as_matrix("fused", fused), _as_matrix("semantic", semantic), _as_matrix("collaborative", collaborative)
    if not (f.shape[0] == s.shape[0] == c.shape[0]):
        raise ValueError(
            f"the three embedding sets must cover the same items in the same order; got {f.shape[0]}, "
            f"{s.shape[0]} and {c.shape[0]} rows."
        )
    rows = _sample_rows(f.shape[0], sample, seed)
    log_f = similarity_log_distributions(f[rows], temperature)
    kl_s = _mean_kl(log_f, similarity_log_distributions(s[rows], temperature))
    kl_c = _mean_kl(log_f, similarity_log_distributions(c[rows], temperature))
    kl_s, kl_c = max(kl_s, 0.0), max(kl_c, 0.0)  # clamp float round-off below zero
    total = kl_s + kl_c
    semantic_share = 0.5 if total == 0 else kl_c / total
    return {
        "semantic": semantic_share,
        "collaborative": 1.0 - semantic_share,
        "kl_semantic": kl_s,
        "kl_collaborative": kl_c,
        "num_items": float(len(rows)),
        "temperature": float(temperature),
    }


def _project_2d(x: torch.Tensor, method: str, seed: int) -> torch.Tensor:
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
        points = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(x.numpy())
        return torch.from_numpy(points).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(x, q=min(2, *x.shape), center=True)
    return (x - x.mean(dim=0, keepdim=True)) @ v[:, :2]


def plot_embeddings(
    fused: Any,
    semantic: Any,
    collaborative: Any,
    path: str | Path,
    *,
    sample: int | None = 2000,
    seed: int = 2024,
    method: str = "auto",
    n_clusters: int = 8,
    color_by: str = "fused",
    titles: Sequence[str] = ("fused", "semantic", "collaborative"),
    balance: dict[str, float] | None = None,
) -> Path:
    """Write a PNG with one 2-D projection per embedding set, points coloured by k-means clusters.

    ``method``: ``"tsne"`` (scikit-learn), ``"pca"`` or ``"auto"`` (t-SNE when scikit-learn is installed).
    ``color_by``: ``"fused"`` (default: the fused set's clusters colour all three panels, so one sees
    whether its neighbourhoods survive in S or in C) or ``"self"`` (each set clustered on its own, as
    in the paper's figure). ``balance`` (a :func:`modality_balance` result) is added to the title.
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(
            "plot_embeddings needs matplotlib, an optional dependency: pip install matplotlib "
            "(or pip install 'genrec[analysis]')."
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.tokenization.quantizers import kmeans

    if method == "auto":
        method = "tsne" if importlib.util.find_spec("sklearn") is not None else "pca"
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne', 'pca' or 'auto', got {method!r}.")
    if color_by not in ("fused", "self"):
        raise ValueError(f"color_by must be 'fused' or 'self', got {color_by!r}.")
    sets = [_as_matrix(n, x) for n, x in zip(("fused", "semantic", "collaborative"), (fused, semantic, collaborative), strict=True)]
    if len({m.shape[0] for m in sets}) != 1:
        raise ValueError("the three embedding sets must cover the same items in the same order.")
    rows = _sample_rows(sets[0].shape[0], sample, seed)
    sets = [F.normalize(m[rows], dim=-1) for m in sets]
    k = min(n_clusters, len(rows))
    labels = [kmeans(m, k, seed=seed).labels for m in sets]
    if color_by == "fused":
        labels = [labels[0]] * 3
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, m, lab, title in zip(axes, sets, labels, titles, strict=True):
        points = _project_2d(m, method, seed).numpy()
        ax.scatter(points[:, 0], points[:, 1], c=lab.numpy(), cmap="tab10", s=4, alpha=0.8)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    heading = f"{method.upper()} of {len(rows)} items, k-means k={k} (colours: {color_by})"
    if balance is not None:
        heading += f" — semantic {balance['semantic']:.2%} / collaborative {balance['collaborative']:.2%}"
    fig.suptitle(heading)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def modality_balance_of_files(
    fused: str | Path, semantic: str | Path, collaborative: str | Path, *, sample: int | None = 2000,
    seed: int = 2024, plot: str | Path | None = None,
) -> dict[str, Any]:
    """:func:`modality_balance` of three ``ItemEmbeddings`` files, rows matched by item id (``genrec balance``).

    The semantic and collaborative sets are reordered to the fused set's items; ``plot``: also draw
    :func:`plot_embeddings` into that PNG (its path is the result's ``figure``).
    """
    from genrec.data_scripts.embeddings import ItemEmbeddings

    fused_set = ItemEmbeddings.load(fused)
    semantic_set = ItemEmbeddings.load(semantic).reorder(fused_set.item_ids)
    collaborative_set = ItemEmbeddings.load(collaborative).reorder(fused_set.item_ids)
    matrices = (fused_set.embeddings, semantic_set.embeddings, collaborative_set.embeddings)
    balance: dict[str, Any] = modality_balance(*matrices, sample=sample, seed=seed)
    if plot:
        balance["figure"] = str(plot_embeddings(*matrices, plot, sample=sample, seed=seed, balance=balance))
    return balance
