"""AttentionUNetSeg core: the 3D Attention U-Net of Oktay et al. 2018 for abdominal CT, without Slicer.

Public API: `load_model` (a registry name, a model file or the default model), `save_model`, `segment`,
`read_image`, `AttentionUNet3D`, `ModelConfig`.
Heavy imports (torch, SimpleITK) happen on first use, so importing the package is cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AttentionUNet3D", "ModelConfig", "ModelMetadata", "SegmentationResult", "load_model", "read_image",
           "save_model", "segment"]

_LOCATIONS = {
    "AttentionUNet3D": "model", "ModelConfig": "model", "ModelMetadata": "model_file", "load_model": "registry",
    "save_model": "model_file", "segment": "inference", "SegmentationResult": "inference", "read_image": "imageio",
}

if TYPE_CHECKING:
    from .model_file import ModelMetadata, save_model
    from .registry import load_model
    from .imageio import read_image
    from .inference import SegmentationResult, segment
    from .model import AttentionUNet3D, ModelConfig


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_LOCATIONS[name]}", __name__), name)
