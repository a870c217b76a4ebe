"""Sliding-window inference on the model grid with Gaussian blending: window size, the body crop that fits the
windows, and the blended logits and attention maps.

The windows, their weights and the blending are MONAI's `sliding_window_inference` (mode "gaussian", sigma_scale
0.125, constant padding), reproduced here because importing MONAI takes about 2 s of a 2-core CPU, a sixth of
segmenting a whole CT there (docs/benchmarks.md); that they equal MONAI's own function is a contract,
Testing/engine/inference/test_contracts.py.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from ..backends.protocol import WindowBackend
from ..io.grid import Grid
from ..models.intensity import AIR_HU, normalise
from ..models.model_file import ModelMetadata
from ..progress import CancelCheck, ProgressCallback, SegmentationStage, no_progress, raise_if_cancelled
from .preprocessing import body_box, model_grid, resample
from .settings import InferenceSettings

MIN_AIR_MARGIN = 8
"""Voxels of air kept around the body's box on every side (window_fitted_body_box)."""
SIGMA_SCALE = 0.125
"""The Gaussian weight's sigma as a fraction of the window's side (MONAI's default)."""
MIN_WEIGHT = 1e-3
"""Weights below this are raised to it, so every voxel counts (MONAI's floor)."""


@dataclass(frozen=True)
class WindowLayout:
    """How a volume is cut into windows: their size `roi` (z, y, x), their `overlap`, `batch_size` windows per
    forward pass, and the `fill` a volume smaller than a window is padded with."""

    roi: Tuple[int, ...]
    overlap: float
    batch_size: int
    fill: float = 0.0


def window_size(shape_zyx: Sequence[int], patch_zyx: Sequence[int], max_voxels: int) -> Tuple[int, ...]:
    """The sliding window (z, y, x): the whole volume rounded up to multiples of 16, shrunk along its longest
    axis until it holds at most `max_voxels` (never below the training patch); `max_voxels` 0: the patch."""
    window = [max(p, -(-s // 16) * 16) for s, p in zip(shape_zyx, patch_zyx)] if max_voxels else list(patch_zyx)
    while math.prod(window) > max_voxels > 0:
        axis = max((a for a in range(3) if window[a] > patch_zyx[a]), key=lambda a: window[a], default=None)
        if axis is None:
            break
        window[axis] -= 16
    return tuple(window)


def body_input(image: sitk.Image, metadata: ModelMetadata, overlap: float) -> Tuple[Grid, Tuple[slice, ...], np.ndarray]:
    """What the network reads of a CT: the model grid, the body's box on it fitted to the windows
    (`window_fitted_body_box`), and the normalised CT in that box (float32, z, y, x)."""
    grid = model_grid(image, metadata.spacing_mm)
    resampled = resample(image, grid, sitk.sitkLinear, AIR_HU)
    hu = sitk.GetArrayViewFromImage(resampled)
    box = window_fitted_body_box(hu, tuple(reversed(metadata.patch_size)), overlap)
    return grid, box, normalise(hu[box], metadata.intensity)


def network_windows(image: sitk.Image, metadata: ModelMetadata, overlap: float) -> List[np.ndarray]:
    """The normalised windows (1, 1, z, y, x) that a segmentation of `image` with the model's training patch as
    its window feeds the network, in order."""
    patch = tuple(reversed(metadata.patch_size))
    _, _, body = body_input(image, metadata, overlap)
    padded, _ = padded_to_window(body, patch, metadata.intensity.air)
    return [np.ascontiguousarray(padded[box])[None, None] for box in window_boxes(padded.shape, patch, overlap)]


def sliding_window_outputs(backend: WindowBackend, model_input: np.ndarray, metadata: ModelMetadata,
                           settings: InferenceSettings, progress: ProgressCallback = no_progress,
                           cancel: Optional[CancelCheck] = None) -> np.ndarray:
    """Blended logits and (with `settings.attention`) attention maps, (classes + gates, z, y, x) on the model
    grid, of the normalised `model_input` (z, y, x).

    Windows are the model's training patch, or as large as `settings.window_voxels` (or, where that is None, the
    model's own `window_voxels`) allows (`window_size`); an input smaller than a window is padded with air."""
    max_voxels = metadata.window_voxels if settings.window_voxels is None else settings.window_voxels
    layout = WindowLayout(window_size(model_input.shape, tuple(reversed(metadata.patch_size)), max_voxels),
                          settings.overlap, settings.windows_per_batch(backend.device.type), metadata.intensity.air)
    return blend_windows(model_input, layout, lambda windows: _window_outputs(backend, windows, settings.attention),
                         backend.device, progress, cancel)


def blend_windows(volume: np.ndarray, layout: WindowLayout, predict: Callable[[torch.Tensor], torch.Tensor],
                  device: torch.device, progress: ProgressCallback = no_progress,
                  cancel: Optional[CancelCheck] = None) -> np.ndarray:
    """`predict`'s outputs (N, C, *roi) for batches of windows (N, 1, *roi) of `volume` (z, y, x) as `layout`
    cuts them, blended with Gaussian weights into (C, z, y, x); `volume` is padded to at least one window.

    The blending runs on `device`, where `predict` runs: on a GPU, accumulating every window's outputs on the
    CPU would take longer than the model itself."""
    padded, inside = padded_to_window(volume, layout.roi, layout.fill)
    source = torch.from_numpy(padded)[None, None]
    weight = gaussian_weight(layout.roi, device)
    total_weight = torch.zeros(padded.shape, dtype=torch.float32, device=device)
    windows = list(window_boxes(padded.shape, layout.roi, layout.overlap))
    blended: Optional[torch.Tensor] = None
    with torch.inference_mode():
        for first in range(0, len(windows), layout.batch_size):
            raise_if_cancelled(cancel)
            batch = windows[first:first + layout.batch_size]
            outputs = predict(torch.cat([source[(..., *box)] for box in batch]).to(device))
            if blended is None:
                blended = torch.zeros((outputs.shape[1],) + padded.shape, dtype=torch.float32, device=device)
            for box, output in zip(batch, outputs):
                blended[(slice(None), *box)] += output * weight
                total_weight[box] += weight
            progress(SegmentationStage.INFERENCE, (first + len(batch)) / len(windows))
        blended /= total_weight
    return blended[(slice(None), *inside)].cpu().numpy()


def _window_outputs(backend: WindowBackend, windows: torch.Tensor, attention: bool) -> torch.Tensor:
    """Logits and (with `attention`) every gate's map upsampled to the window, as channels (N, C, z, y, x)."""
    logits, gates = backend(windows, attention)
    maps = [torch.nn.functional.interpolate(alpha, size=windows.shape[2:], mode="trilinear") for alpha in gates]
    return torch.cat([logits] + maps, dim=1) if maps else logits


def padded_to_window(volume: np.ndarray, roi: Sequence[int], fill: float) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """`volume` padded with `fill` to at least `roi` on every axis (the extra split evenly, the odd voxel after),
    and where the volume lies in the padded one."""
    before = [max(r - n, 0) // 2 for n, r in zip(volume.shape, roi)]
    after = [max(r - n, 0) - b for n, r, b in zip(volume.shape, roi, before)]
    if not any(before) and not any(after):
        return volume, tuple(slice(0, n) for n in volume.shape)
    padded = np.pad(volume, list(zip(before, after)), constant_values=fill)
    return padded, tuple(slice(b, b + n) for b, n in zip(before, volume.shape))


def window_starts(length: int, window: int, overlap: float) -> List[int]:
    """Where windows start along an axis at least `window` long: every int(window * (1 - overlap)) voxels (at
    least 1), the last one moved back to end at the axis' end."""
    step = max(int(window * (1 - overlap)), 1)
    return [min(index * step, length - window) for index in range(windows_along(length, window, overlap))]


def window_boxes(shape: Sequence[int], roi: Sequence[int], overlap: float) -> Iterator[Tuple[slice, ...]]:
    """Every window of a volume at least `roi` large, in C order of their starts (z slowest)."""
    starts = [window_starts(length, window, overlap) for length, window in zip(shape, roi)]
    for corner in itertools.product(*starts):
        yield tuple(slice(start, start + window) for start, window in zip(corner, roi))


def gaussian_weight(roi: Sequence[int], device: torch.device) -> torch.Tensor:
    """Each window voxel's blending weight: a Gaussian of sigma SIGMA_SCALE x the side on every axis, peak 1
    between the two middle voxels or on the middle one, at least MIN_WEIGHT."""
    weight = torch.ones((), dtype=torch.float32, device=device)
    for side in roi:
        offsets = torch.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=torch.float32, device=device)
        weight = weight.unsqueeze(-1) * torch.exp(offsets ** 2 / (-2 * (side * SIGMA_SCALE) ** 2))
    return weight.clamp_(min=max(weight.min().item(), MIN_WEIGHT))


def window_fitted_body_box(hu: np.ndarray, patch_zyx: Sequence[int], overlap: float) -> Tuple[slice, ...]:
    """The body's box with air margins of a quarter of the patch's shortest side, narrowed (to no less than
    MIN_AIR_MARGIN voxels) on an axis where that saves a row of sliding windows: a body 125 voxels across
    with 24 voxels of air either side needs two 160-voxel windows on that axis, with 17 it needs one."""
    widest = min(patch_zyx) // 4
    candidates = range(min(MIN_AIR_MARGIN, widest), widest + 1)
    box = []
    for extent, size, window in zip(body_box(hu), hu.shape, patch_zyx):
        widened = [slice(max(extent.start - margin, 0), min(extent.stop + margin, size)) for margin in candidates]
        counts = [windows_along(axis.stop - axis.start, window, overlap) for axis in widened]
        box.append(max((axis for axis, count in zip(widened, counts) if count == min(counts)),
                       key=lambda axis: axis.stop - axis.start))
    return tuple(box)


def windows_along(length: int, window: int, overlap: float) -> int:
    """How many windows lie along an axis (shorter axes are padded to one window): the step is
    int(window * (1 - overlap)) and the last window ends at the axis' end."""
    if length <= window:
        return 1
    step = max(int(window * (1 - overlap)), 1)
    return math.ceil((length - window) / step) + 1
