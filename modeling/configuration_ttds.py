"""Configuration of the TTDS-style LLM recommender (Twin-Tower Dynamic Semantic recommender).

TTDS (paper: "Unleash LLMs Potential for Recommendation by Coordinating Twin-Tower Dynamic Semantic Token
Generator", Sec. 4 and 5.1.4) fine-tunes a LLaMA-architecture causal LM with LoRA on recommendation
instructions whose items and users are written as semantic tokens. Those tokens come from two quantizers
(the "twin towers", one for items and one for users) that read the LLM's own representation of the item /
user text and are trained jointly with the LLM.

``TTDSConfig`` describes everything needed to rebuild the model around its base LLM: which base (a Hub
name or a local folder, never copied into the run folder), the towers (MLP widths, residual codebooks), the
extended vocabulary (where the item / user tokens start), LoRA, and the loss weights. The base LLM's own
configuration is recorded as ``llm_config`` so that a reload can check that the base it finds is the base
the adapter was trained on.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .config_fields import as_bool, as_float, as_int, as_int_list, as_optional_int, reject_unknown_keys

_OWNER = "TTDSConfig"

__all__ = ["TTDSConfig"]

_LEVEL_LETTERS = "abcdefghijklmno"  # level names in token strings; "p" is the collision level (paper: p_0, p_1)


# The towers of TTDS folders saved before the stop-gradient / EMA / reconstruction fields existed.
_LEGACY_TOWERS: dict[str, Any] = {
    "dm_vae_token_loss": "literal", "codebook_update": "gradient", "normalize_latent": False,
    "tower_reconstruction_weight": 0.0,
}


class TTDSConfig(PretrainedConfig):
    """Configuration of :class:`~genrec.modeling.modeling_ttds.TTDSForCausalLM`.

    Paper defaults (Sec. 5.1.4) are used where the paper gives a number; where it gives none the choice is
    documented here and in ``docs/ttds.md``.

    Args:
        base_model_name_or_path: the LLaMA-architecture causal LM (Hub name such as
            ``"meta-llama/Llama-2-7b-hf"`` or a local folder) that the adapter is trained on.
        base_model_revision: optional Hub revision of the base model.
        base_model_sha256: for a packaged base (``"smollm2-135m"``, :mod:`packaged_bases`), the sha256 of its
            weights file when the model was made; reloading refuses another file.
        llm_config: the base LLM's config as a dict (filled by ``TTDSForCausalLM.from_base``); used to check
            the base found on reload and to know the hidden size without loading it.
        base_vocab_size: vocabulary size of the base tokenizer before the semantic tokens were added.
        vocab_size: size of the extended vocabulary (``base_vocab_size`` + pad if added + semantic tokens).
        num_levels: M, semantic tokens per item / user index (paper: 4).
        codebook_size: N, entries per codebook (paper: 256).
        codebook_dim: dimension of the codebook vectors (paper: 256 for a 4096-wide LLM). ``None``: the LLM
            hidden size / 16 (the paper's ratio), at least 16 (a narrower latent leaves tiny test models with
            too few directions to separate their entities).
        generator_hidden_sizes: widths of the tower MLP between the LLM hidden size and ``codebook_dim``
            (paper: [2048, 1024, 512] between 4096 and 256). ``None``: hidden/2, hidden/4, hidden/8 (at least
            ``codebook_dim``), the paper's halving scaled to the LLM.
        num_collision_tokens: size of the reserved collision level per tower (paper Sec. 4.2.5: an extra
            token ``p_k`` giving the order inside a collision set). ``None``: ``codebook_size``. A collision
            group larger than this cannot be indexed and is reported as an error.
        user_tower: whether users get semantic tokens too (TTDS); ``False`` gives the paper's single-tower
            ablation (STDS): prompts name no user tokens and the next-user task is disabled.
        pooling: how the LLM's last hidden states of a text become one vector X (Formula 6): ``"mean"`` over
            the text's tokens (bos and padding excluded; default) or ``"last"`` (the last text token).
        dm_vae_alpha: alpha of Formula 15 (weight of the DM-VAE loss). Not given in the paper.
        dm_vae_beta: beta of Formula 14 (weight of the token-level loss). Not given in the paper.
        dm_vae_reduction: ``"mean"``: squared distances averaged over the feature dimension (so alpha and beta
            do not depend on the LLM width); ``"sum"``: the literal squared L2 norms of Formulas 12-13.
        st_temperature: temperature of the soft assignment used for straight-through gradients.
        dm_vae_token_loss: ``"vq"`` (default): ``L_Token`` as the VQ-VAE / RQ-VAE codebook + commitment loss,
            ``sum_m ||sg[r_m] - c_m||^2 + commitment_cost * ||r_m - sg[c_m]||^2``; ``"literal"``: Formula 13 as
            printed, ``sum_m ||r_m - c_m||^2`` with no stop-gradient (its cheapest minimum shrinks all latents
            and centroids to one point; measured: collision rate 0.55 -> 0.90 on ML-100K).
        commitment_cost: weight of the commitment term of ``"vq"`` (VQ-VAE's 0.25).
        codebook_update: ``"ema"`` (default): the centroids are exponential moving averages of the residuals
            assigned to them during training (VQ-VAE-2 / SoundStream; no optimiser, no codebook term in
            ``L_Token``); ``"gradient"``: trained by the optimiser (codebook term of ``"vq"``, or Formula 13
            literally). Adam's scale-free steps move every centroid by about the learning rate per step, as
            much as a deep level's whole residual, and reshuffled the codes of unchanged inputs.
        codebook_ema_decay: decay of the EMA codebooks.
        normalize_latent: scale each tower latent to norm sqrt(codebook_dim) (l2-normalised codes, ViT-VQGAN):
            the latents cannot shrink towards one point, the cheapest way to lower the commitment term.
        tower_reconstruction_weight: weight (inside alpha, beside L_ID and beta * L_Token) of each tower's
            reconstruction loss: a mirrored MLP decoder rebuilds the standardised input X from the quantised
            latent (RQ-VAE's reconstruction target), so the latents keep what tells entities apart. 0: no
            decoder (the paper's DM-VAE, whose only decoder is the LLM through L_ID).
        tower_id_gradient: how ``L_ID`` reaches the towers through the straight-through assignments:
            ``"full"`` (the plain estimator), ``"centered"`` (default: the gradient's mean over the batch is
            removed, so only its entity-specific part moves the towers; the shared part, which pushes every
            entity towards the same codes, still trains the LLM side) or ``"none"`` (``L_ID`` trains only the
            LLM side: the new token rows and LoRA). See docs/ttds.md for the measurements behind the default.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA over the base LLM (paper: LoRA, no
            numbers given).
        train_base: False (default, the paper: the pretrained LLM stays frozen, LoRA adapts it). True: the
            joint phase also trains every weight of the base LLM (full fine-tuning), for a base that has no
            pretraining to keep — a small LLaMA-architecture model trained from scratch on the recommendation
            tasks, as on a machine without pretrained weights. The trained base weights are saved with the
            model (``base_weights.safetensors``); the warm-up still freezes them.
        item_token_offset, user_token_offset: token id of ``<item_a_0>`` / ``<user_a_0>``; level ``m`` code
            ``c`` is ``offset + m * codebook_size + c``, collision ``k`` is ``offset + M * N + k``.
        item_code_table_hash, user_code_table_hash: content hashes of the code tables saved with the model;
            a reload refuses tables that do not match.
        item_code_length, user_code_length: code positions per item / user in those tables (M, or M + 1 with
            the collision level).
    """

    model_type = "ttds"

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """``PretrainedConfig.from_dict``; a config saved before the tower fields of genrec 0.2 existed (no
        ``dm_vae_token_loss`` key) gets the towers it was trained with (literal Formula 13, gradient-trained
        codebooks, no latent normalisation, no reconstruction decoder), so its saved weights still load."""
        if "dm_vae_token_loss" not in config_dict:
            config_dict = {**_LEGACY_TOWERS, **config_dict}
        return super().from_dict(config_dict, **kwargs)

    def __init__(
        self,
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        base_model_sha256: str | None = None,
        llm_config: dict[str, Any] | None = None,
        base_vocab_size: int | None = None,
        vocab_size: int | None = None,
        num_levels: int = 4,
        codebook_size: int = 256,
        codebook_dim: int | None = None,
        generator_hidden_sizes: list[int] | None = None,
        num_collision_tokens: int | None = None,
        user_tower: bool = True,
        pooling: str = "mean",
        dm_vae_alpha: float = 0.1,
        dm_vae_beta: float = 0.25,
        dm_vae_reduction: str = "mean",
        st_temperature: float = 1.0,
        tower_id_gradient: str = "centered",
        dm_vae_token_loss: str = "vq",
        commitment_cost: float = 0.25,
        tower_reconstruction_weight: float = 1.0,
        codebook_update: str = "ema",
        codebook_ema_decay: float = 0.99,
        normalize_latent: bool = True,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        train_base: bool = False,
        item_token_offset: int | None = None,
        user_token_offset: int | None = None,
        item_code_table_hash: str | None = None,
        user_code_table_hash: str | None = None,
        item_code_length: int | None = None,
        user_code_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        reject_unknown_keys(self, kwargs)  # a misspelled field would otherwise be a silent stray attribute
        num_levels = as_int(_OWNER, "num_levels", num_levels)
        codebook_size = as_int(_OWNER, "codebook_size", codebook_size)
        st_temperature = as_float(_OWNER, "st_temperature", st_temperature)
        num_collision_tokens = as_optional_int(_OWNER, "num_collision_tokens", num_collision_tokens)
        if not 1 <= num_levels <= len(_LEVEL_LETTERS):
            raise ValueError(f"num_levels must be in 1..{len(_LEVEL_LETTERS)}, got {num_levels}")
        if int(codebook_size) < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        if dm_vae_reduction not in ("mean", "sum"):
            raise ValueError(f"dm_vae_reduction must be 'mean' or 'sum', got {dm_vae_reduction!r}")
        if tower_id_gradient not in ("full", "centered", "none"):
            raise ValueError(f"tower_id_gradient must be 'full', 'centered' or 'none', got {tower_id_gradient!r}")
        if dm_vae_token_loss not in ("vq", "literal"):
            raise ValueError(f"dm_vae_token_loss must be 'vq' or 'literal', got {dm_vae_token_loss!r}")
        commitment_cost = as_float(_OWNER, "commitment_cost", commitment_cost, minimum=0)
        if codebook_update not in ("ema", "gradient"):
            raise ValueError(f"codebook_update must be 'ema' or 'gradient', got {codebook_update!r}")
        if codebook_update == "ema" and dm_vae_token_loss == "literal":
            raise ValueError("dm_vae_token_loss='literal' trains the codebooks by gradient: set codebook_update='gradient'")
        codebook_ema_decay = as_float(_OWNER, "codebook_ema_decay", codebook_ema_decay, minimum=0)
        if codebook_ema_decay >= 1:
            raise ValueError(f"codebook_ema_decay must be < 1, got {codebook_ema_decay}")
        tower_reconstruction_weight = as_float(
            _OWNER, "tower_reconstruction_weight", tower_reconstruction_weight, minimum=0
        )
        if st_temperature <= 0:
            raise ValueError(f"st_temperature must be > 0, got {st_temperature}")
        if num_collision_tokens is not None and int(num_collision_tokens) < 1:
            raise ValueError(f"num_collision_tokens must be >= 1, got {num_collision_tokens}")
        self.base_model_name_or_path = base_model_name_or_path
        self.base_model_revision = base_model_revision
        self.base_model_sha256 = base_model_sha256
        self.llm_config = dict(llm_config) if llm_config is not None else None
        self.base_vocab_size = base_vocab_size
        self.vocab_size = vocab_size
        self.num_levels = int(num_levels)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = as_optional_int(_OWNER, "codebook_dim", codebook_dim, minimum=1)
        self.generator_hidden_sizes = (
            None if generator_hidden_sizes is None
            else as_int_list(_OWNER, "generator_hidden_sizes", generator_hidden_sizes, minimum=1)
        )
        self.num_collision_tokens = None if num_collision_tokens is None else int(num_collision_tokens)
        self.user_tower = as_bool(_OWNER, "user_tower", user_tower)
        self.pooling = pooling
        self.dm_vae_alpha = as_float(_OWNER, "dm_vae_alpha", dm_vae_alpha)
        self.dm_vae_beta = as_float(_OWNER, "dm_vae_beta", dm_vae_beta)
        self.dm_vae_reduction = dm_vae_reduction
        self.st_temperature = float(st_temperature)
        self.tower_id_gradient = tower_id_gradient
        self.dm_vae_token_loss = dm_vae_token_loss
        self.commitment_cost = commitment_cost
        self.tower_reconstruction_weight = tower_reconstruction_weight
        self.codebook_update = codebook_update
        self.codebook_ema_decay = codebook_ema_decay
        self.normalize_latent = as_bool(_OWNER, "normalize_latent", normalize_latent)
        self.lora_r = as_int(_OWNER, "lora_r", lora_r, minimum=1)
        self.lora_alpha = as_int(_OWNER, "lora_alpha", lora_alpha)
        self.lora_dropout = as_float(_OWNER, "lora_dropout", lora_dropout, minimum=0)
        self.lora_target_modules = (
            list(lora_target_modules) if lora_target_modules is not None else ["q_proj", "k_proj", "v_proj", "o_proj"]
        )
        self.train_base = as_bool(_OWNER, "train_base", train_base)
        self.item_token_offset = item_token_offset
        self.user_token_offset = user_token_offset
        self.item_code_table_hash = item_code_table_hash
        self.user_code_table_hash = user_code_table_hash
        self.item_code_length = item_code_length
        self.user_code_length = user_code_length
        super().__init__(**kwargs)

    # ----------------------------------------------------------------------------------- derived sizes

    @property
    def llm_hidden_size(self) -> int:
        """Hidden size of the base LLM (from ``llm_config``)."""
        if not self.llm_config or "hidden_size" not in self.llm_config:
            raise ValueError(
                "TTDSConfig.llm_config is not set: build the model with TTDSForCausalLM.from_base(...) (which "
                "records the base LLM's config) before asking for its hidden size"
            )
        return int(self.llm_config["hidden_size"])

    @property
    def collision_vocab_size(self) -> int:
        """Reserved collision tokens per tower."""
        return self.num_collision_tokens if self.num_collision_tokens is not None else self.codebook_size

    @property
    def resolved_codebook_dim(self) -> int:
        """``codebook_dim``, or the LLM hidden size / 16 (at least 16) when unset."""
        if self.codebook_dim is not None:
            return self.codebook_dim
        return max(self.llm_hidden_size // 16, 16)

    @property
    def resolved_generator_hidden_sizes(self) -> list[int]:
        """Widths of the tower MLP's hidden layers (between the LLM hidden size and ``codebook_dim``)."""
        if self.generator_hidden_sizes is not None:
            return list(self.generator_hidden_sizes)
        floor = self.resolved_codebook_dim
        return [max(self.llm_hidden_size // 2**k, floor) for k in (1, 2, 3)]

    @property
    def tokens_per_tower(self) -> int:
        """Semantic tokens added per tower: M * N codebook tokens + the collision tokens."""
        return self.num_levels * self.codebook_size + self.collision_vocab_size

    def semantic_token_names(self, tower: str) -> list[str]:
        """The token strings of one tower (``"item"`` or ``"user"``) in token-id order.

        ``<item_a_0> .. <item_a_{N-1}>, <item_b_0>, ..`` for the M levels, then ``<item_p_0> ..`` for the
        collision level (the paper's ``p_k``).
        """
        if tower not in ("item", "user"):
            raise ValueError(f"tower must be 'item' or 'user', got {tower!r}")
        names = [
            f"<{tower}_{_LEVEL_LETTERS[m]}_{c}>" for m in range(self.num_levels) for c in range(self.codebook_size)
        ]
        names += [f"<{tower}_p_{k}>" for k in range(self.collision_vocab_size)]
        return names

    def token_offsets(self, tower: str, code_length: int) -> list[int]:
        """Token id of code 0 at each code position of a ``tower`` code of ``code_length`` positions.

        ``code_length`` is M (no collision level) or M + 1 (with it). This is the ``token_offsets`` argument
        of ``SemanticIDLogitsProcessor``.
        """
        offset = self.item_token_offset if tower == "item" else self.user_token_offset
        if offset is None:
            raise ValueError(
                f"TTDSConfig.{tower}_token_offset is not set: extend the tokenizer with "
                "extend_tokenizer(tokenizer, config) first"
            )
        if code_length not in (self.num_levels, self.num_levels + 1):
            raise ValueError(
                f"a {tower} code has {code_length} positions but TTDS codes have M={self.num_levels} semantic "
                f"levels plus at most one collision level"
            )
        offsets = [offset + m * self.codebook_size for m in range(self.num_levels)]
        if code_length == self.num_levels + 1:
            offsets.append(offset + self.num_levels * self.codebook_size)
        return offsets

    def code_level_sizes(self, code_length: int) -> list[int]:
        """Token-space size of each code position (N per semantic level, the collision vocabulary last)."""
        sizes = [self.codebook_size] * self.num_levels
        if code_length == self.num_levels + 1:
            sizes.append(self.collision_vocab_size)
        return sizes
