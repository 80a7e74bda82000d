"""The TTDS vocabulary: a base LLM tokenizer extended with the item (and user) semantic tokens.

Beside :mod:`.modeling_ttds` as a transformers ``tokenization_<family>.py`` file; it imports only its siblings
(``modeling/`` never imports ``tokenization/``), so it travels with the modeling files as remote code.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from .configuration_ttds import TTDSConfig

__all__ = ["extend_tokenizer"]


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
