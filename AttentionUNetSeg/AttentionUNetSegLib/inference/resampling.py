"""Linear resampling of model-grid outputs onto the input's grid: separable, and exact for the labels' argmax.

The model grid has an identity direction; most CT grids differ from it only by axis flips (and perhaps a
permutation), so each output axis reads one model axis and trilinear interpolation splits into three 1-D
interpolations, done plane by plane with NumPy (maps) or with PyTorch (the argmax) instead of a general
resampler. It gives what SimpleITK's linear `Resample` gives (the same clamping at the borders, values outside
the grid set to `outside`); oblique grids go to SimpleITK itself. That, and labels equal to the argmax of
SimpleITK's resampled logits, are contracts: Testing/engine/inference/test_contracts.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from ..io.grid import Grid
from ..progress import CancelCheck, raise_if_cancelled
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
    resampled = np.empty(target.shape, dtype=np.float32)
    for index, plane in _target_planes(array, maps, outside):
        resampled[index] = plane
    return resampled


def resample_multiples(array: np.ndarray, source: Grid, target: Grid, step: float,
                       bounds: Tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """`array` (z, y, x) on `source` linearly resampled onto `target` (0 outside it), clipped to `bounds` and
    rounded to multiples of `step` (half to even), as those multiples: int16 (z, y, x), value = multiple * step.

    `resample_linear` followed by the clip and the rounding, one output plane at a time (in cache, without
    float32 temporaries of the target's size)."""
    multiples = np.empty(target.shape, dtype=np.int16)
    for index, plane in _rounded_planes(array, source, target, step, bounds):
        multiples[index] = plane
    return multiples


def resample_rounded(array: np.ndarray, source: Grid, target: Grid, step: float, out: np.ndarray,
                     bounds: Tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """`resample_multiples`' values (multiple * step) as float32, written into `out` (z, y, x on `target`) plane by
    plane; exact for a power-of-two `step`. Returns `out`."""
    for index, plane in _rounded_planes(array, source, target, step, bounds):
        np.multiply(plane, np.float32(step), out=out[index])
    return out


def _rounded_planes(array: np.ndarray, source: Grid, target: Grid, step: float,
                    bounds: Tuple[float, float]) -> Iterator[Tuple[int, np.ndarray]]:
    """Each output plane of `resample_multiples`, its multiples as float32 (in a reused buffer)."""
    if not np.iinfo(np.int16).min <= round(bounds[0] / step) <= round(bounds[1] / step) <= np.iinfo(np.int16).max:
        raise ValueError(f"multiples of {step} in {bounds} do not fit in int16")
    maps = axis_maps(source, target)
    planes = enumerate(resample_linear(array, source, target)) if maps is None else _target_planes(array, maps, 0.0)
    for index, plane in planes:
        np.clip(plane, *bounds, out=plane)
        plane *= np.float32(1.0 / step)
        yield index, np.rint(plane, out=plane)


def _target_planes(array: np.ndarray, maps: List[AxisMap], outside: float) -> Iterator[Tuple[int, np.ndarray]]:
    """Each output plane (its index along the target's first axis, the plane) of `array` linearly resampled, in
    a buffer reused for the next one. Each source plane along that axis is interpolated in-plane once, when the
    first output plane needs it, and kept while later ones do (the source indices are monotonic), so every step
    works on planes in cache, in NumPy: one thread that lets go of the GIL (callers resample maps in parallel
    threads; PyTorch's parallel steps, this short, stall on a busy CPU). Borders clamp as ITK does: the first
    and last voxel repeat up to half a voxel beyond the first and last centre; further out is `outside`."""
    values = np.ascontiguousarray(array, dtype=np.float32).transpose(*(m.source_axis for m in maps))
    corners = [_cell_corners(m.coordinates, values.shape[axis]) for axis, m in enumerate(maps)]
    axes = [(c.low.numpy(), c.high.numpy(), c.weight.numpy()) for c in corners]
    outside_plane = None if _all_inside(corners[1:]) else ~np.outer(corners[1].inside, corners[2].inside)
    buffer = np.empty((len(axes[1][0]), len(axes[2][0])), dtype=np.float32)
    kept: Dict[int, np.ndarray] = {}
    for index, (low, high, weight, inside) in enumerate(zip(*(a.tolist() for a in axes[0]),
                                                            corners[0].inside.tolist())):
        if not inside:
            buffer.fill(outside)
        else:
            kept = {k: kept[k] if k in kept else _interpolate_plane(values[k], axes[1:]) for k in (low, high)}
            _lerp(kept[low], kept[high], np.float32(weight), buffer)
            if outside_plane is not None:
                np.copyto(buffer, np.float32(outside), where=outside_plane)
        yield index, buffer


def _interpolate_plane(plane: np.ndarray, axes: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """A source plane (y, x) interpolated along x, then along y (the gathers along x touch the smaller array)."""
    (y_low, y_high, y_weight), (x_low, x_high, x_weight) = axes
    rows = plane[:, x_high]
    _lerp(plane[:, x_low], rows, x_weight, rows)
    columns = rows[y_high]
    return _lerp(rows[y_low], columns, y_weight[:, None], columns)


def _lerp(low: np.ndarray, high: np.ndarray, weight, out: np.ndarray) -> np.ndarray:
    """low + weight * (high - low) into `out` (which may be `high`)."""
    np.subtract(high, low, out=out)
    out *= weight
    out += low
    return out


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
