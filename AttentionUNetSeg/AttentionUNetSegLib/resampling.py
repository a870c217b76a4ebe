"""Linear resampling of model-grid outputs onto the input's grid: separable and multi-threaded where it can be.

The model grid has an identity direction; most CT grids differ from it only by axis flips (and perhaps a
permutation), so each output axis reads one model axis and trilinear interpolation splits into three 1-D
interpolations, done with PyTorch (threaded) instead of a general resampler. It gives what
SimpleITK's linear `Resample` gives (the same clamping at the borders, values outside the grid set to `outside`);
oblique grids go to SimpleITK itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import SimpleITK as sitk
import torch

from .callbacks import CancelCheck, raise_if_cancelled
from .grid import Grid
from .preprocessing import resample

AXIS_TOLERANCE = 1e-6


@dataclass(frozen=True)
class AxisMap:
    """Output array axis -> the source array axis it reads, and the source index of each output index."""

    source_axis: int
    coordinates: np.ndarray


def axis_maps(source: Grid, target: Grid) -> Optional[List[AxisMap]]:
    """Per target array axis (z, y, x), the source axis and continuous source indices; None if oblique."""
    source_direction = np.array(source.direction).reshape(3, 3)
    target_direction = np.array(target.direction).reshape(3, 3)
    relative = source_direction.T @ target_direction  # columns: target axes in source axes
    maps = []
    for target_axis in range(3):  # in x, y, z order
        column = relative[:, target_axis]
        source_axis = int(np.argmax(np.abs(column)))
        if abs(abs(column[source_axis]) - 1) > AXIS_TOLERANCE or \
                np.abs(np.delete(column, source_axis)).max() > AXIS_TOLERANCE:
            return None
        offset = source_direction.T @ (np.array(target.origin) - np.array(source.origin))
        step = column[source_axis] * target.spacing[target_axis] / source.spacing[source_axis]
        start = offset[source_axis] / source.spacing[source_axis]
        maps.append(AxisMap(2 - source_axis, start + step * np.arange(target.size[target_axis])))
    return maps[::-1]  # array order: z, y, x


def resample_linear(array: np.ndarray, source: Grid, target: Grid, outside: float = 0.0) -> np.ndarray:
    """`array` (z, y, x) on `source` linearly resampled onto `target`, as float32 (z, y, x)."""
    maps = axis_maps(source, target)
    if maps is None:
        image = source.image(np.ascontiguousarray(array, dtype=np.float32))
        return sitk.GetArrayFromImage(resample(image, target, sitk.sitkLinear, outside))
    values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    values = values.permute(*(m.source_axis for m in maps))  # source axes in target order
    corners = [_cell_corners(m.coordinates, values.shape[axis]) for axis, m in enumerate(maps)]
    for axis in (2, 1, 0):  # x first: the gathers along the last axis then touch the smallest arrays
        values = _interpolate_axis(values, axis, corners[axis])
    if not _all_inside(corners):
        values = torch.where(_inside_mask(corners), values, torch.tensor(outside, dtype=values.dtype))
    return values.contiguous().numpy()


def _interpolate_axis(values: torch.Tensor, axis: int, corners: _Corners) -> torch.Tensor:
    """Linear interpolation along `axis` between each output index's neighbours (clamped at the borders, so
    the first and last voxel repeat beyond the first and last centre, as ITK does). Along the first axis each
    output plane is made from its two source planes, without full-size temporaries."""
    if axis == 0:
        planes = torch.empty((len(corners.low),) + tuple(values.shape[1:]), dtype=values.dtype)
        for plane, low, high, weight in zip(planes, corners.low.tolist(), corners.high.tolist(),
                                            corners.weight.tolist()):
            torch.lerp(values[low], values[high], weight, out=plane)
        return planes
    lower = values.index_select(axis, corners.low)
    upper = values.index_select(axis, corners.high)
    shape = [1] * values.dim()
    shape[axis] = -1
    return lower.lerp_(upper, corners.weight.view(shape))


def argmax_on_grid(logits: np.ndarray, source: Grid, target: Grid,
                   cancel: Optional[CancelCheck] = None) -> np.ndarray:
    """The argmax class (uint8, z, y, x on `target`) of `logits` (classes, z, y, x on `source`) linearly
    resampled onto `target`, computed exactly without resampling every class everywhere.

    Where the coarse argmax is the same class c at all 8 corners of an interpolation cell, c has the largest
    interpolated logit everywhere in that cell (a weighted mean of corner values it wins at each corner,
    ties going to the lower class as in np.argmax), so only points in mixed cells are interpolated.
    Oblique grids resample class by class with SimpleITK, keeping a running maximum.
    """
    maps = axis_maps(source, target)
    if maps is None:
        return _argmax_by_class(logits, source, target, cancel)
    values = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    values = values.permute(0, *(1 + m.source_axis for m in maps)).contiguous()  # (classes, target axis order)
    coarse = _class_argmax(values)
    corners = [_cell_corners(m.coordinates, values.shape[1 + axis]) for axis, m in enumerate(maps)]
    labels = _gather(coarse, [c.low for c in corners])
    mixed = _gather(~_uniform_cells(coarse), [c.low for c in corners])
    inside = None if _all_inside(corners) else _inside_mask(corners)
    if inside is not None:
        mixed &= inside
    slab = max(SLAB_VOXELS // (labels.shape[1] * labels.shape[2]), 1)
    for first in range(0, labels.shape[0], slab):  # slab by slab, so a noisy model's labels stay in bounds
        raise_if_cancelled(cancel)
        points = mixed[first:first + slab].nonzero()
        points[:, 0] += first
        labels[tuple(points.T)] = _interpolated_argmax(values, corners, points)
    if inside is not None:
        labels[~inside] = 0
    return labels.numpy()


SLAB_VOXELS = 1 << 22
"""Output voxels whose mixed points are interpolated at a time (bounds the memory of that step)."""


@dataclass(frozen=True)
class _Corners:
    """Per output index along one axis: the lower and upper source neighbour (clamped to the grid), the weight
    of the upper one, and whether the point lies inside the source's extent (up to half a voxel beyond the
    first and last centre)."""

    low: torch.Tensor
    high: torch.Tensor
    weight: torch.Tensor
    inside: torch.Tensor


def _cell_corners(coordinates: np.ndarray, count: int) -> _Corners:
    continuous = torch.from_numpy(coordinates.astype(np.float64))
    floor = torch.floor(continuous)
    return _Corners(floor.clamp(0, count - 1).long(), (floor + 1).clamp(0, count - 1).long(),
                    (continuous - floor).to(torch.float32), (continuous >= -0.5) & (continuous < count - 0.5))


def _gather(volume: torch.Tensor, indices: List[torch.Tensor]) -> torch.Tensor:
    """volume[i0][:, i1][:, :, i2] for per-axis index lists (separable, so cheap). The last axis goes first, on
    the smallest array: gathering single elements is slow, the other axes then copy whole rows and planes."""
    for axis in reversed(range(len(indices))):
        volume = volume.index_select(axis, indices[axis])
    return volume


def _uniform_cells(coarse: torch.Tensor) -> torch.Tensor:
    """True where the cell from voxel (i, j, k) to (i+1, j+1, k+1) (clamped at the far borders) has one class."""
    uniform = torch.ones_like(coarse, dtype=torch.bool)
    padded = torch.cat([coarse, coarse[-1:]], 0)
    padded = torch.cat([padded, padded[:, -1:]], 1)
    padded = torch.cat([padded, padded[:, :, -1:]], 2)
    n0, n1, n2 = coarse.shape
    for d0 in (0, 1):
        for d1 in (0, 1):
            for d2 in (0, 1):
                uniform &= padded[d0:d0 + n0, d1:d1 + n1, d2:d2 + n2] == coarse
    return uniform


def _all_inside(corners: List[_Corners]) -> bool:
    return all(bool(c.inside.all()) for c in corners)


def _inside_mask(corners: List[_Corners]) -> torch.Tensor:
    return corners[0].inside.view(-1, 1, 1) & corners[1].inside.view(1, -1, 1) & corners[2].inside.view(1, 1, -1)


def _interpolated_argmax(values: torch.Tensor, corners: List[_Corners], points: torch.Tensor) -> torch.Tensor:
    """Exact trilinear argmax at `points` (N, 3 output indices) over every class of `values`."""
    picked = [(c.low[points[:, axis]], c.high[points[:, axis]], c.weight[points[:, axis]])
              for axis, c in enumerate(corners)]
    flat = values.reshape(values.shape[0], -1)
    n1, n2 = values.shape[2], values.shape[3]
    total = torch.zeros((values.shape[0], len(points)), dtype=torch.float32)
    for i0, w0 in ((picked[0][0], 1 - picked[0][2]), (picked[0][1], picked[0][2])):
        for i1, w1 in ((picked[1][0], 1 - picked[1][2]), (picked[1][1], picked[1][2])):
            for i2, w2 in ((picked[2][0], 1 - picked[2][2]), (picked[2][1], picked[2][2])):
                total += flat[:, (i0 * n1 + i1) * n2 + i2] * (w0 * w1 * w2)
    return _class_argmax(total)


def _class_argmax(values: torch.Tensor) -> torch.Tensor:
    """values.argmax(dim=0) as uint8 (ties to the lower class), as a running maximum over the classes:
    PyTorch's argmax over the first of a contiguous tensor's dimensions is slower on the CPU."""
    best = values[0].clone()
    labels = torch.zeros(values.shape[1:], dtype=torch.uint8)
    for value in range(1, values.shape[0]):
        wins = values[value] > best
        labels[wins] = value
        torch.maximum(best, values[value], out=best)
    return labels


def _argmax_by_class(logits: np.ndarray, source: Grid, target: Grid,
                     cancel: Optional[CancelCheck]) -> np.ndarray:
    best: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    for value in range(logits.shape[0]):
        raise_if_cancelled(cancel)
        resampled = resample_linear(logits[value], source, target, outside=-1e4)
        if best is None:
            best, labels = resampled, np.zeros(resampled.shape, dtype=np.uint8)
        else:
            better = resampled > best
            labels[better] = value
            np.maximum(best, resampled, out=best)
    return labels
