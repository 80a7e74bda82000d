"""The TTDS trainer: generator warm-up with the LLM frozen, then joint training with dynamic codes
(Accelerate, resumable checkpoints of what trains plus the code tables)."""


from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.tokenization.code_table import CodeTable
from genrec.trainers.engine.accelerator import (
    build_accelerator,
    deterministic_training,
    make_train_dataloader,
)
from genrec.trainers.engine.checkpoints import CheckpointManager, TrainingState
from genrec.trainers.engine.loop import log_metrics, run_training_loop
from genrec.trainers.engine.processes import num_processes
from genrec.trainers.ttds.args import CODE_STATE_FILE, ITEM_TABLE_DIR, USER_TABLE_DIR, TTDSTrainingArguments
from genrec.trainers.ttds.code_updates import compute_tower_codes, update_code_tables
from genrec.trainers.ttds.codes import CodeState
from genrec.trainers.ttds.data import TTDSData
from genrec.trainers.ttds.prompts import IndexDataset, PromptRenderer, TTDSCollator, index_batch, pad_right
from genrec.trainers.ttds.recommender import TTDSRecommender

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ trainer


# the loss terms logged per step (None terms, e.g. the LM loss during the warm-up, are left out)
_LOSS_KEYS = ("loss", "lm_loss", "id_loss", "token_loss", "reconstruction_loss")


def _is_trained_key(key: str) -> bool:
    """State-dict keys a TTDS checkpoint keeps: LoRA, the new token rows, the towers."""
    return "lora_" in key or "trainable_tokens" in key or "item_generator." in key or "user_generator." in key


class TTDSTrainer:
    """Warm-up + joint training of a :class:`TTDSForCausalLM` with Accelerate (see the module docstring).

    Args:
        model: from ``TTDSForCausalLM.from_base`` (LoRA wrapped, tokenizer extended).
        tokenizer: the extended tokenizer.
        data: :class:`TTDSData` of the training split.
        args: :class:`TTDSTrainingArguments`.
    """

    def __init__(self, model: TTDSForCausalLM, tokenizer: Any, data: TTDSData, args: TTDSTrainingArguments) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.data = data
        self.args = args
        self.codes = CodeState()
        self.renderer = PromptRenderer(
            tokenizer, model.config, data, self.codes, max_length=args.max_length, text_max_tokens=args.text_max_tokens
        )
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token (extend_tokenizer adds one)")
        self.pad = tokenizer.pad_token_id
        self.collator = TTDSCollator(
            self.renderer, seed=args.seed, alignment_batch_size=args.alignment_batch_size, pad_token_id=self.pad,
            history_loss=args.history_loss,
        )
        self.history: list[dict[str, float]] = []

    # --------------------------------------------------------------------------- pieces

    def _fingerprint(self) -> str:
        payload = {
            "args": self.args.fingerprint_fields(),
            "config": {k: v for k, v in self.model.config.to_dict().items()
                       if not k.endswith(("_hash", "_code_length")) and k not in ("transformers_version",)},
            "items": hashlib.sha256("\x00".join(self.data.item_ids).encode()).hexdigest(),
            "users": hashlib.sha256("\x00".join(self.data.user_ids).encode()).hexdigest(),
            "examples": len(self.data.examples),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _warmup_batch(self, step: int, device: torch.device) -> dict[str, torch.Tensor]:
        """DM-VAE texts for warm-up step ``step``: a seeded sample of items (and users), a pure function of step."""
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + step)
        batch: dict[str, torch.Tensor] = {}
        towers = ["item", "user"] if self.model.config.user_tower else ["item"]
        for tower in towers:
            n = len(self.data.item_ids if tower == "item" else self.data.user_ids)
            picks = torch.randperm(n, generator=generator)[: self.args.alignment_batch_size].tolist()
            ids, mask = pad_right([self.renderer.entity_text_ids(tower, i) for i in picks], self.pad)
            batch[f"{tower}_text_input_ids"], batch[f"{tower}_text_attention_mask"] = ids.to(device), mask.to(device)
        return batch

    def _init_codebooks(self) -> dict[str, torch.Tensor]:
        """Initialises each tower's codebooks from every entity's representation; returns those
        representations (the first code update reuses them instead of encoding everything again)."""
        towers = ["item", "user"] if self.model.config.user_tower else ["item"]
        found = {}
        for tower in towers:
            reps = compute_tower_codes(self.model, self.renderer, tower, batch_size=self.args.encode_batch_size,
                                       pad_token_id=self.pad, representations=True)
            self.model.generator(tower).init_codebooks(
                reps.to(next(self.model.generator(tower).parameters()).device),
                iterations=self.args.codebook_init_iterations, seed=self.args.seed,
            )
            found[tower] = reps
        return found

    def _is_update_step(self, step: int) -> bool:
        """Whether the codes are recomputed right after optimiser step ``step`` (before the next batch)."""
        args = self.args
        if step == args.warmup_steps:
            return step > 0
        joint = step - args.warmup_steps
        if args.code_update_until is not None and joint > args.code_update_until:
            return False
        return bool(args.code_update_steps) and joint > 0 and joint % args.code_update_steps == 0

    def _update_codes(
        self, model: TTDSForCausalLM, step: int, representations: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        stats = update_code_tables(model, self.renderer, self.codes, batch_size=self.args.encode_batch_size,
                                   representations=representations,
                                   pad_token_id=self.pad, margin=self.args.code_update_margin,
                                   reset_dead_codes=self.args.reset_dead_codes, seed=self.args.seed,
                                   refresh_input_statistics=self.args.refresh_input_statistics,
                                   refit_codebooks=self.args.code_update_refit,
                                   refit_iterations=self.args.codebook_init_iterations)
        self.codes.last_update_step = step
        return stats

    def _save_code_state(self, folder: Path) -> None:
        """Checkpoint extra: the current code tables and the update counters (weights are filtered to the
        trained ones — LoRA, token rows, towers — by the checkpoint manager)."""
        (folder / CODE_STATE_FILE).write_text(json.dumps(
            {"last_update_step": self.codes.last_update_step, "updates": self.codes.updates,
             "rejected": self.codes.rejected}) + "\n")
        if self.codes.item_table is not None:
            self.codes.item_table.save(folder / ITEM_TABLE_DIR)
        if self.codes.user_table is not None:
            self.codes.user_table.save(folder / USER_TABLE_DIR)

    def _load_code_state(self, folder: Path) -> None:
        """Read back what :meth:`_save_code_state` wrote."""
        try:
            code_state = json.loads((folder / CODE_STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError) as error:
            raise ValueError(f"{folder}/{CODE_STATE_FILE} is missing or corrupt ({error})") from None
        self.codes.last_update_step = int(code_state["last_update_step"])
        self.codes.updates = int(code_state["updates"])
        self.codes.rejected = int(code_state["rejected"])
        self.codes.item_table = CodeTable.load(folder / ITEM_TABLE_DIR)
        if (folder / USER_TABLE_DIR).is_dir():
            self.codes.user_table = CodeTable.load(folder / USER_TABLE_DIR)

    def _param_groups(self, model: TTDSForCausalLM) -> list[dict[str, Any]]:
        """Optimiser groups: the towers' networks at ``tower_learning_rate`` (when set), the rest (LoRA, token
        rows) at ``learning_rate``; one LambdaLR schedule scales both."""
        towers, rest = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                (towers if name.startswith(("item_generator.", "user_generator.")) else rest).append(param)
        if self.args.tower_learning_rate is None or not towers:
            return [{"params": rest + towers}]
        return [{"params": rest}, {"params": towers, "lr": self.args.tower_learning_rate}]

    def _lr_lambda(self, step: int) -> float:
        """LR multiplier of ``learning_rate``: the warm-up LR during the generator warm-up, then linear
        LR warm-up over ``lr_warmup_steps`` joint steps and constant (the paper names no decay)."""
        args = self.args
        if step < args.warmup_steps:
            return args.warmup_learning_rate / args.learning_rate
        joint = step - args.warmup_steps
        if args.lr_warmup_steps and joint < args.lr_warmup_steps:
            return (joint + 1) / args.lr_warmup_steps
        return 1.0

    # --------------------------------------------------------------------------- main loop

    @deterministic_training
    def train(self) -> dict[str, Any]:
        """Runs (or resumes) warm-up + joint training; returns a summary (losses, code statistics, timings).

        Both phases are genrec's one training loop (:func:`~genrec.trainers.engine.loop.run_training_loop`):
        the warm-up to ``warmup_steps`` on DM-VAE texts drawn per step, then the joint phase to
        ``warmup_steps + max_steps`` on the instruction examples; the code updates are a per-step callback.
        """
        args = self.args
        output_dir = Path(args.output_dir)
        accelerator = build_accelerator(
            output_dir, seed=args.seed, mixed_precision=args.resolved_mixed_precision(),
            gradient_accumulation_steps=args.gradient_accumulation_steps, log_with=None, cpu=args.cpu,
            # the warm-up leaves LoRA without gradients, a batch without user texts the user tower: DDP must
            # expect parameters that take no part in a step
            ddp_find_unused_parameters=True,
        )
        model = self.model
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.set_phase("joint")  # every parameter that ever trains is in the optimiser
        optimizer = torch.optim.AdamW(self._param_groups(model), lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda)
        dataloader = make_train_dataloader(
            IndexDataset(len(self.data.examples)), batch_size=args.train_batch_size, seed=args.seed,
            collate_fn=index_batch,
        )
        # the warm-up's batches are a pure function of the step (_warmup_batch): this loader only paces the loop
        # (one index per process and step: batches are global and split across the processes)
        pace = num_processes()
        warmup_loader = make_train_dataloader(
            IndexDataset(max(args.warmup_steps, 1) * pace), batch_size=pace, seed=args.seed, collate_fn=index_batch
        )
        model, optimizer, dataloader, warmup_loader, scheduler = accelerator.prepare(
            model, optimizer, dataloader, warmup_loader, scheduler
        )
        manager = CheckpointManager(
            accelerator, output_dir / "checkpoints", keep_last=args.keep_last, model=model, optimizer=optimizer,
            scheduler=scheduler, weights_filter=None if self.model.config.train_base else _is_trained_key,
            save_extra=self._save_code_state,
            load_extra=self._load_code_state,
        )
        state, resumed_from = manager.start_or_resume(
            self._fingerprint(), resume=args.resume, identity="model, data or training arguments"
        )
        unwrapped: TTDSForCausalLM = accelerator.unwrap_model(model)
        start = time.perf_counter()
        total = args.warmup_steps + args.max_steps
        if resumed_from is not None:
            step = state.global_step
            if self._is_update_step(step) and self.codes.last_update_step != step:
                # Checkpoints are taken before a step's code update (the loop saves, then calls back), and a
                # run's very last step skips it: make it now, as an uninterrupted run did.
                log_metrics(accelerator, state, self._update_codes(unwrapped, step), step=step, prefix="codes/")
        else:
            # the first tables from the representations the codebooks were just fitted to (same model, no step
            # in between: encoding every item and user again cost a full pass, minutes on a 135 M base on a CPU)
            reps = self._init_codebooks()
            log_metrics(accelerator, state, self._update_codes(unwrapped, 0, reps), step=0, prefix="codes/")

        def update_codes(state: TrainingState) -> None:
            # No update at the very last step: the saved tables must be ones the LLM has trained with.
            step = state.global_step
            if step < total and self._is_update_step(step):
                log_metrics(accelerator, state, self._update_codes(unwrapped, step), step=step, prefix="codes/")

        device = accelerator.device
        loop = {
            "accelerator": accelerator, "model": model, "optimizer": optimizer, "scheduler": scheduler,
            "checkpoints": manager if args.save_steps else None, "loss_keys": _LOSS_KEYS,
            "eval_every": total + 1, "checkpoint_every": args.save_steps or total + 1,
            "logging_steps": args.logging_steps, "max_grad_norm": args.max_grad_norm, "callbacks": (update_codes,),
        }
        # Phase 1: generator warm-up, LLM frozen (paper Sec. 5.1.4).
        if state.global_step < args.warmup_steps:
            unwrapped.set_phase("warmup")
            state = run_training_loop(
                **loop, dataloader=warmup_loader, state=state, max_steps=args.warmup_steps, desc="warm-up",
                forward=lambda _: model(**self._warmup_batch(state.global_step, device)),
            )
        if state.global_step == args.warmup_steps:  # the joint phase's data order starts at its own epoch 0
            state.epoch, state.batches_in_epoch, state.stop_reason = 0, 0, ""

        # Phase 2: joint training with dynamic codes.
        unwrapped.set_phase("joint")

        def joint_forward(indices: torch.Tensor) -> Any:
            # Rendered here, not in the DataLoader: Accelerate prefetches one batch ahead, which would render
            # the batch after a code update with the codes from before it.
            self.collator.epoch = state.epoch
            batch = {k: v.to(device) for k, v in self.collator(indices.tolist()).items()}
            return model(**batch, return_logits=False)  # the loss only: no logits over the prompts

        state = run_training_loop(
            **loop, dataloader=dataloader, state=state, max_steps=total, desc="joint", forward=joint_forward,
        )
        self.model = unwrapped
        self.history = [
            {k.removeprefix("train/"): v for k, v in entry.items() if k != "train/lr"}
            for entry in state.log_history if "train/loss" in entry
        ]
        return {
            "global_step": state.global_step,
            "train_seconds": time.perf_counter() - start,
            "code_updates": self.codes.updates,
            "rejected_code_updates": self.codes.rejected,
            "loss_history": self.history,
            "task_counts": self.data.task_counts(),
            "skipped": self.data.skipped,
            "prompt_truncations": self.renderer.truncated,
            "trainable_parameters": unwrapped.num_trainable_parameters(),
            "code_history": [e for e in state.log_history if any(k.startswith("codes/") for k in e)],
        }

    def recommender(self) -> TTDSRecommender:
        """The trained model with the current code tables, ready to recommend, evaluate or save."""
        if self.codes.item_table is None:
            raise RuntimeError("no code tables yet: call train() first")
        return TTDSRecommender(self.model, self.tokenizer, self.codes.item_table, self.codes.user_table)
