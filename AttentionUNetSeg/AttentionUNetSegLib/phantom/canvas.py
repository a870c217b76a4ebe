"""The phantom's drawing surface: a voxel grid in anatomical millimetres, smoothly deformed, with shapes
(ellipsoids, cylinders, tubes) painted into an HU volume and a structure-index volume."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[slice, slice, slice]  # array order (z, y, x)
Vec = Sequence[float]  # (x, y, z) in anatomical millimetres


class Canvas:
    """The voxel grid in anatomical millimetres (randomly scaled, shifted and smoothly deformed) with the
    HU volume and a structure-index volume being painted; later paint covers earlier paint."""

    def __init__(self, size: Tuple[int, ...], spacing: Tuple[float, ...], structures: Sequence[str],
                 rng: np.random.Generator) -> None:
        self.structures = tuple(structures)  # structure index i (1-based) paints structures[i - 1]
        self.spacing = spacing
        self.origin = tuple(-(n - 1) / 2 * s for n, s in zip(size, spacing))
        scale = rng.uniform(0.9, 1.1)
        offset = (rng.normal(0, 5), rng.normal(0, 5), rng.uniform(-20, 20))  # where L1 sits in the field of view
        self.axes = [((o + s * np.arange(n) - off) / scale).astype(np.float32)
                     for o, s, n, off in zip(self.origin, spacing, size, offset)]
        self.shape = (size[2], size[1], size[0])
        self.deformation = SmoothDeformation(self.axes, rng, amplitude_mm=rng.uniform(3, 8))
        self.margin = self.deformation.bounds
        self.hu = np.full(self.shape, -1000, dtype=np.float32)
        self.structure = np.zeros(self.shape, dtype=np.uint8)
        everything = np.ones(self.shape, dtype=bool)
        self.inner = everything  # inside the subcutaneous fat; set by the body outline
        self.cavity = everything  # inside the abdominal wall muscles; set by the body outline
        self.wall = (120.0, 100.0, 80.0)  # semi-axes (side, front, back) of the mid-muscle ellipse; set by the body outline

    def index(self, structure: str) -> int:
        """The structure-index value that `structure` is painted with."""
        return self.structures.index(structure) + 1

    def region(self, lo: Vec, hi: Vec) -> Optional[Box]:
        """Voxels that the deformation can bring into the box [lo, hi] (mm); None when outside the image."""
        bounds = []
        for axis, low, high, margin in zip(self.axes, lo, hi, self.margin):
            start, stop = np.searchsorted(axis, low - margin), np.searchsorted(axis, high + margin, side="right")
            if start >= stop:
                return None
            bounds.append(slice(int(start), int(stop)))
        return bounds[2], bounds[1], bounds[0]

    def coords(self, box: Box) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Deformed anatomical coordinates (x, y, z) of the voxels in `box`."""
        dx, dy, dz = self.deformation.at(box)
        x = self.axes[0][box[2]][None, None, :] + dx
        y = self.axes[1][box[1]][None, :, None] + dy
        z = self.axes[2][box[0]][:, None, None] + dz
        return x, y, z

    def paint(self, box: Box, mask: np.ndarray, hu, structure: Optional[str] = None,
              clip: Optional[np.ndarray] = None, within: Optional[str] = None) -> None:
        """Set HU (a value or an array shaped like `mask`) and the structure in `mask`, optionally only inside
        the full-size mask `clip` or where `within` was painted before."""
        if clip is not None:
            mask = mask & clip[box]
        if within is not None:
            mask = mask & (self.structure[box] == self.index(within))
        self.hu[box][mask] = hu[mask] if isinstance(hu, np.ndarray) else hu
        self.structure[box][mask] = self.index(structure) if structure else 0

    def ellipsoid(self, center: Vec, semi: Vec, angles: Vec = (0, 0, 0)) -> Optional[Tuple[Box, np.ndarray]]:
        """Squared normalised radius of an ellipsoid rotated by `angles` (degrees about z, y, x) over its box."""
        rotation = _rotation(angles)
        extent = np.sqrt(((rotation * np.asarray(semi)) ** 2).sum(axis=1))
        box = self.region(np.asarray(center) - extent, np.asarray(center) + extent)
        if box is None:
            return None
        offsets = [c - center_i for c, center_i in zip(self.coords(box), center)]
        r2 = sum((sum(rotation[row, col] * offsets[row] for row in range(3)) / semi[col]) ** 2 for col in range(3))
        return box, r2

    def cylinder(self, center: Vec, semi_xy: Vec, half_height: float) -> Optional[Tuple[Box, np.ndarray]]:
        """Normalised radius (max of the elliptic in-plane radius and |dz|/half_height) of an upright cylinder."""
        extent = np.array([semi_xy[0], semi_xy[1], half_height])
        box = self.region(np.asarray(center) - extent, np.asarray(center) + extent)
        if box is None:
            return None
        x, y, z = self.coords(box)
        in_plane = np.sqrt(((x - center[0]) / semi_xy[0]) ** 2 + ((y - center[1]) / semi_xy[1]) ** 2)
        return box, np.maximum(in_plane, np.abs(z - center[2]) / half_height)

    def tube(self, points: Sequence[Vec], radii: Sequence[float], smooth: bool = True
             ) -> Optional[Tuple[Box, np.ndarray]]:
        """Mask of a tube through `points` (a chain of tapered capsules), smoothed unless `smooth` is False."""
        points, radii = np.asarray(points, dtype=np.float64), np.asarray(radii, dtype=np.float64)
        if smooth:
            points, radii = _smooth_path(points, radii)
        reach = np.maximum(radii[:-1], radii[1:])[:, None]
        lows, highs = np.minimum(points[:-1], points[1:]) - reach, np.maximum(points[:-1], points[1:]) + reach
        box = self.region(lows.min(axis=0), highs.max(axis=0))
        if box is None:
            return None
        mask = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
        for p0, p1, r0, r1, low, high in zip(points[:-1], points[1:], radii[:-1], radii[1:], lows, highs):
            sub = self.region(low, high)
            if sub is None:
                continue
            x, y, z = self.coords(sub)
            step = p1 - p0
            t = np.clip(((x - p0[0]) * step[0] + (y - p0[1]) * step[1] + (z - p0[2]) * step[2])
                        / max(float(step @ step), 1e-9), 0, 1)
            distance2 = (x - p0[0] - t * step[0]) ** 2 + (y - p0[1] - t * step[1]) ** 2 + (z - p0[2] - t * step[2]) ** 2
            within_box = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, box))
            mask[within_box] |= distance2 < (r0 + t * (r1 - r0)) ** 2
        return box, mask


def _rotation(angles: Vec) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles in degrees (about z, y, x)."""
    rz, ry, rx = np.radians(angles)
    cz, sz, cy, sy, cx, sx = np.cos(rz), np.sin(rz), np.cos(ry), np.sin(ry), np.cos(rx), np.sin(rx)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


def _smooth_path(points: np.ndarray, radii: np.ndarray, iterations: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """Chaikin corner cutting of a polyline (with its radii); the end points stay put."""
    path = np.column_stack([points, radii])
    for _ in range(iterations):
        cut = np.column_stack([0.75 * path[:-1] + 0.25 * path[1:], 0.25 * path[:-1] + 0.75 * path[1:]])
        path = np.vstack([path[:1], cut.reshape(-1, 4), path[-1:]])
    return path[:, :3], path[:, 3]


class SmoothDeformation:
    """A smooth random displacement field (mm): per axis a sum of separable low-frequency cosine products,
    evaluated only where asked; `bounds` holds the largest possible displacement per axis."""

    def __init__(self, axes: List[np.ndarray], rng: np.random.Generator, amplitude_mm: float, terms: int = 3) -> None:
        self.components: List[List[Tuple[np.float32, np.ndarray, np.ndarray, np.ndarray]]] = []
        for _ in range(3):
            component = []
            for _ in range(terms):
                weight = np.float32(rng.normal(0, amplitude_mm / math.sqrt(terms)))
                fx, fy, fz = (np.cos(2 * np.pi * axis / rng.uniform(150, 400) + rng.uniform(0, 2 * np.pi))
                              .astype(np.float32) for axis in axes)
                component.append((weight, fx, fy, fz))
            self.components.append(component)
        self.bounds = tuple(float(sum(abs(term[0]) for term in component)) for component in self.components)

    def at(self, box: Box) -> List[np.ndarray]:
        """Displacements (dx, dy, dz) of the voxels in `box`."""
        return [sum((weight * fz[box[0], None, None] * fy[None, box[1], None]) * fx[None, None, box[2]]
                    for weight, fx, fy, fz in component) for component in self.components]
