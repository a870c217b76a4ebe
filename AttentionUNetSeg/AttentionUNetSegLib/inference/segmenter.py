"""`segment` (and `Segmenter`, for many CTs): CT image in, labels + attention maps (+ probabilities) out, on the
input's own grid.

Steps: validate -> resample onto the model's axis-aligned grid and spacing -> normalise intensities as
the model file says -> sliding-window inference with Gaussian blending (sliding_windows.py), logits and
attention maps blended alike -> resample logits back to the input grid and take the argmax class by class,
so memory stays bounded on large scans. Attention and probability maps are resampled on access.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import SimpleITK as sitk
import torch

from ..backends.device import resolve_device, resolve_precision
from ..backends.selection import make_backend
from ..io.grid import Grid
from ..models.model_file import model_metadata
from ..models.registry import load_model
from ..progress import CancelCheck, ProgressCallback, SegmentationStage, no_progress
from .plausibility import plausibility_warnings
from .preprocessing import validate_image
from .resampling import argmax_on_grid
from .result import ResampledMaps, SegmentationResult
from .settings import InferenceSettings
from .sliding_windows import body_input, sliding_window_outputs

log = logging.getLogger(__name__)

ATTENTION_STEP = 2.0 ** -10
"""Attention maps are rounded to multiples of this (about 0.001): finer than the bf16 arithmetic they come
from (steps of 2^-8 relative), and maps of few distinct values compress well (docs/benchmarks.md)."""
OUTSIDE_LOGIT_MARGIN = 20.0  # background wins by this margin outside the body (softmax ~ 1 - 2e-9)


class Segmenter:
    """A model made ready once to segment any number of CTs: loaded, its device and precision resolved, its
    backend built (converted, compiled or quantized: tenths of a second to a minute), so that a cohort, a
    worker or a command that reads its CT meanwhile pays for it once.

    `settings` (InferenceSettings) say how, and `options` override its fields by name. Impossible settings are
    refused here, before any CT is read."""

    def __init__(self, model: Union[torch.nn.Module, str, Path, None] = None,
                 settings: Optional[InferenceSettings] = None, **options: Any) -> None:
        settings = replace(settings or InferenceSettings(), **options)
        device = resolve_device(settings.device)
        self.settings = replace(settings, batch_size=settings.windows_per_batch(device.type))
        self.model = model if isinstance(model, torch.nn.Module) else load_model(model)
        self.metadata = model_metadata(self.model)
        self.backend = make_backend(self.model, device, resolve_precision(settings.precision, device),
                                    settings.backend)

    def __call__(self, image: sitk.Image, *, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelCheck] = None) -> SegmentationResult:
        """Segment `image` (never modified). `progress(stage, fraction)` is called as the run advances;
        `cancel()` is polled between windows and raises CancelledError when it returns True."""
        report = progress or no_progress
        metadata, settings = self.metadata, self.settings
        timings: Dict[str, float] = {}
        clock = time.perf_counter()
        warnings = validate_image(image)
        for message in warnings:
            log.warning(message)
        report(SegmentationStage.PREPARING, 0.0)
        grid, box, model_input = body_input(image, metadata, settings.overlap)
        timings["preprocess_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        inside = self._infer_with_fallback(model_input, report, cancel)
        del model_input
        num_classes = metadata.architecture.num_classes
        outputs = _outside_body_fill(num_classes, inside.shape[0], grid)
        outputs[(slice(None),) + box] = inside
        del inside
        timings["inference_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        report(SegmentationStage.RESAMPLING, 0.0)
        logits, gate_maps = outputs[:num_classes], outputs[num_classes:]
        input_grid = Grid.of(image)
        labels = input_grid.image(argmax_on_grid(logits, grid, input_grid, cancel))
        attention_maps = dict(zip(self.model.gate_names, gate_maps.copy())) if settings.attention else {}
        probability_maps = None
        if settings.probabilities:
            softmax = torch.softmax(torch.from_numpy(logits), dim=0).numpy()
            probability_maps = ResampledMaps({c.name: softmax[c.value] for c in metadata.classes}, grid, input_grid)
        warnings = warnings + plausibility_warnings(sitk.GetArrayViewFromImage(labels), input_grid,
                                                    {c.value: c.name for c in metadata.classes},
                                                    sitk.GetArrayViewFromImage(image))
        timings["postprocess_s"] = time.perf_counter() - clock
        report(SegmentationStage.DONE, 1.0)
        return SegmentationResult(
            labels=labels,
            classes=list(metadata.classes),
            attention=ResampledMaps(attention_maps, grid, input_grid, ATTENTION_STEP),
            probabilities=probability_maps,
            device=str(self.backend.device),
            precision=str(self.backend.dtype).replace("torch.", ""),
            backend=self.backend.name,
            timings=timings,
            warnings=warnings,
        )

    def _infer_with_fallback(self, model_input: np.ndarray, report: ProgressCallback,
                             cancel: Optional[CancelCheck]) -> np.ndarray:
        """Sliding-window inference; on CUDA out-of-memory retry with fewer windows per batch, then on the CPU
        (and keep that choice for the CTs after this one)."""
        while True:
            try:
                return sliding_window_outputs(self.backend, model_input, self.metadata, self.settings, report, cancel)
            except torch.OutOfMemoryError:
                if self.backend.device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if self.settings.batch_size > 1:
                    self.settings = replace(self.settings, batch_size=self.settings.batch_size // 2)
                    log.warning("GPU out of memory: retrying with %d window(s) per batch", self.settings.batch_size)
                else:
                    log.warning("GPU out of memory even with one window: falling back to the CPU")
                    cpu = torch.device("cpu")
                    self.backend = make_backend(self.model, cpu, resolve_precision("auto", cpu), "auto")


def segment(
    image: sitk.Image,
    model: Union[torch.nn.Module, str, Path, None] = None,
    settings: Optional[InferenceSettings] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    **options: Any,
) -> SegmentationResult:
    """Segment a CT `image` with `model` (a loaded model, a registry name, a file, or None for the default):
    `Segmenter(model, settings, **options)(image, progress=progress, cancel=cancel)`, for one CT.

    `segment(image, model, probabilities=True)` is `segment(image, model, InferenceSettings(probabilities=True))`.
    """
    return Segmenter(model, settings, **options)(image, progress=progress, cancel=cancel)


def _outside_body_fill(num_classes: int, channels: int, grid: Grid) -> np.ndarray:
    """Outputs for voxels outside the body box: certain background, closed gates (attention 0)."""
    fill = np.zeros((channels,) + grid.shape, dtype=np.float32)
    fill[1:num_classes] = -OUTSIDE_LOGIT_MARGIN
    return fill
