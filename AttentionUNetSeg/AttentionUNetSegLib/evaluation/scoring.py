"""Score predictions against references: one pair of files, or every matched case of two folders."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import SimpleITK as sitk

from ..datasets.label_grids import check_same_grid
from ..datasets.label_maps import LabelMap
from ..errors import DatasetError, InvalidOptionError
from ..io.images import read_image
from .file_pairing import PREDICTION_SUFFIX, match_cases
from .metrics import ClassMetrics, label_metrics
from .report import CaseResult, EvaluationReport
from .tables import shortlist

log = logging.getLogger(__name__)


def evaluate_predictions(pred: Path, ref: Path, classes: Mapping[int, str], allow_missing: bool = False,
                         progress: Optional[Callable[[int, int, str], None]] = None,
                         reference_map: Optional[LabelMap] = None,
                         ignore_other_labels: bool = False) -> EvaluationReport:
    """Metrics of every class of a prediction file against a reference file, or of every matched case of a
    prediction folder and a reference folder (file_pairing.py). References without a prediction are an error unless
    `allow_missing`; predictions without a reference are listed and ignored. `reference_map` turns the
    references' own label values into the classes' names first. A label value outside `classes` is an
    error unless `ignore_other_labels` (it is then background). `progress(done, total, case)` is called
    after each case."""
    if not classes:
        raise DatasetError("no classes to evaluate; give at least one `value=name` pair")
    class_values = {name: value for value, name in classes.items()}
    if reference_map is not None:
        unknown = [name for name in reference_map.class_names if name not in class_values]
        if unknown:
            raise InvalidOptionError(f"label map {reference_map.name!r} produces class(es) {unknown} that --classes "
                                     f"does not name ({_spec(classes)}); add them to --classes or use a label map "
                                     "for the classes given")
    match = match_cases(pred, ref)
    if match.missing_predictions and not allow_missing:
        raise DatasetError(f"{len(match.missing_predictions)} reference case(s) have no prediction in {pred}: "
                           f"{shortlist(match.missing_predictions)}; add them or pass --allow-missing to evaluate "
                           f"only the {len(match.pairs)} matched case(s)")
    if not match.pairs:
        raise DatasetError(f"no prediction in {pred} matches a reference in {ref} by file name "
                           f"(predictions: {shortlist(match.extra_predictions)}); name predictions like their "
                           f"references, optionally with a '{PREDICTION_SUFFIX}' suffix")
    if match.extra_predictions:
        log.warning("ignoring %d prediction(s) without a reference: %s", len(match.extra_predictions),
                    shortlist(match.extra_predictions))
    results = []
    for index, (case, pred_path, ref_path) in enumerate(match.pairs, start=1):
        reference = read_image(ref_path)
        if reference_map is not None:
            reference = remapped_reference(reference, reference_map, class_values, case)
        metrics = evaluate_case(read_image(pred_path), reference, classes, case, ignore_other_labels)
        results.append(CaseResult(case, str(pred_path), str(ref_path), metrics))
        if progress:
            progress(index, len(match.pairs), case)
    report = EvaluationReport(dict(sorted(classes.items())), results, str(pred), str(ref),
                              match.missing_predictions, match.extra_predictions)
    for label, name in report.classes.items():
        if not any(case.metrics[label].ref_voxels for case in results):
            log.warning("class '%s' (value %d) is absent from every reference: is the class list right?", name, label)
    return report


def evaluate_case(pred: sitk.Image, ref: sitk.Image, classes: Mapping[int, str], case: str,
                  ignore_other_labels: bool = False) -> Dict[int, ClassMetrics]:
    """Metrics of one prediction against its reference on the same grid; errors name `case`. Both must hold
    label values: integers >= 0, and (unless `ignore_other_labels`) only background and the `classes`."""
    check_same_grid(ref, pred, f"case '{case}'", ("reference", "prediction"),
                    "resample the prediction onto the reference grid (nearest neighbour) and evaluate again")
    labels = []
    for image, role in ((pred, "prediction"), (ref, "reference")):
        array = _label_array(image, case, role)
        if not ignore_other_labels:
            _check_values(array, classes, case, role)
        labels.append(array)
    return label_metrics(labels[0], labels[1], ref.GetSpacing()[::-1], sorted(classes))


def _label_array(image: sitk.Image, case: str, role: str) -> np.ndarray:
    """The voxels as integer label values; a multi-component, non-integer or negative volume is refused."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"case '{case}': the {role} has {image.GetNumberOfComponentsPerPixel()} components per "
                           "voxel; give a single-component label volume")
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DatasetError(f"case '{case}': the {role} holds non-integer values "
                               f"({image.GetPixelIDTypeAsString()}); give a label volume of integer class values")
        array = array.astype(np.int64)
    low = int(array.min(initial=0))
    if low < 0:
        raise DatasetError(f"case '{case}': the {role} holds negative values ({low}..{int(array.max())}): it is not "
                           "a label volume (a CT in its place?); give label volumes of class values >= 0")
    return array


def _check_values(labels: np.ndarray, classes: Mapping[int, str], case: str, role: str) -> None:
    """Refuse label values that are neither background nor one of `classes`: a different numbering."""
    allowed = np.array([0, *classes], dtype=np.int64)
    other = labels[~np.isin(labels, allowed)]
    if other.size:
        values = np.unique(other)
        listed = shortlist([str(v) for v in values], limit=20)
        mapping = ", map the reference's values with --label-map" if role == "reference" else ""
        raise DatasetError(f"case '{case}': the {role} holds label value(s) {listed} that are not among the classes "
                           f"({_spec(classes)}); a different numbering scores the wrong organs. Give every class "
                           f"in --classes{mapping}, or pass --ignore-other-labels to count them as background")


def remapped_reference(reference: sitk.Image, reference_map: LabelMap, class_values: Mapping[str, int], case: str) -> sitk.Image:
    """The reference with its own label values turned into the classes' values by `reference_map`."""
    values = reference_map.remap(_label_array(reference, case, "reference"), class_values, case)
    mapped = sitk.GetImageFromArray(values)
    mapped.CopyInformation(reference)
    return mapped


def _spec(classes: Mapping[int, str]) -> str:
    return ",".join(f"{value}={name}" for value, name in sorted(classes.items()))
