#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): run first on a lent GPU machine; at most ~8 minutes; writes one JSON
# (benchmarks/results/gpu_check-<device>.json) to commit. Extra arguments go to gpu_check.py (--dry-run: CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 python benchmarks/gpu_check.py "$@"
