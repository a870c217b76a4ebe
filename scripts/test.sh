#!/usr/bin/env bash
# Set up with the test extras, then run the whole pytest suite (its shared_data tests need ../shared beside the
# repo or ATTENTION_UNET_SHARED, and are skipped without it).
# pytest's exit code passes through: 5 ("no tests collected") fails like any other error.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
.venv/bin/python -m pytest Testing "$@"
