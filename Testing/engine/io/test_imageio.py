"""Map files in other forms: without a step, or in other formats, they are float images (that scaled NIfTI maps
are what SimpleITK writes is a contract: test_contracts.py)."""
from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.io.images import write_map
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP


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
