"""Sliding windows: progress, cancel, and the windows a segmentation feeds the network. That they are MONAI's
`sliding_window_inference` (the same windows and Gaussian-blended outputs, padding included) is a contract:
test_contracts.py."""
from __future__ import annotations

from typing import Callable, List

import numpy as np
import pytest
import torch

from AttentionUNetSegLib.errors import CancelledError
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.models.registry import load_model
from AttentionUNetSegLib.models.bundled_data import SAMPLE_CT
from AttentionUNetSegLib.inference.sliding_windows import (WindowLayout, blend_windows, body_input, network_windows,
                                                           sliding_window_outputs, window_boxes)

CPU = torch.device("cpu")
ROI = (8, 16, 12)


def position_dependent_predictor() -> Callable[[torch.Tensor], torch.Tensor]:
    """Three channels that depend on each window's content, so that misplaced windows or weights show."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    return lambda windows: conv(windows).detach()


def test_progress_and_cancel() -> None:
    volume = np.zeros((20, 40, 30), np.float32)
    reports: List[float] = []
    blend_windows(volume, WindowLayout(ROI, 0.25, 2), lambda windows: windows, CPU,
                  progress=lambda stage, done: reports.append(done))
    assert reports == sorted(reports)
    assert reports[-1] == 1.0
    assert len(reports) == -(-len(list(window_boxes(volume.shape, ROI, 0.25))) // 2)
    calls: List[int] = []
    with pytest.raises(CancelledError):
        blend_windows(volume, WindowLayout(ROI, 0.25, 1), lambda windows: calls.append(1) or windows, CPU,
                      cancel=lambda: len(calls) == 2)
    assert len(calls) == 2


def test_network_windows_are_what_a_segmentation_feeds_the_network() -> None:
    """The windows that int8 calibration and the network benchmark use are those a segmentation of the bundled
    sample CT runs, in its order."""
    metadata = load_model(None).metadata
    image = read_image(SAMPLE_CT)
    fed: List[np.ndarray] = []

    class Recorder:
        """A window backend that keeps what it is given and answers background everywhere."""
        device = CPU

        def __call__(self, windows: torch.Tensor, attention: bool):
            fed.extend(window[None].numpy().copy() for window in windows)
            return torch.zeros((len(windows), len(metadata.classes)) + windows.shape[2:]), []

    _, _, body = body_input(image, metadata, 0.25)
    sliding_window_outputs(Recorder(), body, metadata, InferenceSettings(attention=False, window_voxels=0))
    ours = network_windows(image, metadata, 0.25)
    assert len(ours) == len(fed) > 1
    assert all(a.shape == (1, 1) + tuple(reversed(metadata.patch_size)) for a in ours)
    assert all(np.array_equal(a, b) for a, b in zip(ours, fed))
