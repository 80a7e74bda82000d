"""TTDS-style LLM recommender: a LLaMA-architecture causal LM + LoRA + twin-tower semantic token generators.

Paper: "Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic Semantic Token
Generator" (TTDS), Sec. 4. The pieces and where they live here:

* **LLM backbone f** (Formula 6, 8, 9): any ``AutoModelForCausalLM`` of the LLaMA family, wrapped, not
  subclassed (see :class:`TTDSForCausalLM`), fine-tuned with LoRA (peft) whose vocabulary is extended with
  ``N*M`` item tokens and ``N*M`` user tokens (+ the reserved collision tokens of Sec. 4.2.5).
* **Twin-tower semantic token generator** (Formulas 7, 10, 11): :class:`SemanticTokenGenerator`, one for
  items and one for users: an MLP encoder from the LLM's own text representation ``X`` to a latent, then
  ``M`` residual codebooks of ``N`` entries (nearest centroid, squared Euclidean distance).
* **DM-VAE** (Formulas 12-14): :meth:`TTDSForCausalLM.dm_vae_loss`: ``L_ID = ||X^S - X^I||^2`` between the
  LLM's representation of the item's (user's) semantic-token sequence and of its text, and
  ``L_Token = sum_m ||r_{m-1} - c*_{m-1}||^2``. The overall loss (Formula 15) is
  ``L = L_LLM + alpha * (L_ID + beta * L_Token)``.

Interpretations (the paper leaves these open; see also docs/ttds.md):

* Gradients cross the discrete codes with a straight-through one-hot: the token embedding fed to the LLM
  for level ``m`` is ``(hard + (soft - sg(soft))) @ E_m`` where ``hard`` is the one-hot of the nearest
  centroid, ``soft = softmax(-||r_m - c||^2 / tau)`` and ``E_m`` the embedding rows of level ``m``'s
  tokens. The forward value is exactly the embedding of the chosen token; the backward pass reaches the
  encoder and the codebooks through the distances (and the embedding rows directly). By default
  (``tower_id_gradient="centered"``) the batch mean of the assignment gradient is removed before it reaches
  the towers: measured on ML-100K with a tiny LLaMA, the plain estimator drives all entities onto the same
  codes within tens of warm-up steps (docs/ttds.md).
* The tower standardises its input per feature (statistics of all entities' ``X``, recorded at the data
  initialisation of the codebooks, a frozen affine layer), uses He-initialised linear layers with zero
  biases, and its codebooks start from residual k-means over the entities' latents.
* ``X^I`` (the text representation) is a stop-gradient target and tower input: the LLM learns from
  ``L_LLM`` and from the ``X^S`` side of ``L_ID``. Letting ``L_ID`` also move ``X^I`` would reward
  collapsing every representation to one point.
* ``L_Token`` is written without stop-gradients, exactly as Formula 13: it moves both the residuals
  (encoder) and the chosen centroids.
* ``X`` is the mean of the decoder's last (normalised) hidden states over the text tokens, bos and padding
  excluded (``pooling="mean"``), or the last text token's state (``pooling="last"``).

``modeling`` imports only torch / transformers / tokenizers / safetensors / numpy; peft is imported lazily
where LoRA is created or loaded (it is a dependency of genrec, so the lazy import only keeps this file
loadable as Hub remote code and fails with a clear message if peft is missing); scipy likewise, only by the
codebook refit of the code updates (:func:`matching_renumbering`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import ModelOutput

from .configuration_ttds import TTDSConfig
from .constrained_decoding import SemanticIDLogitsProcessor

logger = logging.getLogger(__name__)

__all__ = [
    "GeneratorOutput",
    "SemanticTokenGenerator",
    "TTDSForCausalLM",
    "TTDSOutput",
    "TTDSPreTrainedModel",
    "extend_tokenizer",
]

ADAPTER_DIR = "adapter"
GENERATORS_FILE = "generators.safetensors"
#: With ``config.train_base``: the trained base LLM's own weights (every LLM tensor but LoRA's and the new
#: token rows', which the adapter holds), laid over the base loaded by name.
BASE_WEIGHTS_FILE = "base_weights.safetensors"
#: The files a saved TTDS model consists of (the base LLM is referenced by name, never copied).
TTDS_FILES = ("config.json", f"{ADAPTER_DIR}/adapter_config.json", f"{ADAPTER_DIR}/adapter_model.safetensors",
              GENERATORS_FILE)
_HUB_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token", "proxies")


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pops the Hub download arguments of a ``from_pretrained`` call (``AutoModel*`` passes them along)."""
    return {name: kwargs.pop(name) for name in _HUB_KWARGS if kwargs.get(name) is not None}


def resolve_ttds_folder(name_or_path: str | Path, **hub_kwargs: Any) -> Path:
    """The local folder of a saved TTDS model: ``name_or_path`` itself, or the Hub cache snapshot of a repo id.

    A repo id is fetched file by file with ``transformers.utils.cached_file`` (the Hub download every
    ``from_pretrained`` uses: ``HF_ENDPOINT``, cache, offline mode, ``revision``); the files land in one
    snapshot folder with the repo's layout, which is returned. Missing files are a clear error.
    """
    from transformers.utils import cached_file

    directory = Path(name_or_path).expanduser()
    if directory.is_dir():
        for needed in TTDS_FILES:
            if not (directory / needed).is_file():
                raise FileNotFoundError(f"{directory / needed} is missing: {directory} is not a complete saved TTDS model")
        return directory
    name = str(name_or_path)
    if directory.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such folder (and not a Hub repo id); it needs config.json")
    root: Path | None = None
    for needed in TTDS_FILES:
        folder, _, filename = needed.rpartition("/")
        path = cached_file(name, filename, subfolder=folder, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if path is None:
            raise FileNotFoundError(f"the Hub repo {name} has no {needed}: not a saved TTDS model")
        if needed == "config.json":
            root = Path(path).parent
    assert root is not None
    train_base = json.loads((root / "config.json").read_text()).get("train_base")
    if train_base and cached_file(name, BASE_WEIGHTS_FILE, _raise_exceptions_for_missing_entries=False,
                                  **hub_kwargs) is None:
        raise FileNotFoundError(f"the Hub repo {name} has no {BASE_WEIGHTS_FILE} (its config says train_base)")
    return root
TOWERS = ("item", "user")
# Base-config fields that must agree between the base found at reload time and the one trained on.
_ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)


def _require_peft() -> Any:
    """Imports peft, or explains that LoRA needs it."""
    try:
        import peft
    except ImportError as error:  # pragma: no cover - peft is a declared dependency of genrec
        raise ImportError(
            "TTDSForCausalLM fine-tunes the LLM with LoRA and needs the `peft` package: pip install 'peft>=0.17'"
        ) from error
    return peft


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silences the deprecation warning peft triggers in transformers 5.x (``is_gradient_checkpointing``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


# ------------------------------------------------------------------------------------------------ tokenizer


def extend_tokenizer(tokenizer: PreTrainedTokenizerBase, config: TTDSConfig) -> PreTrainedTokenizerBase:
    """Adds the item (and user) semantic tokens to ``tokenizer`` in place and records their ids in ``config``.

    Tokens are added in a fixed order (item levels a.., item collision p, then the same for users) so that
    the code ``c`` of level ``m`` is token ``offset + m * N + c`` (the layout the constrained decoding
    expects). A tokenizer without a pad token gets ``<pad>`` (added before the semantic tokens): left-padded
    batched generation needs one, and reusing eos or unk as pad would make padding indistinguishable from
    text. Calling it again on an already extended tokenizer only checks that the layout agrees.

    Sets ``config.base_vocab_size`` (first call only), ``config.item_token_offset``,
    ``config.user_token_offset`` (``None`` without a user tower) and ``config.vocab_size``.
    """
    towers = ["item", "user"] if config.user_tower else ["item"]
    names = {tower: config.semantic_token_names(tower) for tower in towers}
    vocab = tokenizer.get_vocab()
    present = [name in vocab for tower in towers for name in names[tower]]
    if all(present):
        offsets = {tower: vocab[names[tower][0]] for tower in towers}
    elif any(present):
        raise ValueError(
            "the tokenizer holds some but not all TTDS semantic tokens: it was extended with another "
            "num_levels / codebook_size / num_collision_tokens; start again from the base tokenizer"
        )
    else:
        if config.base_vocab_size is None:
            config.base_vocab_size = len(tokenizer)
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        offsets = {}
        for tower in towers:
            offsets[tower] = len(tokenizer)
            added = tokenizer.add_tokens(names[tower], special_tokens=False)
            if added != len(names[tower]):
                raise ValueError(
                    f"only {added} of {len(names[tower])} {tower} tokens could be added to the tokenizer (some "
                    "strings already existed); use a base tokenizer without '<item_*>' / '<user_*>' tokens"
                )
    for tower in towers:
        ids = tokenizer.convert_tokens_to_ids(names[tower])
        expected = list(range(offsets[tower], offsets[tower] + len(names[tower])))
        if ids != expected:
            raise ValueError(
                f"the {tower} semantic tokens are not contiguous in the tokenizer (ids {ids[:3]}..); the "
                "constrained decoding needs token id = offset + level * N + code"
            )
        stored = config.item_token_offset if tower == "item" else config.user_token_offset
        if stored is not None and stored != offsets[tower]:
            raise ValueError(
                f"the tokenizer's {tower} tokens start at id {offsets[tower]} but the config says "
                f"{stored}: this tokenizer does not belong to this model"
            )
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token; left-padded batch generation needs one")
    config.item_token_offset = offsets["item"]
    config.user_token_offset = offsets.get("user")
    config.vocab_size = len(tokenizer)
    return tokenizer


# ------------------------------------------------------------------------------------------------ towers


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


class _CenterGradient(torch.autograd.Function):
    """Identity forward; backward removes the gradient's mean over the batch (dim 0).

    Applied to the straight-through assignments inside ``L_ID``: the batch-mean of their gradient says "move
    every entity towards the same tokens" (it comes from the part of ``X^I`` all entities share) and, left in,
    collapses the codes of a young model onto a few tokens; the entity-specific remainder is what an encoder
    of distinct codes needs.
    """

    @staticmethod
    def forward(ctx: Any, assignments: torch.Tensor) -> torch.Tensor:
        return assignments.view_as(assignments)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad - grad.mean(dim=0, keepdim=True)


# ------------------------------------------------------------------------------------------------ model


@dataclass
class TTDSOutput(ModelOutput):
    """Output of :meth:`TTDSForCausalLM.forward`.

    Attributes:
        loss: ``L_LLM + alpha * (L_ID + beta * L_Token + gamma * L_Rec)`` (Formula 15, plus the towers'
            reconstruction loss weighted by ``tower_reconstruction_weight``), with the DM-VAE terms summed over
            the towers whose texts were given; ``L_LLM`` alone when none were.
        logits: the LLM's logits over the extended vocabulary.
        lm_loss: ``L_LLM`` (mean token negative log-likelihood of the answers, Formula 9).
        id_loss: ``L_ID`` (Formula 12), summed over the towers given.
        token_loss: ``L_Token`` (Formula 13), summed over the towers given.
        reconstruction_loss: the towers' decoder reconstruction loss, summed over the towers given.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    id_loss: torch.FloatTensor | None = None
    token_loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None


class TTDSPreTrainedModel(PreTrainedModel):
    """Base class wiring :class:`TTDSConfig` into ``transformers``."""

    config_class = TTDSConfig
    base_model_prefix = "ttds"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    def _init_weights(self, module: nn.Module) -> None:
        """Initialises the towers (the wrapped LLM is never touched: it arrives with its own weights)."""
        if isinstance(module, SemanticTokenGenerator):
            module.reset_parameters()


class TTDSForCausalLM(TTDSPreTrainedModel):
    """The TTDS recommender: a LoRA-tuned causal LM over an extended vocabulary + twin-tower generators.

    Composition, not subclassing: ``self.llm`` is a ``peft.PeftModel`` around any LLaMA-architecture
    ``AutoModelForCausalLM`` (Llama, Mistral, Qwen2, a tiny random ``LlamaConfig`` model, ...), and the
    towers are ordinary modules beside it. This keeps the run folder small (config + LoRA adapter with the
    new token rows + towers, never a copy of the 7B base, which is reloaded by name), lets one code path
    serve every LLaMA-family base, and uses peft's own save/load for the adapter.

    Build with :meth:`from_base` (training) or :meth:`from_pretrained` (a saved run). ``forward`` returns
    :class:`TTDSOutput`; ``generate`` is the LLM's; :meth:`recommend` runs constrained beam search over item
    codes only.
    """

    def __init__(self, config: TTDSConfig, llm: nn.Module | None = None) -> None:
        super().__init__(config)
        hidden = config.llm_hidden_size
        tower_kwargs = {
            "input_dim": hidden,
            "hidden_sizes": config.resolved_generator_hidden_sizes,
            "codebook_dim": config.resolved_codebook_dim,
            "num_levels": config.num_levels,
            "codebook_size": config.codebook_size,
            "temperature": config.st_temperature,
            "reduction": config.dm_vae_reduction,
            "token_loss": config.dm_vae_token_loss,
            "commitment_cost": config.commitment_cost,
            "reconstruction": config.tower_reconstruction_weight > 0,
            "codebook_update": config.codebook_update,
            "ema_decay": config.codebook_ema_decay,
            "normalize_latent": config.normalize_latent,
        }
        self.item_generator = SemanticTokenGenerator(**tower_kwargs)
        self.user_generator = SemanticTokenGenerator(**tower_kwargs) if config.user_tower else None
        # post_init runs before the LLM is attached so that transformers' weight initialisation can never
        # touch the pretrained (or LoRA) weights.
        self.post_init()
        if llm is None:
            llm = self._random_llm(config)
        self.llm = llm

    # ------------------------------------------------------------------------------- construction

    @staticmethod
    def _random_llm(config: TTDSConfig) -> nn.Module:
        """A randomly initialised base LLM of ``config.llm_config`` with the extended vocabulary and LoRA."""
        # imported here: at module level it would re-enter genrec's Auto registration mid-import
        from transformers import AutoConfig, AutoModelForCausalLM

        llm_config = AutoConfig.for_model(**config.llm_config)
        base = AutoModelForCausalLM.from_config(llm_config)
        if config.vocab_size is None:
            raise ValueError("TTDSConfig.vocab_size is not set: extend the tokenizer first (extend_tokenizer)")
        base.resize_token_embeddings(config.vocab_size, mean_resizing=False)
        return TTDSForCausalLM._wrap_lora(base, config)

    @staticmethod
    def _embedding_module_names(base: nn.Module) -> tuple[str, str | None]:
        """Short names of the input embedding and (if untied) the output embedding modules of ``base``."""
        names = {id(module): name for name, module in base.named_modules()}
        inp = base.get_input_embeddings()
        out = base.get_output_embeddings()
        if id(inp) not in names:
            raise ValueError("cannot locate the base model's input embedding module")
        in_name = names[id(inp)].rsplit(".", 1)[-1]
        if out is None or out.weight is inp.weight:
            return in_name, None
        return in_name, names[id(out)].rsplit(".", 1)[-1]

    @staticmethod
    def _wrap_lora(base: nn.Module, config: TTDSConfig) -> nn.Module:
        """Wraps ``base`` (already resized) in LoRA with every added token row trainable.

        ``trainable_token_indices`` (not ``modules_to_save``): only the ``vocab_size - base_vocab_size`` new
        rows of the input embedding and of an untied LM head train and are saved (for Llama-2-7B: 2,560 x 4096
        x 2 values instead of two full 32k x 4096 matrices), the original rows stay the base's, and the saved
        rows *replace* the base's rows on load, so the random initialisation of the resized rows never leaks
        into a reloaded model.
        """
        peft = _require_peft()
        if config.base_vocab_size is None or config.vocab_size is None:
            raise ValueError("TTDSConfig.base_vocab_size / vocab_size are not set: call extend_tokenizer first")
        new_rows = list(range(config.base_vocab_size, config.vocab_size))
        in_name, out_name = TTDSForCausalLM._embedding_module_names(base)
        indices = {in_name: new_rows}
        if out_name is not None:
            indices[out_name] = new_rows
        lora_config = peft.LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            trainable_token_indices=indices,
            task_type="CAUSAL_LM",
            revision=config.base_model_revision,  # adapter_config.json pins the base (AutoPeftModel reads it)
        )
        with _quiet_peft():
            return peft.get_peft_model(base, lora_config)

    @classmethod
    def from_base(
        cls,
        config: TTDSConfig,
        tokenizer: PreTrainedTokenizerBase,
        *,
        base_model: nn.Module | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: Any = None,
        seed: int = 0,
        **base_kwargs: Any,
    ) -> TTDSForCausalLM:
        """A fresh TTDS model around ``config.base_model_name_or_path`` (or an already loaded ``base_model``).

        Extends ``tokenizer`` (in place) with the semantic tokens, resizes the base's embeddings (new rows:
        transformers' mean-and-covariance initialisation, seeded by ``seed``), wraps it in LoRA with the new
        rows trainable, and creates the towers (seeded). ``config`` is filled in (``llm_config``, vocabulary
        sizes, token offsets).
        """
        if base_model is None:
            if not config.base_model_name_or_path:
                raise ValueError("TTDSConfig.base_model_name_or_path is not set and no base_model was given")
            # imported here: at module level it would re-enter genrec's Auto registration mid-import
            from transformers import AutoModelForCausalLM

            base_model = AutoModelForCausalLM.from_pretrained(
                config.base_model_name_or_path,
                revision=config.base_model_revision,
                dtype=dtype,
                device_map=device_map,
                **base_kwargs,
            )
        elif config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(base_model, "name_or_path", None)
        config.llm_config = base_model.config.to_dict()
        extend_tokenizer(tokenizer, config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            base_model.resize_token_embeddings(config.vocab_size)
            llm = cls._wrap_lora(base_model, config)
            model = cls(config, llm=llm)
            model.item_generator.reset_parameters()
            if model.user_generator is not None:
                model.user_generator.reset_parameters()
        first = next(base_model.parameters())
        model.item_generator.to(first.device)
        if model.user_generator is not None:
            model.user_generator.to(first.device)
        return model

    # ------------------------------------------------------------------------------- helpers

    def generator(self, tower: str) -> SemanticTokenGenerator:
        """The item or user tower."""
        if tower == "item":
            return self.item_generator
        if tower == "user":
            if self.user_generator is None:
                raise ValueError("this TTDS model has no user tower (config.user_tower=False)")
            return self.user_generator
        raise ValueError(f"tower must be 'item' or 'user', got {tower!r}")

    @property
    def base_llm(self) -> nn.Module:
        """The wrapped ``*ForCausalLM`` (LoRA layers injected in place)."""
        llm = self.llm
        return llm.get_base_model() if hasattr(llm, "get_base_model") else llm

    def decoder(self) -> nn.Module:
        """The base LLM's decoder stack (e.g. ``LlamaModel``), whose output is the final-normed hidden state."""
        base = self.base_llm
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        if decoder is None:
            decoder = getattr(base, base.base_model_prefix)
        return decoder

    def get_input_embeddings(self) -> nn.Module:
        """The (possibly trainable-token wrapped) input embedding of the LLM."""
        return self.llm.get_input_embeddings()

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None, **kwargs: Any) -> None:
        """Enables (non-reentrant by default) activation checkpointing in the wrapped LLM."""
        kwargs_ = {"use_reentrant": False} if activation_checkpointing_kwargs is None else activation_checkpointing_kwargs
        base = self.base_llm
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2x name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs_, **kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs_)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **kwargs: Any) -> None:
        """Same as :meth:`activation_checkpointing_enable` (the name most code still calls)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs)

    def code_token_offsets(self, tower: str, code_length: int) -> list[int]:
        """Token id of code 0 at each of the ``code_length`` positions of a ``tower`` code."""
        return self.config.token_offsets(tower, code_length)

    def codes_to_token_ids(self, tower: str, codes: torch.Tensor) -> torch.LongTensor:
        """Token ids (..., D) of codes (..., D) (D = M or M + 1 with the collision level)."""
        offsets = torch.tensor(self.code_token_offsets(tower, codes.shape[-1]), device=codes.device)
        sizes = torch.tensor(self.config.code_level_sizes(codes.shape[-1]), device=codes.device)
        if bool(((codes < 0) | (codes >= sizes)).any()):
            raise ValueError(
                f"{tower} codes out of range for levels of sizes {sizes.tolist()}: "
                f"{codes[((codes < 0) | (codes >= sizes)).any(-1)][:3].tolist()}"
            )
        return codes.long() + offsets

    def set_phase(self, phase: str) -> None:
        """Chooses what trains: ``"warmup"`` (Sec. 5.1.4) or ``"joint"``.

        ``warmup``: the towers and the new semantic-token embedding rows train while the pretrained LLM and
        LoRA stay frozen (the paper freezes "the LLaMA-based recommender"; the new rows are kept trainable
        because without them the DM-VAE decoder, the LLM reading semantic tokens, could not reconstruct
        anything and L_ID would carry no signal). ``joint``: LoRA, the new rows and the towers all train (and,
        with ``config.train_base``, every weight of the base LLM).
        """
        if phase not in ("warmup", "joint"):
            raise ValueError(f"phase must be 'warmup' or 'joint', got {phase!r}")
        for name, param in self.llm.named_parameters():
            if "trainable_tokens_delta" in name:
                param.requires_grad_(True)
            elif "lora_" in name:
                param.requires_grad_(phase == "joint")
            else:  # the base LLM's own weights: frozen, unless config.train_base (joint phase only)
                param.requires_grad_(phase == "joint" and self.config.train_base)
        for tower in TOWERS:
            module = self.item_generator if tower == "item" else self.user_generator
            if module is not None:
                module.requires_grad_(True)

    # ------------------------------------------------------------------------------- representations

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, h) pooled hidden states over the positions where ``mask`` is 1."""
        mask = mask.to(hidden.dtype)
        if self.config.pooling == "mean":
            return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def text_pooling_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The attended positions minus a leading bos (kept only in rows that have nothing else)."""
        mask = attention_mask.clone()
        bos = self.config.llm_config.get("bos_token_id") if self.config.llm_config else None
        if isinstance(bos, int):
            is_bos = (input_ids == bos) & (mask > 0)
            without = mask * (~is_bos)
            keep_bos = without.sum(1, keepdim=True) == 0
            mask = torch.where(keep_bos, mask, without)
        return mask

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """X = f(C) (Formula 6): pooled last hidden states of the LLM (with LoRA) on texts, (B, hidden)."""
        hidden = self.decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._pool(hidden, self.text_pooling_mask(input_ids, attention_mask))

    def _level_embeddings(self, tower: str) -> list[torch.Tensor]:
        """Per level m, the (N, hidden) input embeddings of that level's tokens (differentiable)."""
        embed = self.get_input_embeddings()
        offset = self.code_token_offsets(tower, self.config.num_levels)[0]
        n, m = self.config.codebook_size, self.config.num_levels
        device = next(self.llm.parameters()).device
        rows = embed(torch.arange(offset, offset + m * n, device=device))  # one lookup for all levels
        return list(rows.view(m, n, -1).unbind(0))

    def encode_semantic_tokens(self, tower: str, assignments: torch.Tensor) -> torch.Tensor:
        """X^S: the LLM's pooled representation of [bos] + the M semantic tokens given as (B, M, N) one-hots."""
        levels = self._level_embeddings(tower)
        dtype = levels[0].dtype
        token_embeds = torch.stack(
            [assignments[:, m].to(dtype) @ levels[m] for m in range(self.config.num_levels)], dim=1
        )  # (B, M, hidden)
        batch = token_embeds.shape[0]
        bos = self.config.llm_config.get("bos_token_id") if self.config.llm_config else None
        mask_parts = [torch.ones(batch, self.config.num_levels, dtype=torch.long, device=token_embeds.device)]
        if isinstance(bos, int):
            bos_embed = self.get_input_embeddings()(torch.full((batch, 1), bos, device=token_embeds.device))
            token_embeds = torch.cat([bos_embed.to(dtype), token_embeds], dim=1)
            mask_parts.insert(0, torch.ones(batch, 1, dtype=torch.long, device=token_embeds.device))
        attention_mask = torch.cat(mask_parts, dim=1)
        hidden = self.decoder()(inputs_embeds=token_embeds, attention_mask=attention_mask).last_hidden_state
        pool_mask = attention_mask.clone()
        if isinstance(bos, int):
            pool_mask[:, 0] = 0
        return self._pool(hidden, pool_mask)

    def _sq_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a.float() - b.float()).pow(2).sum(-1)
        return (sq / a.shape[-1] if self.config.dm_vae_reduction == "mean" else sq).mean()

    def dm_vae_loss(
        self, tower: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L_ID, L_Token, L_Rec)`` of the DM-VAE (Formulas 12, 13 and the towers' reconstruction loss) for a
        batch of item or user texts.

        ``X^I`` is the pooled representation of the texts (stop-gradient, see the module docstring), the tower
        quantises it with straight-through assignments, and ``X^S`` is the LLM's representation of the
        resulting semantic-token sequence.
        """
        with torch.no_grad():
            target = self.encode_text(input_ids, attention_mask).detach()
        out = self.generator(tower)(target.float())
        assignments = out.assignments
        if self.config.tower_id_gradient == "centered":
            assignments = _CenterGradient.apply(assignments)
        elif self.config.tower_id_gradient == "none":
            assignments = assignments.detach()
        semantic = self.encode_semantic_tokens(tower, assignments)
        return self._sq_distance(semantic, target), out.token_loss, out.reconstruction_loss

    @torch.no_grad()
    def compute_codes(self, tower: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.LongTensor:
        """(B, M) semantic codes of item / user texts from the current LLM and tower (no collision level)."""
        return self.generator(tower).quantize(self.encode_text(input_ids, attention_mask).float())

    @torch.no_grad()
    def text_representations(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, hidden) float32 X of texts, no gradients (codebook initialisation, analysis)."""
        return self.encode_text(input_ids, attention_mask).float()

    # ------------------------------------------------------------------------------- forward / generate

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        item_text_input_ids: torch.LongTensor | None = None,
        item_text_attention_mask: torch.Tensor | None = None,
        user_text_input_ids: torch.LongTensor | None = None,
        user_text_attention_mask: torch.Tensor | None = None,
        return_logits: bool = True,
        **kwargs: Any,
    ) -> TTDSOutput:
        """Instruction loss ``L_LLM`` on ``input_ids``/``labels`` (-100 = not an answer token) plus, for the
        item and/or user texts given, ``alpha * (L_ID + beta * L_Token)`` (Formula 15).

        Either part may be omitted (``input_ids=None``: DM-VAE only, as in the warm-up phase).
        ``return_logits=False`` (with ``labels``; what the trainer uses) applies the LM head only at the
        positions that predict an answer token and returns ``logits=None``: the same loss, but a prompt's
        positions cost no vocabulary projection (most of a tiny model's compute, and on a 7B base the
        sequence x 32k logits tensor is the largest activation of a step).
        """
        cfg = self.config
        lm_loss = logits = None
        if not return_logits and kwargs:
            # the answer-only path calls the decoder itself; silently taking the full path instead would hide
            # a 2-3x slower step behind a flag that asked for the fast one
            raise ValueError(f"return_logits=False takes no extra LLM arguments, got {sorted(kwargs)}")
        if input_ids is not None and labels is not None and not return_logits:
            lm_loss = self._answer_loss(input_ids, attention_mask, labels)
        elif input_ids is not None:
            out = self.llm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
            lm_loss, logits = out.loss, out.logits
        id_loss = token_loss = reconstruction_loss = None
        for tower, ids, mask in (
            ("item", item_text_input_ids, item_text_attention_mask),
            ("user", user_text_input_ids, user_text_attention_mask),
        ):
            if ids is None or ids.shape[0] == 0:
                continue
            if tower == "user" and self.user_generator is None:
                continue
            if mask is None:
                mask = torch.ones_like(ids)
            tower_id, tower_token, tower_rec = self.dm_vae_loss(tower, ids, mask)
            id_loss = tower_id if id_loss is None else id_loss + tower_id
            token_loss = tower_token if token_loss is None else token_loss + tower_token
            reconstruction_loss = tower_rec if reconstruction_loss is None else reconstruction_loss + tower_rec
        loss = lm_loss
        if id_loss is not None:
            dm_vae = cfg.dm_vae_alpha * (
                id_loss + cfg.dm_vae_beta * token_loss + cfg.tower_reconstruction_weight * reconstruction_loss
            )
            loss = dm_vae if loss is None else loss + dm_vae
        return TTDSOutput(loss=loss, logits=logits, lm_loss=lm_loss, id_loss=id_loss, token_loss=token_loss,
                          reconstruction_loss=reconstruction_loss)

    def _answer_loss(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor
    ) -> torch.Tensor:
        """The causal-LM loss of ``labels`` (mean over answer tokens, like the LLM's own loss) with the LM head
        applied only where the next token is an answer token."""
        hidden = self.decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        rows, cols = (targets != -100).nonzero(as_tuple=True)
        logits = self.base_llm.get_output_embeddings()(hidden[:, :-1][rows, cols])
        if rows.numel() == 0:  # no answer token: a zero loss that keeps the graph (like the LLM's nan-free path)
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.float(), targets[rows, cols])

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped LLM's ``generate`` (free-form; use :meth:`recommend` for constrained item decoding)."""
        return self.llm.generate(*args, **kwargs)

    def recommend(self, *args: Any, **kwargs: Any) -> tuple[torch.LongTensor, torch.FloatTensor]:
        """Deprecated name of :meth:`generate_item_codes` (tensors in, codes out). genrec's ``recommend``
        contract — histories of item ids in, ``(item_id, score)`` lists out — is
        :meth:`genrec.trainers.ttds.recommender.TTDSRecommender.recommend` for TTDS, as for every family."""
        warnings.warn(
            "TTDSForCausalLM.recommend(input_ids, attention_mask, prefix_index) is renamed generate_item_codes; "
            "for item ids in and (item_id, score) lists out use TTDSRecommender.recommend(histories)",
            FutureWarning,
            stacklevel=2,
        )
        return self.generate_item_codes(*args, **kwargs)

    @torch.no_grad()
    def generate_item_codes(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        prefix_index: Mapping[str, torch.Tensor],
        *,
        num_beams: int = 10,
        num_return_sequences: int | None = None,
        eos_token_id: int,
        pad_token_id: int,
    ) -> tuple[torch.LongTensor, torch.FloatTensor]:
        """Constrained beam search over item codes after left-padded prompts.

        Only tokens continuing the code of an existing item (``prefix_index``, the item CodeTable's
        ``prefix_index()``) can be generated, then eos. Returns ``codes`` (B, k, D) (per-level codes, not token
        ids) and the beams' scores (B, k), best first; ``k = num_return_sequences`` (default ``num_beams``).
        """
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate_item_codes() needs left-padded prompts (the last position of every row attended)")
        depth = int(torch.as_tensor(prefix_index["level_sizes"]).numel())
        offsets = self.code_token_offsets("item", depth)
        sizes = torch.as_tensor(prefix_index["level_sizes"]).tolist()
        allowed = self.config.code_level_sizes(depth)
        if any(s > a for s, a in zip(sizes, allowed, strict=True)):
            raise ValueError(f"code table level sizes {sizes} exceed the model's token levels {allowed}")
        k = num_beams if num_return_sequences is None else num_return_sequences
        processor = SemanticIDLogitsProcessor(
            prefix_index,
            offsets,
            prompt_length=input_ids.shape[1],
            eos_token_id=eos_token_id,
            num_beams=num_beams,
        )
        generation_config = GenerationConfig(
            num_beams=num_beams,
            num_return_sequences=k,
            do_sample=False,
            max_new_tokens=depth + 1,
            min_new_tokens=0,
            early_stopping=True,
            length_penalty=0.0,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            bos_token_id=self.config.llm_config.get("bos_token_id") if self.config.llm_config else None,
            use_cache=True,
            return_dict_in_generate=True,
            output_scores=True,
        )
        out = self.llm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            logits_processor=LogitsProcessorList([processor]),
        )
        sequences = out.sequences[:, input_ids.shape[1] :]
        if sequences.shape[1] < depth:
            raise RuntimeError(f"generation stopped after {sequences.shape[1]} tokens, before a full code of {depth}")
        codes = sequences[:, :depth] - torch.tensor(offsets, device=sequences.device)
        scores = out.sequences_scores if getattr(out, "sequences_scores", None) is not None else None
        batch = input_ids.shape[0]
        if scores is None:
            scores = torch.zeros(batch * k, device=codes.device)
        return codes.view(batch, k, depth), scores.view(batch, k)

    # ------------------------------------------------------------------------------- save / load

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Writes ``config.json``, the LoRA adapter (with the new token rows) and the towers.

        Layout: ``config.json`` (TTDSConfig), ``adapter/`` (peft: ``adapter_config.json`` +
        ``adapter_model.safetensors``; ``save_embedding_layers=False`` because the only changed embedding rows
        are the trainable-token rows, which the adapter stores), ``generators.safetensors`` (both towers). The
        base LLM is not copied: it is reloaded from ``config.base_model_name_or_path``.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(directory)
        if not hasattr(self.llm, "peft_config"):
            raise TypeError("TTDSForCausalLM.llm must be a peft model (build it with from_base / from_pretrained)")
        for adapter in self.llm.peft_config.values():  # the adapter names the base the config names
            if self.config.base_model_name_or_path:
                adapter.base_model_name_or_path = self.config.base_model_name_or_path
            adapter.revision = self.config.base_model_revision
        self.llm.save_pretrained(str(directory / ADAPTER_DIR), save_embedding_layers=False)
        tensors = {
            f"{name}.{key}": value.detach().to("cpu").contiguous()
            for name, module in (("item_generator", self.item_generator), ("user_generator", self.user_generator))
            if module is not None
            for key, value in module.state_dict().items()
        }
        save_file(tensors, str(directory / GENERATORS_FILE), metadata={"format": "pt", "genrec": "ttds-generators"})
        if self.config.train_base:
            save_file(self.base_weights(), str(directory / BASE_WEIGHTS_FILE),
                      metadata={"format": "pt", "genrec": "ttds-base-weights"})
        else:
            (directory / BASE_WEIGHTS_FILE).unlink(missing_ok=True)  # a stale file of an earlier save

    def base_weights(self) -> dict[str, torch.Tensor]:
        """The base LLM's own tensors (names as in ``self.llm``), without LoRA's and the new token rows' (the
        adapter holds those): what ``train_base`` changes and ``base_weights.safetensors`` stores, on the CPU.
        Tied tensors are stored once (the first name)."""
        return {key: value.detach().to("cpu").contiguous() for key, value in self._base_tensors().items()}

    def _base_tensors(self, *, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """:meth:`base_weights`' selection, in place (``keep_vars``: the parameters themselves, to load into)."""
        tensors, seen = {}, set()
        for key, value in self.llm.state_dict(keep_vars=keep_vars).items():
            if "lora_" in key or "trainable_tokens" in key or value.data_ptr() in seen:
                continue
            seen.add(value.data_ptr())
            tensors[key] = value
        return tensors

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *model_args: Any,
        config: TTDSConfig | None = None,
        base_model_name_or_path: str | None = None,
        base_model: nn.Module | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: Any = None,
        is_trainable: bool = False,
        **kwargs: Any,
    ) -> TTDSForCausalLM:
        """Reloads a saved TTDS model: the base LLM (by name/path), resized, then the adapter and the towers.

        ``pretrained_model_name_or_path`` is a folder written by :meth:`save_pretrained` or a Hub repo id
        holding one (``revision=``, ``token=``, ``cache_dir=``... go to the Hub download, as for any
        ``from_pretrained``); the base is loaded at the revision the config records (``base_model_revision``).

        ``base_model_name_or_path`` overrides the recorded base (e.g. the base moved); ``base_model`` passes an
        already loaded base. The base must match the recorded architecture (hidden size, layers, heads,
        vocabulary), else a clear error. The resize happens before ``PeftModel.from_pretrained`` (peft needs the
        extended shapes), and the adapter's token rows replace the resized rows, so the result is exact.
        Returns the model in eval mode (``is_trainable=True`` keeps the adapter trainable, for resuming).
        """
        peft = _require_peft()
        directory = resolve_ttds_folder(pretrained_model_name_or_path, **_hub_kwargs(kwargs))
        if config is None:
            config = TTDSConfig.from_pretrained(directory)
        if not isinstance(config, TTDSConfig):
            raise TypeError(f"{directory}/config.json is a {type(config).__name__}, not a TTDS config")
        if base_model is None:
            name = base_model_name_or_path or config.base_model_name_or_path
            if not name:
                raise ValueError(f"{directory}/config.json records no base_model_name_or_path; pass one")
            # imported here: at module level it would re-enter genrec's Auto registration mid-import
            from transformers import AutoModelForCausalLM

            base_model = AutoModelForCausalLM.from_pretrained(
                name, revision=config.base_model_revision, dtype=dtype, device_map=device_map
            )
        cls._check_base(config, base_model, directory)
        base_model.resize_token_embeddings(config.vocab_size, mean_resizing=False)
        with _quiet_peft():
            llm = peft.PeftModel.from_pretrained(base_model, str(directory / ADAPTER_DIR), is_trainable=is_trainable)
        model = cls(config, llm=llm)
        if config.train_base:
            model._load_base_weights(directory / BASE_WEIGHTS_FILE)
        state = load_file(str(directory / GENERATORS_FILE))
        own = {
            f"{name}.{key}"
            for name, module in (("item_generator", model.item_generator), ("user_generator", model.user_generator))
            if module is not None
            for key in module.state_dict()
        }
        if set(state) != own:
            raise ValueError(
                f"{directory / GENERATORS_FILE} does not match the config's towers: missing "
                f"{sorted(own - set(state))[:5]}, unexpected {sorted(set(state) - own)[:5]}"
            )
        device = next(base_model.parameters()).device
        for name in ("item_generator", "user_generator"):
            module = getattr(model, name)
            if module is None:
                continue
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
            module.to(device)
        if not is_trainable:
            model.eval()
        return model

    def _load_base_weights(self, path: Path) -> None:
        """Lays the trained base weights of a ``train_base`` model over the base loaded by name."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the config says train_base=True, so the trained base "
                                    "weights must be saved beside the adapter")
        saved = load_file(str(path))
        own = self._base_tensors(keep_vars=True)
        if set(saved) != set(own) or any(saved[k].shape != own[k].shape for k in own):
            raise ValueError(f"{path} does not match the base LLM: missing {sorted(set(own) - set(saved))[:5]}, "
                             f"unexpected {sorted(set(saved) - set(own))[:5]}")
        with torch.no_grad():
            for key, value in saved.items():
                own[key].copy_(value.to(own[key].dtype))

    @staticmethod
    def _check_base(config: TTDSConfig, base_model: nn.Module, directory: Path) -> None:
        """Refuses a base LLM whose architecture differs from the one the adapter was trained on."""
        recorded = config.llm_config or {}
        found = base_model.config.to_dict()
        diffs = [
            f"{key}: recorded {recorded.get(key)!r}, found {found.get(key)!r}"
            for key in _ARCHITECTURE_KEYS
            if key in recorded and recorded.get(key) != found.get(key)
        ]
        if diffs:
            raise ValueError(
                f"the base model does not match the one {directory} was trained on ({'; '.join(diffs)}); pass "
                "base_model_name_or_path= pointing at the right base"
            )

    def num_trainable_parameters(self) -> dict[str, int]:
        """Trainable parameter counts per part (lora, new token rows, towers) for logs and model cards."""
        counts = {"lora": 0, "token_rows": 0, "towers": 0, "other": 0}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if "trainable_tokens_delta" in name:
                counts["token_rows"] += param.numel()
            elif "lora_" in name:
                counts["lora"] += param.numel()
            elif name.startswith(("item_generator", "user_generator")):
                counts["towers"] += param.numel()
            else:
                counts["other"] += param.numel()
        return counts

    def describe(self) -> str:
        """One line for logs: base, code shape, trainable counts."""
        return json.dumps(
            {
                "base": self.config.base_model_name_or_path,
                "levels": self.config.num_levels,
                "codebook_size": self.config.codebook_size,
                "trainable": self.num_trainable_parameters(),
            }
        )
