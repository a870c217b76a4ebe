#!/usr/bin/env bash
# The experiment behind the default model v4 (its card: attention-unet-abdomen-v4.md): v3's recipe and scripts
# (models/abdomen-v3: train.yaml, splits.json, the dataset, the three folds of both networks, the final model), with
# the organs a scan does not label merged into background in its loss (--partial-labels marginal) instead of left
# out of its softmax: on v3's fold 2 that raised the recall of liver, spleen and kidney on both unseen scans; on
# fold 0 it left patient A as it was and labelled more of the unseen pelvis (v3's card, "Partial labels"); on all
# three folds it raised the mean held-out Dice of liver, spleen and kidney. Its folds 0 and 2 are the same runs as
# v3's marginal-loss ablations (run.sh marginal), so an OUT may link them in as attention_unet_3d-fold0 and -fold2.
# Usage as v3's: bash models/abdomen-v4/run.sh [folds|final|all] [OUT]   (default: all, ../runs/abdomen-v4, from NAME)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=attention-unet-abdomen-v4 TRAINING="--partial-labels marginal" ABLATIONS=no \
  RECIPE="contrast-phase augmentation and the marginal loss for partially labelled scans" \
  exec bash "$HERE/../abdomen-v3/run.sh" "$@"
