"""The separable resampler and the exact argmax shortcut: ties, rounded maps; the grids and SimpleITK reference
that its contracts with SimpleITK (test_contracts.py) use."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import GRID_DIRECTIONS

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.inference.preprocessing import resample
from AttentionUNetSegLib.inference.resampling import (argmax_on_grid, resample_linear, resample_multiples,
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
    assert multiples.dtype == np.int16
    assert np.array_equal(multiples, expected)
    out = np.empty(target.shape, np.float32)
    assert np.array_equal(resample_rounded(array, source, target, step, out), expected * np.float32(step))
