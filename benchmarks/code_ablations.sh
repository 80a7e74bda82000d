#!/bin/bash
# UNGER ablations of issue 11 on one dataset, every arm at the same Stage II length (STEPS optimiser steps,
# cosine schedule, the default profile's Stage II: per-item history, integrated history embedding, constrained
# training, 4 encoder layers, dropout 0.1, distillation λ = 0.1), 20 beams, test on every user. Each arm changes ONE thing against `abl-default`:
#   codes:    abl-codes-random, abl-codes-rqvae      (quantizer of the same Stage I embeddings; default residual k-means)
#   Stage I:  abl-semantic-only, abl-collaborative-only, abl-concat   (--mode of Stage I, then residual k-means)
#             abl-no-align                           (Stage I with the alignment loss off: align_weight 0)
#   Stage II: abl-unconstrained                      (plain softmax training instead of constrained)
#             abl-nodistill                          (distillation weight 0)
# BASE: a `genrec run` folder (default profile) whose data, text embeddings, Stage I and codes the arms
# reuse (read only); `genrec run --dataset ml-100k --seed 2024 --until quantize --out BASE` makes one in ~5 min. Resumable: an arm whose JSON exists is skipped; interrupted trainings resume.
#   BASE=runs/ml-100k-s2024 W=runs/ml-100k-abl STEPS=1500 benchmarks/code_ablations.sh
# ARMS="abl-nodistill abl-unconstrained": only these arms (two invocations with disjoint ARMS share one W and
# run side by side; the shared quantizations are made by whichever needs them, so give them disjoint arms).
# Rows: `python benchmarks/report.py --only 'ml100k-genrec-stage2-abl-*'` (benchmarks/reporting/quality.py,
# code_ablation_rows: RESULTS.md shows them in their own table).
set -e
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
G=${GENREC:-genrec}
PY=${PYTHON:-python}
BASE=${BASE:-runs/ml-100k-s2024}
W=${W:-runs/ml-100k-abl}
STEPS=${STEPS:-1500}
SEED=${SEED:-2024}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W/logs"
# the default profile's Stage II (trainers/jobs/run.py), less the distillation weight (the nodistill arm sets 0)
ARCH='"history_item_embedding": "integrated", "encoder_layers": 4, "dropout": 0.1'
STAGE2_NO_LAMBDA="\"history_mode\": \"per_item\", \"constrained_training\": true, $ARCH"
STAGE2="$STAGE2_NO_LAMBDA, \"distillation_weight\": 0.1"

ARMS=${ARMS:-}
wanted() { [ -z "$ARMS" ] || [[ " $ARMS " == *" $1 "* ]]; }

stage2() {  # NAME INTEGRATED_EMBEDDINGS SEMANTIC_IDS_DIR CONFIG_JSON
  if ! wanted "$1"; then return 0; fi
  if [ -f "$W/$1.json" ]; then echo "$1: done"; return 0; fi
  echo "$1: Stage II ($STEPS steps) ..."
  $PY "$HERE/stage2_variants.py" --data "$BASE/data" --integrated "$2" --semantic-ids "$3" --work-dir "$W" \
    --name "$1" --max-steps "$STEPS" --threads 1 --seed "$SEED" --config "$4" \
    --train '{"lr_schedule": "cosine"}' > "$W/logs/$1.log" 2>&1
}
quantize() {  # EMBEDDINGS OUT METHOD
  if [ -f "$2/quantize.json" ]; then return 0; fi
  $G quantize --embeddings "$1" --out "$2" --method "$3" --levels 3 --codebook-size 256 --seed "$SEED" \
    --overwrite > "$W/logs/quantize-$(basename "$2").log" 2>&1
}
stage1() {  # NAME EXTRA_ARGS...
  local name=$1; shift
  if ! wanted "$name"; then return 0; fi
  if [ ! -f "$W/$name/stage1/integrated_embeddings.safetensors" ]; then
    echo "$name: Stage I ..."
    $G stage1 --data "$BASE/data" --embeddings "$BASE/embeddings/semantic.safetensors" --out "$W/$name/stage1" \
      --epochs 8 --patience 2 --seed "$SEED" "$@" > "$W/logs/stage1-$name.log" 2>&1
  fi
  quantize "$W/$name/stage1/integrated_embeddings.safetensors" "$W/$name/semantic_ids" residual_kmeans
}

EMB="$BASE/stage1/integrated_embeddings.safetensors"
stage2 abl-default "$EMB" "$BASE/semantic_ids" "{$STAGE2}"
wanted abl-codes-random && quantize "$EMB" "$W/codes-random" random
stage2 abl-codes-random "$EMB" "$W/codes-random" "{$STAGE2}"
wanted abl-codes-rqvae && quantize "$EMB" "$W/codes-rqvae" rqvae
stage2 abl-codes-rqvae "$EMB" "$W/codes-rqvae" "{$STAGE2}"
stage2 abl-unconstrained "$EMB" "$BASE/semantic_ids" \
  "{\"history_mode\": \"per_item\", \"constrained_training\": false, $ARCH, \"distillation_weight\": 0.1}"
stage2 abl-nodistill "$EMB" "$BASE/semantic_ids" "{$STAGE2_NO_LAMBDA, \"distillation_weight\": 0.0}"
for mode in semantic_only collaborative_only concat; do
  name=abl-${mode//_/-}
  stage1 "$name" --mode "$mode"
  stage2 "$name" "$W/$name/stage1/integrated_embeddings.safetensors" "$W/$name/semantic_ids" "{$STAGE2}"
done
stage1 abl-no-align --config '{"align_weight": 0.0}'
stage2 abl-no-align "$W/abl-no-align/stage1/integrated_embeddings.safetensors" "$W/abl-no-align/semantic_ids" "{$STAGE2}"
echo "all arms done: python benchmarks/report.py --only 'ml100k-genrec-stage2-abl-*' (--source ROW=$W/NAME.json when W is not runs/ml-100k-abl)"
