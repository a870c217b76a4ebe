"""Fast inference paths agree with the reference forward within stated tolerances.

Tolerances (random weights, whose near-tied logits are the hardest case for reduced precision):
- BatchNorm folding, channels-last, float32: logits and attention within 1e-4 (relative to the logit range).
- bfloat16 autocast on top: logits within 5 % of the logit range, attention within 0.03, >= 97 % same labels.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from AttentionUNetSegLib.models.model_file import read_model
from AttentionUNetSegLib.backends.device import autocast
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.network.attention_unet import AttentionUNet3D
from AttentionUNetSegLib.network.batchnorm_folding import fold_batchnorm, prepare_for_inference
from AttentionUNetSegLib.inference.preprocessing import body_box
from AttentionUNetSegLib.inference.sliding_windows import MIN_AIR_MARGIN, window_fitted_body_box


def _forward(model: nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32):
    with torch.no_grad(), autocast(torch.device("cpu"), dtype):
        logits, attention = model(x, return_attention=True)
    return logits.float(), {k: v.float() for k, v in attention.items()}


def test_folding_batchnorm_keeps_outputs(trained_like_model: AttentionUNet3D) -> None:
    folded = fold_batchnorm(trained_like_model)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in trained_like_model.modules())  # the original is untouched
    x = torch.randn(1, 1, 48, 48, 32)
    reference, reference_attention = _forward(trained_like_model, x)
    logits, attention = _forward(prepare_for_inference(trained_like_model, torch.device("cpu")),
                                 x.contiguous(memory_format=torch.channels_last_3d))
    scale = reference.abs().max()
    assert (logits - reference).abs().max() <= 1e-4 * scale
    for name, alpha in attention.items():
        assert (alpha - reference_attention[name]).abs().max() <= 1e-4


def test_bfloat16_path_within_tolerance(trained_like_model: AttentionUNet3D) -> None:
    x = torch.randn(1, 1, 48, 48, 32)
    reference, reference_attention = _forward(trained_like_model, x)
    logits, attention = _forward(prepare_for_inference(trained_like_model, torch.device("cpu")),
                                 x.contiguous(memory_format=torch.channels_last_3d), torch.bfloat16)
    assert (logits - reference).abs().max() <= 0.05 * (reference.max() - reference.min())
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() >= 0.97
    for name, alpha in attention.items():
        assert (alpha - reference_attention[name]).abs().max() <= 0.03


def test_segment_fp32_and_bf16_agree(patient_a: sitk.Image, tiny_model_path) -> None:
    model = read_model(tiny_model_path)
    region = patient_a[20:100, 10:90, 30:90]
    exact = sitk.GetArrayFromImage(segment(region, model, precision="fp32", attention=False, backend="torch").labels)
    fast = sitk.GetArrayFromImage(segment(region, model, precision="bf16", attention=False, backend="torch").labels)
    assert (exact == fast).mean() >= 0.97


def test_body_box_and_air_outside_it(patient_a: sitk.Image, tiny_model_path) -> None:
    hu = np.full((40, 50, 60), -1000.0)
    hu[10:20, 15:30, 5:45] = 40
    assert body_box(hu, margin=2) == (slice(8, 22), slice(13, 32), slice(3, 47))
    assert body_box(np.full((4, 4, 4), -1000.0), margin=2) == (slice(0, 4),) * 3
    region = patient_a[30:90, 20:80, 40:80]
    padded = sitk.ConstantPad(region, [40, 40, 30], [40, 40, 30], -1024)
    result = segment(padded, read_model(tiny_model_path))
    labels = sitk.GetArrayFromImage(result.labels)
    attention = sitk.GetArrayFromImage(result.attention["att2_gate1"])
    # Far outside the body (beyond the box margin of 8 voxels at 4 mm = 32 mm; padding is 120 mm)
    assert labels[:, :, :20].max() == 0
    assert labels[:, :, -20:].max() == 0
    assert attention[:, :, :20].max() == 0
    assert attention[:, :, 40:-40].max() > 0


def test_body_box_margins_shrink_where_that_saves_a_row_of_windows() -> None:
    hu = np.full((150, 205, 205), -1000.0, np.float32)
    hu[:, 43:168, 16:190] = 40  # a body 125 voxels across (y) and 174 wide (x), on the 2 mm grid of a 512 CT
    patch = (96, 160, 160)
    assert body_box(hu, 24)[1] == slice(19, 192)  # a quarter patch of air each side: 173 voxels, two windows
    box = window_fitted_body_box(hu, patch, 0.25)
    assert box[1] == slice(26, 185)  # 17 voxels each side: 159, one window
    assert box[2] == slice(0, 205)  # two windows whatever the margin: the quarter patch, clipped to the grid
    assert box[0] == slice(0, 150)
    narrow = np.full((150, 205, 205), -1000.0, np.float32)
    narrow[:, 100:101, 100:101] = 40
    assert window_fitted_body_box(narrow, patch, 0.25)[1] == slice(76, 125)  # nothing to save: 24 voxels
    assert window_fitted_body_box(hu, (32, 96, 96), 0.25) == body_box(hu, MIN_AIR_MARGIN)
