"""Write the placeholder model bundled until a trained default model lands (clearly marked untrained).

Usage: python scripts/build_untrained_model.py AttentionUNetSeg/AttentionUNetSegLib/data/untrained-demo-fs16.safetensors
"""
import sys

import torch

from AttentionUNetSegLib.bundle import IntensityNormalisation, ModelMetadata, save_model
from AttentionUNetSegLib.classes import DEFAULT_CLASS_NAMES, make_classes
from AttentionUNetSegLib.model import AttentionUNet3D, ModelConfig

torch.manual_seed(0)
config = ModelConfig(num_classes=len(DEFAULT_CLASS_NAMES), feature_scale=16)
metadata = ModelMetadata(
    name="untrained-demo-fs16",
    description="UNTRAINED placeholder (random weights, seed 0): exercises the pipeline end to end; "
    "its labels and attention maps carry no anatomical meaning.",
    architecture=config,
    classes=make_classes(DEFAULT_CLASS_NAMES),
    spacing_mm=(2.0, 2.0, 2.0),
    patch_size=(160, 160, 96),
    intensity=IntensityNormalisation(clip_min=-1000, clip_max=1000, mean=0.0, std=1000.0),
    trained=False,
    license="Apache-2.0",
    provenance={"training": "none (random initialisation, torch.manual_seed(0))"},
)
save_model(AttentionUNet3D(config), metadata, sys.argv[1], half_precision=True)
