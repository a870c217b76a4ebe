"""Pair predicted and reference label files by case name: the file name without its image suffix, where a
prediction may carry a `_seg` suffix (`case1_seg.nii.gz` is the prediction for `case1.nii.gz`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import DatasetError
from ..io.images import IMAGE_SUFFIXES, image_stem

PREDICTION_SUFFIX = "_seg"


@dataclass(frozen=True)
class CaseMatch:
    """Prediction/reference pairs by case name, and the names found on one side only."""

    pairs: List[Tuple[str, Path, Path]]
    missing_predictions: List[str]
    extra_predictions: List[str]


def match_cases(pred_dir: Path, ref_dir: Path) -> CaseMatch:
    """Pair label files by name; `NAME_seg.*` in `pred_dir` also matches `NAME.*` in `ref_dir`."""
    predictions, references = _label_files(Path(pred_dir), "prediction"), _label_files(Path(ref_dir), "reference")
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
            raise DatasetError(f"case '{case}' has two predictions in {pred_dir}: {matched[case].name} and "
                               f"{path.name}; remove one of them")
        matched[case] = path
    pairs = [(case, matched[case], references[case]) for case in sorted(matched)]
    missing = sorted(set(references) - set(matched))
    return CaseMatch(pairs, missing, sorted(extra))


def _label_files(folder: Path, role: str) -> Dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{role} folder {folder} does not exist or is not a folder; give a folder of label files")
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = image_stem(path)
        if stem in files:
            raise DatasetError(f"{role} folder {folder} holds two files for case '{stem}': {files[stem].name} and "
                               f"{path.name}; keep one")
        files[stem] = path
    if not files:
        raise DatasetError(f"{role} folder {folder} holds no label files ({', '.join(IMAGE_SUFFIXES)})")
    return files
