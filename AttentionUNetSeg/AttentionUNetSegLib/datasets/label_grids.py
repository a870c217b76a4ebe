"""Whether two images cover the same voxels: a label and its CT, a prediction and its reference.

Two grids are the same when every voxel centre of one lies within GRID_TOLERANCE (a fraction of the
first image's smallest spacing) of a voxel centre of the other. Grids are affine, so it suffices to
compare their eight corners.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import DatasetError

GRID_TOLERANCE = 0.1
"""Of the smallest voxel spacing: far below the half voxel at which a voxel would meet its neighbour, far
above the rounding of image headers (float32 NIfTI sforms)."""


def check_same_grid(image: sitk.Image, other: sitk.Image, where: str, roles: Tuple[str, str], fix: str,
                    any_axis_order: bool = False) -> None:
    """Raise DatasetError unless `other` covers the voxels of `image`.

    With `any_axis_order` the two may store those voxels in another axis order or direction (a label
    array is then read through its own grid); without it, voxel (i, j, k) of one must be voxel (i, j, k)
    of the other (the arrays are compared as they are). The message starts with `where`, names both grids
    as `roles` (image's, other's) and every item in which they differ, and ends with `fix`.
    """
    if not _same_voxels(image, other, any_axis_order):
        first, second = roles
        checks = [("size (voxels)", image.GetSize(), other.GetSize()),
                  ("spacing (mm)", image.GetSpacing(), other.GetSpacing()),
                  ("origin (mm)", image.GetOrigin(), other.GetOrigin()),
                  ("direction", image.GetDirection(), other.GetDirection())]
        differences = "; ".join(f"{what}: {second} {_fmt(b)}, {first} {_fmt(a)}" for what, a, b in checks if a != b)
        raise DatasetError(f"{where}: the {second} grid ({_describe(other)}) does not match the {first} grid "
                           f"({_describe(image)}) in {differences}; {fix}")


def check_label_grid(image: sitk.Image, label: sitk.Image, case: str, allow_crop: bool = False) -> None:
    """A case's label must cover its image's voxels, in any axis order or direction; with `allow_crop` it may
    also cover a box of them on the same lattice (a Slicer segmentation saved cropped to its segments: the voxels
    outside the box are background)."""
    if allow_crop and is_crop_of(image, label):
        return
    check_same_grid(image, label, f"case {case}", ("image", "label"),
                    "the label must cover the same voxels as its image (resample it onto the image, or pair the "
                    "right files)", any_axis_order=True)


def is_crop_of(image: sitk.Image, other: sitk.Image) -> bool:
    """Whether `other`'s voxels are a box of `image`'s: same spacing and direction, its first voxel centre on one
    of `image`'s, and its last one inside `image`."""
    if image.GetDimension() != other.GetDimension() or not (
            np.allclose(image.GetSpacing(), other.GetSpacing(), rtol=1e-5)
            and np.allclose(image.GetDirection(), other.GetDirection(), atol=1e-5)):
        return False
    first = np.array(image.TransformPhysicalPointToContinuousIndex(other.GetOrigin()))
    last = first + np.array(other.GetSize()) - 1
    on_lattice = np.all(np.abs(first - np.round(first)) < GRID_TOLERANCE)
    return bool(on_lattice and np.all(np.round(first) >= 0) and np.all(np.round(last) < np.array(image.GetSize())))


def _same_voxels(image: sitk.Image, other: sitk.Image, any_axis_order: bool) -> bool:
    order = sorted if any_axis_order else tuple
    if image.GetDimension() != other.GetDimension() or order(image.GetSize()) != order(other.GetSize()):
        return False
    a, b = _corners(image), _corners(other)
    distances = np.linalg.norm(a[:, None] - b[None], axis=2).min(axis=1) if any_axis_order \
        else np.linalg.norm(a - b, axis=1)
    return bool(np.all(distances < GRID_TOLERANCE * min(image.GetSpacing())))


def _corners(grid: sitk.Image) -> np.ndarray:
    """Physical points of the grid's corner voxel centres."""
    size = np.array(grid.GetSize()) - 1
    dimension = grid.GetDimension()
    steps = np.array(np.meshgrid(*[(0, 1)] * dimension, indexing="ij")).reshape(dimension, -1).T
    return np.array([grid.TransformContinuousIndexToPhysicalPoint((size * step).astype(float).tolist())
                     for step in steps])


def _describe(grid: sitk.Image) -> str:
    return (f"size {grid.GetSize()}, spacing {tuple(round(s, 4) for s in grid.GetSpacing())}, "
            f"origin {tuple(round(o, 2) for o in grid.GetOrigin())}")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
