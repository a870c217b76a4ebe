"""Validation on whole volumes with the sliding-window inference `segment` uses, scored per class.

Cases are shared out over the ranks and the scores gathered, so every rank gets the same result; rank 0
logs each of its cases as it starts. The prediction is the argmax over the trained classes only (outputs
left out of the loss are left out here too). Scores are the project's metrics (`metrics.label_metrics`):
Dice and HD95 per class and case; NaN for a class the case does not label.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..backends.selection import TorchBackend
from ..datasets.label_maps import IGNORE_LABEL
from ..evaluation.metrics import label_metrics
from ..inference.normalisation import normalise
from ..inference.settings import InferenceSettings
from ..inference.sliding_windows import sliding_window_outputs
from ..models.model_file import ModelMetadata
from ..models.segment_classes import SegmentClass
from .cache import CachedCase
from .distributed import DistributedContext

log = logging.getLogger(__name__)


@dataclass
class CaseScores:
    """Dice and HD95 (mm) of one validation case per class; NaN where undefined."""

    name: str
    dice: Dict[str, float]
    hd95_mm: Dict[str, float]


@dataclass
class Snapshot:
    """One axial slice of a validation case: CT (HU), reference, prediction and every gate's attention map."""

    case: str
    slice_index: int
    ct: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    attention: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ValidationResult:
    epoch: int
    cases: List[CaseScores]

    def class_means(self, metric: str) -> Dict[str, float]:
        """Mean over cases of `metric` ("dice" or "hd95_mm") per class, ignoring undefined values."""
        names = self.cases[0].dice.keys() if self.cases else []
        return {name: _finite_mean([getattr(c, metric)[name] for c in self.cases]) for name in names}

    @property
    def mean_dice(self) -> float:
        """The selection score: mean over classes of the per-class mean Dice."""
        return _finite_mean(list(self.class_means("dice").values()))

    def summary(self) -> dict:
        """Means for logs and model metadata (JSON-safe: None where undefined)."""
        return {"epoch": self.epoch, "cases": len(self.cases), "mean_dice": _or_none(self.mean_dice),
                "dice": {n: _or_none(v) for n, v in self.class_means("dice").items()},
                "hd95_mm": {n: _or_none(v) for n, v in self.class_means("hd95_mm").items()}}


def _or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass(frozen=True)
class Validator:
    """Scores a run's network on its validation `cases` for its `trained` classes: each rank of `ctx` its share,
    then gathered; with the sliding windows of `settings` (its overlap), at `dtype`."""

    cases: Sequence[CachedCase]
    trained: Sequence[SegmentClass]
    ctx: DistributedContext
    dtype: torch.dtype
    settings: InferenceSettings

    def __call__(self, model: torch.nn.Module, metadata: ModelMetadata, epoch: int,
                 snapshot: bool) -> Tuple[ValidationResult, Optional[Snapshot]]:
        """Score `model` (its weights as they are) with its `metadata`'s grid and normalisation after `epoch`; a
        snapshot of the first case if asked (rank 0)."""
        cases, trained, ctx = self.cases, self.trained, self.ctx
        values = np.array([c.value for c in trained])
        spacing_zyx = tuple(reversed(metadata.spacing_mm))
        scores: List[CaseScores] = []
        picture = None
        backend = TorchBackend(model, ctx.device, self.dtype)
        for index in range(ctx.rank, len(cases), ctx.world_size):
            case = cases[index]
            if ctx.is_main:
                log.info("validation: case %d/%d (%s)", index + 1, len(cases), case.name)
            ct = np.asarray(case.image())
            with_attention = snapshot and index == 0 and bool(model.gate_names)
            settings = replace(self.settings, attention=with_attention)
            outputs = sliding_window_outputs(backend, normalise(ct, metadata.intensity), metadata, settings)
            prediction = values[np.argmax(outputs[values], axis=0)].astype(np.uint8)
            reference = np.asarray(case.label())
            ignored = reference == IGNORE_LABEL
            if ignored.any():  # voxels left out of training are left out of its scores
                prediction[ignored] = 0
                reference = np.where(ignored, 0, reference).astype(np.uint8)
            scored = [c for c in trained[1:] if c.value in case.labelled]  # a class the case does not label: NaN
            metrics = label_metrics(prediction, reference, spacing_zyx, [c.value for c in scored])
            dice = {c.name: metrics[c.value].dice if c in scored else math.nan for c in trained[1:]}
            hd95 = {c.name: metrics[c.value].hd95_mm if c in scored else math.nan for c in trained[1:]}
            scores.append(CaseScores(case.name, dice, hd95))
            if snapshot and index == 0:
                gates = dict(zip(model.gate_names, outputs[metadata.architecture.num_classes:]))
                picture = _snapshot(case.name, ct, reference, prediction, gates, trained)
        gathered = sorted((s for part in ctx.gather(scores) for s in part), key=lambda s: s.name)
        return ValidationResult(epoch, gathered), picture


def _snapshot(name: str, ct: np.ndarray, reference: np.ndarray, prediction: np.ndarray,
              gates: Dict[str, np.ndarray], trained: Sequence[SegmentClass]) -> Snapshot:
    """The axial slice with the most voxels of the smallest organ present (the paper's Fig. 3 shows the pancreas)."""
    counts = {c.value: int(np.count_nonzero(reference == c.value)) for c in trained[1:]}
    present = [v for v, n in counts.items() if n]
    if present:
        smallest = min(present, key=counts.get)
        z = int(np.argmax((reference == smallest).sum(axis=(1, 2))))
    else:
        z = ct.shape[0] // 2
    return Snapshot(name, z, ct[z], reference[z], prediction[z], {g: m[z] for g, m in gates.items()})
