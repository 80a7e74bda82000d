"""TIGER's RQ-VAE: an MLP auto-encoder whose latent is residual-quantized by learned codebooks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .base import (
    CONFIG_NAME,
    EmbeddingsLike,
    Quantizer,
    QuantizerDiagnostics,
    as_codebook_sizes,
    as_float_embeddings,
    l2_normalize,
)
from .kmeans import kmeans, nearest_exact, row_chunks

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------
# RQ-VAE (TIGER)
# ----------------------------------------------------------------------------------------------------------


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEQuantizer(Quantizer, nn.Module):
    """TIGER's RQ-VAE: MLP encoder -> residual quantization by L learned codebooks -> MLP decoder.

    Training (:meth:`training_step`, shared by :meth:`fit` and ``genrec.trainers.stages.rqvae.train_rqvae``)
    minimises ``||x - dec(z_q)||^2 + sum_l ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2`` (reconstruction,
    codebook and commitment terms; squared norms averaged over the batch), with the straight-through
    estimator carrying reconstruction gradients from ``z_q`` to the encoder. Codebooks are initialised by
    k-means on the first training batch's residuals, level by level; a code that no batch used for
    ``dead_code_steps`` consecutive training steps is re-seeded with a random residual of the current batch.
    The quantization itself always runs in float32 (also under mixed precision).

    Codes are in the latent space, so the diagnostics' residual MSE is a latent-space number; ``decode``
    runs the decoder on the summed codewords and returns an input-space reconstruction. ``encode`` runs the
    encoder in float64, so an item's code does not depend on the other items in its batch.

    Args:
        in_dim: embedding dimension; ``None`` = taken from the first ``fit`` / ``train_rqvae`` data.
        hidden_dims / latent_dim: encoder widths (the decoder mirrors them); TIGER: [512, 256, 128] -> 32.
        num_levels / codebook_size: L and K per level (TIGER: 3 x 256).
        beta: commitment weight (0.25).
        dead_code_steps: restart threshold in training steps (0 disables restarts).
        epochs / batch_size / lr: what :meth:`fit` trains with (Adam).
        seed: weights, k-means initialisation, shuffling and restarts are all drawn from it.
        normalize: L2-normalise inputs first (off by default).
    """

    quantizer_type = "rqvae"

    def __init__(
        self,
        in_dim: int | None = None,
        hidden_dims: Sequence[int] = (512, 256, 128),
        latent_dim: int = 32,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 256,
        *,
        beta: float = 0.25,
        dead_code_steps: int = 50,
        epochs: int = 50,
        batch_size: int = 1024,
        lr: float = 1e-3,
        seed: int = 2024,
        normalize: bool = False,
        kmeans_init_iters: int = 25,
        chunk_size: int = 4096,
    ) -> None:
        nn.Module.__init__(self)
        self.num_levels = int(num_levels)
        self.codebook_sizes = as_codebook_sizes(codebook_size, self.num_levels)
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.dead_code_steps = int(dead_code_steps)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self.kmeans_init_iters = int(kmeans_init_iters)
        self.chunk_size = int(chunk_size)
        if min(self.latent_dim, self.batch_size, self.epochs) < 1:
            raise ValueError(
                f"latent_dim, batch_size and epochs must be >= 1 (got {latent_dim}, {batch_size}, {epochs})"
            )
        self._dim: int | None = None
        self.encoder: nn.Sequential | None = None
        self.decoder: nn.Sequential | None = None
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.zeros(k, self.latent_dim)) for k in self.codebook_sizes]
        )
        self.register_buffer("codebooks_initialized", torch.zeros((), dtype=torch.bool))
        for level, k in enumerate(self.codebook_sizes):
            self.register_buffer(
                f"steps_since_used_{level}", torch.zeros(k, dtype=torch.long), persistent=False
            )
        self._restart_generator = torch.Generator().manual_seed(self.seed + 1)
        self.codes_ = None
        self.fit_info: dict[str, Any] = {}
        if in_dim is not None:
            self.build(int(in_dim))

    def build(self, in_dim: int) -> None:
        """Create the encoder/decoder for ``in_dim`` inputs with seeded weights (no-op when already built)."""
        if self._dim is not None:
            if in_dim != self._dim:
                raise ValueError(f"this RQ-VAE was built for {self._dim}-d inputs, got {in_dim}-d")
            return
        device = self.codebooks[0].device
        self.encoder = _mlp([in_dim, *self.hidden_dims, self.latent_dim]).to(device)
        self.decoder = _mlp([self.latent_dim, *reversed(self.hidden_dims), in_dim]).to(device)
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for module in [*self.encoder, *self.decoder]:
                if isinstance(module, nn.Linear):  # torch's default Linear init, drawn from our generator
                    w = torch.empty_like(module.weight, device="cpu")
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                    bound = 1.0 / math.sqrt(module.in_features)
                    b = torch.empty_like(module.bias, device="cpu").uniform_(-bound, bound, generator=g)
                    module.weight.copy_(w)
                    module.bias.copy_(b)
            for cb in self.codebooks:
                cb.copy_(torch.empty(cb.shape).uniform_(-1.0 / cb.shape[0], 1.0 / cb.shape[0], generator=g))
        self._dim = int(in_dim)

    # -- training --------------------------------------------------------------------------------------------

    def _init_codebooks(self, z: torch.Tensor) -> None:
        """k-means on the first batch's residuals, level by level (TIGER's initialisation)."""
        g = torch.Generator().manual_seed(self.seed + 2)
        r = z.detach().float()
        if r.shape[0] < max(self.codebook_sizes):
            logger.warning(
                "RQ-VAE codebook init: first batch has %d rows for %d codes; some codes start as duplicates "
                "(dead-code restarts will re-seed them)",
                r.shape[0],
                max(self.codebook_sizes),
            )
        with torch.no_grad():
            for level, k in enumerate(self.codebook_sizes):
                res = kmeans(r, k, max_iter=self.kmeans_init_iters, generator=g, chunk_size=self.chunk_size)
                self.codebooks[level].copy_(res.centroids)
                r = r - res.centroids[res.labels]
            self.codebooks_initialized.fill_(True)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Training losses for one batch (see :meth:`training_step`); ``forward`` so that Accelerate / DDP
        wrappers see the call."""
        x = _batch_tensor(batch)
        if self.encoder is None or self.decoder is None:
            self.build(x.shape[1])
        assert self.encoder is not None and self.decoder is not None
        x = x.to(self.codebooks[0].device)
        if self.normalize:
            x = l2_normalize(x)
        z = self.encoder(x)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.training and not bool(self.codebooks_initialized):
                self._init_codebooks(z)
            r = z
            quantized = torch.zeros_like(z)
            codebook_loss = z.new_zeros(())
            commitment_loss = z.new_zeros(())
            restarted = 0
            for level, cb in enumerate(self.codebooks):
                if self.training and self.dead_code_steps > 0:
                    restarted += self._restart_dead_codes(level, r.detach())
                w = cb.float()
                idx = nearest_exact(r.detach(), w.detach(), w.detach().double())
                e = w[idx]
                codebook_loss = codebook_loss + (e - r.detach()).square().sum(1).mean()
                commitment_loss = commitment_loss + (r - e.detach()).square().sum(1).mean()
                if self.training:
                    with torch.no_grad():
                        steps = getattr(self, f"steps_since_used_{level}")
                        steps += 1
                        steps[idx] = 0
                quantized = quantized + e.detach()
                r = r - e.detach()
            z_q = z + (quantized - z).detach()  # straight-through
        x_hat = self.decoder(z_q)
        recon = (x_hat.float() - x.float()).square().sum(1).mean()
        loss = recon + codebook_loss + self.beta * commitment_loss
        return {
            "loss": loss,
            "reconstruction_loss": recon.detach(),
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
            "restarted_codes": torch.tensor(restarted),
        }

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Losses for one batch — ``loss`` (to backpropagate), ``reconstruction_loss``, ``codebook_loss``,
        ``commitment_loss`` and ``restarted_codes``. Initialises the codebooks on the first call and restarts
        dead codes (in place, before they are used) when the module is in training mode."""
        return self(batch)

    def _restart_dead_codes(self, level: int, residual: torch.Tensor) -> int:
        steps = getattr(self, f"steps_since_used_{level}")
        dead = (steps >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        pick = torch.randint(residual.shape[0], (dead.numel(),), generator=self._restart_generator)
        with torch.no_grad():
            self.codebooks[level][dead] = residual[pick.to(residual.device)].to(self.codebooks[level].dtype)
            steps[dead] = 0
        return int(dead.numel())

    def fit(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> RQVAEQuantizer:
        """Train with a plain seeded torch loop (Adam, ``epochs`` x ``batch_size``) on the module's device;
        codes of the fitted items land in ``self.codes_``. Training continues from the current weights: a
        fresh quantizer with the same seed and data reproduces a fit exactly."""
        start = time.perf_counter()
        x = as_float_embeddings(embeddings)
        self.build(x.shape[1])
        device = self.codebooks[0].device
        x = x.to(device)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.seed)
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        self.train()
        history: list[dict[str, float]] = []
        bar = tqdm(
            total=self.epochs * steps_per_epoch, desc="RQ-VAE", disable=None if show_progress else True
        )
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=g).to(device)
            totals: dict[str, float] = {}
            for s, e in row_chunks(n, self.batch_size):
                out = self.training_step(x[perm[s:e]])
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                for key, v in out.items():
                    totals[key] = totals.get(key, 0.0) + float(v.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{float(out['loss'].detach()):.4g}")
            history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in totals.items()}})
        bar.close()
        self.eval()
        self.codes_ = self.encode(x)
        self.fit_info = {
            "num_items": n,
            "epochs": self.epochs,
            "history": history,
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    # -- encode / decode -----------------------------------------------------------------------------------

    def _latent64(self, x: torch.Tensor) -> torch.Tensor:
        assert self.encoder is not None
        params = {k: v.double() for k, v in self.encoder.named_parameters()}
        return torch.func.functional_call(self.encoder, params, (x.double(),))

    @torch.no_grad()
    def encode(self, embeddings: EmbeddingsLike) -> torch.Tensor:
        """Codes (N, L): encoder (float64) then nearest codeword per level on the latent residuals."""
        self._require_fitted()
        device = self.codebooks[0].device
        x = self._prepare(embeddings, device)
        codes = torch.empty(x.shape[0], self.num_levels, dtype=torch.long)
        books = [cb.detach().float() for cb in self.codebooks]
        books64 = [b.double() for b in books]
        for s, e in row_chunks(x.shape[0], self.chunk_size):
            r = self._latent64(x[s:e])
            for level in range(self.num_levels):
                # screen in float32, re-rank in float64: same rule as k-means, batch-independent
                lab = nearest_exact(r.float(), books[level], books64[level])
                codes[s:e, level] = lab.cpu()
                r = r - books64[level][lab]
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Decoder output (N, in_dim) for the sum of the chosen codewords."""
        self._require_fitted()
        assert self.decoder is not None
        c = self._check_codes(codes).to(self.codebooks[0].device)
        z_q = sum(self.codebooks[level].detach().float()[c[:, level]] for level in range(self.num_levels))
        return self.decoder(z_q).float().cpu()

    @torch.no_grad()
    def _residual_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        device = self.codebooks[0].device
        totals = [0.0] * self.num_levels
        for s, e in row_chunks(x.shape[0], self.chunk_size):
            r = self._latent64(x[s:e].to(device))
            c = codes[s:e].to(device)
            for level in range(self.num_levels):
                r = r - self.codebooks[level].detach().double()[c[:, level]]
                totals[level] += float(r.square().sum())
        return [t / (x.shape[0] * self.latent_dim) for t in totals]

    def diagnostics(
        self, embeddings: EmbeddingsLike, codes: torch.Tensor | np.ndarray | None = None
    ) -> QuantizerDiagnostics:
        """See :meth:`Quantizer.diagnostics`; residual MSE is measured in the latent space."""
        was_training = self.training
        self.eval()
        try:
            return Quantizer.diagnostics(self, embeddings, codes)
        finally:
            self.train(was_training)

    def _to_device(self, device: torch.device) -> None:
        self.to(device)

    @property
    def is_fitted(self) -> bool:
        """Built and with initialised (trained or loaded) codebooks."""
        return self._dim is not None and bool(self.codebooks_initialized)

    # -- save / load -------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Architecture, training defaults and the last fit's statistics."""
        return {
            "in_dim": self._dim,
            "hidden_dims": list(self.hidden_dims),
            "latent_dim": self.latent_dim,
            "num_levels": self.num_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "beta": self.beta,
            "dead_code_steps": self.dead_code_steps,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "normalize": self.normalize,
            "kmeans_init_iters": self.kmeans_init_iters,
            "chunk_size": self.chunk_size,
            "fit_info": self.fit_info,
        }

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
    ) -> RQVAEQuantizer:
        try:
            q = cls(
                in_dim=int(config["in_dim"]),
                hidden_dims=config["hidden_dims"],
                latent_dim=config["latent_dim"],
                num_levels=config["num_levels"],
                codebook_size=config["codebook_sizes"],
                beta=config["beta"],
                dead_code_steps=config["dead_code_steps"],
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                lr=config["lr"],
                seed=config["seed"],
                normalize=config["normalize"],
                kmeans_init_iters=config["kmeans_init_iters"],
                chunk_size=config["chunk_size"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: its {CONFIG_NAME} is incomplete or invalid ({err!r})") from err
        try:
            q.load_state_dict(tensors, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{source} does not match its {CONFIG_NAME}: {err}") from err
        q.fit_info = dict(config.get("fit_info") or {})
        q.eval()
        return q


def _batch_tensor(batch: Any) -> torch.Tensor:
    """The embeddings of a training batch: a tensor, a (tensor, ...) tuple/list (TensorDataset) or a dict
    with an ``"embeddings"`` key."""
    if isinstance(batch, dict):
        batch = batch["embeddings"]
    elif isinstance(batch, (list, tuple)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 2:
        raise ValueError(
            "an RQ-VAE batch is a (B, D) tensor, a tuple whose first item is one, or {'embeddings': ...}"
        )
    return batch.float()
