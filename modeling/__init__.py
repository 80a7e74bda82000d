"""Configs and models (UNGER stage I/II, TTDS) and the constrained-decoding logits processor.

Imports only torch, transformers, tokenizers, safetensors, numpy and siblings, so the folder can be saved
into a Hub repo as remote code.
"""
