"""Map files: NIfTI maps stored as scaled integers read back as the float image ITK would have written."""
from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import GRID_DIRECTIONS

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.io.images import write_image, write_map
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_scaled_nifti_map_reads_back_as_the_float_image(tmp_path: Path, kind: str, suffix: str) -> None:
    grid = Grid((13, 11, 9), (10.5, -20.25, 33.0), (0.8, 1.1, 2.5), tuple(GRID_DIRECTIONS[kind].ravel()))
    multiples = np.random.default_rng(0).integers(0, round(1 / ATTENTION_STEP) + 1, size=(9, 11, 13), dtype=np.int16)
    values = multiples.astype(np.float32) * np.float32(ATTENTION_STEP)
    ours = write_map(multiples, grid, tmp_path / f"map{suffix}", ATTENTION_STEP)
    reference = write_image(grid.image(values), tmp_path / f"itk{suffix}")
    read, expected = sitk.ReadImage(str(ours)), sitk.ReadImage(str(reference))
    assert read.GetPixelID() == sitk.sitkFloat32
    assert np.array_equal(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(expected))
    assert read.GetSize() == expected.GetSize()
    np.testing.assert_allclose(read.GetOrigin(), expected.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(read.GetSpacing(), expected.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(read.GetDirection(), expected.GetDirection(), atol=1e-6)
    stored = nibabel.load(str(ours))
    assert stored.get_data_dtype() == np.int16 and (stored.dataobj.slope, stored.dataobj.inter) == (ATTENTION_STEP, 0)
    assert np.array_equal(stored.get_fdata(dtype=np.float32), sitk.GetArrayViewFromImage(expected).T)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, reference.name])  # no temporaries


def test_maps_without_a_step_or_in_other_formats_are_float_images(tmp_path: Path) -> None:
    grid = Grid((5, 4, 3), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel()))
    floats = np.random.default_rng(1).random((3, 4, 5), dtype=np.float32)
    multiples = np.rint(floats / ATTENTION_STEP).astype(np.int16)
    rounded = multiples.astype(np.float32) * np.float32(ATTENTION_STEP)
    cases = ((floats, None, "p.nii.gz", floats), (multiples, ATTENTION_STEP, "a.nrrd", rounded))
    for stored, step, name, values in cases:
        path = write_map(stored, grid, tmp_path / name, step)
        read = sitk.ReadImage(str(path))
        assert read.GetPixelID() == sitk.sitkFloat32
        assert np.array_equal(sitk.GetArrayViewFromImage(read), values)
    assert nibabel.load(str(tmp_path / "p.nii.gz")).get_data_dtype() == np.float32
    with pytest.raises(TypeError, match="int16 multiples"):
        write_map(rounded, grid, tmp_path / "refused.nii.gz", ATTENTION_STEP)
