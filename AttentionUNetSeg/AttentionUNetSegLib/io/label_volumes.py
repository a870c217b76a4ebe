"""Telling a label volume from a CT by its voxels: a folder of inputs often holds the labels beside the CTs.

A label volume stores integers, none negative, of few distinct values (class numbers: at most
MAX_LABEL_VALUES, enough for TotalSegmentator's 117 classes and background). A CT never looks so: air is
about -1000 HU, and stored without rescaling it has thousands of values. A NIfTI file's first slice is read
first (nibabel), so a CT is told apart without reading (and inflating) the rest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Set

import numpy as np
import SimpleITK as sitk

MAX_LABEL_VALUES = 128
_INTEGER_PIXELS = {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
                   sitk.sitkUInt64, sitk.sitkInt64}
"""Single-component integer voxels (vector images have pixel IDs of their own)."""


def is_label_volume(path: Path) -> bool:
    """Whether the image file `path` holds labels rather than a CT (False for what cannot be read: the run that
    reads it reports that)."""
    path = Path(path)
    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            return _nifti_holds_labels(path)
        return _itk_file_holds_labels(path)
    except (OSError, RuntimeError, ValueError, EOFError):
        return False


def _nifti_holds_labels(path: Path) -> bool:
    import nibabel

    stored = nibabel.load(str(path))
    slope, inter = stored.dataobj.slope, stored.dataobj.inter
    scaled = not (slope in (1.0, None) or np.isnan(slope)) or not (inter in (0.0, None) or np.isnan(inter))
    if not np.issubdtype(stored.get_data_dtype(), np.integer) or scaled or len(stored.shape) != 3:
        return False
    return (_few_non_negative_values([np.asarray(stored.dataobj[..., 0])])
            and _few_non_negative_values(np.asarray(stored.dataobj).T))


def _itk_file_holds_labels(path: Path) -> bool:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if reader.GetPixelID() not in _INTEGER_PIXELS or reader.GetDimension() != 3:
        return False
    image = reader.Execute()  # kept while its voxels are viewed
    return _few_non_negative_values(sitk.GetArrayViewFromImage(image))


def _few_non_negative_values(slices: Iterable[np.ndarray]) -> bool:
    """Whether the slices hold no negative value and at most MAX_LABEL_VALUES distinct ones (stops at the first
    slice that shows otherwise)."""
    values: Set[int] = set()
    for plane in slices:
        if plane.size and plane.min() < 0:
            return False
        values.update(np.unique(plane).tolist())
        if len(values) > MAX_LABEL_VALUES:
            return False
    return True
