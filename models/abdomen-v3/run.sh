#!/usr/bin/env bash
# The experiment behind the default model v3, with this project's own commands (CPU or GPU):
#   1. the dataset: make_dataset.py writes OUT/data/dataset.csv from ../shared/data (never into the repo);
#   2. three folds over the six real scans (splits.json: each scan held out once, patient A with its pelvis) for
#      the Attention U-Net and the plain U-Net with one recipe (train.yaml), each fold's final model scored on
#      its held-out scans with `attention-unet evaluate`, the folds merged and the networks compared
#      (`attention-unet compare`);
#   3. the ablations, on fold 0 (held out: the non-contrast patient A with its pelvis, and NIH case 1, a whole
#      abdomen from the heart to the pelvis with a manual pancreas): the recipe without the contrast-phase
#      augmentation, and the recipe on v2's 2 mm grid (windows of 192x192x96 mm instead of 288x288x144 mm); and on
#      folds 2 (held out: 3D-IRCADb 1.1 and patient B, contrast-enhanced) and 0 the organs a case does not label
#      merged into background (--partial-labels marginal) instead of left out of its softmax;
#   4. the default model: the Attention U-Net trained on every case (--fold all, FINAL_STEPS steps), exported
#      with float16 weights and windows of up to 160x160x96 voxels (480x480x288 mm at 3 mm: a whole abdomen in one
#      window, so no window seams; window_check.py) as OUT/attention-unet-abdomen-v3.safetensors (copy it into
#      AttentionUNetSeg/AttentionUNetSegLib/data/ and update models.json and the model card).
#   The card's tables and pictures: tables.py OUT, attention_focus.py OUT, pictures.py (see their docstrings).
#   Nothing from 3D-IRCADb is ever written into the repository: OUT lies outside it.
# Usage: bash models/abdomen-v3/run.sh [folds|final|all] [OUT]   (default: all, ../runs/abdomen-v3)
# A later model with this recipe and a few more options sets NAME, TRAINING (options added to train.yaml's),
# RECIPE (its description's words on the recipe) and ABLATIONS=no (models/abdomen-v4/run.sh).
# LANES=2 runs two trainings at a time with one thread each (on a 2-core CPU that doubles the throughput, as
# PyTorch keeps one core busy in a training step). Finished runs are kept; an interrupted one resumes, so the
# experiment may be stopped (SIGTERM/SIGINT: a checkpoint after the current step) and continued in a later session.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STAGE=${1:-all}
NAME=${NAME:-attention-unet-abdomen-v3}
TRAINING=${TRAINING:-}
RECIPE=${RECIPE:-contrast-phase augmentation}
ABLATIONS=${ABLATIONS:-yes}
OUT=${2:-$HERE/../../../runs/${NAME#attention-unet-}}
AU=${AU:-attention-unet}
FOLD_STEPS=${FOLD_STEPS:-1500}
FINAL_STEPS=${FINAL_STEPS:-4000}
STEPS_PER_EPOCH=50
DATA=$OUT/data/dataset.csv
LICENSE="CC-BY-NC-ND-4.0 (trained on 3D-IRCADb-01: non-commercial research use only)"
mkdir -p "$OUT"
[ -f "$DATA" ] || python "$HERE/make_dataset.py" "$OUT/data" >/dev/null

train() {  # NAME STEPS [options]: train unless finished; resume if interrupted
  local name=$1 steps=$2; shift 2
  if [ -f "$OUT/$name/final.safetensors" ]; then return; fi
  if [ -f "$OUT/$name/checkpoint.pt" ]; then
    $AU train --resume -o "$OUT/$name"
  else
    # shellcheck disable=SC2086  # TRAINING: options, split into words
    $AU train "$DATA" --config "$HERE/train.yaml" -o "$OUT/$name" --cache-dir "$OUT/cache" \
      --epochs $((steps / STEPS_PER_EPOCH)) --iterations-per-epoch $STEPS_PER_EPOCH $TRAINING "$@"
  fi
}

fold() {  # RUN FOLD [options]: train one fold and score its final model on the held-out scans
  local name=$1 n=$2; shift 2
  train "$name" "$FOLD_STEPS" --splits "$HERE/splits.json" --folds 3 --fold "$n" "$@"
  [ -f "$OUT/$name/evaluation/evaluation.json" ] || $AU evaluate --model "$OUT/$name/final.safetensors" \
    --data "$DATA" --label-map totalsegmentator --splits "$HERE/splits.json" --fold "$n" -o "$OUT/$name/evaluation"
}

attention() { fold "attention_unet_3d-fold$1" "$1" --architecture attention_unet_3d; }
unet() { fold "unet_3d-fold$1" "$1" --architecture unet_3d; }
no_phases() { fold "ablation-no-phases-fold0" 0 --contrast-phase-probability 0; }
grid_2mm() { fold "ablation-2mm-fold0" 0 --spacing-mm 2 2 2; }
marginal() {
  fold "ablation-marginal-fold2" 2 --partial-labels marginal
  fold "ablation-marginal-fold0" 0 --partial-labels marginal
}

final() {
  train final "$FINAL_STEPS" --fold all --name "$NAME"
  [ -f "$OUT/$NAME.safetensors" ] || $AU models export "$OUT/final/final.safetensors" -o "$OUT/$NAME.safetensors" \
    --half --window-voxels 2457600 --license "$LICENSE" --description "Attention U-Net (paper size, 6.47 M parameters) for pancreas, \
spleen, kidney and liver at 3 mm, trained on six real CT scans (TotalSegmentator examples and subject s0009, \
3D-IRCADb-01 patients 1.1 and 1.7, NIH Pancreas-CT case 1) with $RECIPE: a research model \
for non-commercial use, not for clinical use (see $NAME.md)."
  # Dice on its own training scans: no measure of generalisation, the figures of the test suite's guard
  [ -f "$OUT/final/evaluation-training-scans/evaluation.json" ] || $AU evaluate --model "$OUT/$NAME.safetensors" \
    --data "$DATA" --label-map totalsegmentator -o "$OUT/final/evaluation-training-scans"
}

folds_lane1() { attention 1; unet 1; unet 2; if [ "$ABLATIONS" = yes ]; then marginal; fi; }
folds_lane2() { attention 0; attention 2; if [ "$ABLATIONS" = yes ]; then grid_2mm; no_phases; fi; unet 0; }

merge() {
  for arch in attention_unet_3d unet_3d; do
    $AU evaluate --merge "$OUT"/$arch-fold{0,1,2}/evaluation/evaluation.json -o "$OUT/$arch-folds"
  done
  $AU compare "$OUT/unet_3d-folds/evaluation.json" "$OUT/attention_unet_3d-folds/evaluation.json" -o "$OUT/compare"
}

if [ "${LANES:-1}" = 2 ]; then
  export OMP_NUM_THREADS=1
  case $STAGE in
    all) (final; folds_lane1) & (folds_lane2) & wait ;;
    folds) (folds_lane1) & (folds_lane2) & wait ;;
    final) final ;;
  esac
else
  case $STAGE in
    all) final; folds_lane1; folds_lane2 ;;
    folds) folds_lane1; folds_lane2 ;;
    final) final ;;
  esac
fi
if [ "$STAGE" != final ]; then merge; fi
