"""Recomputing the dynamic code tables from the current model: the towers' codes of the LLM's item and
user representations, made unique and installed (the trainer calls this every ``code_update_steps``)."""


from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.modeling.modeling_ttds import TTDSForCausalLM
from genrec.trainers.ttds.codes import CodeState, CollisionOverflowError, build_code_table
from genrec.trainers.ttds.prompts import PromptRenderer, pad_right

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ codes


@torch.no_grad()
def compute_tower_codes(
    model: TTDSForCausalLM, renderer: PromptRenderer, tower: str, *, batch_size: int, pad_token_id: int,
    representations: bool = False,
) -> torch.Tensor:
    """(n, M) codes (or (n, hidden) float32 representations) of every item / user, model in eval mode.

    Batches are fixed (entity order, ``batch_size``), so the result is bit-identical across processes.
    """
    n = len(renderer.data.item_ids if tower == "item" else renderer.data.user_ids)
    was_training = model.training
    model.eval()
    device = next(model.llm.parameters()).device
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"{tower} codes", disable=None, leave=False):
        rows = [renderer.entity_text_ids(tower, i) for i in range(start, min(n, start + batch_size))]
        ids, mask = pad_right(rows, pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        out.append((model.text_representations(ids, mask) if representations
                    else model.compute_codes(tower, ids, mask)).cpu())
    model.train(was_training)
    return torch.cat(out)


def update_code_tables(
    model: TTDSForCausalLM, renderer: PromptRenderer, codes: CodeState, *, batch_size: int, pad_token_id: int,
    margin: float = 0.0, reset_dead_codes: bool = False, seed: int = 0, refresh_input_statistics: bool = False,
    refit_codebooks: bool = False, refit_iterations: int = 10,
    representations: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Recomputes both towers' codes from the current model and replaces the tables in ``codes``.

    Per tower: every entity's text is encoded by the current LLM; with ``refresh_input_statistics`` the
    tower's input standardisation is re-fitted to these representations (LoRA shifts and rescales all of
    them together during joint training; with the statistics of the start, that shared drift alone moved
    every latent across cell borders and crowded the entities into fewer cells); with ``reset_dead_codes`` the tower's
    unused centroids are first moved onto current latents (``SemanticTokenGenerator.reset_dead_codes``,
    seeded by ``seed`` and the update count); then the codes are recomputed, damped by ``margin`` (an
    entity keeps its previous semantic code unless the new one quantises its latent better by more than
    that factor). With ``refit_codebooks`` the tower's codebooks are instead re-fitted by residual k-means to
    the current latents, renumbered to keep the previous codes' ids where cells persist
    (``SemanticTokenGenerator.refit_codebooks``; it implies refreshed input statistics and runs the dead-code
    reset itself, before its Lloyd iterations).

    Returns statistics for the log: collision rate, largest collision group, the fraction of entities whose
    semantic code (first M positions) changed (``{tower}_codes_changed``), the fraction whose first code
    changed (``{tower}_first_level_changed``: the coarsest cell), the fraction whose full code,
    collision position included, changed (``{tower}_full_codes_changed``), and the number of centroids reset
    (``{tower}_dead_codes_reset``). ``representations`` (tower -> (n, hidden)) are the towers' inputs when the
    caller has just computed them with the same model (the first update, right after the codebooks were
    initialised from them): encoding every entity again would give the same tensors. A tower whose new codes overflow the reserved collision tokens keeps its
    previous table (warning, counted in ``codes.rejected``); with no previous table the error is raised.
    """
    stats: dict[str, float] = {}
    data = renderer.data
    towers = ["item", "user"] if model.config.user_tower else ["item"]
    num_levels = model.config.num_levels
    for tower in towers:
        ids = data.item_ids if tower == "item" else data.user_ids
        generator = model.generator(tower)
        # collected on the CPU batch by batch; moved to the towers' device once for everything below
        reps = (representations or {}).get(tower)
        if reps is None:
            reps = compute_tower_codes(model, renderer, tower, batch_size=batch_size, pad_token_id=pad_token_id,
                                       representations=True)
        reps = reps.to(generator.codebooks.device)
        old = codes.table(tower)
        previous = None
        if old is not None and old.item_ids == list(ids):
            previous = torch.from_numpy(np.array(old.codes[:, :num_levels], dtype=np.int64))
        if refit_codebooks:
            reset = generator.refit_codebooks(reps, previous=previous, iterations=refit_iterations,
                                              seed=seed * 1_000_003 + codes.updates)
            stats[f"{tower}_dead_codes_reset"] = float(sum(reset))
        else:
            if refresh_input_statistics:
                generator.set_input_statistics(reps)
            if reset_dead_codes:
                reset = generator.reset_dead_codes(reps, seed=seed * 1_000_003 + codes.updates)
                stats[f"{tower}_dead_codes_reset"] = float(sum(reset))
        semantic = generator.quantize(reps, previous=previous, margin=margin).cpu()
        try:
            table = build_code_table(ids, semantic, model.config, tower)
        except CollisionOverflowError as error:
            if old is None:
                raise
            # Mid-training, an over-full collision group keeps the previous (valid) table instead of killing
            # the run; counted in the summary and logged.
            logger.warning("code update rejected, keeping the previous %s codes: %s", tower, error)
            codes.rejected += 1
            stats[f"{tower}_update_rejected"] = 1.0
            continue
        if previous is not None and old.num_levels == table.num_levels:
            stats[f"{tower}_codes_changed"] = float((previous != semantic).any(dim=1).float().mean())
            stats[f"{tower}_first_level_changed"] = float((previous[:, 0] != semantic[:, 0]).float().mean())
            stats[f"{tower}_full_codes_changed"] = float(np.any(old.codes != table.codes, axis=1).mean())
        stats[f"{tower}_collision_rate"] = table.collision_rate
        stats[f"{tower}_max_collision_group"] = float(table.max_collision_group)
        if tower == "item":
            codes.item_table = table
        else:
            codes.user_table = table
    codes.updates += 1
    return stats
