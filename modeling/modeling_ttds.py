"""TTDS-style LLM recommender: a LLaMA-architecture causal LM + LoRA + twin-tower semantic token generators.

Paper: "Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic Semantic Token
Generator" (TTDS), Sec. 4. The pieces and where they live here:

* **LLM backbone f** (Formula 6, 8, 9): any ``AutoModelForCausalLM`` of the LLaMA family, wrapped, not
  subclassed (see :class:`TTDSForCausalLM`), fine-tuned with LoRA (peft) whose vocabulary is extended with
  ``N*M`` item tokens and ``N*M`` user tokens (+ the reserved collision tokens of Sec. 4.2.5).
* **Twin-tower semantic token generator** (Formulas 7, 10, 11): :class:`SemanticTokenGenerator`
  (``semantic_token_generator.py``), one for items and one for users: an MLP encoder from the LLM's own text
  representation ``X`` to a latent, then ``M`` residual codebooks of ``N`` entries (nearest centroid, squared
  Euclidean distance).
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

Siblings: ``tokenization_ttds.py`` (:func:`extend_tokenizer`, the semantic tokens added to the base
tokenizer), ``semantic_token_generator.py`` (the towers), ``ttds_lora.py`` (the LoRA wrapping; peft is
imported lazily there) and ``ttds_folder.py`` (the saved folder's files, local or on the Hub).
``modeling`` imports only torch / transformers / tokenizers / safetensors / numpy.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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
from .packaged_bases import base_load_arguments, file_sha256, packaged_base
from .safe_weights import load_base_llm
from .semantic_token_generator import SemanticTokenGenerator
from .tokenization_ttds import extend_tokenizer
from .ttds_folder import ADAPTER_DIR, BASE_WEIGHTS_FILE, GENERATORS_FILE, pop_hub_kwargs, resolve_ttds_folder
from .ttds_lora import quiet_peft, require_peft, wrap_lora

logger = logging.getLogger(__name__)

__all__ = [
    "TTDSForCausalLM",
    "TTDSOutput",
    "TTDSPreTrainedModel",
]

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


def load_ttds_base(name_or_path: Any, **kwargs: Any) -> Any:
    """The base causal LM of a TTDS model by Hub name, folder or packaged name (``"smollm2-135m"``: the GGUF inside
    an installed package, :mod:`packaged_bases`), from safetensors or GGUF only."""
    # imported here: at module level it would re-enter genrec's Auto registration mid-import
    from transformers import AutoModelForCausalLM

    path, kwargs = base_load_arguments(name_or_path, kwargs)
    return load_base_llm(AutoModelForCausalLM, path, **kwargs)


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
        return wrap_lora(base, config)

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
            base_model = load_ttds_base(
                config.base_model_name_or_path, revision=config.base_model_revision, dtype=dtype,
                device_map=device_map, **base_kwargs,
            )
            packaged = packaged_base(config.base_model_name_or_path)
            if packaged is not None:  # the saved model says which file it was trained on
                config.base_model_sha256 = file_sha256(packaged.path())
        elif config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(base_model, "name_or_path", None)
        config.llm_config = base_model.config.to_dict()
        extend_tokenizer(tokenizer, config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            base_model.resize_token_embeddings(config.vocab_size)
            llm = wrap_lora(base_model, config)
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
        share_prompt: bool = True,
    ) -> tuple[torch.LongTensor, torch.FloatTensor]:
        """Constrained beam search over item codes after left-padded prompts.

        ``share_prompt`` (default): the prompt is run through the LLM once per history, and its key/value cache
        repeated for each beam; transformers' beam search would otherwise run it once per beam (the prompts are
        ~60-200 tokens and the generated code M + 2, so that prefill is nearly all of the search's compute).
        The same beams, and scores equal up to float rounding (tested against ``share_prompt=False``).

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
        extra: dict[str, Any] = {}
        if share_prompt and num_beams > 1 and input_ids.shape[1] > 1:
            # all but the last prompt token, once per history; generate then feeds only the last token
            mask = attention_mask[:, :-1]
            positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate counts left padding
            prefix = self.llm(input_ids=input_ids[:, :-1], attention_mask=mask, position_ids=positions,
                              use_cache=True)
            # transformers >= 5.2x names the cache `cache` (output field and generate argument), older 5.x
            # `past_key_values`
            name = "cache" if "cache" in getattr(prefix, "__dataclass_fields__", {}) else "past_key_values"
            cache = getattr(prefix, name)
            cache.batch_repeat_interleave(num_beams)  # row b * num_beams + j = beam j of history b, as generate
            extra[name] = cache
        out = self.llm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            logits_processor=LogitsProcessorList([processor]),
            **extra,
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
        peft = require_peft()
        directory = resolve_ttds_folder(pretrained_model_name_or_path, **pop_hub_kwargs(kwargs))
        if config is None:
            config = TTDSConfig.from_pretrained(directory)
        if not isinstance(config, TTDSConfig):
            raise TypeError(f"{directory}/config.json is a {type(config).__name__}, not a TTDS config")
        if base_model is None:
            name = base_model_name_or_path or config.base_model_name_or_path
            if not name:
                raise ValueError(f"{directory}/config.json records no base_model_name_or_path; pass one")
            packaged = packaged_base(name)
            if packaged is not None and config.base_model_sha256:
                found = file_sha256(packaged.path())
                if found != config.base_model_sha256:
                    raise ValueError(
                        f"{directory} was trained on {name} with sha256 {config.base_model_sha256[:12]}..., but the "
                        f"installed {packaged.file} has {found[:12]}...; install {packaged.distribution}"
                    )
            base_model = load_ttds_base(name, revision=config.base_model_revision, dtype=dtype, device_map=device_map)
        cls._check_base(config, base_model, directory)
        base_model.resize_token_embeddings(config.vocab_size, mean_resizing=False)
        with quiet_peft():
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
