"""A trained model's balance between background and the organs, shifted after training.

Lowering the background class's logit by `offset` (the bias of the network's last 1x1x1 convolution) raises every
organ's logit against background alike: each organ grows wherever the network was unsure whether a voxel was
organ or background, while the boundaries between two organs stay where they were, and the attention maps do not
change. A model that under-segments the scans it did not see (high precision, low recall on its held-out folds) is
corrected with an offset chosen on those folds (models/abdomen-v5/calibrate.py) and written with `attention-unet
models export --background-offset`; the offsets applied so far add up in the file's provenance.
"""
from __future__ import annotations

import torch

PROVENANCE_KEY = "background_offset"


def lower_background_logit(model: torch.nn.Module, offset: float) -> None:
    """Lower the background's logit (class 0) by `offset` at every voxel, in place. A model read from a file no
    longer holds that file's weights, so it loses the file's sha256 (OpenVINO's cache is keyed by it)."""
    with torch.no_grad():
        model.final.bias[0] -= offset
    if getattr(model, "sha256", None) is not None:
        model.sha256 = None
