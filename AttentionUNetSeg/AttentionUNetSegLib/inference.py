"""`segment`: CT image in, labels + attention maps (+ probabilities) out, on the input's own grid.

Steps: validate -> resample onto the model's axis-aligned grid and spacing -> normalise intensities as
the model file says -> sliding-window inference with Gaussian blending (MONAI), logits and attention
maps blended alike -> resample logits back to the input grid and take the argmax class by class, so
memory stays bounded on large scans. Attention and probability maps are resampled on access.
"""
from __future__ import annotations

import importlib
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch

from .model_file import ModelMetadata, load_model, model_metadata
from .classes import SegmentClass
from .device import resolve_device, resolve_precision
from .errors import CancelledError, InvalidOptionError
from .imageio import map_image
from .backends import WindowNetwork, make_network
from .preprocessing import AIR_HU, body_box, model_grid, normalise, resample, validate_image
from .registry import resolve_model_path
from .resampling import Grid, argmax_on_grid, resample_linear

log = logging.getLogger(__name__)

ATTENTION_STEP = 2.0 ** -10
"""Attention maps are rounded to multiples of this (about 0.001): finer than the bf16 arithmetic they come from
(steps of 2^-8 relative), and it makes a full-size map's file 17x smaller and 3x faster to write."""
MIN_AIR_MARGIN = 8
"""Voxels of air kept around the body's box on every side (window_fitted_body_box)."""
OUTSIDE_LOGIT_MARGIN = 20.0  # background wins by this margin outside the body (softmax ~ 1 - 2e-9)
ProgressCallback = Callable[[str, float], None]
CancelCheck = Callable[[], bool]


def preload_sliding_window() -> None:
    """Start importing MONAI's sliding-window inference in a thread, once per process.

    The import takes about 2 s on a laptop CPU (MONAI imports all of itself); in a thread it overlaps reading
    the CT, loading and compiling the network and resampling, which mostly run without the GIL.
    `sliding_window_outputs`' own import then finds MONAI loaded, or waits for it (and reports the error if
    it fails)."""
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


class ResampledMaps(Mapping[str, sitk.Image]):
    """Maps (z, y, x arrays) kept on the model grid and resampled onto the input grid when read, one at a time,
    clipped to [0, 1] and, with `step` (at least 2^-15), rounded to multiples of it."""

    def __init__(self, maps: Dict[str, np.ndarray], source: Grid, target: Grid, step: Optional[float] = None) -> None:
        self._maps, self._source, self.grid, self.step = maps, source, target, step

    def __getitem__(self, name: str) -> sitk.Image:
        return map_image(self.array(name), self.step, self.grid)

    def array(self, name: str) -> np.ndarray:
        """The map on the input grid: float32 in [0, 1], or with a step its int16 multiples (what `write_map`
        stores as they are)."""
        values = torch.from_numpy(resample_linear(self._maps[name], self._source, self.grid)).clamp_(0.0, 1.0)
        if self.step is None:
            return values.numpy()
        return values.mul_(1.0 / self.step).round_().to(torch.int16).numpy()

    def __iter__(self) -> Iterator[str]:
        return iter(self._maps)

    def __len__(self) -> int:
        return len(self._maps)


@dataclass
class SegmentationResult:
    """Labels (uint8) on the input grid, lazily resampled attention/probability maps, and run facts."""

    labels: sitk.Image
    classes: List[SegmentClass]
    attention: Mapping[str, sitk.Image]
    probabilities: Optional[Mapping[str, sitk.Image]]
    device: str
    precision: str
    backend: str = "torch"
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def volumes_ml(self) -> Dict[str, float]:
        """Volume of every foreground class in millilitres (one comparison per class: np.bincount would widen
        the uint8 labels to int64 first, 8 bytes a voxel, 1 s on a 512x512x300 CT)."""
        labels = sitk.GetArrayViewFromImage(self.labels)
        voxel_ml = math.prod(self.labels.GetSpacing()) / 1000.0
        return {c.name: float(np.count_nonzero(labels == c.value) * voxel_ml) for c in self.classes if c.value > 0}


def segment(
    image: sitk.Image,
    model: Union[torch.nn.Module, str, Path, None] = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    overlap: float = 0.25,
    batch_size: Optional[int] = None,
    backend: str = "auto",
    window_voxels: int = 0,
    attention: bool = True,
    probabilities: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> SegmentationResult:
    """Segment a CT `image` with `model` (a loaded model, a registry name, a file, or None for the default).

    `backend` ("auto", "torch" or "openvino") is what runs the network (backends.py). `window_voxels` > 0
    enlarges the sliding window up to that many voxels (fewer windows, less overlap computed twice), but a
    model trained on small patches segments differently with much more context (the bundled model with
    whole-volume windows: liver Dice 0.92 -> 0.88 on patient A, spleen 0.29 -> 0.13 on patient B), so the
    default (0) is the model's training patch.
    `progress(stage, fraction)` is called as the run advances; `cancel()` is polled between windows
    and raises CancelledError when it returns True. The input image is never modified.
    """
    if not 0 <= overlap < 1:
        raise InvalidOptionError(f"overlap must be in [0, 1), not {overlap}")
    if window_voxels < 0:
        raise InvalidOptionError(f"window_voxels must be >= 0 (0: the training patch), not {window_voxels}")
    preload_sliding_window()
    report = progress or (lambda stage, fraction: None)
    timings: Dict[str, float] = {}
    clock = time.perf_counter()
    torch_device = resolve_device(device)
    if not isinstance(model, torch.nn.Module):
        model = load_model(resolve_model_path(model))
    metadata = model_metadata(model)
    warnings = validate_image(image)
    for message in warnings:
        log.warning(message)
    report("preparing", 0.0)
    grid = model_grid(image, metadata.spacing_mm)
    resampled_ct = resample(image, grid, sitk.sitkLinear, AIR_HU)
    hu = sitk.GetArrayViewFromImage(resampled_ct)
    box = window_fitted_body_box(hu, tuple(reversed(metadata.patch_size)), overlap)
    network_input = normalise(hu[box], metadata.intensity)
    del hu, resampled_ct
    timings["preprocess_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    dtype = resolve_precision(precision, torch_device)
    inside, network = _infer_with_fallback(
        model, network_input, metadata, torch_device, dtype, backend, overlap, batch_size, window_voxels, attention,
        report, cancel
    )
    del network_input
    outputs = _outside_body_fill(metadata.architecture.num_classes, inside.shape[0], grid)
    outputs[(slice(None),) + box] = inside
    del inside
    timings["inference_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report("resampling", 0.0)
    num_classes = metadata.architecture.num_classes
    logits, gate_maps = outputs[:num_classes], outputs[num_classes:]
    input_grid, network_grid = Grid.of(image), Grid.of(grid)
    labels = input_grid.apply(sitk.GetImageFromArray(argmax_on_grid(logits, network_grid, input_grid, cancel)))
    attention_maps = {name: gate_maps[i].copy() for i, name in enumerate(model.gate_names)} if attention else {}
    probability_maps = None
    if probabilities:
        softmax = torch.softmax(torch.from_numpy(logits), dim=0).numpy()
        probability_maps = ResampledMaps({c.name: softmax[c.value] for c in metadata.classes}, network_grid,
                                         input_grid)
    timings["postprocess_s"] = time.perf_counter() - clock
    report("done", 1.0)
    return SegmentationResult(
        labels=labels,
        classes=list(metadata.classes),
        attention=ResampledMaps(attention_maps, network_grid, input_grid, ATTENTION_STEP),
        probabilities=probability_maps,
        device=str(network.device),
        precision=str(network.dtype).replace("torch.", ""),
        backend=network.name,
        timings=timings,
        warnings=warnings,
    )


def _infer_with_fallback(model, network_input, metadata, device, dtype, backend, overlap, batch_size, window_voxels,
                         attention, report, cancel) -> Tuple[np.ndarray, WindowNetwork]:
    """Sliding-window inference; on CUDA out-of-memory retry with fewer windows per batch, then on the CPU.

    Returns the outputs and the network (device, precision, backend) that produced them."""
    batch = batch_size or (4 if device.type == "cuda" else 1)
    network = make_network(model, device, dtype, backend)
    while True:
        try:
            outputs = sliding_window_outputs(network, network_input, metadata, overlap, batch, attention, report,
                                             cancel, window_voxels)
            return outputs, network
        except torch.OutOfMemoryError:
            if network.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            if batch > 1:
                batch //= 2
                log.warning("GPU out of memory: retrying with %d window(s) per batch", batch)
            else:
                log.warning("GPU out of memory even with one window: falling back to the CPU")
                cpu = torch.device("cpu")
                network = make_network(model, cpu, resolve_precision("auto", cpu), "auto")


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


def sliding_window_outputs(network: WindowNetwork, network_input: np.ndarray, metadata: ModelMetadata,
                           overlap: float, batch_size: int, attention: bool, report: ProgressCallback,
                           cancel: Optional[CancelCheck], window_voxels: int = 0) -> np.ndarray:
    """Blended logits and (optionally) attention maps, (classes + gates, z, y, x) on the model grid.

    Windows are the model's training patch, or with `window_voxels` > 0 as large as that allows
    (`window_size`): fewer windows and less overlap to compute twice."""
    from monai.inferers import sliding_window_inference

    roi = window_size(network_input.shape, tuple(reversed(metadata.patch_size)), window_voxels)
    padded, crop = _pad_to_window(network_input, roi, normalise(np.array([AIR_HU]), metadata.intensity)[0])
    total = _window_count(padded.shape, roi, overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        if cancel is not None and cancel():
            raise CancelledError("segmentation cancelled; nothing was written")
        logits, gates = network(windows, attention)
        maps = [torch.nn.functional.interpolate(alpha, size=windows.shape[2:], mode="trilinear") for alpha in gates]
        done += windows.shape[0]
        report("inference", min(done / total, 1.0))
        return torch.cat([logits] + maps, dim=1) if maps else logits

    with torch.inference_mode():
        tensor = torch.from_numpy(padded)[None, None].contiguous(memory_format=torch.channels_last_3d)
        # blending where the network runs: on a GPU, accumulating every window's outputs on the CPU would
        # take longer than the network itself (an out-of-memory there takes the fallback path like any other)
        blended = sliding_window_inference(
            tensor, roi, batch_size, predictor, overlap=overlap, mode="gaussian",
            sw_device=network.device, device=network.device,
        )
    return blended[0][(slice(None),) + crop].cpu().numpy()


def _outside_body_fill(num_classes: int, channels: int, grid: sitk.Image) -> np.ndarray:
    """Outputs for voxels outside the body box: certain background, closed gates (attention 0)."""
    fill = np.zeros((channels,) + tuple(reversed(grid.GetSize())), dtype=np.float32)
    fill[1:num_classes] = -OUTSIDE_LOGIT_MARGIN
    return fill


def _pad_to_window(array: np.ndarray, roi: Sequence[int], fill: float) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Pad (with air) every axis shorter than the window, centred; return the crop that undoes it."""
    pads = [max(r - s, 0) for s, r in zip(array.shape, roi)]
    if not any(pads):
        return array, tuple(slice(None) for _ in array.shape)
    widths = [(p // 2, p - p // 2) for p in pads]
    padded = np.pad(array, widths, constant_values=fill)
    return padded, tuple(slice(lo, lo + s) for (lo, _), s in zip(widths, array.shape))


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


def _window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding_window_inference visits for this shape (for progress)."""
    return math.prod(windows_along(length, window, overlap) for length, window in zip(shape, roi))
