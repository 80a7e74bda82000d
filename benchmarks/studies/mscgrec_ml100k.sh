#!/bin/bash
# Issue 16: UNGER vs MSCGRec (p = 0) vs MSCGRec (p = 0.75) on ML-100K, default profile, seed 2024, Stage II cut to
# STEPS optimiser steps in every arm (default 300), then `genrec shapley` on the masked model. docs/mscgrec.md
# has the figures. Resumable: rerunning reuses every finished stage and resumes interrupted trainings.
#   R=/work/runs UNGER_RUN=/work/runs/ml-hie-s2024 STEPS=1000 benchmarks/studies/mscgrec_ml100k.sh
# UNGER_RUN: a finished `genrec run --dataset ml-100k --seed 2024` folder whose data, embeddings, Stage I and
# semantic IDs the arms reuse (read only); without it the UNGER arm computes them itself.
set -e
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
G=${GENREC:-genrec}
R=${R:-runs}
STEPS=${STEPS:-300}
LOGS=$R/mscgrec-logs
mkdir -p "$LOGS"
if [ -n "$UNGER_RUN" ] && [ ! -d "$R/h16-unger" ]; then
  mkdir -p "$R/h16-unger/fingerprints"
  cp -r "$UNGER_RUN"/{data,embeddings,stage1,semantic_ids} "$R/h16-unger/"
  cp "$UNGER_RUN"/fingerprints/{prepare,stage1,quantize}.json "$R/h16-unger/fingerprints/"
fi
$G run --out "$R/h16-unger" --stage2-steps "$STEPS" > "$LOGS/unger.log" 2>&1 &
if [ -n "$UNGER_RUN" ] && [ ! -d "$R/h16-msc-p0" ]; then
  mkdir -p "$R/h16-msc-p0/fingerprints"
  cp -r "$UNGER_RUN"/{data,embeddings} "$R/h16-msc-p0/"
  cp "$UNGER_RUN"/fingerprints/prepare.json "$R/h16-msc-p0/fingerprints/"
fi
$G run --model mscgrec --out "$R/h16-msc-p0" --stage2-steps "$STEPS" > "$LOGS/msc-p0.log" 2>&1 &
if [ ! -d "$R/h16-msc-p75" ]; then  # the same collaborative Stage I and codes as p = 0
  while [ ! -f "$R/h16-msc-p0/fingerprints/stage2.json" ]; do sleep 20; done
  mkdir -p "$R/h16-msc-p75/fingerprints"
  cp -r "$R/h16-msc-p0"/{data,embeddings,stage1,semantic_ids} "$R/h16-msc-p75/"
  cp "$R/h16-msc-p0"/fingerprints/{prepare,stage1,quantize_collaborative,quantize_text}.json "$R/h16-msc-p75/fingerprints/"
fi
$G run --model mscgrec --mask-probability 0.75 --out "$R/h16-msc-p75" --stage2-steps "$STEPS" > "$LOGS/msc-p75.log" 2>&1 &
wait
$G shapley "$R/h16-msc-p75" > "$LOGS/shapley-p75.log" 2>&1
python "$(dirname "$0")/mscgrec_compare.py" "$R/h16-unger" "$R/h16-msc-p0" "$R/h16-msc-p75" --shapley "$R/h16-msc-p75"
