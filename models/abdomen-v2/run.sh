#!/usr/bin/env bash
# The experiment behind the default model v2, with this project's own commands (CPU or GPU):
#   1. the dataset: make_dataset.py writes OUT/data/dataset.csv from ../shared/data (never into the repo);
#   2. leave-one-scan-out over the five real scans (splits.json; patient A's pelvis goes with patient A) for
#      the Attention U-Net and the plain U-Net with one recipe (train.yaml, 125 steps per fold), each fold's
#      final model scored on its held-out scan with `attention-unet evaluate`, the folds merged, the two
#      networks compared (`attention-unet compare`), and the attention focus of every gate measured
#      (attention_focus.py);
#   3. the default model: the Attention U-Net trained on every case (--fold all, FINAL_STEPS steps), exported
#      with float16 weights as OUT/attention-unet-abdomen-v2.safetensors (copy it into
#      AttentionUNetSeg/AttentionUNetSegLib/data/ and update models.json and the model card) and scored on
#      its own training scans;
#   4. the tables of the model card: loso_tables.py OUT, attention_focus.py OUT (run here), and the pictures
#      of the sample CT: sample_pictures.py OUT/attention-unet-abdomen-v2.safetensors docs/images/abdomen-v2/sample-ct.png.
# Usage: bash models/abdomen-v2/run.sh [lopo|final|all] [OUT]   (default: all, ../runs/abdomen-v2)
# LANES=2 runs two trainings at a time with one thread each: on a 2-core CPU whose PyTorch keeps one core
# busy in a training step (docs/training.md), that doubles the throughput. Finished runs are kept; an
# interrupted one resumes.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STAGE=${1:-all}
OUT=${2:-$HERE/../../../runs/abdomen-v2}
AU=${AU:-attention-unet}
FINAL_STEPS=${FINAL_STEPS:-1000}
DATA=$OUT/data/dataset.csv
LICENSE="CC-BY-NC-ND-4.0 (trained on 3D-IRCADb-01: non-commercial research use only)"
mkdir -p "$OUT"
[ -f "$DATA" ] || python "$HERE/make_dataset.py" "$OUT/data" >/dev/null

train() {  # NAME [options]: train unless finished; resume if interrupted
  local name=$1; shift
  if [ -f "$OUT/$name/final.safetensors" ]; then return; fi
  if [ -f "$OUT/$name/checkpoint.pt" ]; then
    $AU train --resume -o "$OUT/$name"
  else
    $AU train "$DATA" --config "$HERE/train.yaml" -o "$OUT/$name" --cache-dir "$OUT/cache" "$@"
  fi
}

fold() {  # ARCHITECTURE FOLD [options]: train one fold and score its final model on the held-out scan
  local arch=$1 n=$2; shift 2
  local name=$arch-fold$n
  train "$name" --architecture "$arch" --splits "$HERE/splits.json" --folds 5 --fold "$n" "$@"
  [ -f "$OUT/$name/evaluation/evaluation.json" ] || $AU evaluate --model "$OUT/$name/final.safetensors" \
    --data "$DATA" --label-map totalsegmentator --splits "$HERE/splits.json" --fold "$n" -o "$OUT/$name/evaluation"
}

run_folds() {  # ARCHITECTURE:FOLD...: train and score these folds in turn
  local job
  for job in "$@"; do
    local arch=${job%:*} n=${job#*:}
    if [ "$arch" = attention_unet_3d ] && [ "$n" = 2 ]; then
      fold "$arch" "$n" --validate-every 1  # fold 2 validates every epoch, for the attention snapshots
    else
      fold "$arch" "$n"
    fi
  done
}
ATTENTION_FOLDS="attention_unet_3d:0 attention_unet_3d:1 attention_unet_3d:2 attention_unet_3d:3 attention_unet_3d:4"

final() {
  train final --fold all --epochs $((FINAL_STEPS / 25)) --name attention-unet-abdomen-v2
  $AU models export "$OUT/final/final.safetensors" -o "$OUT/attention-unet-abdomen-v2.safetensors" --half \
    --license "$LICENSE" --description "Attention U-Net (paper size, 6.47 M parameters) for pancreas, spleen, \
kidney and liver at 2 mm, trained on five real CT scans (TotalSegmentator examples and subject s0009, \
3D-IRCADb-01 patients 1.1 and 1.7): a research model for non-commercial use, not for clinical use (see \
attention-unet-abdomen-v2.md)."
  # Dice on its own training scans: no measure of generalisation, the figures of the test suite's guard
  [ -f "$OUT/final/evaluation-training-scans/evaluation.json" ] || $AU evaluate \
    --model "$OUT/attention-unet-abdomen-v2.safetensors" --data "$DATA" --label-map totalsegmentator \
    -o "$OUT/final/evaluation-training-scans"
}

if [ "${LANES:-1}" = 2 ]; then  # two lanes of about the same length
  export OMP_NUM_THREADS=1
  if [ "$STAGE" = all ]; then
    (final; run_folds unet_3d:3 unet_3d:4) & (run_folds $ATTENTION_FOLDS unet_3d:0 unet_3d:1 unet_3d:2) & wait
  elif [ "$STAGE" = lopo ]; then
    (run_folds attention_unet_3d:0 attention_unet_3d:1 unet_3d:0 unet_3d:1 unet_3d:2) &
    (run_folds attention_unet_3d:2 attention_unet_3d:3 attention_unet_3d:4 unet_3d:3 unet_3d:4) & wait
  elif [ "$STAGE" = final ]; then
    final
  fi
else
  if [ "$STAGE" = lopo ] || [ "$STAGE" = all ]; then
    run_folds $ATTENTION_FOLDS unet_3d:0 unet_3d:1 unet_3d:2 unet_3d:3 unet_3d:4
  fi
  if [ "$STAGE" = final ] || [ "$STAGE" = all ]; then final; fi
fi

if [ "$STAGE" = lopo ] || [ "$STAGE" = all ]; then
  for arch in attention_unet_3d unet_3d; do
    $AU evaluate --merge "$OUT"/$arch-fold{0,1,2,3,4}/evaluation/evaluation.json -o "$OUT/$arch-loso"
  done
  $AU compare "$OUT/unet_3d-loso/evaluation.json" "$OUT/attention_unet_3d-loso/evaluation.json" -o "$OUT/compare"
  python "$HERE/attention_focus.py" "$OUT" > "$OUT/attention_focus.md"  # with the final model's, once it exists
fi
