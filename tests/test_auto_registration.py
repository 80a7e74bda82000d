"""``import genrec`` registers every genrec config / model / tokenizer with the transformers Auto classes,
whatever was imported first (fresh processes: import order is the point)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import {first}
import genrec
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING
from genrec import (SemanticIDTokenizer, TTDSConfig, TTDSForCausalLM, UngerConfig,
                    UngerForGenerativeRecommendation, UngerFusionConfig, UngerFusionModel)
assert type(AutoConfig.for_model("unger")) is UngerConfig
assert type(AutoConfig.for_model("unger_fusion")) is UngerFusionConfig
assert type(AutoConfig.for_model("ttds")) is TTDSConfig
assert AutoModel._model_mapping[UngerConfig] is UngerForGenerativeRecommendation
assert AutoModelForSeq2SeqLM._model_mapping[UngerConfig] is UngerForGenerativeRecommendation
assert AutoModel._model_mapping[UngerFusionConfig] is UngerFusionModel
assert AutoModelForCausalLM._model_mapping[TTDSConfig] is TTDSForCausalLM
entry = TOKENIZER_MAPPING[UngerConfig]  # a class (transformers 5) or a (slow, fast) pair
assert entry is SemanticIDTokenizer or SemanticIDTokenizer in tuple(entry)
print("ok")
"""

FIRST_IMPORTS = [
    "genrec",
    "transformers",
    "genrec.modeling.modeling_ttds",
    "genrec.modeling.modeling_unger",
    "genrec.modeling.modeling_unger_fusion",
    "genrec.trainers.ttds",
    "genrec.trainers.jobs.run",
]


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_auto_classes_know_genrec_whatever_was_imported_first(first: str) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK.format(first=first)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
