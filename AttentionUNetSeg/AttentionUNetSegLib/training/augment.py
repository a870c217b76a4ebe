"""The paper's augmentation as MONAI dictionary transforms: foreground-oversampled crop, random affine, flips.

A crop large enough for any allowed rotation, scaling and shift (`context_size`) is taken around a
voxel of a randomly chosen class (organs equally often, so small organs are seen), normalised, and the
random affine then samples the patch from it: cheaper than transforming the whole volume and with no
padding inside the patch unless the volume itself is smaller; where it pads (a scan thinner than the patch),
it pads with air, as the sliding window does at inference. Optional intensity augmentation (not in the
paper) scales and shifts the HU values before the window clip, as a change of contrast phase or scanner
would. Arrays are channel-first (1, z, y, x).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

from monai.transforms import (Compose, RandAffined, RandCropByLabelClassesd, RandFlipd, RandScaleIntensityd,
                              RandShiftIntensityd, ScaleIntensityRanged, ShiftIntensityd, ToTensord)

from ..preprocessing import IntensityNormalisation
from .config import TrainConfig

KEYS = ("image", "label")


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


def training_transform(config: TrainConfig, patch_zyx: Sequence[int], num_classes: int,
                       trained_values: Sequence[int], intensity: IntensityNormalisation) -> Compose:
    """Transform of {"image": HU (1, z, y, x), "label": classes (1, z, y, x)} into one augmented patch (a list)."""
    low, high = config.scale_range
    transforms = [
        RandCropByLabelClassesd(
            KEYS, label_key="label", num_classes=num_classes, num_samples=1, allow_smaller=True, warn=False,
            ratios=crop_ratios(num_classes, trained_values, config.foreground_probability),
            spatial_size=context_size(patch_zyx, config.rotation_deg, high, config.shift),
        ),
    ]
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
        ShiftIntensityd("image", offset=air),
    ]
    if config.flips:
        transforms += [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in (1, 2)]  # y (AP), x (LR)
    transforms.append(ToTensord(KEYS, track_meta=False))
    return Compose(transforms)
