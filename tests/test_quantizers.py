"""Quantizers: residual k-means (UNGER Algorithm 1), RQ-VAE (TIGER), random codes — fast, synthetic data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.tokenization.quantizers import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Quantizer,
    RandomQuantizer,
    ResidualKMeansQuantizer,
    RQVAEQuantizer,
    code_statistics,
    kmeans,
    load_quantizer,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tensors here are tiny: with several threads, OpenMP synchronisation dominates (10x slower on a
    busy 2-core machine). Restored afterwards so other test modules keep their settings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_clusters: int = 6, per: int = 40, dim: int = 8, spread: float = 0.05, seed: int = 0):
    """Well-separated Gaussian blobs and their true labels."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_clusters, dim, generator=g) * 5.0
    labels = torch.arange(n_clusters).repeat_interleave(per)
    x = centers[labels] + spread * torch.randn(n_clusters * per, dim, generator=g)
    return x, labels


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two labelings group the items identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ---------------------------------------------------------------------------------------------- k-means


def test_well_separated_clusters_are_recovered() -> None:
    x, truth = blobs()
    q = ResidualKMeansQuantizer(num_levels=1, codebook_size=6, seed=3).fit(x, show_progress=False)
    assert same_partition(q.codes_[:, 0], truth)
    assert q.fit_info["levels"][0]["converged"]


def test_fewer_distinct_points_than_k() -> None:
    g = torch.Generator().manual_seed(1)
    distinct = torch.randn(5, 4, generator=g)
    x = distinct.repeat(3, 1)  # 15 rows, 5 distinct
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=8).fit(x, show_progress=False)
    codes = q.codes_
    assert q.fit_info["levels"][0]["n_distinct_seeds"] == 5
    assert torch.equal(codes[:5], codes[5:10]) and torch.equal(codes[:5], codes[10:])
    diag = q.diagnostics(x)
    assert diag.used_codes[0] == 5 and diag.utilization[0] == pytest.approx(5 / 8)
    assert diag.used_codes[1] == 1  # residuals are all zero after level 1
    assert diag.reconstruction_mse == pytest.approx(0.0, abs=1e-12)
    assert diag.unique_codes == 5


def test_empty_cluster_is_reseeded() -> None:
    x, truth = blobs(n_clusters=3, per=30, dim=4, seed=2)
    centers = torch.stack([x[truth == i].mean(0) for i in range(3)])
    # two centroids start inside cluster 0 and 1, one far away: it gets no point and must be re-seeded
    init = torch.stack([centers[0], centers[1], torch.full((4,), 1e3)])
    res = kmeans(x, 3, init=init, max_iter=20)
    assert res.n_reseeded >= 1
    assert torch.bincount(res.labels, minlength=3).min() > 0
    assert same_partition(res.labels, truth)


def test_residual_mse_decreases_level_by_level() -> None:
    x, _ = blobs(n_clusters=10, per=30, dim=16, spread=0.5, seed=4)
    q = ResidualKMeansQuantizer(num_levels=3, codebook_size=8).fit(x, show_progress=False)
    diag = q.diagnostics(x)
    mse = [diag.input_mean_square, *diag.residual_mse]
    assert all(b < a for a, b in zip(mse, mse[1:], strict=False)), mse
    assert diag.reconstruction_mse == pytest.approx(diag.residual_mse[-1], rel=1e-5)
    assert [lv["residual_mse"] for lv in q.fit_info["levels"]] == pytest.approx(diag.residual_mse, rel=1e-6)


def test_encode_equals_fit_codes_and_is_batch_independent() -> None:
    x, _ = blobs(n_clusters=12, per=50, dim=32, spread=1.0, seed=5)
    q = ResidualKMeansQuantizer(num_levels=3, codebook_size=16, chunk_size=256).fit(x, show_progress=False)
    codes = q.codes_
    assert torch.equal(q.encode(x), codes)
    assert torch.equal(q.encode(x.numpy()), codes)  # numpy in, same codes
    for i in (0, 7, 599):
        assert torch.equal(q.encode(x[i : i + 1]), codes[i : i + 1])
    assert torch.equal(q.encode(x[3:40]), codes[3:40])
    # another chunking of the same centroids gives the same codes
    other = ResidualKMeansQuantizer.from_centroids(q.centroids, chunk_size=7)
    assert torch.equal(other.encode(x), codes)
    assert codes.dtype == torch.int64 and codes.shape == (600, 3)
    assert int(codes.min()) >= 0 and int(codes.max()) < 16


def test_subsampled_fit_assigns_every_item() -> None:
    x, _ = blobs(n_clusters=4, per=100, dim=8, spread=0.3, seed=6)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=4, max_points_per_centroid=10)
    q.fit(x, show_progress=False)
    assert q.fit_info["levels"][0]["fit_points"] == 40
    assert q.codes_.shape == (400, 2)
    assert torch.equal(q.encode(x), q.codes_)


def test_kmeans_plusplus_seeds_from_a_pool() -> None:
    x, truth = blobs(n_clusters=4, per=100, dim=8, seed=13)
    res = kmeans(x, 4, init_max_points=1)  # pool of 8 k = 32 points
    assert same_partition(res.labels, truth)
    assert torch.equal(kmeans(x, 4, init_max_points=1).centroids, res.centroids)


def test_seeded_fit_is_reproducible() -> None:
    x, _ = blobs(n_clusters=8, per=30, dim=8, spread=1.0, seed=7)
    a = ResidualKMeansQuantizer(num_levels=2, codebook_size=8, seed=11).fit(x, show_progress=False)
    b = ResidualKMeansQuantizer(num_levels=2, codebook_size=8, seed=11).fit(x, show_progress=False)
    c = ResidualKMeansQuantizer(num_levels=2, codebook_size=8, seed=12).fit(x, show_progress=False)
    assert torch.equal(a.codes_, b.codes_)
    assert all(torch.equal(p, r) for p, r in zip(a.centroids, b.centroids, strict=True))
    assert not all(torch.equal(p, r) for p, r in zip(a.centroids, c.centroids, strict=True))


_SUBPROCESS_FIT = """
import hashlib, sys, torch
from genrec.tokenization.quantizers import ResidualKMeansQuantizer
x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
q = ResidualKMeansQuantizer(num_levels=2, codebook_size=8).fit(x, show_progress=False)
print(hashlib.sha256(q.codes_.numpy().tobytes() + q.centroids[1].numpy().tobytes()).hexdigest())
"""


def test_fit_is_identical_across_processes() -> None:
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=8).fit(x, show_progress=False)
    import hashlib

    here = hashlib.sha256(q.codes_.numpy().tobytes() + q.centroids[1].numpy().tobytes()).hexdigest()
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_FIT], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == here


def test_normalize_option() -> None:
    x, _ = blobs(n_clusters=4, per=20, dim=8, seed=8)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=4, normalize=True).fit(x, show_progress=False)
    assert torch.equal(q.encode(x * 3.0), q.codes_)  # scale-invariant
    assert torch.linalg.vector_norm(q.decode(q.codes_), dim=1).sub(1).abs().max() < 0.5


def _collision_data() -> torch.Tensor:
    # level 1 (K=2): {-0.01, 0.01} vs {9, 10, 11}; level 2 (K=3) sees residuals {-1, -.01, 0, .01, 1}: the two
    # items of the first group share the middle leaf while the leaves of -1 and +1 stay free under their prefix
    return torch.tensor([[-0.01, 0.0], [0.01, 0.0], [9.0, 0.0], [10.0, 0.0], [11.0, 0.0]])


def test_reassign_lowers_collisions() -> None:
    x = _collision_data()
    plain = ResidualKMeansQuantizer(num_levels=2, codebook_size=[2, 3]).fit(x, show_progress=False)
    assert plain.diagnostics(x).collision_rate[-1] == pytest.approx(2 / 5)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=[2, 3], resolve_collisions="reassign")
    q.fit(x, show_progress=False)
    assert q.diagnostics(x).collision_rate[-1] == 0.0
    assert q.fit_info["num_reassigned"] == 1 and q.fit_info["colliding_items"] == 0
    # the item nearer to the shared centroid keeps it; the other moves to its nearest free leaf
    assert torch.equal(q.codes_[:, 0], plain.codes_[:, 0])
    assert (q.codes_ != plain.codes_).any(dim=1).sum() == 1
    assert torch.equal(q.encode(x), q.codes_)  # remembered moves
    assert torch.equal(q.encode(x[1:2]), q.codes_[1:2])
    # a new item that merely resembles a moved one gets its plain nearest code
    assert torch.equal(q.encode(x + 1e-4), plain.encode(x + 1e-4))


def test_reassign_keeps_identical_embeddings_together(tmp_path: Path) -> None:
    x = torch.cat([_collision_data(), _collision_data()[1:2]])  # exact duplicate of item 1
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=[2, 3], resolve_collisions="reassign")
    q.fit(x, show_progress=False)
    assert torch.equal(q.codes_[1], q.codes_[5])  # duplicates cannot be told apart: they keep colliding
    assert q.fit_info["colliding_items"] == 2
    assert torch.equal(q.encode(x), q.codes_)
    q.save_pretrained(tmp_path)
    assert torch.equal(load_quantizer(tmp_path).encode(x), q.codes_)


# ---------------------------------------------------------------------------------------------- diagnostics


def test_diagnostics_by_hand() -> None:
    q = ResidualKMeansQuantizer.from_centroids(
        [torch.tensor([[0.0], [10.0]]), torch.tensor([[0.0], [1.0], [2.0], [3.0]])]
    )
    x = torch.tensor([[0.5], [1.0], [10.0], [0.0]])
    codes = q.encode(x)
    assert codes.tolist() == [[0, 0], [0, 1], [1, 0], [0, 0]]  # 0.5 is a tie at level 2: lowest index wins
    d = q.diagnostics(x)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert d.used_codes == [2, 2]
    assert d.utilization == pytest.approx([1.0, 0.5])
    assert d.entropy_bits == pytest.approx([h, h])
    assert d.normalized_entropy == pytest.approx([h, h / 2])
    assert d.collision_rate == pytest.approx([0.75, 0.5])
    assert d.residual_mse == pytest.approx([(0.25 + 1.0) / 4, 0.25 / 4])
    assert d.reconstruction_mse == pytest.approx(0.0625)
    assert d.input_mean_square == pytest.approx((0.25 + 1 + 100) / 4)
    assert (d.unique_codes, d.max_items_per_code) == (3, 2)
    as_dict = d.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    text = str(d)
    assert "collision" in text and "0.7500" in text and len(text.splitlines()) == 4
    stats = code_statistics(codes, [2, 4])
    assert stats["collision_rate"] == d.collision_rate


def test_diagnostics_accepts_given_codes() -> None:
    x, _ = blobs(n_clusters=4, per=10, dim=4)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=4).fit(x, show_progress=False)
    zeros = torch.zeros(40, 2, dtype=torch.long)
    d = q.diagnostics(x, zeros)
    assert d.used_codes == [1, 1] and d.collision_rate == [1.0, 1.0]
    with pytest.raises(ValueError, match="2 code rows for 40"):
        q.diagnostics(x, zeros[:2])


# ---------------------------------------------------------------------------------------------- save / load


def _fitted_quantizers(x: torch.Tensor) -> list[Quantizer]:
    return [
        ResidualKMeansQuantizer(num_levels=2, codebook_size=8).fit(x, show_progress=False),
        RandomQuantizer(num_levels=3, codebook_size=5).fit(x, show_progress=False),
        RQVAEQuantizer(
            hidden_dims=[16], latent_dim=4, num_levels=2, codebook_size=8, epochs=2, batch_size=64
        ).fit(x, show_progress=False),
    ]


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, _ = blobs(n_clusters=5, per=30, dim=8)
    for q in _fitted_quantizers(x):
        folder = tmp_path / q.quantizer_type
        q.save_pretrained(folder)
        assert (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
        loaded = load_quantizer(folder)
        assert type(loaded) is type(q)
        assert loaded.codebook_sizes == q.codebook_sizes and loaded.num_levels == q.num_levels
        assert torch.equal(loaded.encode(x), q.encode(x))
        assert torch.equal(loaded.encode(x), q.codes_)
        assert torch.equal(loaded.decode(q.codes_), q.decode(q.codes_))
        assert type(q).from_pretrained(folder).quantizer_type == q.quantizer_type
    with pytest.raises(ValueError, match="not a ResidualKMeansQuantizer"):
        ResidualKMeansQuantizer.from_pretrained(tmp_path / "random")


def test_load_errors_are_clear(tmp_path: Path) -> None:
    x, _ = blobs(n_clusters=3, per=10, dim=4)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=3).fit(x, show_progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_quantizer(tmp_path / "nowhere")
    q.save_pretrained(tmp_path / "a")
    (tmp_path / "a" / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_quantizer(tmp_path / "a")
    q.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / CONFIG_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_quantizer(tmp_path / "b")
    q.save_pretrained(tmp_path / "c")
    weights = tmp_path / "c" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_quantizer(tmp_path / "c")
    q.save_pretrained(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / CONFIG_NAME).read_text())
    cfg["codebook_sizes"] = [3, 4]
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="centroids.1"):
        load_quantizer(tmp_path / "d")
    cfg["quantizer_type"] = "vq-magic"
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown quantizer_type"):
        load_quantizer(tmp_path / "d")


def test_bad_input_is_rejected() -> None:
    x, _ = blobs(n_clusters=3, per=10, dim=4)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        q.encode(x)
    bad = x.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(ValueError, match="row 7"):
        q.fit(bad, show_progress=False)
    with pytest.raises(ValueError, match="2-D"):
        q.fit(x[0], show_progress=False)
    q.fit(x, show_progress=False)
    with pytest.raises(ValueError, match="dimension 5"):
        q.encode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="outside"):
        q.decode([[0, 3]])
    with pytest.raises(ValueError, match="resolve_collisions"):
        ResidualKMeansQuantizer(resolve_collisions="magic")


# ---------------------------------------------------------------------------------------------- RQ-VAE


def test_rqvae_loss_goes_down_and_codes_are_valid() -> None:
    x, _ = blobs(n_clusters=8, per=64, dim=16, spread=0.05, seed=9)
    x = x / 5.0
    q = RQVAEQuantizer(
        hidden_dims=[32], latent_dim=8, num_levels=2, codebook_size=8, epochs=25, batch_size=64, lr=3e-3
    )
    q.fit(x, show_progress=False)
    hist = q.fit_info["history"]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert hist[-1]["reconstruction_loss"] < 0.5 * hist[0]["reconstruction_loss"]
    codes = q.codes_
    assert codes.shape == (512, 2) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 8
    assert torch.equal(q.encode(x), codes)
    assert torch.equal(q.encode(x[10:11]), codes[10:11])
    diag = q.diagnostics(x)
    assert diag.mse_space == "latent" and diag.used_codes[0] >= 6
    assert diag.reconstruction_mse < diag.input_mean_square


def test_rqvae_training_step_restarts_dead_codes() -> None:
    x, _ = blobs(n_clusters=2, per=32, dim=8, seed=10)
    q = RQVAEQuantizer(
        in_dim=8, hidden_dims=[16], latent_dim=4, num_levels=1, codebook_size=16, dead_code_steps=1
    )
    q.train()
    first = q.training_step(x)
    assert set(first) >= {
        "loss",
        "reconstruction_loss",
        "codebook_loss",
        "commitment_loss",
        "restarted_codes",
    }
    assert bool(q.codebooks_initialized)
    assert (
        int(q.training_step((x[:2],))["restarted_codes"]) == 0
    )  # TensorDataset-style batch; <= 2 codes used
    third = q.training_step({"embeddings": x})
    assert int(third["restarted_codes"]) >= 14  # the codes the 2-row batch left unused are re-seeded
    third["loss"].backward()
    assert q.codebooks[0].grad is not None and q.encoder[0].weight.grad is not None


def test_rqvae_fit_is_reproducible() -> None:
    x, _ = blobs(n_clusters=4, per=32, dim=8, seed=11)

    def make() -> RQVAEQuantizer:
        return RQVAEQuantizer(
            hidden_dims=[16], latent_dim=4, num_levels=2, codebook_size=4, epochs=3, batch_size=32
        )

    a, b = make().fit(x, show_progress=False), make().fit(x, show_progress=False)
    assert torch.equal(a.codes_, b.codes_)
    assert all(
        torch.equal(p, r) for p, r in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_train_rqvae_with_accelerate(tmp_path: Path) -> None:
    from genrec.trainers.stages.rqvae import TRAINING_LOG_NAME, train_rqvae

    x, _ = blobs(n_clusters=4, per=32, dim=8, seed=12)
    q = RQVAEQuantizer(hidden_dims=[16], latent_dim=4, num_levels=2, codebook_size=4)
    out = train_rqvae(q, x, epochs=4, batch_size=32, lr=3e-3, output_dir=tmp_path / "rq", show_progress=False)
    assert out is q and q.fit_info["epochs"] == 4 and len(q.fit_info["history"]) == 4
    log = json.loads((tmp_path / "rq" / TRAINING_LOG_NAME).read_text())
    assert len(log["history"]) == 4
    assert torch.equal(load_quantizer(tmp_path / "rq").encode(x), q.codes_)
    # seeded: a second run from a fresh quantizer gives identical weights and codes
    again = RQVAEQuantizer(hidden_dims=[16], latent_dim=4, num_levels=2, codebook_size=4)
    train_rqvae(again, x, epochs=4, batch_size=32, lr=3e-3, show_progress=False)
    assert torch.equal(again.codes_, q.codes_)
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), q.state_dict().values(), strict=True)
    )


# ---------------------------------------------------------------------------------------------- random


def test_random_quantizer_shapes_ranges_and_determinism() -> None:
    x, _ = blobs(n_clusters=5, per=40, dim=6)
    q = RandomQuantizer(num_levels=3, codebook_size=[4, 5, 6], seed=1).fit(x, show_progress=False)
    codes = q.codes_
    assert codes.shape == (200, 3) and codes.dtype == torch.int64
    for level, k in enumerate([4, 5, 6]):
        assert int(codes[:, level].min()) >= 0 and int(codes[:, level].max()) < k
        assert len(set(codes[:, level].tolist())) == k  # 200 items cover every code
    assert torch.equal(q.encode(x), codes)
    assert torch.equal(q.encode(x[5:6]), codes[5:6])
    assert torch.equal(RandomQuantizer(3, [4, 5, 6], seed=1).fit(x).codes_, codes)
    assert not torch.equal(RandomQuantizer(3, [4, 5, 6], seed=2).fit(x).codes_, codes)
    # codes ignore item structure: items of one blob spread over codes
    assert len(set(codes[:40, 0].tolist())) > 1
    # -0.0 and 0.0 are the same embedding
    z = torch.zeros(1, 6)
    assert torch.equal(q.encode(z), q.encode(-z))
    with pytest.raises(ValueError, match="at most 8 levels"):
        RandomQuantizer(num_levels=9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kmeans_on_gpu_matches_cpu_codes() -> None:
    x, truth = blobs(n_clusters=6, per=40, dim=8)
    q = ResidualKMeansQuantizer(num_levels=2, codebook_size=6, device="cuda").fit(x, show_progress=False)
    assert q.centroids[0].is_cuda
    assert same_partition(q.codes_[:, 0], truth)
    assert torch.equal(q.encode(x.cuda()), q.codes_)
    cpu = ResidualKMeansQuantizer.from_centroids([c.cpu() for c in q.centroids])
    assert torch.equal(cpu.encode(x), q.codes_)


def test_numpy_float64_input() -> None:
    x, _ = blobs(n_clusters=3, per=10, dim=4)
    q = ResidualKMeansQuantizer(num_levels=1, codebook_size=3).fit(x.double().numpy(), show_progress=False)
    assert torch.equal(q.encode(np.asarray(x, dtype=np.float32)), q.codes_)


def test_quantize_embeddings_numbers_collisions_by_training_count(tmp_path: Path) -> None:
    from genrec.data_scripts.embeddings import ItemEmbeddings
    from genrec.tokenization.code_table import CodeTable
    from genrec.trainers.stages.quantize import quantize_embeddings

    # a, b, c have one embedding (they collide at every level); d is alone
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    path = ItemEmbeddings(["a", "b", "c", "d"], vectors, {"encoder": "x"}).save(tmp_path / "e.safetensors")
    plain = quantize_embeddings(path, tmp_path / "plain", num_levels=1, codebook_size=2, show_progress=False)
    counted = quantize_embeddings(path, tmp_path / "counted", num_levels=1, codebook_size=2, show_progress=False,
                                  item_counts={"b": 7, "c": 3})  # a is never a target: it counts 0
    def collision(result) -> dict[str, int]:
        table = CodeTable.load(result.output_dir / "tokenizer")
        return {item: int(table.codes[row, -1]) for row, item in enumerate(table.item_ids)}
    assert collision(plain) == {"a": 0, "b": 1, "c": 2, "d": 0}
    assert collision(counted) == {"a": 2, "b": 0, "c": 1, "d": 0}
    assert json.loads((tmp_path / "counted" / "quantize.json").read_text())["collision_order"] == "training count"
    assert "collision_order" not in json.loads((tmp_path / "plain" / "quantize.json").read_text())
