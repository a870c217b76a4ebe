"""Score predictions against references: one case, or every matched case of two folders."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import SimpleITK as sitk

from ..datasets.grids import check_same_grid
from ..errors import DatasetError
from ..imageio import read_image
from .matching import PREDICTION_SUFFIX, match_cases
from .metrics import ClassMetrics, label_metrics
from .report import CaseResult, EvaluationReport
from .tables import shortlist

log = logging.getLogger(__name__)


def evaluate_folders(pred_dir: Path, ref_dir: Path, classes: Mapping[int, str], allow_missing: bool = False,
                     progress: Optional[Callable[[int, int, str], None]] = None) -> EvaluationReport:
    """Metrics of every matched case and class. References without a prediction are an error unless
    `allow_missing`; predictions without a reference are listed and ignored. `progress(done, total, case)`
    is called after each case."""
    if not classes:
        raise DatasetError("no classes to evaluate; give at least one `value=name` pair")
    match = match_cases(pred_dir, ref_dir)
    if match.missing_predictions and not allow_missing:
        raise DatasetError(f"{len(match.missing_predictions)} reference case(s) have no prediction in {pred_dir}: "
                           f"{shortlist(match.missing_predictions)}; add them or pass --allow-missing to evaluate "
                           f"only the {len(match.pairs)} matched case(s)")
    if not match.pairs:
        raise DatasetError(f"no prediction in {pred_dir} matches a reference in {ref_dir} by file name "
                           f"(predictions: {shortlist(match.extra_predictions)}); name predictions like their "
                           f"references, optionally with a '{PREDICTION_SUFFIX}' suffix")
    if match.extra_predictions:
        log.warning("ignoring %d prediction(s) without a reference: %s", len(match.extra_predictions),
                    shortlist(match.extra_predictions))
    results = []
    for index, (case, pred_path, ref_path) in enumerate(match.pairs, start=1):
        metrics = evaluate_case(read_image(pred_path), read_image(ref_path), classes, case)
        results.append(CaseResult(case, str(pred_path), str(ref_path), metrics))
        if progress:
            progress(index, len(match.pairs), case)
    report = EvaluationReport(dict(sorted(classes.items())), results, str(pred_dir), str(ref_dir),
                              match.missing_predictions, match.extra_predictions)
    for label, name in report.classes.items():
        if not any(case.metrics[label].ref_voxels for case in results):
            log.warning("class '%s' (value %d) is absent from every reference: is the class list right?", name, label)
    return report


def evaluate_case(pred: sitk.Image, ref: sitk.Image, classes: Mapping[int, str], case: str) -> Dict[int, ClassMetrics]:
    """Metrics of one prediction against its reference on the same grid; errors name `case`."""
    check_same_grid(ref, pred, f"case '{case}'", ("reference", "prediction"),
                    "resample the prediction onto the reference grid (nearest neighbour) and evaluate again")
    pred_labels, ref_labels = _label_array(pred, case, "prediction"), _label_array(ref, case, "reference")
    return label_metrics(pred_labels, ref_labels, ref.GetSpacing()[::-1], sorted(classes))


def _label_array(image: sitk.Image, case: str, role: str) -> np.ndarray:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"case '{case}': the {role} has {image.GetNumberOfComponentsPerPixel()} components per "
                           "voxel; give a single-component label volume")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
        raise DatasetError(f"case '{case}': the {role} holds non-integer values ({image.GetPixelIDTypeAsString()}); "
                           "give a label volume of integer class values")
    return array.astype(np.int64)
