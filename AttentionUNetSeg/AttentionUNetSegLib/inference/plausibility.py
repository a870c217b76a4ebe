"""Out-of-distribution guard: plain-language warnings when predicted organs are implausible.

Pure functions of the label volume, its geometry and the class names (see docs/warnings.md for the
thresholds and why). Left/right are the patient's: positions are taken in physical LPS coordinates
(SimpleITK's world), whatever the voxel axis order or flips.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Set, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io.grid import Grid

# Smallest plausible volume (mL) of a whole organ that the scan holds entirely; about a fifth of the
# typical adult volume (liver ~1500 mL, spleen ~150-200 mL, one kidney ~150 mL, pancreas ~70 mL).
MIN_WHOLE_ML: Dict[str, float] = {"liver": 300.0, "spleen": 30.0, "kidney": 30.0, "pancreas": 10.0}
# Largest share of an organ allowed outside its main connected piece(s) (two for the kidneys).
MAX_FRAGMENT_SHARE = 0.2
MAIN_PIECES: Dict[str, int] = {"kidney": 2}
# Organs are soft tissue (about 0-200 HU); a share of an organ in air (< -500 HU) this large is no organ.
MAX_AIR_SHARE = 0.2
AIR_HU = -500  # also the body's threshold for the midline
PATIENT_SIDE: Dict[str, str] = {"liver": "right", "spleen": "left"}  # LPS +x is the patient's left
# The chest: axial slices where the lungs (air inside the body) fill at least this share of the body's cross-section;
# liver there more than HEART_MARGIN_MM left of the midline is the heart (the liver's dome lies right, under the right
# lung), and more than MAX_HEART_ML of it is no measurement error.
CHEST_LUNG_SHARE = 0.25
HEART_MARGIN_MM = 20.0
MAX_HEART_ML = 50.0
# Organs that lie wholly below the diaphragm, far below the lungs: more than MAX_BELOW_DIAPHRAGM_ML of them in the
# chest's slices is no organ (the real kidneys of 3D-IRCADb 1.1 and 1.7 reach slices whose lungs fill 7% and 4% of
# the body; the spleen's top, under the left lung, does reach the chest's slices and is not checked).
BELOW_DIAPHRAGM = ("kidney", "pancreas")
MAX_BELOW_DIAPHRAGM_ML = 5.0
# Kidneys whole inside the scan: the smaller under this share of the larger (which is at least MIN_KIDNEY_ML) warns.
MIN_KIDNEY_RATIO = 0.35
MIN_KIDNEY_ML = 60.0
# Organs expected in a scan that holds the whole upper abdomen: where the kidneys (T12-L3) are whole inside it, so
# are parts of the liver, the spleen (T10-L1) and the pancreas (L1-L2).
EXPECTED_IN_ABDOMEN = ("liver", "spleen", "kidney", "pancreas")


def _physical(grid: Grid, index_xyz: np.ndarray) -> np.ndarray:
    """Physical LPS points (n, 3) of continuous voxel indices (n, 3) in x, y, z order."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    return np.asarray(grid.origin) + (index_xyz * np.asarray(grid.spacing)) @ direction.T


def _lps_x(grid: Grid, box: Tuple[slice, ...], mask: np.ndarray) -> np.ndarray:
    """LPS x (mm) of every second voxel along each axis of `mask`, a (z, y, x) array covering `box` of the grid:
    an eighth of the voxels, each standing for 8 (counts multiplied by 8 are volume estimates to a few %)."""
    zyx = np.nonzero(mask[::2, ::2, ::2])
    step = np.asarray(grid.direction, dtype=float).reshape(3, 3)[0] * np.asarray(grid.spacing)  # mm per index
    x = np.full(zyx[0].shape, float(grid.origin[0] + step @ [box[2].start, box[1].start, box[0].start]))
    for axis_xyz, index in zip((2, 1, 0), zyx):
        x += index * (2 * step[axis_xyz])
    return x


def _axial_axis(grid: Grid) -> int:
    """The array (z, y, x) axis closest to the patient's head-foot (LPS z) axis."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    return 2 - int(np.argmax(np.abs(direction[2])))


def _centroid_xyz(mask: np.ndarray) -> np.ndarray:
    """The mean voxel index (x, y, z) of a non-empty mask, from its projections (no index lists)."""
    count = np.count_nonzero(mask)
    zyx = [float(mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64) @ np.arange(mask.shape[axis]))
           / count for axis in range(3)]
    return np.asarray(zyx[::-1])


def _midline_x(grid: Grid, ct: Optional[np.ndarray]) -> float:
    """LPS x of the patient's midline: the body's (HU > -500) centroid, from every second voxel along each axis
    (a millimetre-scale estimate at an eighth of the cost), else the field of view's centre."""
    body = ct[::2, ::2, ::2] > AIR_HU if ct is not None else None
    if body is not None and body.any():
        centre = _centroid_xyz(body) * 2
    else:
        centre = (np.asarray(grid.size, dtype=float) - 1) / 2
    return float(_physical(grid, centre[None])[0, 0])


def _organ_shapes(labels: np.ndarray, grid: Grid) -> sitk.LabelShapeStatisticsImageFilter:
    """Every label's voxel count, bounding box and physical centroid, in one multi-threaded pass (ITK)."""
    shapes = sitk.LabelShapeStatisticsImageFilter()
    shapes.ComputePerimeterOff()
    shapes.ComputeFeretDiameterOff()
    shapes.ComputeOrientedBoundingBoxOff()
    shapes.Execute(grid.image(labels))
    return shapes


def _box(shapes: sitk.LabelShapeStatisticsImageFilter, value: int) -> Tuple[slice, ...]:
    """The bounding box (z, y, x slices) of label `value`."""
    box = shapes.GetBoundingBox(value)  # x, y, z starts, then sizes
    return tuple(slice(box[axis], box[axis] + box[axis + 3]) for axis in (2, 1, 0))


def _fragment_share(mask: np.ndarray, pieces: int) -> float:
    """Share of the mask's voxels outside its `pieces` largest 26-connected components."""
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), True)
    relabel = sitk.RelabelComponentImageFilter()  # sorts the components by size, largest first
    relabel.Execute(components)
    sizes = relabel.GetSizeOfObjectsInPixels()
    return float(sum(sizes[pieces:]) / max(1, sum(sizes)))


def plausibility_warnings(labels: np.ndarray, grid: Grid, classes: Mapping[int, str],
                          ct: Optional[np.ndarray] = None) -> List[str]:
    """Warnings for `labels` (z, y, x on `grid`) with `classes` {value: name}; `ct` (HU, same grid) optional.

    Each organ is examined inside its bounding box, so a whole CT costs little more than its organs."""
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    shapes = _organ_shapes(labels, grid)
    found = set(shapes.GetLabels())
    boxes = {name: (value, _box(shapes, value)) for value, name in classes.items() if value > 0 and value in found}
    if not boxes:
        return [f"No organ was found ({', '.join(n for v, n in sorted(classes.items()) if v > 0)}): the scan may "
                "not show the abdomen, or the model failed on it."]
    warnings: List[str] = []
    midline = _midline_x(grid, ct)
    for name, (value, box) in boxes.items():
        key = name.lower()
        mask = labels[box] == value
        volume = shapes.GetNumberOfPixels(value) * voxel_ml
        minimum = MIN_WHOLE_ML.get(key)
        touches_border = any(b.start == 0 or b.stop == n for b, n in zip(box, labels.shape))
        if minimum is not None and volume < minimum and not touches_border:
            warnings.append(f"The {name} is {volume:.1f} mL, whole inside the scan: an adult {name} is rarely "
                            f"under {minimum:.0f} mL; this is probably not the {name}.")
        share = _fragment_share(mask, MAIN_PIECES.get(key, 1))
        if share > MAX_FRAGMENT_SHARE:
            warnings.append(f"{share:.0%} of the {name} lies in pieces apart from its main body: "
                            "check it for false positives.")
        if ct is not None:
            air = float(np.count_nonzero(ct[box][mask] < AIR_HU)) / shapes.GetNumberOfPixels(value)
            if air > MAX_AIR_SHARE:
                warnings.append(f"{air:.0%} of the {name} ({volume:.0f} mL) lies in air (below {AIR_HU} HU), "
                                "where no organ can be: the scan is probably outside what the model knows.")
        side = PATIENT_SIDE.get(key)
        if side is not None:
            x = shapes.GetCentroid(value)[0]
            actual = "left" if x > midline else "right"
            if actual != side:
                warnings.append(f"The {name} lies on the patient's {actual} side ({abs(x - midline):.0f} mm from "
                                f"the midline); it belongs on the {side}: check the orientation or the labels.")
    names = {name.lower() for value, name in classes.items() if value > 0}
    warnings.extend(_anatomy_warnings(labels, grid, names, boxes, ct, midline, voxel_ml))
    warnings.extend(_field_of_view_warnings([box for _, box in boxes.values()], grid))
    return warnings


def _anatomy_warnings(labels: np.ndarray, grid: Grid, names: Set[str], boxes: Dict[str, Tuple[int, Tuple[slice, ...]]],
                      ct: Optional[np.ndarray], midline: float, voxel_ml: float) -> List[str]:
    """What the organs' places say beyond each organ alone: organs in the chest, kidneys of unequal size, an organ
    missing from a scan that holds the whole upper abdomen. `names`: the model's organs (lower case); `boxes`: the
    found ones, by class name, with their label value and bounding box."""
    found = {name.lower(): entry for name, entry in boxes.items()}
    warnings = _chest_warnings(labels, grid, found, ct, midline, voxel_ml) if ct is not None else []
    axis = _axial_axis(grid)
    whole = {name: not (box[axis].start == 0 or box[axis].stop == labels.shape[axis])
             for name, (_, box) in found.items()}
    if whole.get("kidney"):
        value, box = found["kidney"]
        x = _lps_x(grid, box, labels[box] == value)
        sides = {"left": 8 * np.count_nonzero(x > midline) * voxel_ml,
                 "right": 8 * np.count_nonzero(x <= midline) * voxel_ml}
        small, large = sorted(sides, key=sides.get)
        if sides[large] >= MIN_KIDNEY_ML and sides[small] < MIN_KIDNEY_RATIO * sides[large]:
            warnings.append(f"The {small} kidney is {sides[small]:.0f} mL and the {large} {sides[large]:.0f} mL: "
                            f"kidneys are of similar size, so the model probably missed most of the {small} one "
                            "(or it was removed).")
    if whole.get("kidney"):
        missing = [name for name in EXPECTED_IN_ABDOMEN if name in names and name not in found]
        for name in missing:
            warnings.append(f"No {name} was found, although the scan holds the whole upper abdomen (the kidneys are "
                            "whole inside it): the model probably missed it (or it was removed).")
    return warnings


def _chest_warnings(labels: np.ndarray, grid: Grid, found: Dict[str, Tuple[int, Tuple[slice, ...]]],
                    ct: np.ndarray, midline: float, voxel_ml: float) -> List[str]:
    """The liver crossing the diaphragm into the heart; kidney or pancreas (BELOW_DIAPHRAGM) in the chest at all."""
    axis = _axial_axis(grid)
    checked = [name for name in ("liver", *BELOW_DIAPHRAGM) if name in found]
    if not checked:
        return []
    chest = _chest_slices(grid, ct, min(found[name][1][axis].start for name in checked),
                          max(found[name][1][axis].stop for name in checked))
    warnings = []
    if "liver" in found:
        heart_ml = _in_chest(labels, grid, *found["liver"], chest, midline + HEART_MARGIN_MM) * voxel_ml
        if heart_ml > MAX_HEART_ML:
            warnings.append(f"{heart_ml:.0f} mL of the liver lies in the chest, left of the midline between the "
                            "lungs: that is probably the heart, not the liver.")
    for name in (name for name in BELOW_DIAPHRAGM if name in found):
        chest_ml = _in_chest(labels, grid, *found[name], chest) * voxel_ml
        if chest_ml > MAX_BELOW_DIAPHRAGM_ML:
            warnings.append(f"{chest_ml:.0f} mL of the {name} lies in the chest, in slices where the lungs fill a "
                            f"quarter of the body: the {name} lies below the diaphragm, so that is not the {name}.")
    return warnings


def _chest_slices(grid: Grid, ct: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Which axial slices (a bool per index along the axial axis, False outside start:stop) lie in the chest: their
    lungs, air inside the body, fill CHEST_LUNG_SHARE of the body's cross-section (measured on every 4th voxel)."""
    axis = _axial_axis(grid)
    step = [4, 4, 4]
    step[axis] = 1
    planes = np.moveaxis(ct[::step[0], ::step[1], ::step[2]], axis, 0)
    chest = np.zeros(planes.shape[0], bool)
    for k in range(start, stop):
        body = ndimage.binary_fill_holes(planes[k] > AIR_HU)
        inside = np.count_nonzero(body)
        chest[k] = inside > 0 and np.count_nonzero(body & (planes[k] < AIR_HU)) >= CHEST_LUNG_SHARE * inside
    return chest


def _in_chest(labels: np.ndarray, grid: Grid, value: int, box: Tuple[slice, ...], chest: np.ndarray,
              left_of_mm: float = -np.inf) -> int:
    """Voxels (estimated, _lps_x) of label `value` (in `box`) in the `chest` slices (_chest_slices) and further to
    the patient's left than LPS x `left_of_mm` (by default anywhere in those slices)."""
    axis = _axial_axis(grid)
    if not chest[box[axis]].any():
        return 0
    shape = [1, 1, 1]
    shape[axis] = -1
    mask = (labels[box] == value) & chest[box[axis]].reshape(shape)
    return 8 * int(np.count_nonzero(_lps_x(grid, box, mask) > left_of_mm))


def _field_of_view_warnings(boxes: List[Tuple[slice, ...]], grid: Grid) -> List[str]:
    """A warning when the organs (their bounding boxes) cover under a quarter of a long (> 200 mm) scan's
    craniocaudal extent."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(direction[2])))  # the voxel axis closest to the patient's S axis
    axis_zyx = 2 - axis_xyz
    extent_mm = grid.size[axis_xyz] * grid.spacing[axis_xyz]
    first, last = min(b[axis_zyx].start for b in boxes), max(b[axis_zyx].stop for b in boxes)
    share = (last - first) / grid.size[axis_xyz]
    if extent_mm > 200 and share < 0.25:
        return [f"The organs found cover {share:.0%} of the scan's {extent_mm:.0f} mm head-to-foot extent: most "
                "of the scan lies outside the abdomen the model was trained on; check the results there."]
    return []
