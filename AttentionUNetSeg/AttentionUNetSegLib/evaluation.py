"""Evaluate a folder of predicted label volumes against a folder of reference label volumes.

Cases are matched by file name without the image suffix; a prediction may carry a `_seg` suffix
(`case1_seg.nii.gz` is the prediction for `case1.nii.gz`). Metrics and their NaN conventions are those
of `metrics.py`. Summaries are mean ± sample standard deviation (ddof=1) over the cases where a metric
is defined, with the number of such cases.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .atomic import StagedOutputs
from .datasets.grids import check_same_grid
from .errors import DatasetError
from .imageio import IMAGE_SUFFIXES, image_stem, read_image
from .metrics import METRIC_DECIMALS, METRIC_NAMES, METRIC_TITLES, ClassMetrics, label_metrics

log = logging.getLogger(__name__)

REPORT_FORMAT = "attention-unet-evaluation"
REPORT_VERSION = 1
PREDICTION_SUFFIX = "_seg"
OUTPUT_NAMES = ("evaluation.md", "evaluation.csv", "evaluation.json")


@dataclass(frozen=True)
class CaseResult:
    """The metrics of every class in one case, keyed by label value."""

    case: str
    prediction: str
    reference: str
    metrics: Dict[int, ClassMetrics]


@dataclass(frozen=True)
class MetricSummary:
    """Mean and sample standard deviation over the `n` cases where a metric is defined; `undefined` counts the rest."""

    mean: float
    std: float
    n: int
    undefined: int

    def format(self, decimals: int) -> str:
        """`mean ± std`, with `(n=…)` when some cases were undefined; `n/a` when none was defined."""
        if self.n == 0:
            return "n/a"
        std = f"{self.std:.{decimals}f}" if self.n > 1 else "n/a"
        text = f"{self.mean:.{decimals}f} ± {std}"
        return f"{text} (n={self.n})" if self.undefined else text


def summarize(values: Sequence[float]) -> MetricSummary:
    """Summary of per-case values; NaN values are undefined and only counted."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[np.isfinite(array)]
    n = int(defined.size)
    return MetricSummary(
        mean=float(defined.mean()) if n else math.nan,
        std=float(defined.std(ddof=1)) if n > 1 else math.nan,
        n=n,
        undefined=int(array.size - n),
    )


@dataclass
class EvaluationReport:
    """Per-case, per-class metrics of one evaluation, with tables and JSON/CSV/Markdown output."""

    classes: Dict[int, str]
    cases: List[CaseResult]
    prediction_dir: str = ""
    reference_dir: str = ""
    missing_predictions: List[str] = field(default_factory=list)
    extra_predictions: List[str] = field(default_factory=list)

    def values(self, label: int, metric: str) -> np.ndarray:
        """One value per case (in case order) of `metric` for class `label`; NaN where undefined."""
        return np.array([getattr(case.metrics[label], metric) for case in self.cases], dtype=np.float64)

    def summary(self) -> Dict[int, Dict[str, MetricSummary]]:
        return {label: {metric: summarize(self.values(label, metric)) for metric in METRIC_NAMES}
                for label in self.classes}

    def to_dict(self) -> dict:
        summary = self.summary()
        return {
            "format": REPORT_FORMAT,
            "format_version": REPORT_VERSION,
            "prediction_dir": self.prediction_dir,
            "reference_dir": self.reference_dir,
            "classes": {str(label): name for label, name in self.classes.items()},
            "metrics": list(METRIC_NAMES),
            "undefined_values": "null: the metric is undefined for that case (empty prediction and/or reference)",
            "summary": {str(label): {"name": name, **{m: json_numbers(vars(summary[label][m])) for m in METRIC_NAMES}}
                        for label, name in self.classes.items()},
            "cases": [{"case": case.case, "prediction": case.prediction, "reference": case.reference,
                       "classes": {str(label): json_numbers(m.as_dict()) for label, m in case.metrics.items()}}
                      for case in self.cases],
            "missing_predictions": self.missing_predictions,
            "extra_predictions": self.extra_predictions,
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "evaluation") -> "EvaluationReport":
        """Inverse of `to_dict`; errors name `source` and what is wrong."""
        if not isinstance(data, Mapping) or data.get("format") != REPORT_FORMAT:
            raise DatasetError(f"{source} is not an `attention-unet evaluate` JSON file (no \"format\": "
                               f"\"{REPORT_FORMAT}\"); give the evaluation.json that evaluate -o wrote")
        if data.get("format_version") != REPORT_VERSION:
            raise DatasetError(f"{source} has evaluation format version {data.get('format_version')}, this version "
                               f"reads {REPORT_VERSION}; re-run attention-unet evaluate with this version")
        try:
            classes = {int(label): str(name) for label, name in data["classes"].items()}
            cases = [CaseResult(str(c["case"]), str(c["prediction"]), str(c["reference"]),
                                {int(label): ClassMetrics(**_nan_numbers(values))
                                 for label, values in c["classes"].items()})
                     for c in data["cases"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{source} is malformed ({type(exc).__name__}: {exc}); re-run attention-unet "
                               "evaluate to write it again") from exc
        incomplete = [case.case for case in cases if set(case.metrics) != set(classes)]
        if incomplete:
            raise DatasetError(f"{source}: cases {_shortlist(incomplete)} do not hold exactly the classes "
                               f"{sorted(classes)}; re-run attention-unet evaluate to write it again")
        return cls(classes, cases, str(data.get("prediction_dir", "")), str(data.get("reference_dir", "")),
                   list(data.get("missing_predictions", [])), list(data.get("extra_predictions", [])))

    def to_markdown(self) -> str:
        summary = self.summary()
        header = ["Class"] + [METRIC_TITLES[m] for m in METRIC_NAMES]
        rows = [[name] + [summary[label][m].format(METRIC_DECIMALS[m]) for m in METRIC_NAMES]
                for label, name in self.classes.items()]
        lines = [
            "# Evaluation", "",
            f"Predictions: `{self.prediction_dir}`  ", f"References: `{self.reference_dir}`  ",
            f"Cases: {len(self.cases)}", "",
            markdown_table(header, rows), "",
            "Mean ± sample standard deviation over cases. `(n=k)`: the metric is undefined in the other cases "
            "(empty prediction and/or reference) and left out of that mean; `n/a`: no value to summarise. "
            "S2S dist.: mean symmetric surface-to-surface distance; HD95: 95th percentile of the symmetric "
            "surface distances.",
        ]
        if self.missing_predictions:
            lines += ["", f"References without a prediction (not evaluated): {', '.join(self.missing_predictions)}"]
        if self.extra_predictions:
            lines += ["", f"Predictions without a reference (ignored): {', '.join(self.extra_predictions)}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One row per case and class."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["case", "label", "class", *METRIC_NAMES, "pred_voxels", "ref_voxels"])
        for case in self.cases:
            for label, name in self.classes.items():
                m = case.metrics[label]
                writer.writerow([case.case, label, name, *(repr(getattr(m, k)) for k in METRIC_NAMES),
                                 m.pred_voxels, m.ref_voxels])
        return out.getvalue()

    def texts(self) -> Dict[str, str]:
        """The contents of evaluation.md, evaluation.csv and evaluation.json."""
        texts = (self.to_markdown(), self.to_csv(), json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return dict(zip(OUTPUT_NAMES, texts))

    def write(self, directory: Path) -> List[Path]:
        """Write evaluation.md, evaluation.csv and evaluation.json into `directory`, all or none."""
        return write_text_files(directory, self.texts())


def load_report(path: Path) -> EvaluationReport:
    """Read an evaluation.json written by `EvaluationReport.write`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"evaluation file {path} does not exist; run attention-unet evaluate -o DIR first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read evaluation file {path} ({exc}); give an evaluation.json "
                           "written by attention-unet evaluate") from exc
    return EvaluationReport.from_dict(data, source=str(path))


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
                           f"{_shortlist(match.missing_predictions)}; add them or pass --allow-missing to evaluate "
                           f"only the {len(match.pairs)} matched case(s)")
    if not match.pairs:
        raise DatasetError(f"no prediction in {pred_dir} matches a reference in {ref_dir} by file name "
                           f"(predictions: {_shortlist(match.extra_predictions)}); name predictions like their "
                           f"references, optionally with a '{PREDICTION_SUFFIX}' suffix")
    if match.extra_predictions:
        log.warning("ignoring %d prediction(s) without a reference: %s", len(match.extra_predictions),
                    _shortlist(match.extra_predictions))
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


def _shortlist(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "") or "none"


def write_text_files(directory: Path, texts: Mapping[str, str]) -> List[Path]:
    """Write `{file name: text}` into `directory` as one atomic set (all files or none)."""
    with StagedOutputs(Path(directory)) as staged:
        for name, text in texts.items():
            staged.path(name).write_text(text, encoding="utf-8")
        return staged.commit()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def json_numbers(values: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """NaN -> None (JSON null), since JSON has no NaN; other values unchanged."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def _nan_numbers(values: Mapping[str, Optional[float]]) -> Dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in values.items()}
