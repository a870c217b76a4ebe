"""NIfTI files whose sform is slightly off orthonormal (ITK refuses them) read with the nearest orthonormal direction;
far-off ones are refused, and the input file is never changed."""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import SimpleITK as sitk
from conftest import GRID_DIRECTIONS

from AttentionUNetSegLib.errors import InputImageError
from AttentionUNetSegLib.io.images import MAX_AXIS_COSINE, _read_nonorthonormal_nifti, read_image

VOXELS = np.random.default_rng(3).integers(-1024, 3000, size=(6, 5, 4), dtype=np.int16)  # (z, y, x)
SPACING = np.array([0.8, 1.1, 2.5])
TRANSLATION = np.array([10.5, -20.25, 33.0])  # RAS, as NIfTI stores it
PERMISSIVE = "ITK_NIFTI_SFORM_PERMISSIVE"


def write_nifti(path: Path, srow: np.ndarray, qform_code: int = 0, xyzt_units: int = 2) -> np.ndarray:
    """Write VOXELS as a NIfTI-1 int16 file with the 3x4 sform `srow` (RAS) byte by byte; returns the float32 sform
    as stored. qform_code 1 stores the identity rotation, with pixdim as the scales."""
    header = bytearray(352)  # the 348-byte header and an empty extension flag
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *VOXELS.shape[::-1], 1, 1, 1, 1)
    struct.pack_into("<3h", header, 70, 4, 16, 0)  # datatype int16, bitpix
    struct.pack_into("<8f", header, 76, 1.0, *SPACING, 1, 1, 1, 1)
    struct.pack_into("<3f", header, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    struct.pack_into("<B", header, 123, xyzt_units)
    struct.pack_into("<2h", header, 252, qform_code, 1)
    struct.pack_into("<6f", header, 256, 0, 0, 0, *TRANSLATION)  # quatern_b/c/d, qoffset
    stored = srow.astype(np.float32)
    header[280:328] = stored.astype("<f4").tobytes()
    header[344:348] = b"n+1\0"
    content = bytes(header) + VOXELS.astype("<i2").tobytes()  # x varies fastest, as NIfTI stores it
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return stored.astype(np.float64)


def sform(rotation: np.ndarray, shear: float) -> np.ndarray:
    """A RAS sform: `rotation` times a shear of the second axis towards the first, times SPACING."""
    sheared = np.eye(3)
    sheared[0, 1] = shear
    return np.column_stack([rotation @ sheared @ np.diag(SPACING), TRANSLATION])


def expected_geometry(stored: np.ndarray, scale: float = 1.0):
    """Origin, spacing and direction (LPS) that the stored sform describes, with the polar factor as direction."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ stored
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    return lps[:, 3] * scale, spacing * scale, scipy.linalg.polar(lps[:, :3] / spacing)[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_geometry(image: sitk.Image, origin: np.ndarray, spacing: np.ndarray, direction: np.ndarray) -> None:
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), spacing, rtol=1e-7)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), direction, atol=1e-9)


@pytest.mark.parametrize("kind", ["identity", "oblique"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_slightly_sheared_sform_reads_with_the_nearest_orthonormal_direction(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, suffix: str) -> None:
    path = tmp_path / f"ct{suffix}"
    stored = write_nifti(path, sform(GRID_DIRECTIONS[kind], 3e-3))
    before = digest(path)
    with pytest.raises(RuntimeError, match="orthonormal direction cosines"):
        sitk.ReadImage(str(path))  # what this is about: ITK alone refuses the file
    with caplog.at_level(logging.WARNING, logger="AttentionUNetSegLib.io.images"):
        image = read_image(path)
    assert_geometry(image, *expected_geometry(stored))
    direction = np.reshape(image.GetDirection(), (3, 3))
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-12)
    assert image.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayViewFromImage(image), VOXELS)
    columns = np.diag([-1.0, -1.0, 1.0]) @ stored[:, :3] / np.linalg.norm(stored[:, :3], axis=0)
    deviation = np.max(np.abs(columns.T @ columns - np.eye(3)))
    (record,) = [r for r in caplog.records if "not orthonormal" in r.getMessage()]
    message = record.getMessage()
    assert str(path) in message
    assert float(re.search(r"max \|R\^T R - I\| = ([0-9.e-]+)", message).group(1)) == pytest.approx(deviation, rel=1e-2)
    assert 0.1 < float(re.search(r"([0-9.]+) degrees off perpendicular", message).group(1)) < 0.2  # atan(3e-3)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert PERMISSIVE not in os.environ


def test_far_off_sform_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    write_nifti(path, sform(GRID_DIRECTIONS["oblique"], 0.05))
    before = digest(path)
    with pytest.raises(InputImageError, match=r"sheared direction matrix .*2\.8\d degrees off perpendicular.*"
                                              r"resample it onto an orthogonal grid or fix the sform"):
        read_image(path)
    assert digest(path) == before


def test_sform_with_a_zero_axis_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    write_nifti(path, np.column_stack([np.diag([0.8, 0.0, 2.5]), TRANSLATION]))
    with pytest.raises(InputImageError, match="degenerate direction matrix.*fix the sform"):
        read_image(path)


def test_threshold_is_between_accepted_and_refused_shears(tmp_path: Path) -> None:
    """A shear just under MAX_AXIS_COSINE reads, one just over it is refused."""
    for shear, accepted in ((0.9 * MAX_AXIS_COSINE, True), (1.1 * MAX_AXIS_COSINE, False)):
        path = tmp_path / f"ct{shear}.nii.gz"
        write_nifti(path, sform(GRID_DIRECTIONS["identity"], shear))
        if accepted:
            read_image(path)
        else:
            with pytest.raises(InputImageError, match="sheared"):
                read_image(path)


@pytest.mark.parametrize("preset", ["YES", "NO"])
def test_a_users_itk_permissive_setting_neither_bypasses_the_check_nor_is_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str) -> None:
    monkeypatch.setenv(PERMISSIVE, preset)
    path = tmp_path / "ct.nii.gz"
    stored = write_nifti(path, sform(GRID_DIRECTIONS["oblique"], 3e-3))
    assert_geometry(read_image(path), *expected_geometry(stored))  # not ITK's spacing-weighted correction
    write_nifti(path, sform(GRID_DIRECTIONS["oblique"], 0.05))
    with pytest.raises(InputImageError, match="sheared"):
        read_image(path)
    assert os.environ[PERMISSIVE] == preset


def test_sheared_sform_with_a_qform_reads_the_qform(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ITK reads the (always orthonormal) qform when the sform is not: no correction needed, none made."""
    path = tmp_path / "ct.nii.gz"
    write_nifti(path, sform(GRID_DIRECTIONS["oblique"], 3e-3), qform_code=1)
    with caplog.at_level(logging.WARNING, logger="AttentionUNetSegLib.io.images"):
        image = read_image(path)
    assert_geometry(image, TRANSLATION * [-1, -1, 1], SPACING.astype(np.float32), np.diag([-1.0, -1.0, 1.0]))
    assert not caplog.records


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
def test_fallback_matches_itk_on_an_orthonormal_file(tmp_path: Path, kind: str) -> None:
    image = sitk.GetImageFromArray(VOXELS)
    image.SetOrigin((10.5, -20.25, 33.0))
    image.SetSpacing(tuple(SPACING))
    image.SetDirection(tuple(GRID_DIRECTIONS[kind].ravel()))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    assert_same_as_itk(_read_nonorthonormal_nifti(path), sitk.ReadImage(str(path)))


@pytest.mark.parametrize("units, scale", [(1, 1000.0), (3, 1e-3), (0, 1.0)])  # metre, micron, unknown
def test_fallback_converts_units_as_itk_does(tmp_path: Path, units: int, scale: float) -> None:
    path = tmp_path / "ct.nii"
    write_nifti(path, sform(GRID_DIRECTIONS["permuted"], 0.0), xyzt_units=units)
    reference = sitk.ReadImage(str(path))
    np.testing.assert_allclose(reference.GetSpacing(), SPACING * scale, rtol=1e-6)
    assert_same_as_itk(_read_nonorthonormal_nifti(path), reference)


def assert_same_as_itk(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetPixelID() == reference.GetPixelID()
    assert image.GetSize() == reference.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
