"""Contracts: where the engine does itself what a library does (faster, or without its import cost), it gives
what that library gives. The resampler (inference/resampling.py) equals SimpleITK's linear Resample and the
argmax of it; the map writer and reader (io/images.py write_map, read_map) equal SimpleITK's NIfTI writer and
reader; the sliding windows (inference/sliding_windows.py) equal MONAI's sliding_window_inference. Each module's
docstring points here; docs/benchmarks.md has what each one saves."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import GRID_DIRECTIONS, SAMPLE_CT
from monai.inferers import sliding_window_inference
from scipy.ndimage import gaussian_filter
from test_resampling import RNG, _grids, _sitk_resample
from test_sliding_windows import CPU, ROI, position_dependent_predictor

from AttentionUNetSegLib.inference.resampling import argmax_on_grid, axis_maps, resample_linear
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP
from AttentionUNetSegLib.inference.sliding_windows import WindowLayout, blend_windows, window_boxes, windows_along
from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.io.images import read_image, read_map, write_image, write_map


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
def test_contract_resampling_equals_simpleitks_linear_resample(kind: str) -> None:
    source, target = _grids(GRID_DIRECTIONS[kind])
    assert (axis_maps(source, target) is None) == (kind == "oblique")
    array = RNG.normal(size=tuple(reversed(source.size))).astype(np.float32)
    expected = _sitk_resample(array, source, target, -7.0)
    resampled = resample_linear(array, source, target, outside=-7.0)
    assert resampled.shape == expected.shape
    assert resampled.dtype == np.float32
    assert np.abs(resampled - expected).max() <= 1e-5
    assert 0 < (expected == -7.0).mean() < 0.5  # the borders and the outside were really exercised


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
@pytest.mark.parametrize("smoothing", [0.0, 2.0], ids=["noise", "organ-like"])
def test_contract_labels_equal_the_argmax_of_simpleitks_resampled_logits(kind: str, smoothing: float) -> None:
    """The argmax of every class resampled (ties to the lower class), computed only in mixed cells."""
    source, target = _grids(GRID_DIRECTIONS[kind])
    logits = RNG.normal(size=(5, *reversed(source.size))).astype(np.float32)
    if smoothing:
        logits = np.stack([gaussian_filter(channel, smoothing) * 10 for channel in logits]).astype(np.float32)
    resampled = np.stack([_sitk_resample(channel, source, target, -1e4) for channel in logits])
    expected = np.argmax(resampled, axis=0).astype(np.uint8)
    labels = argmax_on_grid(logits, source, target)
    top_two = np.sort(resampled, axis=0)[-2:]
    outside = top_two[1] == -1e4  # every class takes the outside value: background
    decided = ((top_two[1] - top_two[0]) > 1e-4) | outside  # leave float near-ties out of the comparison
    assert labels.dtype == np.uint8
    assert labels.shape == expected.shape
    assert np.array_equal(labels[decided], expected[decided])
    assert decided.mean() > 0.99
    assert len(np.unique(labels)) == 5


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_contract_map_writer_equals_simpleitks_nifti_writer(tmp_path: Path, kind: str, suffix: str) -> None:
    """A map stored as scaled integers reads back as the float image SimpleITK would have written."""
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
    assert stored.get_data_dtype() == np.int16
    assert (stored.dataobj.slope, stored.dataobj.inter) == (ATTENTION_STEP, 0)
    assert np.array_equal(stored.get_fdata(dtype=np.float32), sitk.GetArrayViewFromImage(expected).T)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, reference.name])  # no temporaries


@pytest.mark.parametrize("step", [ATTENTION_STEP, None], ids=["int16 multiples", "float32 values"])
def test_contract_map_reader_equals_simpleitks_reader(tmp_path: Path, step) -> None:
    """The Slicer logic reads the worker's uncompressed map files with read_map instead of ITK: same values,
    same pixel type, same geometry, on a real CT's oblique-free grid with its RAS/LPS flips."""
    ct = read_image(SAMPLE_CT)
    grid = Grid.of(ct)
    values = np.clip((sitk.GetArrayFromImage(ct).astype(np.float32) + 160.0) / 400.0, 0.0, 1.0)
    stored = np.rint(values / step).astype(np.int16) if step else values
    path = write_map(stored, grid, tmp_path / "map.nii", step)
    ours, itk = grid.image(read_map(path)), sitk.ReadImage(str(path))
    assert ours.GetPixelID() == sitk.sitkFloat32
    assert itk.GetPixelID() == sitk.sitkFloat32
    assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(itk))
    for geometry in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(ours, geometry)(), getattr(itk, geometry)(), atol=1e-5)


@pytest.mark.parametrize("shape, overlap, batch_size", [
    ((20, 40, 30), 0.25, 1),
    ((9, 17, 13), 0.5, 3),
    ((5, 10, 30), 0.25, 2),   # shorter than a window on two axes: padded
    ((8, 16, 12), 0.0, 1),    # exactly one window
    ((31, 16, 50), 0.9, 4),
])
def test_contract_sliding_windows_equal_monais_sliding_window_inference(shape: Tuple[int, ...], overlap: float,
                                                                         batch_size: int) -> None:
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    predict = position_dependent_predictor()
    ours = blend_windows(volume, WindowLayout(ROI, overlap, batch_size, fill=-1.0), predict, CPU)
    theirs = sliding_window_inference(torch.from_numpy(volume)[None, None], ROI, batch_size, predict, overlap=overlap,
                                      mode="gaussian", padding_mode="constant", cval=-1.0)[0].numpy()
    assert ours.shape == (3,) + shape
    assert theirs.shape == (3,) + shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_contract_windows_are_those_monai_visits(overlap: float) -> None:
    for shape in [(8, 16, 12), (9, 17, 13), (20, 40, 30), (31, 16, 50)]:
        visited: List[np.ndarray] = []
        sliding_window_inference(torch.arange(np.prod(shape), dtype=torch.float32).reshape((1, 1) + shape), ROI, 1,
                                 lambda window: visited.append(window[0, 0].numpy().copy()) or window, overlap=overlap)
        index = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        ours = [index[box] for box in window_boxes(shape, ROI, overlap)]
        assert len(visited) == np.prod([windows_along(n, r, overlap) for n, r in zip(shape, ROI)]), shape
        assert len(ours) == len(visited), shape
        assert all(np.array_equal(a, b) for a, b in zip(ours, visited)), shape
