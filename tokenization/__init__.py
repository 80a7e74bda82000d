"""Semantic IDs: quantizers (embeddings -> codes), the CodeTable and the SemanticIDTokenizer.

Imports only torch, transformers, tokenizers, safetensors, numpy and siblings (pyarrow lazily for parquet).
"""
