"""int8 inference on the CPU: the converted OpenVINO model quantized with NNCF's post-training quantization.

Weights and activations of the convolutions become 8-bit integers (NNCF's mixed preset: symmetric weights,
asymmetric activations). NNCF measures each activation's range on calibration windows: the sliding windows
that cover the body of the bundled sample CT (models/bundled_data.py) at the model's spacing and patch, so the quantized
model is the same on every machine for one model file and NNCF version. With NNCF's full bias correction
(twice the time of its fast one, once per model file). Both choices agreed more closely with float32 on a scan
none of the calibrations saw (TotalSegmentator s0009) than windows of synthetic phantoms or the fast bias
correction did (docs/benchmarks.md).

int8 changes the labels (docs/benchmarks.md has the agreement with float32 on real scans, and the speed), so
it is chosen explicitly (`--precision int8`), never by `auto`.
"""
from __future__ import annotations

import importlib.util
from typing import List

import numpy as np

from ..errors import InvalidOptionError
from ..inference.sliding_windows import network_windows
from ..io.images import read_image
from ..models.bundled_data import SAMPLE_CT
from ..models.model_file import ModelMetadata

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
    return network_windows(read_image(SAMPLE_CT), metadata, CALIBRATION_OVERLAP)


def quantize(ov_model, metadata: ModelMetadata):
    """`ov_model` (the converted float model) with int8 convolutions, calibrated on `calibration_windows`."""
    require_int8()
    import nncf

    windows = calibration_windows(metadata)
    return nncf.quantize(ov_model, nncf.Dataset(windows), subset_size=len(windows),
                         preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=False)
