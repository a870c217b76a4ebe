"""`InferenceSettings`: how `segment` runs and what it computes, from the CLI or the Slicer logic down to the
backends. Plain values only (no PyTorch), so they can be written to a job file and checked before a run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..backends.choices import DEVICE_CHOICES
from ..errors import InvalidOptionError


@dataclass(frozen=True)
class InferenceSettings:
    """`device` (DEVICE_CHOICES or cuda:N), `precision` (INFERENCE_PRECISION_CHOICES) and `backend`
    (backends.BACKEND_CHOICES) are resolved when the run starts. `overlap` of the sliding windows in [0, 1);
    `batch_size` windows per forward pass (None: 4 on CUDA, 1 elsewhere); `window_voxels` > 0 enlarges the
    windows up to that many voxels, 0 keeps them at the model's training patch, None takes the model's own
    choice (its file's `window_voxels`: a model trained on small patches may segment differently with more
    context, so a model records what it was checked with; docs/benchmarks.md). `attention` and
    `probabilities`: which maps to compute besides the labels."""

    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    overlap: float = 0.25
    batch_size: Optional[int] = None
    window_voxels: Optional[int] = None
    attention: bool = True
    probabilities: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise InvalidOptionError(f"overlap must be in [0, 1), not {self.overlap}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidOptionError(f"batch_size must be >= 1 windows (None: the device's default), not "
                                     f"{self.batch_size}")
        if self.window_voxels is not None and self.window_voxels < 0:
            raise InvalidOptionError(f"window_voxels must be >= 0 (0: the training patch, None: the model's "
                                     f"choice), not {self.window_voxels}")

    def windows_per_batch(self, device_type: str) -> int:
        """`batch_size`, or the default for a device of this type."""
        return self.batch_size or (4 if device_type == "cuda" else 1)
