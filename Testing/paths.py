"""Where the tests find the repository and the shared data (without importing PyTorch: the probes that check
what Slicer's process loads import this too)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTENTION_UNET_SHARED", REPO_ROOT.parent / "shared"))
TOTALSEG = SHARED / "data" / "totalseg_example"
AUTHORS_REFERENCE = SHARED / "fixtures" / "authors_reference"
SAMPLE_CT = REPO_ROOT / "AttentionUNetSeg" / "AttentionUNetSegLib" / "data" / "sample" / "example_ct.nii.gz"
