"""Registers genrec's configs, models and tokenizers with the ``transformers`` ``Auto*`` classes.

``import genrec`` calls :func:`install` without importing torch or transformers: groups whose ``Auto`` module
transformers has already loaded are registered at once; for the others an import hook (a ``sys.meta_path``
finder) registers them the moment transformers loads that module, so ``AutoModel.from_pretrained(run_dir)``
works after ``import genrec`` without ``trust_remote_code``, whatever was imported first.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

# Each entry: (auto kind, model_type or None, "module:ConfigClass", "module:TargetClass" or None).
# kind "config" -> AutoConfig.register(model_type, ConfigClass)
# kind "model:<AutoName>" -> <AutoName>.register(ConfigClass, TargetClass)
# kind "tokenizer" -> AutoTokenizer.register(ConfigClass, tokenizer_class=TargetClass)
_UNGER_CONFIG = "genrec.modeling.configuration_unger:UngerConfig"
_FUSION_CONFIG = "genrec.modeling.configuration_unger_fusion:UngerFusionConfig"
_TTDS_CONFIG = "genrec.modeling.configuration_ttds:TTDSConfig"
_MSCGREC_CONFIG = "genrec.modeling.configuration_mscgrec:MSCGRecConfig"
_MSCGREC_MODEL = "genrec.modeling.modeling_mscgrec:MSCGRecForGenerativeRecommendation"
_AUTO_REGISTRY: list[tuple[str, str | None, str, str | None]] = [
    ("config", "unger", _UNGER_CONFIG, None),
    ("config", "unger_fusion", _FUSION_CONFIG, None),
    ("config", "ttds", _TTDS_CONFIG, None),
    ("config", "mscgrec", _MSCGREC_CONFIG, None),
    ("model:AutoModel", None, _UNGER_CONFIG, "genrec.modeling.modeling_unger:UngerForGenerativeRecommendation"),
    (
        "model:AutoModelForSeq2SeqLM",
        None,
        _UNGER_CONFIG,
        "genrec.modeling.modeling_unger:UngerForGenerativeRecommendation",
    ),
    ("model:AutoModel", None, _FUSION_CONFIG, "genrec.modeling.modeling_unger_fusion:UngerFusionModel"),
    ("model:AutoModelForCausalLM", None, _TTDS_CONFIG, "genrec.modeling.modeling_ttds:TTDSForCausalLM"),
    ("model:AutoModel", None, _MSCGREC_CONFIG, _MSCGREC_MODEL),
    ("model:AutoModelForSeq2SeqLM", None, _MSCGREC_CONFIG, _MSCGREC_MODEL),
    ("tokenizer", None, _UNGER_CONFIG, "genrec.tokenization.tokenization_semantic_id:SemanticIDTokenizer"),
    ("tokenizer", None, _MSCGREC_CONFIG, "genrec.tokenization.tokenization_semantic_id:SemanticIDTokenizer"),
]

_AUTO_MODULES = {
    "transformers.models.auto.configuration_auto": "config",
    "transformers.models.auto.modeling_auto": "model",
    "transformers.models.auto.tokenization_auto": "tokenizer",
    "transformers.pipelines": "pipeline",
}
_registered: set[str] = set()  # groups whose Auto module transformers has loaded
_done: set[int] = set()  # registry entries registered
_pending: set[int] = set()  # entries whose module was mid-import when their group was registered
_ENTRY_MODULES = frozenset(
    path.partition(":")[0] for _, _, config_path, target_path in _AUTO_REGISTRY
    for path in (config_path, target_path) if path
)


def _load(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _mid_import(path: str) -> bool:
    """Whether the module of ``path`` is executing right now (it imported transformers' Auto module itself)."""
    module = sys.modules.get(path.partition(":")[0])
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _register_entry(index: int) -> None:
    kind, model_type, config_path, target_path = _AUTO_REGISTRY[index]
    try:
        config_class = _load(config_path)
        target = _load(target_path) if target_path else None
    except AttributeError:
        if _mid_import(config_path) or (target_path is not None and _mid_import(target_path)):
            # e.g. configuration_mscgrec imports configuration_unger, whose register_for_auto_class loads the
            # Auto module and so this registry before MSCGRecConfig exists: finish when its module has run
            _pending.add(index)
            return
        raise
    if kind == "config":
        from transformers import AutoConfig

        AutoConfig.register(model_type, config_class, exist_ok=True)
    elif kind.startswith("model:"):
        auto_class = getattr(importlib.import_module("transformers"), kind.split(":", 1)[1])
        auto_class.register(config_class, target, exist_ok=True)
    elif kind == "tokenizer":
        from transformers import AutoTokenizer

        AutoTokenizer.register(config_class, tokenizer_class=target, exist_ok=True)
    _pending.discard(index)
    _done.add(index)


def _register(group: str) -> None:
    """Register every entry of ``group`` ("config", "model" or "tokenizer") with transformers."""
    _registered.add(group)
    if group == "pipeline":  # pipeline("generative-recommendation", model=...): genrec's custom pipeline task
        from transformers import AutoModelForSeq2SeqLM
        from transformers.pipelines import PIPELINE_REGISTRY

        from genrec.modeling.pipeline_recommendation import PIPELINE_TASK, GenerativeRecommendationPipeline

        if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
            PIPELINE_REGISTRY.register_pipeline(
                PIPELINE_TASK, pipeline_class=GenerativeRecommendationPipeline, pt_model=AutoModelForSeq2SeqLM
            )
        return
    if group != "config":
        _register("config")  # models and tokenizers are keyed by config classes
    for index, (kind, *_rest) in enumerate(_AUTO_REGISTRY):
        if kind.startswith(group) and index not in _done:
            _register_entry(index)


def _register_pending() -> None:
    """Entries skipped while one of their modules was still executing (called when such a module has run)."""
    for index in sorted(_pending):
        if _AUTO_REGISTRY[index][0].split(":")[0] in _registered:
            _register_entry(index)


class _LoaderWithCallback(importlib.abc.Loader):
    """Delegates to the real loader and runs a callback once the module has executed."""

    def __init__(self, loader: importlib.abc.Loader, callback: Any) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _AutoRegistrationFinder(importlib.abc.MetaPathFinder):
    """Registers genrec with transformers' Auto classes right after transformers loads them."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        group = _AUTO_MODULES.get(fullname)
        if group is not None:
            callback = functools.partial(_register, group)
        elif fullname in _ENTRY_MODULES:
            callback = _register_pending  # a genrec config/model module: finish entries that waited for it
        else:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _LoaderWithCallback(spec.loader, callback)
                return spec
        return None


def install() -> None:
    """Register what transformers has loaded already; hook the import of the rest (idempotent)."""
    loaded = [group for module, group in _AUTO_MODULES.items() if module in sys.modules]
    for group in loaded:
        _register(group)
    if len(loaded) < len(_AUTO_MODULES) and not any(
        isinstance(finder, _AutoRegistrationFinder) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _AutoRegistrationFinder())
