"""DICOM Segmentation objects (SEG) for CTs read from a DICOM series, written with highdicom, so that a result can
go back to the archive (PACS) beside the CT it was made from.

One SEG per CT: BINARY, uncompressed (any DICOM reader decodes it; JPEG 2000 would need another codec), one
segment per class found (numbered 1..n in class order), each with the class's name, colour (as CIELab) and
terminology from the model file (SNOMED CT category and type; a class without codes is "Tissue"), made
AUTOMATICally by the model (its name and sha256 as the algorithm's name and version). It references the source
study, frame of reference, series and every slice. Slices are paired with the source instances by position
(ImagePositionPatient against the physical position of each label slice), never by InstanceNumber.

highdicom and pydicom are the optional `dicom` extra: imported only when a SEG is asked for.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .. import package_version
from ..errors import InputImageError, InvalidOptionError
from ..models.segment_classes import ANATOMICAL_STRUCTURE, SegmentClass, Terminology
from ..io.images import dicom_series_files

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.sr.coding import Code

DICOM_SEG_FORMAT = "dicom-seg"
"""`--format dicom-seg`: a SEG `<name>_seg.dcm` beside NIfTI labels and maps."""
SEG_SUFFIX = "_seg.dcm"
TISSUE = Terminology("SCT", "85756007", "Tissue")
"""Category and type of a class whose model file gives no codes (3D Slicer's default for a new segment)."""
ARTIFICIAL_INTELLIGENCE = Terminology("DCM", "123110", "Artificial Intelligence")  # the algorithm's family
CONTENT_LABEL = "SEGMENTATION"  # a DICOM CS: upper case, at most 16 characters
SERIES_NUMBER = 901
POSITION_TOLERANCE_MM = 1e-3
_INSTALL = "pip install 'AttentionUNetSeg[dicom]' (highdicom and pydicom)"


def require_dicom_seg(inputs: Sequence[Path]) -> None:
    """Refuse, before any work, a DICOM SEG for `inputs` that are not DICOM series folders, or without highdicom."""
    files = [str(path) for path in inputs if not Path(path).is_dir()]
    if files:
        raise InvalidOptionError(
            f"--format {DICOM_SEG_FORMAT} needs DICOM series folders as inputs, since a DICOM Segmentation references "
            f"the DICOM study, series and slices of its CT; {', '.join(files[:10])}{' ...' if len(files) > 10 else ''} "
            f"{'is not a DICOM series' if len(files) == 1 else 'are not DICOM series'}: segment "
            f"{'it' if len(files) == 1 else 'them'} with --format nii.gz, or give the DICOM series")
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError as exc:
        raise InvalidOptionError(f"--format {DICOM_SEG_FORMAT} needs the packages highdicom and pydicom ({exc}); "
                                 f"install them: {_INSTALL}") from exc


def read_seg_sources(folder: Path, image: sitk.Image) -> List["Dataset"]:
    """The headers (no pixels) of the slices of `folder`'s DICOM series that `image` was read from, slice k of
    `image` first for k = 0, 1, ...; refused, naming the problem, where a SEG could not reference them."""
    import pydicom

    datasets = []
    for file in dicom_series_files(folder, warn=False):
        try:
            datasets.append(_with_sop_uids(pydicom.dcmread(file, stop_before_pixels=True), file))
        except (pydicom.errors.InvalidDicomError, OSError) as exc:
            raise InputImageError(f"cannot read the DICOM header of {file} ({exc}) for a DICOM SEG") from exc
    first = datasets[0]
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID") if not first.get(k)]
    if missing:
        raise InputImageError(
            f"the DICOM series in {folder} has no {' or '.join(missing)} (de-identified without new UIDs?), which a "
            f"DICOM SEG must reference to be filed with its CT; give the series with its UIDs, or segment it with "
            "--format nii.gz")
    return _in_slice_order(datasets, image, folder)


def _with_sop_uids(dataset: "Dataset", file: str) -> "Dataset":
    """`dataset`, or a copy with the SOP class and instance UIDs of its file meta where its own are empty."""
    meta = getattr(dataset, "file_meta", None)
    fixes = {own: meta.get(kept) for own, kept in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                                   ("SOPInstanceUID", "MediaStorageSOPInstanceUID"))
             if not dataset.get(own) and meta is not None and meta.get(kept)}
    if fixes:
        dataset = copy.deepcopy(dataset)
        for keyword, uid in fixes.items():
            setattr(dataset, keyword, uid)
    if not (dataset.get("SOPClassUID") and dataset.get("SOPInstanceUID")):
        raise InputImageError(f"the DICOM file {file} has no SOP class or instance UID, so a DICOM SEG cannot "
                              "reference it; give the series with its UIDs, or segment it with --format nii.gz")
    return dataset


def _in_slice_order(datasets: List["Dataset"], image: sitk.Image, folder: Path) -> List["Dataset"]:
    """The dataset at the physical position of each slice of `image` (voxel (0, 0, k)), in slice order."""
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    positions = np.array([np.asarray(d.get("ImagePositionPatient") or [np.nan] * 3, float) for d in datasets])
    for dataset in datasets:
        orientation = np.asarray(dataset.get("ImageOrientationPatient") or [np.nan] * 6, float)
        if not (np.allclose(direction[:, 0], orientation[:3], atol=1e-4)
                and np.allclose(direction[:, 1], orientation[3:], atol=1e-4)):
            raise InputImageError(f"the DICOM series in {folder} has slices whose orientation (ImageOrientationPatient "
                                  f"{list(orientation)}) differs from the volume read from it; a DICOM SEG needs "
                                  "slices of one orientation: segment it with --format nii.gz")
    order = []
    for k in range(image.GetDepth()):
        distances = np.linalg.norm(positions - np.asarray(image.TransformIndexToPhysicalPoint((0, 0, k))), axis=1)
        nearest = int(np.nanargmin(distances)) if np.isfinite(distances).any() else -1
        if nearest < 0 or distances[nearest] > POSITION_TOLERANCE_MM:
            raise InputImageError(f"slice {k} of the volume read from {folder} lies where no slice of its DICOM "
                                  "series lies (ImagePositionPatient); a DICOM SEG needs one source slice per slice: "
                                  "segment it with --format nii.gz")
        order.append(nearest)
    if len(set(order)) != len(order) or len(order) != len(datasets):
        raise InputImageError(f"the slices of the DICOM series in {folder} do not match the volume read from it one "
                              "to one; segment it with --format nii.gz")
    return [datasets[j] for j in order]


def write_dicom_seg(labels: sitk.Image, sources: Sequence["Dataset"], classes: Sequence[SegmentClass], path: Path,
                    model: dict) -> None:
    """Write the classes found in `labels` (on the grid of the `sources`, in slice order; at least one class, since a
    SEG needs a segment) as a SEG at `path`, made by `model` (its record: name, sha256)."""
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian

    values = sitk.GetArrayViewFromImage(labels)
    present = [c for c in classes if c.value > 0 and np.any(values == c.value)]
    if not present:
        raise ValueError("the labels hold no class: a DICOM SEG needs at least one segment")
    numbers = np.zeros(max(c.value for c in classes) + 1, np.uint8)
    for number, segment_class in enumerate(present, start=1):
        numbers[segment_class.value] = number
    algorithm = hd.AlgorithmIdentificationSequence(name=model["name"], version=model["sha256"],
                                                   family=_code(ARTIFICIAL_INTELLIGENCE))
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=segment_class.name,
        segmented_property_category=_code(_terminology(segment_class)[0]),
        segmented_property_type=_code(_terminology(segment_class)[1]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*segment_class.color),
    ) for number, segment_class in enumerate(present, start=1)]
    segmentation = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=numbers[values],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="AttentionUNetSeg",
        manufacturer_model_name=model["name"][:64], software_versions=package_version(), device_serial_number="1",
        content_label=CONTENT_LABEL, content_description=f"{model['name']} automatic segmentation"[:64],
        series_description=f"{model['name']} segmentation"[:64], transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=True,
    )
    segmentation.save_as(Path(path), enforce_file_format=True)


def _terminology(segment_class: SegmentClass) -> Tuple[Terminology, Terminology]:
    """The class's category and type: its own codes (category Anatomical Structure if only a type is given), or
    Tissue for a class the model file gives no codes."""
    if segment_class.type is None:
        return TISSUE, TISSUE
    return segment_class.category or Terminology(*ANATOMICAL_STRUCTURE), segment_class.type


def _code(term: Terminology) -> "Code":
    from pydicom.sr.coding import Code

    return Code(term.code, term.scheme, term.meaning)
