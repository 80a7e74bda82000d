"""Test-wide settings: no network, quiet progress bars, deterministic threads, shared-data lookup."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

# No test may reach a hub: everything runs on embedded data and packaged / randomly initialised models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The benchmark data beside the project (``../shared/data``), overridable by GENREC_SHARED_DATA."""
    return Path(os.environ.get("GENREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    """The UNGER paper's Amazon Beauty benchmark folder; skips the test when it is not on this machine."""
    path = shared_data_dir() / "amazon-beauty-2014"
    if not (path / "sequences.txt").is_file():
        pytest.skip(f"Amazon Beauty benchmark data not found at {path}")
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded, above all on a shared machine (restored afterwards). Modules
    of tiny-model tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_benchmark_script(script: str, name: str | None = None) -> ModuleType:
    """``benchmarks/<script>`` (e.g. ``report.py``, ``studies/markov_gap.py``) as a fresh module, registered in
    ``sys.modules`` under ``name`` (default ``genrec_bench_<stem>``) because dataclasses resolve annotations
    through it. The script's folder goes first on ``sys.path``, as ``python benchmarks/<script>`` puts it, so
    that its sibling imports (``from reporting import cli``, ``from markov_baseline import ...``) resolve."""
    path = REPO_ROOT / "benchmarks" / script
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name or f"genrec_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[..., ModuleType]:
    """:func:`load_benchmark_script`, for tests of the scripts under ``benchmarks/``."""
    return load_benchmark_script
