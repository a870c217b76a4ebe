"""Synthetic abdominal CT phantoms with organ labels: seeded, reproducible, in physical LPS space.

The anatomy is laid out in millimetres around the first lumbar vertebra (L1) with patient-to-patient
variation (body size, fat, organ sizes, positions and the pancreas's course), a smooth random
deformation, CT-like Hounsfield units, blur and noise. Images use DICOM/LPS geometry with an identity
direction: +x (index i) is patient left, +y (j) posterior, +z (k) superior, so the liver sits at low i
and the spleen at high i. Label values follow TotalSegmentator v2 by default, so the same class map
serves phantoms and real data; any structure can be given another value or left unlabelled.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_file
from .errors import InvalidOptionError
from .imageio import OUTPUT_FORMATS, write_image
from .repeats import repeated

Box = Tuple[slice, slice, slice]  # array order (z, y, x)
Vec = Sequence[float]  # (x, y, z) in anatomical millimetres

DEFAULT_SIZE: Tuple[int, int, int] = (128, 128, 96)
DEFAULT_SPACING: Tuple[float, float, float] = (2.5, 2.5, 3.0)

VERTEBRAE: Tuple[str, ...] = ("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8")  # caudal to cranial
_L1 = VERTEBRAE.index("L1")
_SPINE_Y = 35.0  # anatomical y (mm, posterior) of the vertebral bodies' centre

DEFAULT_LABELS: Dict[str, int] = {
    "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6, "pancreas": 7,
    "lung_lower_lobe_left": 11, "lung_lower_lobe_right": 14, "small_bowel": 18, "duodenum": 19, "colon": 20,
    **{f"vertebrae_{level}": 27 + i for i, level in enumerate(VERTEBRAE)},
    "heart": 51, "aorta": 52, "inferior_vena_cava": 63, "portal_vein_and_splenic_vein": 64,
    "iliac_artery_left": 65, "iliac_artery_right": 66, "spinal_cord": 79,
    "autochthon_left": 86, "autochthon_right": 87, "iliopsoas_left": 88, "iliopsoas_right": 89,
}
"""Structure name -> TotalSegmentator v2 label value (see labels_total_v2.json)."""

STRUCTURES: Tuple[str, ...] = tuple(DEFAULT_LABELS)


def generate_phantom(seed: int, size: Sequence[int] = DEFAULT_SIZE, spacing: Sequence[float] = DEFAULT_SPACING,
                     label_ids: Optional[Mapping[str, int]] = None) -> Tuple[sitk.Image, sitk.Image]:
    """A CT volume (int16 HU) and its label volume on the same grid; the same arguments give identical output.

    `size` is (x, y, z) in voxels, `spacing` (x, y, z) in mm; the field of view is centred on the origin
    of patient coordinates. `label_ids` maps structure names (see STRUCTURES) to label values; structures
    it leaves out are drawn but labelled 0 (default: DEFAULT_LABELS).
    """
    size, spacing = _checked_geometry(size, spacing)
    lut = _label_lut(DEFAULT_LABELS if label_ids is None else label_ids)
    rng = np.random.default_rng(seed)
    canvas = _Canvas(size, spacing, rng)
    for draw in (_body, _lungs_and_heart, _bowel, _upper_abdomen, _pancreas_region, _kidneys_and_muscles,
                 _vessels, _spine_and_ribs):
        draw(canvas, rng)
    hu = _acquire(canvas.hu, spacing, rng)
    labels = lut[canvas.structure]
    return _to_image(hu, canvas), _to_image(labels, canvas)


def write_phantom_dataset(directory: Path, count: int, seed: int, size: Sequence[int] = DEFAULT_SIZE,
                          spacing: Sequence[float] = DEFAULT_SPACING, file_format: str = "nii.gz",
                          label_ids: Optional[Mapping[str, int]] = None,
                          progress: Optional[Callable[[int, int, Path], None]] = None) -> Path:
    """Write `count` phantoms (case i from seed `seed + i`) as imagesTr/phantom_XXX and labelsTr/phantom_XXX
    plus a Medical Segmentation Decathlon style dataset.json; every file is written atomically.
    Returns the dataset.json path; `progress(done, count, image_path)` is called after each case."""
    if not 1 <= count <= 100_000:
        raise InvalidOptionError(f"phantom count {count} must be from 1 to 100000")
    if file_format not in OUTPUT_FORMATS:
        raise InvalidOptionError(f"phantom format {file_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    size, spacing = _checked_geometry(size, spacing)
    label_ids = dict(DEFAULT_LABELS if label_ids is None else label_ids)
    _label_lut(label_ids)  # validate before writing anything
    directory = Path(directory)
    width = max(3, len(str(count - 1)))
    training = []
    for index in range(count):
        name = f"phantom_{index:0{width}d}.{file_format}"
        image, labels = generate_phantom(seed + index, size, spacing, label_ids)
        write_image(image, directory / "imagesTr" / name)
        write_image(labels, directory / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        if progress:
            progress(index + 1, count, directory / "imagesTr" / name)
    dataset = {
        "name": "AttentionUNetSeg phantoms",
        "description": "Synthetic abdominal CT volumes (HU) with organ labels from AttentionUNetSegLib.phantom",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", **{str(v): k for k, v in sorted(label_ids.items(), key=lambda kv: kv[1])}},
        "numTraining": count,
        "numTest": 0,
        "training": training,
        "test": [],
        "phantom": {"seed": seed, "case_seed": "seed + case index", "size": list(size), "spacing": list(spacing)},
    }
    path = directory / "dataset.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(dataset, indent=1) + "\n", encoding="utf-8")
    return path


def _checked_geometry(size: Sequence[int], spacing: Sequence[float]) -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    if len(size) != 3 or any(int(n) != n or n < 8 or n > 1024 for n in size):
        raise InvalidOptionError(f"phantom size {tuple(size)} must be three whole numbers from 8 to 1024 (x y z)")
    if len(spacing) != 3 or any(not math.isfinite(s) or not 0.1 <= s <= 20 for s in spacing):
        raise InvalidOptionError(f"phantom spacing {tuple(spacing)} must be three values from 0.1 to 20 mm (x y z)")
    return tuple(int(n) for n in size), tuple(float(s) for s in spacing)


def _label_lut(label_ids: Mapping[str, int]) -> np.ndarray:
    """Structure index (0 = none, i = STRUCTURES[i - 1]) -> label value."""
    unknown = sorted(set(label_ids) - set(STRUCTURES))
    if unknown:
        raise InvalidOptionError(f"unknown phantom structures {unknown}; known: {', '.join(STRUCTURES)}")
    values = list(label_ids.values())
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 < v < 65536 for v in values):
        raise InvalidOptionError(f"phantom label values must be integers from 1 to 65535, got {sorted(values)}")
    shared = repeated(values)
    if shared:
        raise InvalidOptionError(f"phantom label values must differ between structures; {shared} are repeated")
    dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
    return np.array([0] + [label_ids.get(name, 0) for name in STRUCTURES], dtype=dtype)


class _Canvas:
    """The voxel grid in anatomical millimetres (randomly scaled, shifted and smoothly deformed) with the
    HU volume and a structure-index volume being painted; later paint covers earlier paint."""

    def __init__(self, size: Tuple[int, ...], spacing: Tuple[float, ...], rng: np.random.Generator) -> None:
        self.spacing = spacing
        self.origin = tuple(-(n - 1) / 2 * s for n, s in zip(size, spacing))
        scale = rng.uniform(0.9, 1.1)
        offset = (rng.normal(0, 5), rng.normal(0, 5), rng.uniform(-20, 20))  # where L1 sits in the field of view
        self.axes = [((o + s * np.arange(n) - off) / scale).astype(np.float32)
                     for o, s, n, off in zip(self.origin, spacing, size, offset)]
        self.shape = (size[2], size[1], size[0])
        self.deformation = _SmoothDeformation(self.axes, rng, amplitude_mm=rng.uniform(3, 8))
        self.margin = self.deformation.bounds
        self.hu = np.full(self.shape, -1000, dtype=np.float32)
        self.structure = np.zeros(self.shape, dtype=np.uint8)
        everything = np.ones(self.shape, dtype=bool)
        self.inner = everything  # inside the subcutaneous fat; set by _body
        self.cavity = everything  # inside the abdominal wall muscles; set by _body
        self.wall = (120.0, 100.0, 80.0)  # semi-axes (side, front, back) of the mid-muscle ellipse; set by _body

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
            mask = mask & (self.structure[box] == _index(within))
        self.hu[box][mask] = hu[mask] if isinstance(hu, np.ndarray) else hu
        self.structure[box][mask] = _index(structure) if structure else 0

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


def _index(structure: str) -> int:
    return STRUCTURES.index(structure) + 1


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


class _SmoothDeformation:
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


def _body(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Body outline, subcutaneous fat, abdominal wall muscles and the visceral fat of the cavity."""
    half_width, front, back = rng.uniform(125, 155), rng.uniform(100, 130), rng.uniform(100, 120)
    fat, muscle = rng.uniform(8, 30), rng.uniform(8, 14)
    wave = [(rng.uniform(0.02, 0.06), rng.uniform(200, 400), rng.uniform(0, 2 * np.pi)) for _ in range(2)]
    box = (slice(None),) * 3
    x, y, _ = canvas.coords(box)
    x2, y2, anterior = x * x, y * y, y < 0
    del x, y
    z = canvas.axes[2][:, None, None]  # the outline changes slowly along z: no need to deform z here
    change2 = (1 + sum(a * np.sin(2 * np.pi * z / period + phase) for a, period, phase in wave)) ** 2

    def inside(inset_front: float, inset_back: float, inset_side: float) -> np.ndarray:
        depth2 = np.where(anterior, np.float32((front - inset_front) ** 2), np.float32((back - inset_back) ** 2))
        return x2 / np.float32((half_width - inset_side) ** 2) + y2 / depth2 < change2

    body = inside(0, 0, 0)
    canvas.inner = inside(fat, 0.6 * fat, fat)
    canvas.cavity = inside(fat + muscle, 0.6 * fat + muscle, fat + muscle)
    canvas.wall = (half_width - fat - muscle / 2, front - fat - muscle / 2, back - 0.6 * fat - muscle / 2)
    canvas.paint(box, body, rng.uniform(-115, -90))
    canvas.paint(box, canvas.inner, rng.uniform(40, 60))
    canvas.paint(box, canvas.cavity, rng.uniform(-110, -80))


def _lungs_and_heart(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Lower lobes of both lungs and the bottom of the heart, at the top of the field of view."""
    lung_hu = rng.uniform(-880, -820)
    for side, name in ((1, "lung_lower_lobe_left"), (-1, "lung_lower_lobe_right")):
        shape = canvas.ellipsoid((side * 70 + rng.normal(0, 4), 30, 175 + rng.normal(0, 8)),
                                 (60, 55, rng.uniform(95, 120)))
        if shape:
            canvas.paint(shape[0], shape[1] < 1, lung_hu, name, clip=canvas.cavity)
    shape = canvas.ellipsoid((15, -30, 215 + rng.normal(0, 8)), (60, 50, 60), (-30, 0, 20))
    if shape:
        canvas.paint(shape[0], shape[1] < 1, rng.uniform(130, 200), "heart", clip=canvas.cavity)


def _bowel(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Colon framing the abdomen and small-bowel loops below the pancreas, both with gas pockets."""
    colon = np.array([(-75, -10, -140), (-85, 5, -70), (-78, -20, -15), (-40, -65, -20), (0, -70, -25),
                      (40, -60, -15), (80, -25, 20), (88, 10, -40), (80, 15, -110), (40, -20, -150)], dtype=float)
    colon += rng.normal(0, 6, colon.shape)
    _gut(canvas, rng, "colon", colon, rng.uniform(16, 22), rng.uniform(-80, -20), pockets=4)
    for _ in range(int(rng.integers(3, 6))):
        loop = rng.uniform((-70, -75, -150), (70, 10, -40), size=(5, 3))
        _gut(canvas, rng, "small_bowel", loop, rng.uniform(9, 13), rng.uniform(10, 35), pockets=2)


def _gut(canvas: _Canvas, rng: np.random.Generator, name: str, path: np.ndarray, radius: float, content_hu: float,
         pockets: int) -> None:
    shape = canvas.tube(path, np.full(len(path), radius))
    if shape is None:
        return
    canvas.paint(*shape, content_hu, name, clip=canvas.cavity)
    for point in path[rng.choice(len(path), size=pockets, replace=False)]:
        gas = canvas.ellipsoid(point + (0, -0.4 * radius, 0), (rng.uniform(0.4, 0.8) * radius,) * 3)
        if gas:
            canvas.paint(gas[0], gas[1] < 1, -1000, name, within=name)


def _upper_abdomen(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Stomach (with a gas cap), liver (three lobes), gallbladder and spleen."""
    center, semi = np.array((45, -25, 85)) + rng.normal(0, 6, 3), np.array((40, 32, 55)) * rng.uniform(0.8, 1.2)
    stomach = canvas.ellipsoid(center, semi, (0, -25, 0))
    if stomach:
        box, r2 = stomach
        canvas.paint(box, r2 < 1, rng.uniform(15, 40), "stomach", clip=canvas.cavity)
        anterior = canvas.coords(box)[1] < center[1] - rng.uniform(0.55, 0.8) * semi[1]
        canvas.paint(box, (r2 < 1) & anterior, -1000, "stomach", within="stomach")
    liver_hu, size = rng.uniform(52, 70), rng.uniform(0.85, 1.1)
    for center, semi, angles in (((-55, 5, 65), (68, 78, 75), (0, 0, 0)),
                                 ((5, -40, 95), (55, 35, 38), (-15, 0, 0)),
                                 ((-15, 25, 80), (18, 15, 25), (0, 0, 0))):
        lobe = canvas.ellipsoid(np.add(center, rng.normal(0, 4, 3)), np.multiply(semi, size * rng.uniform(0.9, 1.1, 3)),
                                np.add(angles, rng.normal(0, 8, 3)))
        if lobe:
            canvas.paint(lobe[0], lobe[1] < 1, liver_hu, "liver", clip=canvas.cavity)
    gallbladder = canvas.ellipsoid((-35 + rng.normal(0, 5), -35, 10 + rng.normal(0, 8)),
                                   (15, 15, rng.uniform(25, 40)), (0, 0, rng.uniform(-25, 25)))
    if gallbladder:
        canvas.paint(gallbladder[0], gallbladder[1] < 1, rng.uniform(0, 20), "gallbladder", clip=canvas.cavity)
    spleen = canvas.ellipsoid(np.array((78, 30, 60)) + rng.normal(0, 5, 3),
                              np.array((20, 50, 45)) * rng.uniform(0.8, 1.2, 3), (rng.uniform(25, 50), 0, 0))
    if spleen:
        canvas.paint(spleen[0], spleen[1] < 1, rng.uniform(42, 56), "spleen", clip=canvas.cavity)


def _pancreas_region(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Duodenal C-loop, pancreas (head, uncinate process, neck, body, tail to the splenic hilum) and its veins."""
    shift = rng.normal(0, (6, 5, 10))
    head, neck, body, tail = (np.array(p, dtype=float) + shift + rng.normal(0, s, 3) for p, s in
                              (((-30, -2, -25), 5), ((-8, -25, -8), 4), ((30, -18, 2), 6), ((70, 18, 15), 7)))
    duodenum = np.array([(-5, -40, 25), (-40, -20, 15), (-55, -2, -5), (-50, 0, -55), (-10, -8, -65),
                         (25, -10, -45), (30, -15, -25)], dtype=float) + shift + rng.normal(0, 3, (7, 3))
    loop = canvas.tube(duodenum, np.full(len(duodenum), rng.uniform(9, 12)))
    if loop:
        canvas.paint(*loop, rng.uniform(10, 30), "duodenum", clip=canvas.cavity)
    pancreas_hu = rng.uniform(32, 48)
    gland = canvas.tube([head, neck, body, tail], [rng.uniform(15, 21), rng.uniform(8, 11), rng.uniform(9, 13),
                                                   rng.uniform(8, 12)])
    if gland:
        canvas.paint(*gland, pancreas_hu, "pancreas", clip=canvas.cavity)
    uncinate = canvas.ellipsoid(head + (5, 12, -15), (12, 8, rng.uniform(8, 14)))
    if uncinate:
        canvas.paint(uncinate[0], uncinate[1] < 1, pancreas_hu, "pancreas", clip=canvas.cavity)
    venous_hu = rng.uniform(130, 180)
    confluence = neck + (0, 15, 0)
    for points, radius, name in (([tail + (5, 10, 5), body + (0, 13, 2), confluence, (-30, 15, 45)],
                                  rng.uniform(4, 6), "portal_vein_and_splenic_vein"),
                                 ([confluence, confluence + (0, -15, -40), (-5, -10, -100)], 5, None)):
        vein = canvas.tube(points, np.full(len(points), radius))
        if vein:
            canvas.paint(*vein, venous_hu, name, clip=canvas.cavity)


def _kidneys_and_muscles(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Iliopsoas, kidneys (cortex and medulla) and the paraspinal (autochthonous) muscles."""
    muscle_hu = rng.uniform(40, 60)
    for side, suffix in ((1, "left"), (-1, "right")):
        psoas = canvas.tube([(side * 28, _SPINE_Y + 5, -10), (side * 40, _SPINE_Y + 5, -90),
                             (side * 55, _SPINE_Y - 10, -170)],
                            [6, rng.uniform(16, 22), 24])
        if psoas:
            canvas.paint(*psoas, muscle_hu, f"iliopsoas_{suffix}", clip=canvas.cavity)
    cortex_hu, medulla_hu = rng.uniform(120, 170), rng.uniform(60, 100)
    for side, suffix, z in ((-1, "right", -25), (1, "left", -10)):
        center = (side * 65 + rng.normal(0, 5), _SPINE_Y + 10 + rng.normal(0, 4), z + rng.normal(0, 8))
        kidney = canvas.ellipsoid(center, np.array((27, 24, 52)) * rng.uniform(0.85, 1.1, 3),
                                  (side * rng.uniform(20, 35), side * rng.uniform(-20, -8), 0))
        if kidney:
            box, r2 = kidney
            hu = np.where(r2 > rng.uniform(0.55, 0.7), np.float32(cortex_hu), np.float32(medulla_hu))
            canvas.paint(box, r2 < 1, hu, f"kidney_{suffix}", clip=canvas.cavity)
    for side, suffix in ((1, "left"), (-1, "right")):
        back = canvas.cylinder((side * 38, _SPINE_Y + 42, 0), (rng.uniform(20, 26), 18), 400)
        if back:
            canvas.paint(back[0], back[1] < 1, muscle_hu, f"autochthon_{suffix}", clip=canvas.inner)


def _vessels(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Aorta with its iliac bifurcation and superior mesenteric artery, and the inferior vena cava."""
    arterial_hu, venous_hu = rng.uniform(160, 220), rng.uniform(130, 180)
    bifurcation = np.array((5, _SPINE_Y - 32, -105)) + rng.normal(0, 4, 3)
    radius = rng.uniform(10, 13)
    front = _SPINE_Y - 16  # anterior surface of the vertebral bodies
    vessels = [([(12, front - 12, 260), (12, front - 10, 60), (10, front - 13, -40), bifurcation],
                [radius, radius, radius - 1, radius - 2], arterial_hu, "aorta"),
               ([(12, front - 22, -5), (6, front - 42, -30), (0, front - 48, -90)], [3.5, 3.5, 3], arterial_hu, None),
               ([(-22, front - 8, -200), (-22, front - 7, -40), (-25, front - 4, 60), (-15, front, 260)],
                [rng.uniform(9, 12)] * 4, venous_hu, "inferior_vena_cava")]
    for side, suffix in ((1, "left"), (-1, "right")):
        vessels.append(([bifurcation, (side * 35, front - 20, -150), (side * 55, front - 25, -210)], [6.5] * 3,
                        arterial_hu, f"iliac_artery_{suffix}"))
    for points, radii, hu, name in vessels:
        vessel = canvas.tube(points, radii)
        if vessel:
            canvas.paint(*vessel, hu, name, clip=canvas.cavity)


def _spine_and_ribs(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Vertebrae (cortical shell, cancellous core, posterior elements), discs, spinal canal and cord, ribs."""
    pitch, disc = rng.uniform(33, 38), rng.uniform(7, 9)
    cortical, cancellous, posterior = rng.uniform(700, 1000), rng.uniform(180, 300), rng.uniform(500, 700)
    half_height = (pitch - disc) / 2
    for level, name in enumerate(VERTEBRAE):
        z = (level - _L1) * pitch
        label = f"vertebrae_{name}"
        parts = [(canvas.cylinder((0, _SPINE_Y, z), (22, 16), half_height), 0.85),
                 (canvas.cylinder((0, _SPINE_Y + 26, z), (16, 14), 0.7 * half_height), None),
                 (canvas.ellipsoid((0, _SPINE_Y + 45, z - 4), (4, 14, 0.45 * half_height)), None),
                 (canvas.ellipsoid((0, _SPINE_Y + 22, z), (rng.uniform(36, 46), 6, 5)), None)]
        for shape, shell in parts:
            if shape is None:
                continue
            box, r = shape
            hu = np.where(r > shell, np.float32(cortical), np.float32(cancellous)) if shell else posterior
            canvas.paint(box, r < 1, hu, label, clip=canvas.inner)
        between = canvas.cylinder((0, _SPINE_Y, z + pitch / 2), (22, 16), disc / 2)
        if between:
            canvas.paint(between[0], between[1] < 1, rng.uniform(70, 100), clip=canvas.inner)
        if name.startswith("T"):
            _ribs(canvas, rng, z, posterior)
    for radius, hu, name in ((9, rng.uniform(5, 15), None), (5, rng.uniform(30, 40), "spinal_cord")):
        canal = canvas.tube([(0, _SPINE_Y + 26, -400), (0, _SPINE_Y + 26, 400)], [radius, radius], smooth=False)
        if canal:
            canvas.paint(*canal, hu, name, clip=canvas.inner)


def _ribs(canvas: _Canvas, rng: np.random.Generator, z: float, hu: float) -> None:
    """A pair of ribs from the transverse processes around the body wall, sloping down anteriorly."""
    side_axis, front_axis, back_axis = canvas.wall
    for side in (1, -1):
        points = [(side * 45, _SPINE_Y + 22, z)] + [
            (side * side_axis * np.cos(a), (back_axis if a > 0 else front_axis) * np.sin(a), z - 12 * i)
            for i, a in enumerate(np.radians([60, 40, 10, -25, -55]))]
        rib = canvas.tube(points, [4.5] * len(points))
        if rib:
            canvas.paint(*rib, hu + rng.normal(0, 30), clip=canvas.inner)


def _acquire(hu: np.ndarray, spacing: Tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Scanner blur (Gaussian point spread) and noise, rounded to int16 HU in the CT range."""
    from scipy import ndimage  # here, not at the top: every command line run imports this module

    sigma_mm = (rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2))  # z, y, x
    blurred = ndimage.gaussian_filter(hu, sigma=[s / d for s, d in zip(sigma_mm, spacing[::-1])])
    blurred += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(rng.uniform(6, 20))
    return np.clip(np.rint(blurred), -1024, 3071).astype(np.int16)


def _to_image(array: np.ndarray, canvas: _Canvas) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(canvas.spacing)
    image.SetOrigin(canvas.origin)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image
