#!/usr/bin/env bash
# The experiment behind the bundled default model, with this project's own commands (CPU or GPU):
#   1. leave-one-patient-out (train on A, test on B, and the reverse) for the Attention U-Net with and
#      without synthetic phantoms as extra training data, and for the plain U-Net with the same recipe;
#   2. `attention-unet evaluate` of every held-out patient with the run's final model (never `best`:
#      that one was picked on the held-out patient) and `attention-unet compare` between the variants;
#   3. the bundled model: the winning variant trained on both patients (`--fold all`), 1000 steps, exported
#      with float16 weights as OUT/attention-unet-abdomen-v1.safetensors (copy it into
#      AttentionUNetSeg/AttentionUNetSegLib/data/ and update models.json's sha256 and the model card).
# Usage: bash models/abdomen-v1/run.sh [lopo|final|all] [OUT]   (default: all, runs/abdomen-v1)
# Runs that finished are kept; an interrupted one resumes. Needs ../shared beside the repository.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STAGE=${1:-all}
OUT=${2:-$HERE/../../runs/abdomen-v1}
AU=${AU:-attention-unet}
# Phantoms helped on the held-out patients (see the model card), so the final model is trained with them.
FINAL_DATA=dataset_with_phantoms.csv

train() {  # NAME DATA [options]: train unless finished; resume if interrupted
  local name=$1 data=$2; shift 2
  if [ -f "$OUT/$name/final.safetensors" ]; then return; fi
  if [ -f "$OUT/$name/checkpoint.pt" ]; then
    $AU train --resume -o "$OUT/$name"
  else
    $AU train "$HERE/$data" --config "$HERE/train.yaml" -o "$OUT/$name" --cache-dir "$OUT/cache" "$@"
  fi
}

evaluate() {  # NAME DATA SPLITS FOLD: score the run's final model on the fold's held-out patient
  local name=$1 data=$2 splits=$3 fold=$4
  $AU evaluate --model "$OUT/$name/final.safetensors" --data "$HERE/$data" --label-map totalsegmentator \
    --splits "$HERE/$splits" --fold "$fold" -o "$OUT/$name/evaluation"
}

"$AU" phantom -o "$HERE/phantoms" --count 6 --seed 0 >/dev/null

if [ "$STAGE" = lopo ] || [ "$STAGE" = all ]; then
  for fold in 0 1; do
    train "attention-fold$fold" dataset.csv --splits "$HERE/splits.json" --fold "$fold"
    train "attention-phantoms-fold$fold" dataset_with_phantoms.csv --splits "$HERE/splits_with_phantoms.json" \
      --fold "$fold"
    train "unet-phantoms-fold$fold" dataset_with_phantoms.csv --splits "$HERE/splits_with_phantoms.json" \
      --fold "$fold" --architecture unet_3d
    evaluate "attention-fold$fold" dataset.csv splits.json "$fold"
    evaluate "attention-phantoms-fold$fold" dataset_with_phantoms.csv splits_with_phantoms.json "$fold"
    evaluate "unet-phantoms-fold$fold" dataset_with_phantoms.csv splits_with_phantoms.json "$fold"
  done
  for variant in attention attention-phantoms unet-phantoms; do
    $AU evaluate --merge "$OUT/$variant-fold0/evaluation/evaluation.json" \
      "$OUT/$variant-fold1/evaluation/evaluation.json" -o "$OUT/$variant-lopo"
  done
  $AU compare "$OUT/attention-lopo/evaluation.json" "$OUT/attention-phantoms-lopo/evaluation.json" \
    -o "$OUT/compare-phantoms"
  $AU compare "$OUT/unet-phantoms-lopo/evaluation.json" "$OUT/attention-phantoms-lopo/evaluation.json" \
    -o "$OUT/compare-attention"
fi

if [ "$STAGE" = final ] || [ "$STAGE" = all ]; then
  train final "$FINAL_DATA" --fold all --epochs 40 --name attention-unet-abdomen-v1
  $AU models export "$OUT/final/final.safetensors" -o "$OUT/attention-unet-abdomen-v1.safetensors" --half \
    --license Apache-2.0 --description "Attention U-Net (paper size, 6.47 M parameters) for pancreas, spleen, \
kidney and liver at 2 mm, trained on two partial CT scans (TotalSegmentator examples) and six synthetic phantoms: \
a demonstration model, not for clinical use (see attention-unet-abdomen-v1.md)."
fi
