#!/usr/bin/env bash
# The quality runs that need a GPU (docs/quality.md, "On a GPU"), on Beauty: the UNGER paper's profile (Stage I to
# convergence, 20k flattened Stage II steps, 100-beam test of all 22,363 users), TIGER's own network at the same
# length (`--profile tiger-paper`), and RecBole's SASRec without a time cap (its early stopping, patience 10 on
# validation MRR@10, decides: the converged row). Estimated, not yet run: no GPU was lent when it was written.
# Each genrec step runs under `timeout 570` so that it fits a 10-minute device call, and resumes from its run
# folder's checkpoints when the same step runs again on the same (warm) machine; `rows` reads the run folders
# into benchmarks/results/ (commit those JSON files and the regenerated RESULTS.md).
#   DATA=path/to/amazon-beauty-2014 bash benchmarks/quality_gpu.sh [paper|tiger|sasrec|rows]
# DATA defaults to ../shared/data/amazon-beauty-2014; on a device machine, copy it under an ignored folder of the
# checkout (e.g. runs/beauty-data, 4 MB) and carry that. SASRec needs RecBole's own venv (runs/recbole-venv,
# created by benchmarks/report.py) and uses the GPU through RecBole's use_gpu; it saves its state after every
# epoch, so that it too continues where a stopped call left it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DATA=${DATA:-../shared/data/amazon-beauty-2014}
PRECISION=$(python -c "import torch; print('bf16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'no')")
step() {  # a step stopped by its time limit says how to go on
  local rc=0
  timeout 570 "$@" || rc=$?
  if [ "$rc" -eq 124 ]; then echo "stopped at 570 s: run the same step again to resume from its checkpoints" >&2; fi
  return "$rc"
}
case "${1:-all}" in
  paper) step genrec run --dataset "$DATA" --profile paper --mixed-precision "$PRECISION" --out runs/beauty-paper ;;
  tiger) step genrec run --dataset "$DATA" --profile tiger-paper --mixed-precision "$PRECISION" --out runs/beauty-tiger-paper ;;
  sasrec) step python benchmarks/report.py --beauty-source "$DATA" --only beauty-recbole-sasrec-converged \
            --force beauty-recbole-sasrec-converged ;;  # resumes after its last finished epoch (--state-dir)
  rows) python benchmarks/report.py --only beauty-genrec-paper beauty-genrec-tiger-paper \
          --force beauty-genrec-paper beauty-genrec-tiger-paper ;;
  all) for s in paper tiger sasrec rows; do "$0" "$s"; done ;;
  *) echo "usage: $0 [paper|tiger|sasrec|rows]" >&2; exit 2 ;;
esac
