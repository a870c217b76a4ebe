"""Model files: one .safetensors holding the weights and a JSON metadata header.

The header key `attention_unet_seg` holds `ModelMetadata` as JSON: format version, architecture and
hyperparameters, classes (names, colours, terminology), voxel spacing, patch size, the sliding-window size
inference uses, intensity normalisation, provenance, metrics and licence. Loading never unpickles anything;
reading the metadata loads neither PyTorch nor the weights (header.py).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..errors import ModelFileError
from ..io.atomic import atomic_file
from ..network.config import ModelConfig
from .header import read_header_metadata
from .intensity import IntensityNormalisation
from .segment_classes import SegmentClass

if TYPE_CHECKING:  # reading metadata needs neither PyTorch nor the network: imported to load or save weights
    import torch

    from ..network.attention_unet import AttentionUNet3D

FORMAT_VERSION = 1
METADATA_KEY = "attention_unet_seg"
FLOAT32_BUFFERS = ("running_mean", "running_var")
REQUIRED_FIELDS = ("format_version", "name", "architecture", "classes", "spacing_mm", "patch_size", "intensity")


@dataclass
class ModelMetadata:
    """Everything besides the weights that inference and the Slicer module need to know. `patch_size` is the
    training patch (x, y, z), and the default patch of fine-tuning; `window_voxels` > 0 lets inference use
    windows of up to that many voxels, shaped like the scan (sliding_windows.window_size), 0 windows of
    `patch_size`: what the model was checked to do best with (a file without it reads as 0)."""

    name: str
    architecture: ModelConfig
    classes: List[SegmentClass]
    spacing_mm: Tuple[float, float, float]
    patch_size: Tuple[int, int, int]
    intensity: IntensityNormalisation = field(default_factory=IntensityNormalisation)
    description: str = ""
    trained: bool = True
    license: str = ""
    provenance: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    window_voxels: int = 0
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be three positive numbers (x, y, z), not {self.spacing_mm}")
        if len(self.patch_size) != 3 or any(p < 16 or p % 16 for p in self.patch_size):
            raise ValueError(f"patch_size must be three multiples of 16 (x, y, z), not {self.patch_size}")
        if self.window_voxels < 0:
            raise ValueError(f"window_voxels must be >= 0 (0: windows of patch_size), not {self.window_voxels}")
        if [c.value for c in self.classes] != list(range(self.architecture.num_classes)):
            raise ValueError(
                f"classes must have values 0..{self.architecture.num_classes - 1}, one per network output, "
                f"not {[c.value for c in self.classes]}"
            )

    @property
    def class_names(self) -> List[str]:
        return [c.name for c in self.classes]

    def to_json(self) -> str:
        values = asdict(self)
        values["architecture"] = self.architecture.to_dict()
        values["classes"] = [c.to_dict() for c in self.classes]
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("metadata is not a JSON object")
        missing = [k for k in REQUIRED_FIELDS if k not in values]
        if missing:
            raise ValueError(f"metadata lacks the required field(s) {missing}")
        if values["format_version"] != FORMAT_VERSION:
            raise ValueError(
                f"format version {values['format_version']!r} is not supported (this version reads {FORMAT_VERSION}); "
                "update AttentionUNetSeg or re-export the model"
            )
        values["architecture"] = ModelConfig.from_dict(values["architecture"])
        values["classes"] = [SegmentClass.from_dict(c) for c in values["classes"]]
        values["intensity"] = IntensityNormalisation(**values["intensity"])
        return cls(**values)


def save_model(model: AttentionUNet3D, metadata: ModelMetadata, path: Path, half_precision: bool = False) -> Path:
    """Write weights and metadata atomically; `half_precision` stores float weights as float16 (BatchNorm's
    running statistics stay float32: a small variance would lose its precision in float16)."""
    from safetensors.torch import save_file

    if model.config != metadata.architecture:
        raise ValueError("the model's config differs from metadata.architecture")
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if half_precision and tensor.is_floating_point() and not key.endswith(FLOAT32_BUFFERS):
            tensor = tensor.half()
        tensors[key] = tensor.contiguous()
    path = Path(path)
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: metadata.to_json()})
    return path


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate only the metadata header of a model file (without PyTorch: header.py)."""
    path = _existing(path)
    header = read_header_metadata(path)
    if METADATA_KEY not in header:
        raise ModelFileError(f"{path} is a safetensors file without AttentionUNetSeg metadata; "
                             "convert authors' checkpoints with `attention-unet models import-authors`")
    try:
        return ModelMetadata.from_json(header[METADATA_KEY])
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: invalid metadata: {exc}") from exc


def read_model(path: Path, device: str = "cpu") -> AttentionUNet3D:
    """Load a model file; the returned module is in eval mode and carries `.metadata` and `.sha256`."""
    from safetensors.torch import load_file

    from ..network.attention_unet import AttentionUNet3D

    path = _existing(path)
    metadata = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read the weights (corrupt or truncated?): {exc}") from exc
    model = AttentionUNet3D(metadata.architecture)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not match the architecture in its metadata: "
                             f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if tensors[k].shape != v.shape]
    if wrong:
        raise ModelFileError(f"{path}: mis-shaped weights: {wrong[:5]}")
    model.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected})
    model.metadata = metadata
    model.sha256 = file_sha256(path)
    return model.eval().to(device)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_metadata(model: torch.nn.Module) -> ModelMetadata:
    """The metadata a loaded model carries, or a clear error for a bare module."""
    metadata: Optional[ModelMetadata] = getattr(model, "metadata", None)
    if metadata is None:
        raise ModelFileError("this model has no metadata (spacing, classes, normalisation): "
                             "load it with AttentionUNetSegLib.load_model(name or path)")
    return metadata


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    return path
