"""int8 inference on the CPU: the converted OpenVINO model quantized with NNCF's post-training quantization.

Weights and activations of the convolutions become 8-bit integers (NNCF's mixed preset: symmetric weights,
asymmetric activations). NNCF measures each activation's range on calibration windows: the sliding windows
that cover the body of the bundled sample CT (sample.py) at the model's spacing and patch, so the quantized
model is the same on every machine for one model file and NNCF version. With NNCF's full bias correction
(twice the time of its fast one, once per model file). Both choices were measured on TotalSegmentator s0009,
which none of the calibrations saw: Dice of the int8 labels against float32's for pancreas, spleen, kidney,
liver 0.95, 0.96, 0.97, 0.99 with these windows, 0.89, 0.95, 0.96, 0.99 with windows of synthetic phantoms,
and 0.85, 0.88, 0.96, 0.99 with the fast bias correction.

int8 changes the labels (docs/benchmarks.md has the agreement with float32 on real scans, and the speed), so
it is chosen explicitly (`--precision int8`), never by `auto`.
"""
from __future__ import annotations

import importlib.util
from typing import List

import numpy as np

from .errors import InvalidOptionError
from .imageio import read_image
from .model_file import ModelMetadata
from .sample import SAMPLE_CT
from .sliding_windows import body_input, padded_to_window, window_boxes

CALIBRATION_OVERLAP = 0.25
"""The calibration windows overlap as a segmentation's do by default."""


def require_int8() -> None:
    """Refuse int8 where NNCF or the calibration scan is missing, saying how to get them."""
    if importlib.util.find_spec("nncf") is None:
        raise InvalidOptionError("int8 inference quantizes the model with NNCF, which is not installed: "
                                 "pip install nncf (or choose another precision)")
    if not SAMPLE_CT.is_file():
        raise InvalidOptionError(f"int8 inference is calibrated on the bundled sample CT, which this installation "
                                 f"lacks ({SAMPLE_CT}): install from the repository or use the Slicer extension, "
                                 "or choose another precision")


def calibration_windows(metadata: ModelMetadata) -> List[np.ndarray]:
    """Normalised windows (1, 1, z, y, x) of the sample CT, as a segmentation of it at the model's patch reads
    them."""
    patch = tuple(reversed(metadata.patch_size))
    _, _, body = body_input(read_image(SAMPLE_CT), metadata, CALIBRATION_OVERLAP)
    padded, _ = padded_to_window(body, patch, metadata.intensity.air)
    return [np.ascontiguousarray(padded[box])[None, None]
            for box in window_boxes(padded.shape, patch, CALIBRATION_OVERLAP)]


def quantize(ov_model, metadata: ModelMetadata):
    """`ov_model` (the converted float model) with int8 convolutions, calibrated on `calibration_windows`."""
    require_int8()
    import nncf

    windows = calibration_windows(metadata)
    return nncf.quantize(ov_model, nncf.Dataset(windows), subset_size=len(windows),
                         preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=False)
