"""Evaluate a model on a dataset: segment each chosen case as `segment` does, map its reference labels to
the model's classes with a training label map, and score it with the metrics of folder evaluation.

Cases come from the dataset layouts that training reads (MSD folder, image/label folders, CSV); a splits
file and a fold choose that fold's held-out cases, the fair test of the fold's model. The predictions and
the mapped references (both on the CT's own grid) are written beside the tables, so that
`evaluate --pred --ref` gives the same scores again. A case may have its own label map (a CSV's label_map
column); a class it does not produce is not labelled there, and its scores for that case are undefined.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import SimpleITK as sitk

from ..datasets.cases import Case, dataset_json, discover_cases
from ..datasets.label_grids import check_label_grid
from ..datasets.label_maps import LabelMap, load_label_map
from ..datasets.splits import read_splits
from ..errors import DatasetError
from ..inference.segmenter import Segmenter
from ..io.atomic import StagedOutputs
from ..io.images import read_image, write_image
from ..models.model_file import model_metadata
from ..models.registry import load_model
from ..models.segment_classes import SegmentClass
from ..repeats import repeated
from .metrics import ClassMetrics
from .report import CaseResult, EvaluationReport
from .scoring import evaluate_case, remapped_reference
from .tables import write_text_files

log = logging.getLogger(__name__)

PREDICTIONS_DIR, REFERENCES_DIR = "predictions", "references"
CaseProgress = Callable[[int, int, str, float], None]
"""Called after each case with (cases done, cases in all, the case's name, seconds it took to segment)."""


@dataclass(frozen=True)
class CaseSelection:
    """Which cases of a dataset to evaluate: a fold's held-out cases, named cases, or (neither) all."""

    splits: Optional[Path] = None
    fold: Optional[int] = None
    names: Sequence[str] = ()

    def apply(self, cases: List[Case]) -> List[Case]:
        by_name = {c.name: c for c in cases}
        if self.splits is not None:
            splits = read_splits(self.splits, list(by_name))
            if self.fold is None or not 0 <= self.fold < len(splits):
                raise DatasetError(f"give --fold 0..{len(splits) - 1} with the splits file {self.splits}")
            wanted = list(splits[self.fold]["val"])
            if not wanted:
                raise DatasetError(f"fold {self.fold} of {self.splits} has no held-out cases to evaluate")
        else:
            wanted = list(self.names) or sorted(by_name)
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise DatasetError(f"the dataset has no case(s) {unknown}; its cases are {sorted(by_name)[:20]}")
        return [by_name[n] for n in wanted]


@dataclass(frozen=True)
class ScoredCase:
    """A case to segment and score, the label map of its reference labels, and the model's class values that map
    produces (name -> value)."""

    case: Case
    label_map: LabelMap
    class_values: Dict[str, int]


def mapped_reference(case: Case, image: sitk.Image, label_map: LabelMap, class_values: Dict[str, int]) -> sitk.Image:
    """The case's reference labels as model class values, on the CT's grid (nearest neighbour)."""
    reference = read_image(case.label)
    check_label_grid(image, reference, case.name)
    mapped = remapped_reference(reference, label_map, class_values, case.name)
    return sitk.Resample(mapped, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def evaluate_model(model: str, data: Path, output: Path, label_map: Optional[str] = None,
                   selection: CaseSelection = CaseSelection(), device: str = "auto",
                   progress: Optional[CaseProgress] = None) -> EvaluationReport:
    """Segment and score the selected cases of `data` with `model` (a file or registry name); write the
    tables, predictions/ and references/ into `output`, all or nothing. `progress(done, total, case, seconds)`
    follows each case."""
    loaded = load_model(model)
    metadata = model_metadata(loaded)
    mapping = load_label_map(label_map, dataset_json(Path(data)))
    class_values = _class_values(mapping, metadata.classes, metadata.name)
    classes = {value: name for name, value in sorted(class_values.items(), key=lambda item: item[1])}
    cases = selection.apply(discover_cases(Path(data)))
    scored = []
    for case in cases:
        case_map = load_label_map(case.label_map) if case.label_map else mapping
        scored.append(ScoredCase(case, case_map, _class_values(case_map, metadata.classes, metadata.name)))
        unlisted = [name for name in scored[-1].class_values if name not in class_values]
        if unlisted:
            raise DatasetError(f"case {case.name}: its label map {case_map.name!r} produces {unlisted}, "
                               f"which the run's label map {mapping.name!r} does not; give a --label-map that does")
    output = Path(output)
    created = not output.exists()
    try:
        segmenter = Segmenter(loaded, device=device, attention=False)
        report = _segment_and_score(segmenter, scored, classes, output, str(data), progress)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    log.info("evaluated %d case(s) of %s with model %s", len(cases), data, metadata.name)
    return report


def _class_values(mapping: LabelMap, model_classes: Sequence[SegmentClass], model_name: str) -> Dict[str, int]:
    """Model class name -> value for the classes `mapping` produces; a class the model lacks is refused."""
    names = [c.name for c in model_classes]
    unknown = [name for name in mapping.class_names if name not in names]
    if unknown:
        raise DatasetError(f"label map {mapping.name!r} produces class(es) {unknown} that model {model_name!r} "
                           f"does not have (its classes: {names[1:]}); use a label map for them")
    return {c.name: c.value for c in model_classes if c.name in mapping.class_names}


def _not_labelled(metrics: ClassMetrics) -> ClassMetrics:
    """A class the case's labels do not hold: every score undefined, the predicted voxels still counted."""
    return ClassMetrics(math.nan, math.nan, math.nan, math.nan, math.nan, metrics.pred_voxels, 0)


def _segment_and_score(segmenter: Segmenter, cases: List[ScoredCase], classes: Dict[int, str], output: Path,
                       source: str, progress: Optional[CaseProgress]) -> EvaluationReport:
    """Segment and score `cases` (`classes`: value -> name of the model's classes scored), writing the predictions
    and mapped references into `output`; the report names `source` as its references."""
    results: List[CaseResult] = []
    with StagedOutputs(output / PREDICTIONS_DIR) as predictions, StagedOutputs(output / REFERENCES_DIR) as references:
        for index, scored in enumerate(cases, start=1):
            case, class_values = scored.case, scored.class_values
            image = read_image(case.image)
            reference = mapped_reference(case, image, scored.label_map, class_values)
            started = time.perf_counter()
            labels = segmenter(image).labels
            seconds = time.perf_counter() - started
            # the model's classes that no label map produces are not scored; those this case's map lacks are undefined
            scores = evaluate_case(labels, reference, classes, case.name, ignore_other_labels=True)
            prediction_path = write_image(labels, predictions.path(f"{case.name}_seg.nii.gz"))
            write_image(reference, references.path(f"{case.name}.nii.gz"))
            results.append(CaseResult(case.name, str(output / PREDICTIONS_DIR / prediction_path.name),
                                      str(output / REFERENCES_DIR / f"{case.name}.nii.gz"),
                                      {value: metrics if classes[value] in class_values else _not_labelled(metrics)
                                       for value, metrics in scores.items()}))
            if progress is not None:
                progress(index, len(cases), case.name, seconds)
        report = EvaluationReport(classes, results, f"model {segmenter.metadata.name}", source)
        texts = report.texts()
        predictions.commit()
        references.commit()
    write_text_files(output, texts)
    return report


def merge_reports(reports: Sequence[EvaluationReport], sources: Sequence[str]) -> EvaluationReport:
    """One report of the cases of several (e.g. the held-out folds of a cross-validation); the classes must
    agree and every case may occur once."""
    if len(reports) < 2:
        raise DatasetError("give at least two evaluation.json files to merge")
    first = reports[0]
    for report, source in zip(reports[1:], sources[1:]):
        if report.classes != first.classes:
            raise DatasetError(f"{source} has the classes {report.classes}, {sources[0]} has {first.classes}; "
                               "only evaluations of the same classes can be merged")
    cases = [case for report in reports for case in report.cases]
    twice = repeated(case.case for case in cases)
    if twice:
        raise DatasetError(f"case(s) {twice} occur in more than one of {list(sources)}; each case may be "
                           "evaluated once (as in the held-out folds of a cross-validation)")
    return EvaluationReport(dict(first.classes), cases, " + ".join(r.prediction_dir for r in reports),
                            " + ".join(r.reference_dir for r in reports))
