"""Contrast-phase augmentation that follows the anatomy: each labelled organ and the bright vessels are
given the intensities of a randomly chosen phase (non-contrast, arterial, portal-venous), each separately.

A global HU shift cannot turn a portal-venous scan into a non-contrast one: the liver drops by ~60 HU, the
kidneys by ~150 and the aorta by ~150 while fat, muscle and bone stay. So, per patch, a phase is drawn and
every organ the case labels is moved to a random HU level inside that phase's range (its texture kept: the
whole organ is shifted by target - its median, with a soft edge so no artificial step appears at the mask's
border). In the arterial phase the kidney's cortex (the outer few mm) enhances and its medulla stays darker.
Bright vessels are found without labels: voxels of 150-700 HU outside the labelled organs and outside bone
(bone: per axial slice, the filled inside of the >= 250 HU mask, one voxel wider); they take the phase's
blood level. Organs a case does not label keep their intensities (nobody knows where they are).
Ranges (HU) are typical values of each phase in adult abdominal CT, as given in issue 27 where it gives them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, Mapping, Optional, Sequence, Tuple

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

Range = Tuple[float, float]
VESSELS = "vessels"


@dataclass(frozen=True)
class Phase:
    """HU ranges of one contrast phase, by organ name (and VESSELS); where `medulla_below_cortex` is given, the
    kidney's range is its cortex's (the outer `cortex_mm`) and the medulla lies that many HU below it."""

    name: str
    levels: Mapping[str, Range]
    medulla_below_cortex: Optional[Range] = None
    cortex_mm: float = 5.0


PHASES: Tuple[Phase, ...] = (
    Phase("non-contrast", {"liver": (45, 65), "spleen": (40, 55), "kidney": (25, 40), "pancreas": (30, 50),
                           VESSELS: (35, 50)}),
    Phase("arterial", {"liver": (60, 100), "spleen": (100, 180), "kidney": (150, 250), "pancreas": (100, 150),
                       VESSELS: (250, 450)}, medulla_below_cortex=(50, 120)),
    Phase("portal-venous", {"liver": (90, 130), "spleen": (100, 140), "kidney": (150, 200), "pancreas": (80, 120),
                            VESSELS: (140, 220)}),
)
VESSEL_HU = (150.0, 700.0)
BONE_HU = 250.0
EDGE_SIGMA_VOXELS = 0.75


def vessel_mask(hu: np.ndarray, organs: np.ndarray) -> np.ndarray:
    """Bright vessels in a (z, y, x) HU array: VESSEL_HU outside `organs` and outside bone (the filled inside
    of the >= BONE_HU mask in each axial slice, so trabecular bone inside a cortex counts as bone)."""
    bone = hu >= BONE_HU
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in bone])
    filled = ndimage.binary_dilation(filled, iterations=1)
    return (hu >= VESSEL_HU[0]) & (hu <= VESSEL_HU[1]) & ~organs & ~filled


def apply_phase(hu: np.ndarray, label: np.ndarray, organs: Mapping[str, int], phase: Phase,
                rng: np.random.RandomState, spacing_mm: Sequence[float]) -> np.ndarray:
    """`hu` (z, y, x) with each organ in `organs` (name -> label value, the ones this case labels) and the
    vessels moved to random levels inside `phase`'s ranges; `spacing_mm` is (z, y, x)."""
    out = hu.astype(np.float32, copy=True)
    labelled = np.isin(label, list(organs.values())) if organs else np.zeros(label.shape, bool)
    regions: Dict[str, np.ndarray] = {VESSELS: vessel_mask(hu, labelled)}
    for name, value in organs.items():
        if name in phase.levels:
            regions[name] = label == value
    for name, mask in regions.items():
        if not mask.any():
            continue
        low, high = phase.levels[name]
        target = rng.uniform(low, high)
        if name == "kidney" and phase.medulla_below_cortex is not None:
            depth = ndimage.distance_transform_edt(mask, sampling=spacing_mm)
            cortex = mask & (depth <= phase.cortex_mm)
            medulla = mask & ~cortex
            _shift(out, hu, cortex, target)
            _shift(out, hu, medulla, target - rng.uniform(*phase.medulla_below_cortex))
        else:
            _shift(out, hu, mask, target)
    return out


def _shift(out: np.ndarray, hu: np.ndarray, mask: np.ndarray, target: float) -> None:
    """Add (target - the median HU of `mask`) to `out`, weighted by a softened copy of `mask`."""
    if not mask.any():
        return
    weight = ndimage.gaussian_filter(mask.astype(np.float32), EDGE_SIGMA_VOXELS)
    weight = np.maximum(weight, mask)  # the organ itself moves fully; only the outside edge is blended
    out += weight * np.float32(target - float(np.median(hu[mask])))


class RandContrastPhased(RandomizableTransform, MapTransform):
    """With probability `prob`, give the organs and vessels of d["image"] (HU, (1, z, y, x)) the intensities of
    a random phase of PHASES; d["label"] holds class values, d["labelled"] the values this case labels."""

    def __init__(self, organ_values: Mapping[str, int], spacing_mm_xyz: Sequence[float], prob: float,
                 image_key: Hashable = "image", label_key: Hashable = "label") -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, [image_key])
        self.organ_values = dict(organ_values)
        self.spacing_zyx = tuple(reversed(tuple(spacing_mm_xyz)))
        self.image_key, self.label_key = image_key, label_key
        self.phase: Optional[Phase] = None

    def randomize(self, data: Optional[object] = None) -> None:
        super().randomize(None)
        self.phase = PHASES[self.R.randint(len(PHASES))] if self._do_transform else None

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        self.randomize()
        if self.phase is None:
            return d
        labelled = set(d.get("labelled", self.organ_values.values()))
        organs = {name: value for name, value in self.organ_values.items() if value in labelled}
        image, label = np.asarray(d[self.image_key]), np.asarray(d[self.label_key])
        d[self.image_key] = apply_phase(image[0], label[0], organs, self.phase, self.R, self.spacing_zyx)[None]
        return d
