"""Sliding-window inference on the model grid (MONAI's, Gaussian blending): window size, the body crop that
fits the windows, and the blended logits and attention maps."""
from __future__ import annotations

import importlib
import math
import sys
import threading
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .callbacks import CancelCheck, ProgressCallback, no_progress, raise_if_cancelled
from .inference_settings import InferenceSettings
from .model_file import ModelMetadata
from .preprocessing import AIR_HU, body_box, normalise
from .window_backend import WindowBackend

MIN_AIR_MARGIN = 8
"""Voxels of air kept around the body's box on every side (window_fitted_body_box)."""


def preload_sliding_window() -> None:
    """Start importing MONAI's sliding-window inference in a thread, once per process.

    MONAI's import is slow (it imports all of itself); in a thread it overlaps reading the CT, loading the
    model and resampling, which mostly run without the GIL. `sliding_window_outputs`' own import then finds
    MONAI loaded, or waits for it (and reports the error if it fails)."""
    global _preload_started
    with _preload_lock:
        if not _preload_started and "monai.inferers" not in sys.modules:
            threading.Thread(target=_import_if_possible, args=("monai.inferers",), name="preload-monai").start()
            _preload_started = True


def _import_if_possible(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:  # the import where the module is needed raises it again, with the caller's context
        pass


_preload_started = False
_preload_lock = threading.Lock()


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


def sliding_window_outputs(backend: WindowBackend, model_input: np.ndarray, metadata: ModelMetadata,
                           settings: InferenceSettings, progress: ProgressCallback = no_progress,
                           cancel: Optional[CancelCheck] = None) -> np.ndarray:
    """Blended logits and (with `settings.attention`) attention maps, (classes + gates, z, y, x) on the model
    grid, of the normalised `model_input` (z, y, x).

    Windows are the model's training patch, or as large as `settings.window_voxels` (or, where that is None, the
    model's own `window_voxels`) allows (`window_size`); an input smaller than a window is padded with air."""
    from monai.inferers import sliding_window_inference

    max_voxels = metadata.window_voxels if settings.window_voxels is None else settings.window_voxels
    roi = window_size(model_input.shape, tuple(reversed(metadata.patch_size)), max_voxels)
    total = window_count(model_input.shape, roi, settings.overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        raise_if_cancelled(cancel)
        logits, gates = backend(windows, settings.attention)
        maps = [torch.nn.functional.interpolate(alpha, size=windows.shape[2:], mode="trilinear") for alpha in gates]
        done += windows.shape[0]
        progress("inference", min(done / total, 1.0))
        return torch.cat([logits] + maps, dim=1) if maps else logits

    with torch.inference_mode():
        tensor = torch.from_numpy(model_input)[None, None].contiguous(memory_format=torch.channels_last_3d)
        # blending where the backend runs: on a GPU, accumulating every window's outputs on the CPU would
        # take longer than the model itself (an out-of-memory there takes the fallback path like any other)
        blended = sliding_window_inference(
            tensor, roi, settings.windows_per_batch(backend.device.type), predictor, overlap=settings.overlap,
            mode="gaussian", padding_mode="constant", cval=float(normalise(np.array([AIR_HU]), metadata.intensity)[0]),
            sw_device=backend.device, device=backend.device,
        )
    return blended[0].cpu().numpy()


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
    """How many windows MONAI's sliding_window_inference places along an axis (shorter axes are padded to
    one window): its step is int(window * (1 - overlap)) and its last window ends at the axis' end."""
    if length <= window:
        return 1
    step = max(int(window * (1 - overlap)), 1)
    return math.ceil((length - window) / step) + 1


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding_window_inference visits for this shape (for progress)."""
    return math.prod(windows_along(length, window, overlap) for length, window in zip(shape, roi))
