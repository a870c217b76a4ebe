"""Pair predicted and reference label files: two files directly, or two folders by case name (the file name
without its image suffix, where a prediction may carry a `_seg` suffix: `case1_seg.nii.gz` is the prediction
for `case1.nii.gz`).

A prediction folder written by `attention-unet segment` also holds its attention and probability maps
(`<case>_attention_<gate>.*`, `<case>_prob_<class>.*`) beside `<case>_seg.*`: those are not predictions, and are
neither paired nor reported as predictions without a reference (its JSON and CSV files are no images anyway).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import DatasetError
from ..io.images import IMAGE_SUFFIXES, image_stem

PREDICTION_SUFFIX = "_seg"
_MAP_NAME = re.compile(r"^(?P<case>.+)_(?:attention|prob)_[^_].*$")
"""A map that `segment` writes beside `<case>_seg`."""


@dataclass(frozen=True)
class CaseMatch:
    """Prediction/reference pairs by case name, and the names found on one side only."""

    pairs: List[Tuple[str, Path, Path]]
    missing_predictions: List[str]
    extra_predictions: List[str]


def match_cases(pred: Path, ref: Path) -> CaseMatch:
    """Pair a prediction file with a reference file (the case is named after the reference), or the label files
    of two folders by name, where `NAME_seg.*` in `pred` also matches `NAME.*` in `ref`."""
    pred, ref = Path(pred), Path(ref)
    if pred.is_file() or ref.is_file():
        return CaseMatch([(image_stem(ref), _label_file(pred, "prediction"), _label_file(ref, "reference"))], [], [])
    predictions, references = _label_files(pred, "prediction"), _label_files(ref, "reference")
    matched: Dict[str, Path] = {}
    extra: List[str] = []
    for stem, path in predictions.items():
        case = stem
        if case not in references and stem.endswith(PREDICTION_SUFFIX):
            case = stem[: -len(PREDICTION_SUFFIX)]
        if case not in references:
            extra.append(path.name)
            continue
        if case in matched:
            raise DatasetError(f"case '{case}' has two predictions in {pred}: {matched[case].name} and "
                               f"{path.name}; remove one of them")
        matched[case] = path
    pairs = [(case, matched[case], references[case]) for case in sorted(matched)]
    missing = sorted(set(references) - set(matched))
    return CaseMatch(pairs, missing, sorted(extra))


def _label_file(path: Path, role: str) -> Path:
    """`path` as the one label file of its role: --pred and --ref are then both files."""
    if not path.is_file():
        raise DatasetError(f"{role} {path} is {'a folder' if path.is_dir() else 'missing'}, while the other side "
                           "is a file; give two label files, or two folders of them")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise DatasetError(f"{role} {path} is not a label file ({', '.join(IMAGE_SUFFIXES)})")
    return path


def _label_files(folder: Path, role: str) -> Dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{role} folder {folder} does not exist or is not a folder; give a folder of label files")
    images = [path for path in sorted(folder.iterdir()) if not path.name.startswith(".") and path.is_file()
              and path.name.lower().endswith(IMAGE_SUFFIXES)]
    stems = {image_stem(path) for path in images}
    files: Dict[str, Path] = {}
    for path in images:
        stem = image_stem(path)
        if role == "prediction" and _is_map_of(stem, stems):
            continue
        if stem in files:
            raise DatasetError(f"{role} folder {folder} holds two files for case '{stem}': {files[stem].name} and "
                               f"{path.name}; keep one")
        files[stem] = path
    if not files:
        raise DatasetError(f"{role} folder {folder} holds no label files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _is_map_of(stem: str, stems: set) -> bool:
    """Whether `stem` names an attention or probability map written beside a `<case>_seg` prediction."""
    match = _MAP_NAME.match(stem)
    return match is not None and match["case"] + PREDICTION_SUFFIX in stems
