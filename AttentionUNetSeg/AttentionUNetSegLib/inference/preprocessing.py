"""Input checks and the geometry/intensity steps between a CT image and the network.

The network always sees the CT on an axis-aligned LPS grid (identity direction) at the model's
spacing that covers the input's physical extent, so any input orientation, oblique ones included,
reaches it the same way; results are resampled back onto the input's own grid.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputImageError
from ..io.grid import Grid

MAX_VOXELS = 2_000_000_000
MAX_ANISOTROPY = 20.0


def validate_image(image: sitk.Image) -> List[str]:
    """Raise InputImageError for images that cannot be segmented; return warnings for doubtful ones."""
    if image.GetDimension() != 3:
        raise InputImageError(
            f"the image is {image.GetDimension()}D ({'x'.join(map(str, image.GetSize()))}); a 3D CT volume is needed "
            "(for a 4D series, extract one 3D time point first)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"the image has {image.GetNumberOfComponentsPerPixel()} components per voxel (a vector or colour image); "
            "give a single-channel CT in Hounsfield units"
        )
    size = image.GetSize()
    if min(size) < 1 or math.prod(size) > MAX_VOXELS:
        raise InputImageError(f"image size {size} is empty or larger than {MAX_VOXELS} voxels; crop it first")
    spacing = image.GetSpacing()
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputImageError(f"voxel spacing {spacing} must be positive and finite; fix the image header")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputImageError(f"the direction matrix {direction.tolist()} is not a rotation; fix the image header")
    warnings = []
    if max(spacing) / min(spacing) > MAX_ANISOTROPY:
        warnings.append(f"voxel spacing {spacing} is extremely anisotropic; results may be poor")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputImageError(f"the image has {bad} NaN or infinite voxels; replace them (e.g. with -1024 HU) first")
    low, high = float(array.min()), float(array.max())
    if low > -500 or high < 100 or low < -4000 or high > 40000:
        warnings.append(
            f"intensities range from {low:g} to {high:g}, which does not look like CT in Hounsfield units "
            "(air about -1000, soft tissue 0-100); the segmentation may be meaningless"
        )
    return warnings


def model_grid(image: sitk.Image, spacing_mm: Sequence[float]) -> Grid:
    """The identity-direction grid at `spacing_mm` covering `image`'s physical extent, centred on it."""
    size = np.array(image.GetSize())
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (size - 1)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners.astype(float)])
    half_voxel = 0.5 * np.abs(np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())).sum(axis=1)
    low, high = points.min(axis=0) - half_voxel, points.max(axis=0) + half_voxel
    spacing = np.asarray(spacing_mm, dtype=float)
    new_size = np.maximum(np.ceil((high - low) / spacing).astype(int), 1)
    origin = (low + high) / 2 - (new_size - 1) * spacing / 2
    return Grid(tuple(int(s) for s in new_size), tuple(origin.tolist()), tuple(spacing.tolist()),
                tuple(np.eye(3).ravel().tolist()))


def body_box(hu: np.ndarray, margin: int = 0, threshold: float = -500.0) -> Tuple[slice, ...]:
    """Bounding box (with `margin` voxels) of everything denser than `threshold` HU: the body and table.

    Windows outside it would see nothing but air; an image without such voxels keeps its whole extent.
    """
    inside = hu > threshold
    if not inside.any():
        return tuple(slice(0, n) for n in hu.shape)
    boxes = []
    for axis, n in enumerate(hu.shape):
        present = np.flatnonzero(inside.any(axis=tuple(a for a in range(hu.ndim) if a != axis)))
        boxes.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, n)))
    return tuple(boxes)


def resample(image: sitk.Image, grid: Grid, interpolator: int, default: float,
             pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """`image` resampled onto `grid` with an identity transform, `default` outside it."""
    return sitk.Resample(image, grid.size, sitk.Transform(), interpolator, grid.origin, grid.spacing, grid.direction,
                         default, pixel_type)
