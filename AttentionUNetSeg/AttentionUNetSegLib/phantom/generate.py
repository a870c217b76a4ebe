"""Generate phantoms (a CT and its labels on one grid, from a seed) and write them as an MSD-style dataset."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InvalidOptionError
from ..io.atomic import atomic_file
from ..io.images import OUTPUT_FORMATS, write_image
from ..repeats import repeated
from .anatomy import DEFAULT_LABELS, DRAWING_ORDER, STRUCTURES
from .canvas import Canvas

DEFAULT_SIZE: Tuple[int, int, int] = (128, 128, 96)
DEFAULT_SPACING: Tuple[float, float, float] = (2.5, 2.5, 3.0)


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
    canvas = Canvas(size, spacing, STRUCTURES, rng)
    for draw in DRAWING_ORDER:
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


def _acquire(hu: np.ndarray, spacing: Tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Scanner blur (Gaussian point spread) and noise, rounded to int16 HU in the CT range."""
    from scipy import ndimage  # here, not at the top: every command line run imports this module

    sigma_mm = (rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2))  # z, y, x
    blurred = ndimage.gaussian_filter(hu, sigma=[s / d for s, d in zip(sigma_mm, spacing[::-1])])
    blurred += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(rng.uniform(6, 20))
    return np.clip(np.rint(blurred), -1024, 3071).astype(np.int16)


def _to_image(array: np.ndarray, canvas: Canvas) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(canvas.spacing)
    image.SetOrigin(canvas.origin)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image
