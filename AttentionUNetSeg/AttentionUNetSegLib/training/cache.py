"""Preprocessed cases cached on disk once: CT on the model grid (HU, float32) and labels as model classes.

The CT is resampled exactly as `segment` resamples it (linear, onto `model_grid` at the model spacing,
air outside); labels are remapped to model classes and resampled by nearest neighbour. Intensity
normalisation is applied when patches are read (it is cheap and recorded in the model file), so one cache
serves any normalisation. Each entry's folder name holds a hash of the input files (path, size, mtime)
and the settings, so changed inputs make a new entry; files are written atomically, meta.json last, so
a half-written entry is never used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..datasets.cases import Case
from ..datasets.label_grids import check_label_grid
from ..datasets.label_maps import IGNORE_LABEL, LabelMap
from ..datasets.segment_names import SEGMENTATION_SUFFIX
from ..errors import DatasetError, InputImageError
from ..inference.normalisation import AIR_HU, IntensityNormalisation
from ..inference.preprocessing import model_grid, resample, validate_image
from ..io.atomic import atomic_file
from ..io.images import read_image

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FOREGROUND_SAMPLES = 10_000
META_FILE = "meta.json"


@dataclass(frozen=True)
class CacheSettings:
    """Everything besides the input files that changes a cached case."""

    label_map: LabelMap
    class_values: Dict[str, int]
    num_classes: int
    spacing_mm: Tuple[float, float, float]

    def fingerprint(self) -> dict:
        return {"version": CACHE_VERSION, "label_map": self.label_map.to_dict(), "class_values": self.class_values,
                "num_classes": self.num_classes, "spacing_mm": list(self.spacing_mm)}


@dataclass(frozen=True)
class CachedCase:
    """A preprocessed case; arrays are (z, y, x), memory-mapped copy-on-write. `labelled`: the class values
    its label map produces (background included); the other trained classes are unlabelled in this case."""

    name: str
    folder: Path
    class_voxels: Tuple[int, ...]
    labelled: Tuple[int, ...]

    def image(self) -> np.ndarray:
        """CT in HU on the model grid."""
        return np.load(self.folder / "image.npy", mmap_mode="c")

    def label(self) -> np.ndarray:
        """Model class values (uint8) on the model grid."""
        return np.load(self.folder / "label.npy", mmap_mode="c")

    def foreground_hu(self) -> np.ndarray:
        """Up to FOREGROUND_SAMPLES HU values of foreground voxels, evenly spread (for intensity statistics)."""
        return np.load(self.folder / "foreground_hu.npy")

    @property
    def has_foreground(self) -> bool:
        return any(self.class_voxels[1:])


def cached_case(case: Case, settings: CacheSettings, cache_dir: Path, create: bool = True) -> CachedCase:
    """The cached entry of `case`, preprocessing it first if needed (or raising if `create` is False)."""
    folder = Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', case.name)}_{_key(case, settings)[:16]}"
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        if not create:
            raise DatasetError(f"case {case.name}: no cached preprocessing in {folder}; was the cache folder removed "
                               "while training started?")
        _preprocess(case, settings, folder)
    meta = json.loads(meta_path.read_text())
    return CachedCase(case.name, folder, tuple(meta["class_voxels"]), (0, *sorted(settings.class_values.values())))


def _key(case: Case, settings: CacheSettings) -> str:
    content = {"image": _file_state(case.image), "label": _file_state(case.label), **settings.fingerprint()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _file_state(path: Path) -> List:
    """Resolved path, size and modification time of a file, or of every file in a (DICOM) folder."""
    path = Path(path).resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [str(path)] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _preprocess(case: Case, settings: CacheSettings, folder: Path) -> None:
    log.info("preprocessing case %s into %s", case.name, folder)
    image = read_image(case.image)
    try:
        for warning in validate_image(image):
            log.warning("case %s: %s", case.name, warning)
    except InputImageError as exc:
        raise DatasetError(f"case {case.name}: {exc}") from exc
    reference = read_image(case.label)
    check_label_grid(image, reference, case.name, allow_crop=str(case.label).lower().endswith(SEGMENTATION_SUFFIX))
    values = settings.label_map.remap(sitk.GetArrayViewFromImage(reference), settings.class_values, case.name)
    label_image = sitk.GetImageFromArray(values)
    label_image.CopyInformation(reference)
    grid = model_grid(image, settings.spacing_mm)
    ct = sitk.GetArrayFromImage(resample(image, grid, sitk.sitkLinear, AIR_HU))
    label = sitk.GetArrayFromImage(resample(label_image, grid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    foreground = ct[(label > 0) & (label != IGNORE_LABEL)]
    if foreground.size > FOREGROUND_SAMPLES:
        foreground = foreground[np.linspace(0, foreground.size - 1, FOREGROUND_SAMPLES).astype(np.int64)]
    for name, array in (("image", ct), ("label", label), ("foreground_hu", foreground)):
        with atomic_file(folder / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
    meta = {"name": case.name, "image": str(case.image), "label": str(case.label), "shape": list(ct.shape),
            "class_voxels": np.bincount(label.ravel(), minlength=settings.num_classes)[:settings.num_classes].tolist(),
            "spacing_mm": list(settings.spacing_mm)}
    with atomic_file(folder / META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def auto_intensity(cases: Sequence[CachedCase]) -> IntensityNormalisation:
    """nnU-Net's CT scheme on the training foreground: clip to its 0.5-99.5 percentiles, then N(0, 1)."""
    samples = np.concatenate([c.foreground_hu() for c in cases]) if cases else np.zeros(0, np.float32)
    if samples.size < 2:
        raise DatasetError("the training cases have no foreground voxels to take intensity statistics from; "
                           "give --intensity CLIP_MIN,CLIP_MAX,MEAN,STD")
    low, high = np.percentile(samples, [0.5, 99.5])
    clipped = np.clip(samples, low, high)
    return IntensityNormalisation(float(low), float(max(high, low + 1)), float(clipped.mean()),
                                  float(max(clipped.std(), 1e-3)))
