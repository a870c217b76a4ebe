"""AttentionUNetSeg core: the 3D Attention U-Net of Oktay et al. 2018 for abdominal CT, without Slicer.

Public API (everything else is internal and may move):

- `segment(image, model=None, settings=None, progress=..., cancel=...)`: one CT in, a `SegmentationResult`
  (labels, attention and probability maps on the CT's grid, organ volumes) out;
- `Segmenter(model=None, settings=None)`: a model made ready once, called on any number of CTs;
- `InferenceSettings`: how they run (device, precision, backend, overlap, windows) and which maps they compute;
- `load_model` (a registry name, a model file or the default model), `save_model`, `ModelMetadata`;
- `read_image` (NIfTI, NRRD, MHA or a DICOM folder);
- `AttentionUNet3D`, `ModelConfig`: the network itself.

Each name is imported on first use, so importing the package imports neither PyTorch nor SimpleITK.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

__all__ = ["AttentionUNet3D", "InferenceSettings", "ModelConfig", "ModelMetadata", "SegmentationResult", "Segmenter",
           "load_model", "read_image", "save_model", "segment"]

_LOCATIONS = {
    "AttentionUNet3D": "network.attention_unet", "ModelConfig": "network.config",
    "ModelMetadata": "models.model_file", "load_model": "models.registry", "save_model": "models.model_file",
    "segment": "inference.segmenter", "Segmenter": "inference.segmenter", "SegmentationResult": "inference.result",
    "InferenceSettings": "inference.settings", "read_image": "io.images",
}

if TYPE_CHECKING:
    from .inference.result import SegmentationResult
    from .inference.segmenter import Segmenter, segment
    from .inference.settings import InferenceSettings
    from .io.images import read_image
    from .models.model_file import ModelMetadata, save_model
    from .models.registry import load_model
    from .network.attention_unet import AttentionUNet3D
    from .network.config import ModelConfig


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


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
