"""Out-of-distribution guard: plain-language warnings when predicted organs are implausible.

Pure functions of the label volume, its geometry and the class names (see docs/warnings.md for the
thresholds and why). Left/right are the patient's: positions are taken in physical LPS coordinates
(SimpleITK's world), whatever the voxel axis order or flips.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import numpy as np
import SimpleITK as sitk

from .grid import Grid

# Smallest plausible volume (mL) of a whole organ that the scan holds entirely; about a fifth of the
# typical adult volume (liver ~1500 mL, spleen ~150-200 mL, one kidney ~150 mL, pancreas ~70 mL).
MIN_WHOLE_ML: Dict[str, float] = {"liver": 300.0, "spleen": 30.0, "kidney": 30.0, "pancreas": 10.0}
# Largest share of an organ allowed outside its main connected piece(s) (two for the kidneys).
MAX_FRAGMENT_SHARE = 0.2
MAIN_PIECES: Dict[str, int] = {"kidney": 2}
# Organs are soft tissue (about 0-200 HU); a share of an organ in air (< -500 HU) this large is no organ.
MAX_AIR_SHARE = 0.2
AIR_HU = -500
PATIENT_SIDE: Dict[str, str] = {"liver": "right", "spleen": "left"}  # LPS +x is the patient's left


def _physical(grid: Grid, index_xyz: np.ndarray) -> np.ndarray:
    """Physical LPS points (n, 3) of continuous voxel indices (n, 3) in x, y, z order."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    return np.asarray(grid.origin) + (index_xyz * np.asarray(grid.spacing)) @ direction.T


def _touches_border(mask: np.ndarray) -> bool:
    """True when the mask reaches any face of the volume (the organ may be cut by the field of view)."""
    return any(np.take(mask, i, axis=a).any() for a in range(3) for i in (0, -1))


def _midline_x(grid: Grid, ct: Optional[np.ndarray]) -> float:
    """LPS x of the patient's midline: the body's (HU > -500) centroid, else the field of view's centre."""
    if ct is not None and (ct > -500).any():
        zyx = np.argwhere(ct > -500)[:: max(1, int((ct > -500).sum() // 200000))]
        return float(_physical(grid, zyx[:, ::-1].astype(float))[:, 0].mean())
    centre = (np.asarray(grid.size, dtype=float) - 1) / 2
    return float(_physical(grid, centre[None])[0, 0])


def _fragment_share(mask: np.ndarray, pieces: int) -> float:
    """Share of the mask's voxels outside its `pieces` largest 26-connected components."""
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True))
    sizes = np.sort(np.bincount(components.ravel())[1:])[::-1]
    return float(sizes[pieces:].sum() / max(1, sizes.sum()))


def plausibility_warnings(labels: np.ndarray, grid: Grid, classes: Mapping[int, str],
                          ct: Optional[np.ndarray] = None) -> List[str]:
    """Warnings for `labels` (z, y, x on `grid`) with `classes` {value: name}; `ct` (HU, same grid) optional."""
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    found = {name: labels == value for value, name in classes.items() if value > 0 and (labels == value).any()}
    if not found:
        return [f"No organ was found ({', '.join(n for v, n in sorted(classes.items()) if v > 0)}): the scan may "
                "not show the abdomen, or the model failed on it."]
    warnings: List[str] = []
    midline = _midline_x(grid, ct)
    for name, mask in found.items():
        key = name.lower()
        volume = mask.sum() * voxel_ml
        minimum = MIN_WHOLE_ML.get(key)
        if minimum is not None and volume < minimum and not _touches_border(mask):
            warnings.append(f"The {name} is {volume:.1f} mL, whole inside the scan: an adult {name} is rarely "
                            f"under {minimum:.0f} mL; this is probably not the {name}.")
        share = _fragment_share(mask, MAIN_PIECES.get(key, 1))
        if share > MAX_FRAGMENT_SHARE:
            warnings.append(f"{share:.0%} of the {name} lies in pieces apart from its main body: "
                            "check it for false positives.")
        if ct is not None:
            air = float(np.count_nonzero(ct[mask] < AIR_HU)) / mask.sum()
            if air > MAX_AIR_SHARE:
                warnings.append(f"{air:.0%} of the {name} ({volume:.0f} mL) lies in air (below {AIR_HU} HU), "
                                "where no organ can be: the scan is probably outside what the model knows.")
        side = PATIENT_SIDE.get(key)
        if side is not None:
            x = float(_physical(grid, np.argwhere(mask)[:, ::-1].mean(axis=0)[None].astype(float))[0, 0])
            actual = "left" if x > midline else "right"
            if actual != side:
                warnings.append(f"The {name} lies on the patient's {actual} side ({abs(x - midline):.0f} mm from "
                                f"the midline); it belongs on the {side}: check the orientation or the labels.")
    warnings.extend(_field_of_view_warnings(found, grid))
    return warnings


def _field_of_view_warnings(found: Mapping[str, np.ndarray], grid: Grid) -> List[str]:
    """A warning when the organs cover under a quarter of a long (> 200 mm) scan's craniocaudal extent."""
    direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(direction[2])))  # the voxel axis closest to the patient's S axis
    axis_zyx = 2 - axis_xyz
    extent_mm = grid.size[axis_xyz] * grid.spacing[axis_xyz]
    union = np.logical_or.reduce(list(found.values()))
    covered = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis_zyx)))
    share = (covered[-1] - covered[0] + 1) / grid.size[axis_xyz]
    if extent_mm > 200 and share < 0.25:
        return [f"The organs found cover {share:.0%} of the scan's {extent_mm:.0f} mm head-to-foot extent: most "
                "of the scan lies outside the abdomen the model was trained on; check the results there."]
    return []
