"""What a segmentation gives: `SegmentationResult` (labels on the input's grid, maps, run facts) and `ResampledMaps`
(maps kept on the model's grid, resampled onto the input's when read).

Without PyTorch (the resampler is imported when a map is resampled), so that the Slicer logic reads a worker's
result (worker.jobs.read_result) in Slicer's own process without loading PyTorch there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import numpy as np
import SimpleITK as sitk

from ..io.grid import Grid
from ..io.maps import MapSet
from ..models.segment_classes import SegmentClass


class ResampledMaps(MapSet):
    """Maps (z, y, x arrays: `source_maps`) kept on the `source` grid (the model's) and resampled onto `grid` when
    read, one at a time, clipped to [0, 1] and, with `step` (a power of two, at least 2^-15), rounded to
    multiples of it."""

    def __init__(self, maps: Dict[str, np.ndarray], source: Grid, grid: Grid, step: Optional[float] = None) -> None:
        self.source_maps, self.source, self.grid, self.step = maps, source, grid, step

    def array(self, name: str) -> np.ndarray:
        out = np.empty(self.grid.shape, np.float32)
        self.read_into(name, out)
        return out

    def read_into(self, name: str, out: np.ndarray) -> None:
        from .resampling import resample_linear, resample_rounded

        if self.step is not None:
            resample_rounded(self.source_maps[name], self.source, self.grid, self.step, out)
        else:
            np.clip(resample_linear(self.source_maps[name], self.source, self.grid), 0.0, 1.0, out=out)

    def source_values(self, name: str) -> np.ndarray:
        """The map's values (z, y, x, float32) on the `source` grid itself, clipped and rounded as when read onto
        `grid`: a few MB where `grid`'s would take hundreds, for a viewer that resamples as it shows them."""
        values = np.clip(self.source_maps[name], 0.0, 1.0).astype(np.float32, copy=False)
        if self.step is not None:
            values *= np.float32(1.0 / self.step)
            np.rint(values, out=values)
            values *= np.float32(self.step)
        return values

    def multiples(self, name: str) -> np.ndarray:
        from .resampling import resample_multiples

        if self.step is None:
            return super().multiples(name)  # the refusal
        return resample_multiples(self.source_maps[name], self.source, self.grid, self.step)

    def __iter__(self) -> Iterator[str]:
        return iter(self.source_maps)

    def __len__(self) -> int:
        return len(self.source_maps)


@dataclass
class SegmentationResult:
    """Labels (uint8) on the input grid, attention/probability maps on it, and run facts."""

    labels: sitk.Image
    classes: List[SegmentClass]
    attention: MapSet
    probabilities: Optional[MapSet]
    device: str
    precision: str
    backend: str = "torch"
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def volumes_ml(self) -> Dict[str, float]:
        """Volume of every foreground class in millilitres, rounded to 0.01 mL (one comparison per class:
        np.bincount would widen the uint8 labels to int64 first, 8 bytes a voxel)."""
        labels = sitk.GetArrayViewFromImage(self.labels)
        voxel_ml = math.prod(self.labels.GetSpacing()) / 1000.0
        return {c.name: round(np.count_nonzero(labels == c.value) * voxel_ml, 2) for c in self.classes if c.value > 0}
