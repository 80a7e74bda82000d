"""genrec: generative recommendation with semantic IDs, native to Hugging Face ``transformers``.

Items become short sequences of discrete codes (semantic IDs); models read a user's history as codes and
generate the codes of the next item, decoding only codes that exist. See README.md for the pipeline.

``import genrec`` is deliberately cheap (no torch / transformers import): the public names below are
resolved on first attribute access, and genrec's configs, models and tokenizers are registered with the
``transformers`` ``Auto*`` classes the moment ``transformers`` loads its auto modules (or at once, if it
already has; see ``genrec._auto_registration``), so ``AutoModel.from_pretrained(run_dir)`` works after
``import genrec`` without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from genrec._auto_registration import install as _install_auto_registration
from genrec._version import __version__

# public name -> module that defines it (resolved lazily by __getattr__)
_EXPORTS: dict[str, str] = {
    # tokenization: semantic IDs
    "CodeTable": "genrec.tokenization.code_table",
    "SemanticIDTokenizer": "genrec.tokenization.tokenization_semantic_id",
    "Quantizer": "genrec.tokenization.quantizers",
    "ResidualKMeansQuantizer": "genrec.tokenization.quantizers",
    "RQVAEQuantizer": "genrec.tokenization.quantizers",
    "RandomQuantizer": "genrec.tokenization.quantizers",
    "load_quantizer": "genrec.tokenization.quantizers",
    # modeling
    "SemanticIDLogitsProcessor": "genrec.modeling.constrained_decoding",
    "UngerFusionConfig": "genrec.modeling.configuration_unger_fusion",
    "UngerFusionModel": "genrec.modeling.modeling_unger_fusion",
    "UngerConfig": "genrec.modeling.configuration_unger",
    "UngerForGenerativeRecommendation": "genrec.modeling.modeling_unger",
    "MSCGRecConfig": "genrec.modeling.configuration_mscgrec",
    "MSCGRecForGenerativeRecommendation": "genrec.modeling.modeling_mscgrec",
    "TTDSConfig": "genrec.modeling.configuration_ttds",
    "TTDSForCausalLM": "genrec.modeling.modeling_ttds",
    # training and evaluation
    "quantize_embeddings": "genrec.trainers.stages.quantize",
    "train_stage1": "genrec.trainers.stages.stage1",
    "train_stage2": "genrec.trainers.stages.stage2",
    "evaluate_model": "genrec.trainers.evaluation.evaluator",
    "modality_balance": "genrec.trainers.analysis.modality_balance",
    "run_pipeline": "genrec.trainers.jobs.run",
    "run_ttds": "genrec.trainers.jobs.ttds",
    "TTDSRecommender": "genrec.trainers.ttds",
    # metrics
    "compute_metrics": "genrec.trainers.evaluation.metrics",
    "metrics_from_ranks": "genrec.trainers.evaluation.metrics",
    "target_ranks": "genrec.trainers.evaluation.metrics",
    "format_metrics": "genrec.trainers.evaluation.metrics",
    # data
    "prepare_dataset": "genrec.data_scripts.prepare",
    "load_genrec_dataset": "genrec.data_scripts.prepare",
    "embed_items": "genrec.data_scripts.embeddings",
    "embed_dataset": "genrec.data_scripts.embeddings",
    "ItemEmbeddings": "genrec.data_scripts.embeddings",
}

__all__ = [
    "CodeTable",
    "ItemEmbeddings",
    "MSCGRecConfig",
    "MSCGRecForGenerativeRecommendation",
    "Quantizer",
    "RQVAEQuantizer",
    "RandomQuantizer",
    "ResidualKMeansQuantizer",
    "SemanticIDLogitsProcessor",
    "SemanticIDTokenizer",
    "TTDSConfig",
    "TTDSForCausalLM",
    "TTDSRecommender",
    "UngerConfig",
    "UngerForGenerativeRecommendation",
    "UngerFusionConfig",
    "UngerFusionModel",
    "compute_metrics",
    "evaluate_model",
    "modality_balance",
    "quantize_embeddings",
    "run_pipeline",
    "run_ttds",
    "train_stage1",
    "train_stage2",
    "embed_dataset",
    "embed_items",
    "format_metrics",
    "load_genrec_dataset",
    "load_quantizer",
    "metrics_from_ranks",
    "prepare_dataset",
    "target_ranks",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from genrec.data_scripts.embeddings import ItemEmbeddings, embed_dataset, embed_items
    from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
    from genrec.modeling.configuration_mscgrec import MSCGRecConfig
    from genrec.modeling.configuration_ttds import TTDSConfig
    from genrec.modeling.configuration_unger import UngerConfig
    from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
    from genrec.modeling.constrained_decoding import SemanticIDLogitsProcessor
    from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
    from genrec.modeling.modeling_ttds import TTDSForCausalLM
    from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
    from genrec.modeling.modeling_unger_fusion import UngerFusionModel
    from genrec.tokenization.code_table import CodeTable
    from genrec.tokenization.quantizers import (
        Quantizer,
        RandomQuantizer,
        ResidualKMeansQuantizer,
        RQVAEQuantizer,
        load_quantizer,
    )
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
    from genrec.trainers.analysis.modality_balance import modality_balance
    from genrec.trainers.evaluation.evaluator import evaluate_model
    from genrec.trainers.evaluation.metrics import (
        compute_metrics,
        format_metrics,
        metrics_from_ranks,
        target_ranks,
    )
    from genrec.trainers.jobs.run import run_pipeline
    from genrec.trainers.jobs.ttds import run_ttds
    from genrec.trainers.stages.quantize import quantize_embeddings
    from genrec.trainers.stages.stage1 import train_stage1
    from genrec.trainers.stages.stage2 import train_stage2
    from genrec.trainers.ttds import TTDSRecommender


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'genrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


_install_auto_registration()  # the Auto* registration hook (genrec/_auto_registration.py)
