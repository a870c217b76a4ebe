"""The separable resampler and the exact argmax shortcut against SimpleITK's linear resampling."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import GRID_DIRECTIONS
from scipy.ndimage import gaussian_filter

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.inference.preprocessing import resample
from AttentionUNetSegLib.inference.resampling import (argmax_on_grid, axis_maps, resample_linear, resample_multiples,
                                                      resample_rounded)

RNG = np.random.default_rng(1)


def _centred(size, spacing, direction, centre) -> Grid:
    direction = np.asarray(direction, dtype=float)
    origin = centre - direction @ ((np.array(size) - 1) / 2 * np.array(spacing))
    return Grid(tuple(size), tuple(origin), tuple(spacing), tuple(direction.ravel()))


def _grids(direction: np.ndarray):
    """A coarse identity-direction source (like the model grid) and a finer target that pokes out of it."""
    centre = RNG.normal(size=3) * 5
    source = _centred((23, 19, 17), (2.0, 2.5, 3.0), np.eye(3), centre)
    target = _centred((60, 52, 45), (0.9, 1.1, 1.3), direction, centre + RNG.normal(size=3))
    return source, target


def _sitk_resample(array: np.ndarray, source: Grid, target: Grid, outside: float) -> np.ndarray:
    return sitk.GetArrayFromImage(resample(source.image(array), target, sitk.sitkLinear, outside))


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
def test_linear_resampling_matches_simpleitk(kind: str) -> None:
    source, target = _grids(GRID_DIRECTIONS[kind])
    assert (axis_maps(source, target) is None) == (kind == "oblique")
    array = RNG.normal(size=tuple(reversed(source.size))).astype(np.float32)
    expected = _sitk_resample(array, source, target, -7.0)
    resampled = resample_linear(array, source, target, outside=-7.0)
    assert resampled.shape == expected.shape and resampled.dtype == np.float32
    assert np.abs(resampled - expected).max() <= 1e-5
    assert 0 < (expected == -7.0).mean() < 0.5  # the borders and the outside were really exercised


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
@pytest.mark.parametrize("smoothing", [0.0, 2.0], ids=["noise", "organ-like"])
def test_argmax_shortcut_is_exact(kind: str, smoothing: float) -> None:
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
    assert labels.dtype == np.uint8 and labels.shape == expected.shape
    assert np.array_equal(labels[decided], expected[decided]) and decided.mean() > 0.99
    assert len(np.unique(labels)) == 5


def test_ties_go_to_the_lower_class() -> None:
    source = _centred((8, 8, 8), (2.0, 2.0, 2.0), np.eye(3), np.zeros(3))
    target = _centred((13, 11, 9), (1.1, 1.3, 1.7), GRID_DIRECTIONS["LPS flip"], np.zeros(3))
    logits = np.zeros((3, 8, 8, 8), np.float32)
    logits[2, :, :, 4:] = 1.0  # classes 0 and 1 tie everywhere, class 2 wins on one side
    labels = argmax_on_grid(logits, source, target)
    assert set(np.unique(labels)) == {0, 2}


@pytest.mark.parametrize("kind", list(GRID_DIRECTIONS))
def test_rounded_maps_are_exactly_the_clipped_and_rounded_linear_resampling(kind: str) -> None:
    """Plane by plane, without float32 temporaries of the target's size: the same multiples as clipping and
    rounding a whole resampled volume (subnormal values included)."""
    source, target = _grids(GRID_DIRECTIONS[kind])
    array = RNG.uniform(-0.2, 1.2, size=tuple(reversed(source.size))).astype(np.float32)
    array.flat[:50] = RNG.uniform(0, 1, 50) * np.float32(1e-40)  # subnormal values too
    step = 2.0 ** -10
    expected = np.rint(np.clip(resample_linear(array, source, target), 0.0, 1.0) * np.float32(1 / step))
    multiples = resample_multiples(array, source, target, step)
    assert multiples.dtype == np.int16 and np.array_equal(multiples, expected)
    out = np.empty(target.shape, np.float32)
    assert np.array_equal(resample_rounded(array, source, target, step, out), expected * np.float32(step))
