"""One evaluation's per-case, per-class metrics, their summaries (mean ± sample standard deviation,
ddof=1, over the cases where a metric is defined, with the number of such cases) and its evaluation.md,
.csv and .json."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from ..errors import DatasetError
from .metrics import METRIC_DECIMALS, METRIC_NAMES, METRIC_TITLES, ClassMetrics
from .tables import json_numbers, markdown_table, nan_numbers, shortlist, write_text_files

REPORT_FORMAT = "attention-unet-evaluation"
REPORT_VERSION = 1
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
                                {int(label): ClassMetrics(**nan_numbers(values))
                                 for label, values in c["classes"].items()})
                     for c in data["cases"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{source} is malformed ({type(exc).__name__}: {exc}); re-run attention-unet "
                               "evaluate to write it again") from exc
        incomplete = [case.case for case in cases if set(case.metrics) != set(classes)]
        if incomplete:
            raise DatasetError(f"{source}: cases {shortlist(incomplete)} do not hold exactly the classes "
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
            "S2S dist.: mean of the surface distances of both directions; HD95: the larger of the two directed "
            "95th percentiles of the surface distances (as MONAI).",
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
