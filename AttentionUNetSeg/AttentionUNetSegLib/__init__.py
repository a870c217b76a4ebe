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
    "AttentionUNet3D": "network.attention_unet", "ModelConfig": "network.attention_unet",
    "ModelMetadata": "models.model_file", "load_model": "models.registry", "save_model": "models.model_file",
    "segment": "inference.segmenter", "SegmentationResult": "inference.segmenter", "read_image": "io.images",
}

if TYPE_CHECKING:
    from .inference.segmenter import SegmentationResult, segment
    from .io.images import read_image
    from .models.model_file import ModelMetadata, save_model
    from .models.registry import load_model
    from .network.attention_unet import AttentionUNet3D, ModelConfig


def package_version() -> str:
    """The installed AttentionUNetSeg's version; "unknown" when it runs from a source tree that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("AttentionUNetSeg")
    except PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_LOCATIONS[name]}", __name__), name)
