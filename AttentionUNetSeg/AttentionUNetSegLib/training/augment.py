"""The paper's augmentation as MONAI dictionary transforms: foreground-oversampled crop, random affine, flips.

A crop large enough for any allowed rotation, scaling and shift (`context_size`) is taken around a
voxel of a randomly chosen class (organs equally often, so small organs are seen), normalised, and the
random affine then samples the patch from it: cheaper than transforming the whole volume and with no
padding inside the patch unless the volume itself is smaller; where it pads (a scan thinner than the patch),
it pads with air, as the sliding window does at inference. Optional intensity augmentation (not in the
paper) scales and shifts the HU values before the window clip, as a change of contrast phase or scanner
would; the contrast-phase augmentation (contrast_phases.py) does it organ by organ. A slab augmentation
keeps only a random 40-120 mm of the patch's height (air and background elsewhere), half of the time with
5 mm slices, as in the thick slabs a scanner often sends. Arrays are channel-first (1, z, y, x).
"""
from __future__ import annotations

import math
from typing import Dict, Hashable, Mapping, Sequence, Tuple

import numpy as np
import torch
from monai.transforms import (
    Compose,
    MapTransform,
    RandAffined,
    RandCropByLabelClassesd,
    RandFlipd,
    RandomizableTransform,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    ShiftIntensityd,
    ToTensord,
)
from scipy import ndimage

from ..inference.normalisation import IntensityNormalisation
from .config import TrainConfig
from .contrast_phases import RandContrastPhased

KEYS = ("image", "label")
SLAB_MM = (40.0, 120.0)
THICK_SLICE_MM = 5.0


def context_size(patch_zyx: Sequence[int], rotation_deg: float, max_scale: float, shift: float) -> Tuple[int, ...]:
    """Crop (z, y, x) holding every voxel an in-plane rotation, scaling and shift of these sizes maps into the patch."""
    cos, sin = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    z, y, x = patch_zyx
    reach = (z, y * cos + x * sin, x * cos + y * sin)
    return tuple(math.ceil(max(max_scale, 1.0) * r + 2 * shift * p) + 2 for r, p in zip(reach, patch_zyx))


def crop_ratios(num_classes: int, trained_values: Sequence[int], foreground_probability: float) -> list:
    """Per-class weights for the crop centre: organs share `foreground_probability`, background the rest.

    Background keeps a tiny weight even at probability 1, so a case without any organ still yields patches.
    """
    organs = [v for v in trained_values if v > 0]
    ratios = [1.0 if v in organs else 0.0 for v in range(num_classes)]
    ratios[0] = max(len(organs) * (1 - foreground_probability) / foreground_probability, 1e-6)
    return ratios


class RandSlabd(RandomizableTransform, MapTransform):
    """With probability `prob`, keep a random slab of SLAB_MM of the patch's height (z) and fill the rest with
    `fill` (air) and background; half of the time also blur it along z to THICK_SLICE_MM slices."""

    def __init__(self, spacing_z_mm: float, fill: float, prob: float) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, list(KEYS))
        self.spacing_z_mm, self.fill = spacing_z_mm, fill

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        image, label = d["image"], d["label"]
        depth = image.shape[1]
        self.randomize(None)
        if not self._do_transform:
            return d
        slices = max(1, min(depth, round(self.R.uniform(*SLAB_MM) / self.spacing_z_mm)))
        start = self.R.randint(0, depth - slices + 1)
        thick = self.R.uniform() < 0.5
        outside = np.ones(depth, bool)
        outside[start:start + slices] = False
        image, label = image.clone(), label.clone()
        if thick and THICK_SLICE_MM > self.spacing_z_mm:
            size = round(THICK_SLICE_MM / self.spacing_z_mm)
            image[0] = torch.as_tensor(ndimage.uniform_filter1d(np.asarray(image[0]), size, axis=0))
        image[:, outside] = self.fill
        label[:, outside] = 0
        d["image"], d["label"] = image, label
        return d


def training_transform(config: TrainConfig, patch_zyx: Sequence[int], num_classes: int,
                       trained: Mapping[str, int], intensity: IntensityNormalisation,
                       spacing_mm: Sequence[float]) -> Compose:
    """Transform of {"image": HU (1, z, y, x), "label": classes (1, z, y, x), "labelled": the class values the
    case labels} into one augmented patch (a list); `trained`: the trained classes' names -> values, background
    included; `spacing_mm`: the model grid's (x, y, z)."""
    low, high = config.scale_range
    trained_values = list(trained.values())
    organ_values = {name: value for name, value in trained.items() if value > 0}
    transforms = [
        RandCropByLabelClassesd(
            KEYS, label_key="label", num_classes=num_classes, num_samples=1, allow_smaller=True, warn=False,
            ratios=crop_ratios(num_classes, trained_values, config.foreground_probability),
            spatial_size=context_size(patch_zyx, config.rotation_deg, high, config.shift),
        ),
    ]
    if config.contrast_phase_probability > 0:
        transforms.append(RandContrastPhased(organ_values, spacing_mm, config.contrast_phase_probability))
    if config.intensity_scale > 0:
        transforms.append(RandScaleIntensityd("image", factors=config.intensity_scale, prob=1.0))
    if config.intensity_shift_hu > 0:
        transforms.append(RandShiftIntensityd("image", offsets=config.intensity_shift_hu, prob=1.0))
    air = intensity.air
    transforms += [
        ScaleIntensityRanged(  # normalised, less the air value: the affine's zero padding is then air
            "image", a_min=intensity.clip_min, a_max=intensity.clip_max, clip=True,
            b_min=(intensity.clip_min - intensity.mean) / intensity.std - air,
            b_max=(intensity.clip_max - intensity.mean) / intensity.std - air,
        ),
        RandAffined(
            KEYS, prob=1.0, spatial_size=tuple(patch_zyx), mode=("bilinear", "nearest"),
            padding_mode=("zeros", "zeros"), rotate_range=(math.radians(config.rotation_deg), 0.0, 0.0),
            scale_range=[(low - 1.0, high - 1.0)] * 3, translate_range=[config.shift * p for p in patch_zyx],
        ),
    ]
    if config.slab_probability > 0:
        transforms.append(RandSlabd(spacing_mm[2], 0.0, config.slab_probability))
    transforms.append(ShiftIntensityd("image", offset=air))
    if config.flips:
        transforms += [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in (1, 2)]  # y (AP), x (LR)
    transforms.append(ToTensord(KEYS, track_meta=False))
    return Compose(transforms)
