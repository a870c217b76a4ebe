"""Per-class overlap and surface-distance metrics between a predicted and a reference label volume.

Conventions (the same everywhere in this package):
- Arrays are in the same index order as `spacing` (for SimpleITK arrays: `image.GetSpacing()[::-1]`).
- Surface voxels: voxels of the mask with at least one face neighbour outside it; voxels on the volume's
  border count as surface. Surface distances are exact Euclidean distances in mm between voxel centres.
- MSD (mean surface-to-surface distance, the paper's S2S) is the mean of the pooled distances of both
  directions (prediction -> reference and reference -> prediction), as MONAI's
  `compute_average_surface_distance(symmetric=True)`. HD95 is the larger of the two directed 95th
  percentiles (linear interpolation), as MONAI's `compute_hausdorff_distance(percentile=95)` and
  DeepMind's surface-distance library compute it (the latter weights by surface area); MedPy's `hd95`
  takes the percentile of the pooled distances instead, which is never larger (docs/evaluation.md).
- A metric is NaN exactly when it is undefined, never a made-up 0 or 1:
  Dice is NaN when both masks are empty (0/0); precision when the prediction is empty; recall when the
  reference is empty; MSD and HD95 when either mask is empty (there is no surface to measure to).
  An empty prediction for a present organ therefore scores Dice 0 and recall 0, and a prediction of an
  absent organ scores Dice 0 and precision 0. Summaries count the undefined values instead of hiding them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from scipy.spatial import KDTree

METRIC_NAMES: Tuple[str, ...] = ("dice", "precision", "recall", "msd_mm", "hd95_mm")
METRIC_TITLES: Dict[str, str] = {"dice": "Dice", "precision": "Precision", "recall": "Recall",
                                 "msd_mm": "S2S dist. (mm)", "hd95_mm": "HD95 (mm)"}
METRIC_DECIMALS: Dict[str, int] = {"dice": 3, "precision": 3, "recall": 3, "msd_mm": 2, "hd95_mm": 2}

Box = Tuple[slice, ...]


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class in one case; NaN marks an undefined value (see the module docstring)."""

    dice: float
    precision: float
    recall: float
    msd_mm: float
    hd95_mm: float
    pred_voxels: int
    ref_voxels: int

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


BOTH_EMPTY = ClassMetrics(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0)
"""The metrics of a class absent from both volumes: all undefined."""


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each prediction surface voxel to the reference surface, and the reverse.

    Both masks must be non-empty. Works on the bounding box of their union: no margin is needed because
    the erosion treats everything outside the box as background, which it is.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    _check_inputs(pred, ref, spacing)
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    box = _union_box(ndimage.find_objects(pred.view(np.uint8))[0], ndimage.find_objects(ref.view(np.uint8))[0])
    scale = np.asarray(spacing, dtype=np.float64)
    pred_points = np.argwhere(_surface(pred[box])) * scale
    ref_points = np.argwhere(_surface(ref[box])) * scale
    pred_to_ref = KDTree(ref_points).query(pred_points)[0]
    ref_to_pred = KDTree(pred_points).query(ref_points)[0]
    return pred_to_ref, ref_to_pred


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks on the same grid: NaN when both are empty."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    return _ratio(2 * int(np.count_nonzero(pred & ref)), int(np.count_nonzero(pred)) + int(np.count_nonzero(ref)))


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> ClassMetrics:
    """Dice, precision, recall, MSD and HD95 of two boolean masks on the same grid (`spacing` in mm)."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    _check_inputs(pred, ref, spacing)
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    overlap = int(np.count_nonzero(pred & ref))
    msd = hd95 = math.nan
    if n_pred and n_ref:
        pred_to_ref, ref_to_pred = surface_distances(pred, ref, spacing)
        msd = float(np.concatenate([pred_to_ref, ref_to_pred]).mean())
        hd95 = float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))
    return ClassMetrics(
        dice=dice(pred, ref),
        precision=_ratio(overlap, n_pred),
        recall=_ratio(overlap, n_ref),
        msd_mm=msd,
        hd95_mm=hd95,
        pred_voxels=n_pred,
        ref_voxels=n_ref,
    )


def label_metrics(pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: Sequence[float],
                  labels: Iterable[int]) -> Dict[int, ClassMetrics]:
    """`binary_metrics` for each label value, each computed on the bounding box of that label in either volume.

    One pass over each volume finds every label's box, so large volumes with small organs stay cheap.
    """
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    _check_inputs(pred_labels, ref_labels, spacing)
    for name, array in (("prediction", pred_labels), ("reference", ref_labels)):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"the {name} label array has dtype {array.dtype}; label volumes must be integer")
    pred_boxes, ref_boxes = _label_boxes(pred_labels), _label_boxes(ref_labels)
    results: Dict[int, ClassMetrics] = {}
    for label in labels:
        box = _union_box(pred_boxes.get(label), ref_boxes.get(label))
        if box is None:
            results[label] = BOTH_EMPTY
        else:
            results[label] = binary_metrics(pred_labels[box] == label, ref_labels[box] == label, spacing)
    return results


def _label_boxes(labels: np.ndarray) -> Dict[int, Box]:
    """Bounding box of every positive label value present (one pass, scipy.ndimage.find_objects)."""
    positive = labels if labels.min(initial=0) >= 0 else np.where(labels > 0, labels, 0)
    return {value: box for value, box in enumerate(ndimage.find_objects(positive), start=1) if box is not None}


def _union_box(a: Optional[Box], b: Optional[Box]) -> Optional[Box]:
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(sa.start, sb.start), max(sa.stop, sb.stop)) for sa, sb in zip(a, b))


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _check_inputs(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}; "
                         "resample the prediction onto the reference grid first")
    if len(spacing) != pred.ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing {tuple(spacing)} must hold {pred.ndim} positive finite values (mm per axis)")
