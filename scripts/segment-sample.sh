#!/usr/bin/env bash
# Set up, then segment the bundled sample CT with the bundled default model into out/sample/
# (labels, one attention map per gate, summary.json). Extra arguments go to `attention-unet segment`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/attention-unet segment AttentionUNetSeg/AttentionUNetSegLib/data/sample/example_ct.nii.gz -o out/sample "$@"
