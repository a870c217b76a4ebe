"""Paired comparison of two evaluations (same cases, two methods) with Wilcoxon signed-rank tests."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
from scipy import stats

from ..errors import DatasetError
from .metrics import METRIC_DECIMALS, METRIC_NAMES, METRIC_TITLES
from .report import EvaluationReport, MetricSummary, summarize
from .tables import json_numbers, markdown_table, write_text_files

COMPARISON_FORMAT = "attention-unet-comparison"
OUTPUT_NAMES = ("comparison.md", "comparison.json")


@dataclass(frozen=True)
class PairedResult:
    """One class and metric over the `n` common cases where both evaluations define it."""

    class_name: str
    metric: str
    n: int
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    p_value: float


@dataclass(frozen=True)
class Comparison:
    """Paired results of evaluation A against evaluation B on their common cases."""

    name_a: str
    name_b: str
    cases: List[str]
    results: List[PairedResult]

    def to_dict(self) -> dict:
        return {"format": COMPARISON_FORMAT, "format_version": 1, "a": self.name_a, "b": self.name_b,
                "test": "two-sided Wilcoxon signed-rank (scipy.stats.wilcoxon) on paired per-case values",
                "cases": self.cases, "results": [json_numbers(asdict(r)) for r in self.results]}

    def to_markdown(self) -> str:
        rows = [[r.class_name, METRIC_TITLES[r.metric], str(r.n), _mean_std(r, "a"), _mean_std(r, "b"),
                 "n/a" if math.isnan(r.p_value) else f"{r.p_value:.3g}"] for r in self.results]
        return "\n".join([
            "# Comparison", "",
            f"A: `{self.name_a}`  ", f"B: `{self.name_b}`  ", f"Common cases: {len(self.cases)}", "",
            markdown_table(["Class", "Metric", "n", "A", "B", "p (Wilcoxon)"], rows), "",
            "Mean ± sample standard deviation over the n common cases where both define the metric; p: two-sided "
            "Wilcoxon signed-rank test on the paired values (1 when all pairs are equal, n/a without pairs).",
        ]) + "\n"

    def write(self, directory: Path) -> List[Path]:
        """Write comparison.md and comparison.json into `directory`, both or none."""
        texts = (self.to_markdown(), json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return write_text_files(directory, dict(zip(OUTPUT_NAMES, texts)))


def compare_reports(a: EvaluationReport, b: EvaluationReport, name_a: str = "A", name_b: str = "B") -> Comparison:
    """Pair the two evaluations by case name and class name and test every metric."""
    cases_b = {case.case: case for case in b.cases}
    common = [case.case for case in a.cases if case.case in cases_b]
    if not common:
        raise DatasetError(f"{name_a} and {name_b} share no case names; compare evaluations of the same cases")
    labels_b = {name: label for label, name in b.classes.items()}
    shared = [(name, label, labels_b[name]) for label, name in a.classes.items() if name in labels_b]
    if not shared:
        raise DatasetError(f"{name_a} (classes {sorted(a.classes.values())}) and {name_b} (classes "
                           f"{sorted(b.classes.values())}) share no class name; compare evaluations of the same "
                           "classes")
    cases_a = {case.case: case for case in a.cases}
    results = []
    for name, label_a, label_b in shared:
        for metric in METRIC_NAMES:
            x = np.array([getattr(cases_a[c].metrics[label_a], metric) for c in common], dtype=np.float64)
            y = np.array([getattr(cases_b[c].metrics[label_b], metric) for c in common], dtype=np.float64)
            both = np.isfinite(x) & np.isfinite(y)
            sa, sb = summarize(x[both]), summarize(y[both])
            results.append(PairedResult(name, metric, int(both.sum()), sa.mean, sa.std, sb.mean, sb.std,
                                        wilcoxon_p(x[both], y[both])))
    return Comparison(name_a, name_b, common, results)


def wilcoxon_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired values: NaN without pairs, 1 when all pairs are equal."""
    differences = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if differences.size == 0:
        return math.nan
    if not differences.any():
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def _mean_std(result: PairedResult, side: str) -> str:
    mean, std = getattr(result, f"mean_{side}"), getattr(result, f"std_{side}")
    return MetricSummary(mean, std, result.n, 0).format(METRIC_DECIMALS[result.metric])
