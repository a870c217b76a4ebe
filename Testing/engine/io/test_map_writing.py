"""The output path's tolerance on real CTs, in real files: labels exactly as computed, every attention map within
one step (ATTENTION_STEP = 2^-10) of SimpleITK's linear resampling of the same model-grid map, clipped to [0, 1]
and rounded to the step, with at most 1e-4 of the voxels one step off (float32 rounding at half-steps), and the
same values whether SimpleITK or nibabel reads the file."""
from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SAMPLE_CT, TOTALSEG

from AttentionUNetSegLib.io.atomic import StagedOutputs
from AttentionUNetSegLib.models.segment_classes import DEFAULT_CLASS_NAMES, make_classes
from AttentionUNetSegLib.inference.case_outputs import ModelRecord, RunRecord, stage_case
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP, ResampledMaps, SegmentationResult
from AttentionUNetSegLib.inference.preprocessing import model_grid, resample

ONE_STEP_OFF_AT_MOST = 1e-4
"""The largest share of voxels allowed one step from the reference (none may be further)."""


def _model_grid_maps(ct: sitk.Image, grid: Grid) -> dict:
    """Attention-like maps from the CT itself on the model grid: soft-tissue windows, with ramps and exact 0
    and 1 regions, and a sigmoid, all in [0, 1]."""
    hu = sitk.GetArrayFromImage(resample(ct, grid, sitk.sitkLinear, -1024.0)).astype(np.float32)
    return {"window": np.clip((hu + 160.0) / 400.0, 0.0, 1.0),
            "sigmoid": (1.0 / (1.0 + np.exp(-(hu - 40.0) / 30.0))).astype(np.float32)}


def _reference_multiples(values: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """SimpleITK's linear resampling (0 outside), clipped to [0, 1], as multiples of the step."""
    resampled = sitk.GetArrayFromImage(resample(source.image(values), target, sitk.sitkLinear, 0.0))
    return np.rint(np.clip(resampled, 0.0, 1.0) / ATTENTION_STEP).astype(np.int16)


@pytest.mark.parametrize("ct_path", [
    pytest.param(SAMPLE_CT, id="patient A NIfTI"),
    pytest.param(TOTALSEG / "example_ct_dicom", id="patient B DICOM", marks=pytest.mark.shared_data),
])
def test_written_maps_are_within_one_step_and_labels_exact(tmp_path: Path, ct_path: Path) -> None:
    ct = read_image(ct_path)
    target, source = Grid.of(ct), model_grid(ct, (2.0, 2.0, 2.0))
    maps = _model_grid_maps(ct, source)
    labels = target.image((sitk.GetArrayViewFromImage(ct) > 100).astype(np.uint8))
    result = SegmentationResult(labels=labels, classes=make_classes(DEFAULT_CLASS_NAMES),
                                attention=ResampledMaps(maps, source, target, ATTENTION_STEP), probabilities=None,
                                device="cpu", precision="float32")
    with StagedOutputs(tmp_path) as outputs:
        record = RunRecord(ModelRecord("test", "test.safetensors", "0" * 64, False), InferenceSettings(), "nii.gz")
        stage_case(result, outputs, "case", ct_path, record, 0.0)
        outputs.commit()

    written = sitk.ReadImage(str(tmp_path / "case_seg.nii.gz"))
    assert np.array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(labels))
    for name, values in maps.items():
        path = tmp_path / f"case_attention_{name}.nii.gz"
        image, stored = sitk.ReadImage(str(path)), nibabel.load(str(path))
        assert image.GetPixelID() == sitk.sitkFloat32
        assert image.GetSize() == ct.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(image.GetDirection(), ct.GetDirection(), atol=1e-6)
        assert stored.get_data_dtype() == np.int16
        assert stored.dataobj.slope == ATTENTION_STEP
        read = sitk.GetArrayFromImage(image)
        assert np.array_equal(stored.get_fdata(dtype=np.float32).T, read)
        ours = np.rint(read / ATTENTION_STEP).astype(np.int16)
        assert np.array_equal(ours.astype(np.float32) * np.float32(ATTENTION_STEP), read)  # exact multiples
        off = np.abs(ours.astype(np.int32) - _reference_multiples(values, source, target))
        report = f"{name}: {np.count_nonzero(off)} voxels off, by up to {off.max()} steps"
        assert off.max() <= 1, report
        assert np.count_nonzero(off) <= ONE_STEP_OFF_AT_MOST * off.size, report
        assert 0.05 < np.mean(ours == 0) < 0.95
        assert 0.0 < np.mean((ours > 0) & (ours < 1024))  # ramps, not flat


