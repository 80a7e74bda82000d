"""One tower of TTDS's twin-tower semantic token generator (paper Sec. 4, Formulas 7, 10, 11, 13).

:class:`SemanticTokenGenerator`: an MLP encoder from the LLM's own text representation ``X`` to a latent, then
``M`` residual codebooks of ``N`` entries (nearest centroid, squared Euclidean distance), with the
straight-through assignments the DM-VAE feeds to the LLM, the token loss, and the codebook maintenance of the
code updates (data initialisation, dead-code reset, warm refit). :class:`~.modeling_ttds.TTDSForCausalLM` holds
one per tower. scipy is imported lazily, only by the codebook refit (:func:`matching_renumbering`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

__all__ = ["GeneratorOutput", "SemanticTokenGenerator", "matching_renumbering"]


@dataclass
class GeneratorOutput(ModelOutput):
    """Output of one semantic token generator (one tower).

    Attributes:
        codes: (B, M) index of the nearest centroid at each level (Formula 10).
        assignments: (B, M, N) straight-through one-hot of ``codes`` (forward: exactly one-hot; backward:
            the gradient of the soft assignment ``softmax(-distance / tau)``).
        latent: (B, d) the encoder output (the level-0 residual).
        token_loss: scalar ``L_Token`` (Formula 13), averaged over the batch (``token_loss="vq"``: codebook
            term + commitment term with stop-gradients, see :class:`SemanticTokenGenerator`).
        reconstruction_loss: scalar mean squared error of the tower's decoder, reading the quantised latent,
            against the standardised input (0 without a decoder).
    """

    codes: torch.LongTensor | None = None
    assignments: torch.FloatTensor | None = None
    latent: torch.FloatTensor | None = None
    token_loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None


class SemanticTokenGenerator(nn.Module):
    """One tower of the twin-tower semantic token generator: MLP encoder + M residual codebooks of N entries.

    The encoder is the paper's stack of linear layers (4096 -> 2048 -> 1024 -> 512 -> 256 for LLaMA-7B; here
    ``input_dim -> hidden_sizes.. -> codebook_dim``) with ReLU between them (the paper names only the widths;
    a purely linear stack would collapse to one matrix). Quantisation is residual (Formulas 10-11):
    ``i*_m = argmin_i ||r_m - c_{m,i}||^2``, ``r_{m+1} = r_m - c_{m,i*_m}``.

    What keeps the codes from collapsing (RQ-VAE practice; the paper's literal Formula 13 has none of it):

    * ``token_loss="vq"`` (default): level m contributes ``||sg[r_m] - c||^2 + commitment * ||r_m - sg[c]||^2``
      (VQ-VAE / RQ-VAE codebook + commitment loss). The literal ``||r_m - c||^2`` (``"literal"``) moves
      both sides freely, and its cheapest minimum is to shrink every latent and centroid towards one point.
    * ``decoder`` (``reconstruction=True``, default): the mirrored MLP reconstructs the standardised input
      from the quantised latent (straight-through), so the latents must keep the information that tells the
      entities apart and cannot shrink to nothing.
    * :meth:`reset_dead_codes`: unused centroids are moved onto current latents (k-means++-style sampling).
    * :meth:`quantize` with ``previous`` codes and a ``margin``: an entity keeps its old code unless the new
      one reconstructs its latent clearly better (damped code updates).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_sizes: Sequence[int],
        codebook_dim: int,
        num_levels: int,
        codebook_size: int,
        *,
        temperature: float = 1.0,
        reduction: str = "mean",
        token_loss: str = "vq",
        commitment_cost: float = 0.25,
        reconstruction: bool = True,
        codebook_update: str = "ema",
        ema_decay: float = 0.99,
        normalize_latent: bool = True,
    ) -> None:
        super().__init__()
        if token_loss not in ("vq", "literal"):
            raise ValueError(f"token_loss must be 'vq' or 'literal', got {token_loss!r}")
        if codebook_update not in ("ema", "gradient"):
            raise ValueError(f"codebook_update must be 'ema' or 'gradient', got {codebook_update!r}")
        if codebook_update == "ema" and token_loss == "literal":
            raise ValueError("token_loss='literal' moves the codebooks by gradient; use codebook_update='gradient'")
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        widths = [int(input_dim), *[int(w) for w in hidden_sizes], int(codebook_dim)]
        self.encoder = self._mlp(widths)
        self.decoder = self._mlp(widths[::-1]) if reconstruction else None
        shape = (int(num_levels), int(codebook_size), int(codebook_dim))
        self.codebook_update = codebook_update
        self.ema_decay = float(ema_decay)
        self.normalize_latent = bool(normalize_latent)
        if codebook_update == "ema":
            # Buffers, not parameters: no optimiser touches them (they are saved and checkpointed all the same).
            self.register_buffer("codebooks", torch.empty(shape))
            self.register_buffer("ema_count", torch.ones(shape[:2]))
            self.register_buffer("ema_sum", torch.empty(shape))
        else:
            self.codebooks = nn.Parameter(torch.empty(shape))
        # Fixed per-feature standardisation of the LLM representation (set from data by init_codebooks).
        self.register_buffer("input_mean", torch.zeros(int(input_dim)))
        self.register_buffer("input_scale", torch.ones(int(input_dim)))
        self.temperature = float(temperature)
        self.reduction = reduction
        self.token_loss_kind = token_loss
        self.commitment_cost = float(commitment_cost)
        self.reset_parameters()

    @staticmethod
    def _mlp(widths: Sequence[int]) -> nn.Sequential:
        """Linear layers of ``widths`` with ReLU between them (none after the last)."""
        layers: list[nn.Module] = []
        for index in range(len(widths) - 1):
            layers.append(nn.Linear(widths[index], widths[index + 1]))
            if index < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    @property
    def num_levels(self) -> int:
        """M, codebooks (code positions) per index."""
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        """N, entries per codebook."""
        return self.codebooks.shape[1]

    def reset_parameters(self) -> None:
        """He (Kaiming-normal) weights and zero biases for the encoder (and decoder); small Gaussian codebooks
        (replaced by a data initialisation).

        The variance-preserving init keeps the spread of the (standardised) input through the stack. With
        PyTorch's default Linear init each ReLU layer shrinks the signal about 2.5x while the random biases
        stay, so after four layers the latents of all entities sit within a few percent of one shared point
        and every optimiser step reshuffles their codes.
        """
        for stack in (self.encoder, self.decoder):
            if stack is None:
                continue
            linears = [m for m in stack if isinstance(m, nn.Linear)]
            for index, module in enumerate(linears):
                last = index == len(linears) - 1
                nn.init.kaiming_normal_(module.weight, nonlinearity="linear" if last else "relu")
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            nn.init.normal_(self.codebooks, std=1.0 / math.sqrt(self.codebooks.shape[-1]))
        self._sync_ema()
        self.input_mean.zero_()
        self.input_scale.fill_(1.0)

    @torch.no_grad()
    def _sync_ema(self, levels: Sequence[int] | None = None, entries: torch.Tensor | None = None) -> None:
        """Restarts the EMA statistics from the current centroids (count 1 each), after they were set directly
        (initialisation, dead-code reset); all entries of ``levels`` (default all), or only ``entries``."""
        if self.codebook_update != "ema":
            return
        for level in range(self.num_levels) if levels is None else levels:
            index = slice(None) if entries is None else entries.to(self.codebooks.device)
            self.ema_count[level, index] = 1.0
            self.ema_sum[level, index] = self.codebooks[level, index]

    @torch.no_grad()
    def _ema_step(self, level: int, residual: torch.Tensor, code: torch.Tensor) -> None:
        """One exponential-moving-average k-means step of level ``level`` on a training batch (VQ-VAE-2 /
        SoundStream practice): the centroids follow the means of the residuals assigned to them, in small
        steps, instead of Adam's scale-free steps, which are as large as a deep level's whole residual."""
        residual = residual.detach().float()
        counts = torch.bincount(code, minlength=self.codebook_size).to(residual.dtype)
        sums = torch.zeros_like(self.ema_sum[level]).index_add_(0, code, residual.to(self.ema_sum.dtype))
        decay = self.ema_decay
        self.ema_count[level].mul_(decay).add_(counts.to(self.ema_count.dtype), alpha=1 - decay)
        self.ema_sum[level].mul_(decay).add_(sums, alpha=1 - decay)
        self.codebooks.data[level] = self.ema_sum[level] / self.ema_count[level].clamp_min(1e-6).unsqueeze(-1)

    def _sq_norm(self, diff: torch.Tensor) -> torch.Tensor:
        """Squared L2 norm over the last dim, divided by the dim for ``reduction="mean"``."""
        sq = diff.pow(2).sum(-1)
        return sq / diff.shape[-1] if self.reduction == "mean" else sq

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, hidden) standardised per feature with the statistics recorded by :meth:`init_codebooks`."""
        first = self.encoder[0]
        return (x.to(dtype=first.weight.dtype) - self.input_mean) / self.input_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent (B, codebook_dim) of LLM representations ``x`` (B, hidden), computed in float32.

        ``x`` is first standardised per feature with the statistics recorded by :meth:`init_codebooks` (a
        fixed affine map, i.e. a frozen first linear layer): LLM hidden states share a large common component
        (e.g. the massive activations of a few channels) that would otherwise dominate every distance and
        push all entities onto the same codes.
        """
        return self._latent(self.encoder(self.standardize(x)))

    def _latent(self, h: torch.Tensor) -> torch.Tensor:
        """The encoder output, scaled to norm sqrt(d) per row when ``normalize_latent`` (ViT-VQGAN's l2-normalised
        codes): the latents cannot shrink, which is the cheapest way to lower the commitment loss and, with
        centroids that follow them, drives every entity onto the same codes."""
        if not self.normalize_latent:
            return h
        return F.normalize(h, dim=-1) * math.sqrt(h.shape[-1])

    @torch.no_grad()
    def set_input_statistics(self, x: torch.Tensor) -> None:
        """Records the per-feature mean and standard deviation of representations ``x`` (B, hidden)."""
        x = x.float()
        self.input_mean.copy_(x.mean(0).to(self.input_mean))
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        self.input_scale.copy_(std.clamp_min(1e-6).to(self.input_scale))

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """Quantises LLM representations ``x`` (B, hidden) into M codes with straight-through assignments."""
        standardized = self.standardize(x)
        latent = self._latent(self.encoder(standardized))
        residual = latent
        codes, assignments = [], []
        token_loss = latent.new_zeros(())
        quantized = torch.zeros_like(latent)
        for level in range(self.num_levels):
            codebook = self.codebooks[level]
            distance = (residual.unsqueeze(1) - codebook.unsqueeze(0)).pow(2).sum(-1)  # (B, N)
            code = distance.argmin(dim=-1)
            hard = F.one_hot(code, self.codebook_size).to(distance.dtype)
            soft = torch.softmax(-distance / self.temperature, dim=-1)
            assignments.append(hard + (soft - soft.detach()))  # exactly one-hot forward, soft gradient
            chosen = codebook[code]
            if self.token_loss_kind == "literal":
                token_loss = token_loss + self._sq_norm(residual - chosen).mean()
                residual = residual - chosen
            else:
                if self.codebook_update == "gradient":
                    token_loss = token_loss + self._sq_norm(residual.detach() - chosen).mean()
                token_loss = token_loss + self.commitment_cost * self._sq_norm(residual - chosen.detach()).mean()
                next_residual = residual - chosen.detach()
                if self.codebook_update == "ema" and self.training:
                    self._ema_step(level, residual, code)
                residual = next_residual
            codes.append(code)
            quantized = quantized + chosen
        reconstruction_loss = latent.new_zeros(())
        if self.decoder is not None:
            straight_through = latent + (quantized - latent).detach()
            reconstruction_loss = (self.decoder(straight_through) - standardized).pow(2).mean()
        return GeneratorOutput(
            codes=torch.stack(codes, dim=1),
            assignments=torch.stack(assignments, dim=1),
            latent=latent,
            token_loss=token_loss,
            reconstruction_loss=reconstruction_loss,
        )

    def _greedy_codes(self, latent: torch.Tensor) -> torch.LongTensor:
        """(B, M) residual nearest-centroid codes of latents (B, d)."""
        residual = latent
        codes = []
        for level in range(self.num_levels):
            codebook = self.codebooks[level]
            code = (residual.unsqueeze(1) - codebook.unsqueeze(0)).pow(2).sum(-1).argmin(dim=-1)
            codes.append(code)
            residual = residual - codebook[code]
        return torch.stack(codes, dim=1)

    def quantization_error(self, latent: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B,) squared distance between latents (B, d) and the sum of their codes' (B, M) centroids."""
        levels = torch.arange(self.num_levels, device=codes.device)
        reconstruction = self.codebooks[levels.unsqueeze(0), codes.long()].sum(1)  # (B, d)
        return (latent - reconstruction).pow(2).sum(-1)

    @torch.no_grad()
    def quantize(
        self, x: torch.Tensor, *, previous: torch.Tensor | None = None, margin: float = 0.0
    ) -> torch.LongTensor:
        """(B, M) codes of LLM representations ``x`` (no gradients).

        With ``previous`` (B, M) codes (rows with a negative entry have none) and ``margin > 0`` the update is
        damped: an entity keeps its previous code unless the new code's quantisation error is below
        ``previous error / (1 + margin)``. Without it, a tiny move of a latent across a cell border flips its
        code, and the LLM has to relearn that entity's tokens.
        """
        latent = self.encode(x)
        codes = self._greedy_codes(latent)
        if previous is None or margin <= 0:
            return codes
        previous = previous.to(codes.device).long()
        if previous.shape != codes.shape:
            raise ValueError(f"previous codes have shape {tuple(previous.shape)}, expected {tuple(codes.shape)}")
        has_previous = (previous >= 0).all(dim=1)
        safe = previous.clamp_min(0)
        keep = has_previous & (
            self.quantization_error(latent, safe) <= (1.0 + float(margin)) * self.quantization_error(latent, codes)
        )
        return torch.where(keep.unsqueeze(1), safe, codes)

    @torch.no_grad()
    def refit_codebooks(
        self, x: torch.Tensor, *, previous: torch.Tensor | None = None, iterations: int = 10, seed: int = 0
    ) -> list[int]:
        """Residual k-means of the codebooks on the current latents of ``x``, started from the current
        centroids, then renumbered to keep the previous codes' token ids where the cells persist.

        Between two code updates a small LLM moves its representations so far that almost every entity lands
        in another cell of the old centroids (measured: 98 % on ML-100K), and the old centroids, fitted to
        other latents, leave cells empty and crowd the rest (item collision rate 0.60 -> 0.80). Lloyd
        iterations from the current centroids (unused ones first moved onto latents, as
        :meth:`reset_dead_codes` does) follow the latents while keeping each centroid's identity; a k-means
        from a fresh random start would renumber everything (measured: 92 % of the codes changed on an
        update right after the warm-up). The renumbering (per level, the one-to-one assignment of centroid ids
        that keeps the most entities on their previous id, :func:`matching_renumbering`) then undoes any swap.
        ``previous``: (B, M) codes, rows with a negative entry ignored. Re-fits the input standardisation to
        ``x`` first, as :meth:`init_codebooks` does. Returns the number of unused centroids moved per level.
        """
        self.set_input_statistics(x)
        dead = self.reset_dead_codes(x, seed=seed)
        self.init_codebooks(x, iterations=iterations, seed=seed, warm_start=True)
        if previous is None:
            return dead
        new = self._greedy_codes(self.encode(x)).cpu()
        previous = previous.cpu().long()
        rows = (previous >= 0).all(dim=1)
        for level in range(self.num_levels):
            order = matching_renumbering(new[rows, level], previous[rows, level], self.codebook_size)
            self.codebooks[level].copy_(self.codebooks[level][order.to(self.codebooks.device)].clone())
        self._sync_ema()
        return dead

    @torch.no_grad()
    def reset_dead_codes(self, x: torch.Tensor, *, seed: int = 0) -> list[int]:
        """Moves the centroids no entity of ``x`` (B, hidden) uses onto current residuals; returns the count per
        level.

        Level by level (the residuals of level m depend on the codes above it), each unused centroid is
        replaced by a residual drawn with probability proportional to its squared distance from its current
        centroid (k-means++ seeding): the new centroids split the worst-quantised, most crowded cells, which is
        where collisions come from. Seeded and on CPU, hence identical across processes and resumes.
        """
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        residual = self.encode(x).float().cpu()
        counts: list[int] = []
        for level in range(self.num_levels):
            codebook = self.codebooks[level]
            centroids = codebook.detach().float().cpu()
            distance = torch.cdist(residual, centroids).pow(2)
            code = distance.argmin(dim=1)
            usage = torch.bincount(code, minlength=self.codebook_size)
            dead = torch.nonzero(usage == 0).flatten()
            if dead.numel():
                error = distance.gather(1, code.unsqueeze(1)).squeeze(1) + 1e-12
                replace = dead.numel() > residual.shape[0]
                picks = torch.multinomial(error, dead.numel(), replacement=replace, generator=generator)
                centroids[dead] = residual[picks]
                codebook.data.copy_(centroids.to(codebook))
                self._sync_ema([level], dead)
                code = torch.cdist(residual, centroids).argmin(dim=1)
            counts.append(int(dead.numel()))
            residual = residual - centroids[code]
        return counts

    @torch.no_grad()
    def init_codebooks(
        self, x: torch.Tensor, *, iterations: int = 10, seed: int = 0, warm_start: bool = False
    ) -> None:
        """Input statistics + residual k-means initialisation of the codebooks from representations ``x``.

        The paper does not say how the codebooks start; a data initialisation (as in RQ-VAE / TIGER) keeps the
        first codes spread over the items instead of collapsing onto a few random centroids. Deterministic for
        a given ``seed``. With fewer points than codes, the points are reused with small seeded jitter.
        ``warm_start``: the Lloyd iterations start from the current centroids and the input statistics are
        left as they are (:meth:`refit_codebooks`).
        """
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if not warm_start:
            self.set_input_statistics(x)
        residual = self.encode(x).float().cpu()
        n, size = residual.shape[0], self.codebook_size
        if n == 0:
            raise ValueError("init_codebooks needs at least one representation")
        for level in range(self.num_levels):
            if warm_start:
                start = self.codebooks[level].detach().float().cpu().clone()
            elif n >= size:
                start = residual[torch.randperm(n, generator=generator)[:size]].clone()
            else:
                picks = torch.randint(n, (size,), generator=generator)
                jitter = torch.randn(size, residual.shape[1], generator=generator) * (residual.std() + 1e-6) * 0.01
                start = residual[picks] + jitter
            centroids = start
            for _ in range(iterations):
                assign = torch.cdist(residual, centroids).argmin(dim=1)
                sums = torch.zeros_like(centroids).index_add_(0, assign, residual)
                counts = torch.bincount(assign, minlength=size).unsqueeze(1).to(residual.dtype)
                centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
            assign = torch.cdist(residual, centroids).argmin(dim=1)
            self.codebooks[level].copy_(centroids.to(self.codebooks.dtype))
            residual = residual - centroids[assign]
        self._sync_ema()


def matching_renumbering(new: torch.Tensor, old: torch.Tensor, size: int) -> torch.LongTensor:
    """``order`` such that new id ``order[k]`` takes id ``k``: the one-to-one renumbering of ``size`` cluster
    ids that keeps the most entities on their old id, given each entity's ``new`` and ``old`` id (1-D)."""
    from scipy.optimize import linear_sum_assignment

    overlap = torch.zeros(size, size, dtype=torch.long)  # [new id, old id]
    overlap.index_put_((new.long().cpu(), old.long().cpu()), torch.ones(new.numel(), dtype=torch.long),
                       accumulate=True)
    new_ids, old_ids = linear_sum_assignment(overlap.numpy(), maximize=True)
    order = torch.empty(size, dtype=torch.long)
    order[torch.as_tensor(old_ids)] = torch.as_tensor(new_ids)
    return order
