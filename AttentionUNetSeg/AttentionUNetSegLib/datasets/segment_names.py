"""Label maps from segment names: label values named as a user's segments and matched to a model's classes as
the Slicer module matches them (segment_matching: terminology code, else name), for `train --segment-names`.

The names come from VALUE=NAME pairs (or a value->name JSON file) that hold for every case, or
(FROM_LABEL_FILES) from each label file's own header: a Slicer segmentation file (.seg.nrrd) lists its segments
as Segment<N>_Name, Segment<N>_LabelValue and Segment<N>_Tags (with the terminology entry). Each case's label map
gives the matched values to their classes, the ignored ones to "ignore", and every other segment to background.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import SimpleITK as sitk

from ..errors import DatasetError
from ..models.segment_classes import SegmentClass
from .cases import Case
from .label_maps import LabelMap, parse_label_map
from .segment_matching import IGNORED, Segment, match_segments

FROM_LABEL_FILES = "from-label-files"
SEGMENTATION_SUFFIX = ".seg.nrrd"
"""Slicer's segmentation files: saved cropped to their segments, so their grid may be a box of the CT's."""
TERMINOLOGY_TAG = "TerminologyEntry"


def segment_label_maps(cases: Sequence[Case], spec: str, classes: Sequence[SegmentClass],
                       ignored: Sequence[str] = ()) -> Tuple[LabelMap, Dict[str, LabelMap]]:
    """Each case's label map from its segments' names, and the run's: the classes any case labels (its values
    are placeholders; every case has its own)."""
    shared = None if spec == FROM_LABEL_FILES else {value: Segment(name) for value, name in
                                                    parse_label_map(spec).items()}
    maps = {case.name: _case_map(case, shared or label_file_segments(case.label), classes, ignored)
            for case in cases}
    labelled = [c.name for c in classes if any(c.name in m.classes for m in maps.values())]
    run_map = LabelMap({name: (value,) for value, name in enumerate(labelled, start=1)}, name="segment names",
                       description="the classes the cases' segments were matched to; each case has its own values")
    return run_map, maps


def label_file_segments(path: Path) -> Dict[int, Segment]:
    """Label value -> segment (name, terminology) from a Slicer segmentation file's header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise DatasetError(f"cannot read the header of {path}: {exc}") from None
    if reader.GetDimension() != 3:
        raise DatasetError(f"{path} holds {reader.GetDimension()}D data (segments in several layers); export the "
                           "segmentation as a labelmap (Segmentations module, Export to files) to train on it")
    keys = set(reader.GetMetaDataKeys())
    segments = {}
    index = 0
    while f"Segment{index}_Name" in keys:
        value_key = f"Segment{index}_LabelValue"
        if value_key not in keys:
            raise DatasetError(f"{path}: segment {index} has no label value (a segmentation file from before "
                               "Slicer 4.11?); save it again with a current Slicer")
        tags = reader.GetMetaData(f"Segment{index}_Tags") if f"Segment{index}_Tags" in keys else ""
        segments[int(reader.GetMetaData(value_key))] = Segment(reader.GetMetaData(f"Segment{index}_Name"),
                                                               _terminology(tags))
        index += 1
    if not segments:
        raise DatasetError(f"{path} names no segments (it is not a Slicer .seg.nrrd file); give the names with "
                           "--segment-names VALUE=NAME,...")
    return segments


def _terminology(tags: str) -> str:
    """The terminology entry among a segment's tags ("name:value|name:value|...")."""
    for tag in tags.split("|"):
        name, _, value = tag.partition(":")
        if name == TERMINOLOGY_TAG:
            return value
    return ""


def _case_map(case: Case, segments: Mapping[int, Segment], classes: Sequence[SegmentClass],
              ignored: Sequence[str]) -> LabelMap:
    values = list(segments)
    matches = match_segments([segments[v] for v in values], classes, ignored)
    by_class: Dict[str, List[int]] = {}
    for value, match in zip(values, matches):
        if match.class_name is not None:
            by_class.setdefault(match.class_name, []).append(value)
    if not by_class:
        raise DatasetError(f"case {case.name}: none of its segments ({', '.join(str(m) for m in matches)}) matches a "
                           f"class of the model ({', '.join(c.name for c in classes if c.value)})")
    order = [c.name for c in classes if c.name in by_class]
    return LabelMap({name: tuple(by_class[name]) for name in order}, name=f"segments of {case.name}",
                    background=tuple(v for v, m in zip(values, matches) if m.class_name is None and m.how != IGNORED),
                    ignore=tuple(v for v, m in zip(values, matches) if m.how == IGNORED),
                    description="; ".join(str(m) for m in matches))
