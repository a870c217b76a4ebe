#!/usr/bin/env bash
# U-Net against Attention U-Net on synthetic phantoms, with this project's own commands (CPU or GPU):
# 14 phantoms (`attention-unet phantom`), both networks trained on the first 6 with train.yaml (same seed),
# the final weights of each scored on the 8 held out (`evaluate --model`), then paired Wilcoxon tests
# (`compare`). Usage: bash models/phantom-comparison/run.sh [OUT [SEED]]
# (default: runs/phantom-comparison, seed 0 as in train.yaml; the phantoms are the same for every SEED).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$(cd "$HERE/../.." && pwd)/runs/phantom-comparison}
SEED=${2:-0}
AU=${AU:-attention-unet}

[ -f "$HERE/phantoms/dataset.json" ] || "$AU" phantom -o "$HERE/phantoms" --count 14 --seed 100 >/dev/null
for architecture in unet_3d attention_unet_3d; do
  if [ ! -f "$OUT/$architecture/final.safetensors" ]; then
    "$AU" train "$HERE/phantoms" --config "$HERE/train.yaml" --architecture "$architecture" \
      --splits "$HERE/splits.json" --fold 0 --seed "$SEED" -o "$OUT/$architecture" --cache-dir "$OUT/cache"
  fi
  "$AU" evaluate --model "$OUT/$architecture/final.safetensors" --data "$HERE/phantoms" \
    --label-map totalsegmentator --splits "$HERE/splits.json" --fold 0 -o "$OUT/$architecture/evaluation"
done
"$AU" compare "$OUT/unet_3d/evaluation/evaluation.json" "$OUT/attention_unet_3d/evaluation/evaluation.json" \
  -o "$OUT/compare"
