"""Out-of-distribution guard: plain-language warnings when predicted organs are implausible.

Pure functions of the label volume, its geometry and the class names (see docs/warnings.md for the
thresholds and why). Left/right are the patient's: positions are taken in physical LPS coordinates
(SimpleITK's world), whatever the voxel axis order or flips.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import SimpleITK as sitk

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


def _physical(grid: Grid, index_xyz: np.ndarray) -> np.ndarray:
    """Physical LPS points (n, 3) of continuous voxel indices (n, 3) in x, y, z order."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    return np.asarray(grid.origin) + (index_xyz * np.asarray(grid.spacing)) @ direction.T


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
    warnings.extend(_field_of_view_warnings([box for _, box in boxes.values()], grid))
    return warnings


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
