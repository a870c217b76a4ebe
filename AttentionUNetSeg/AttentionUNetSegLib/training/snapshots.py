"""Attention-map snapshots as PNG (the paper's Fig. 3): watch the gates learn where to look.

One figure per validation: the CT slice, reference and prediction, then every gate's coefficients over
the CT. Drawn with matplotlib (the `train` extra) without pyplot; without matplotlib, snapshots are skipped.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.atomic import atomic_file
from ..models.segment_classes import SegmentClass
from .validation import Snapshot

log = logging.getLogger(__name__)

CT_WINDOW = (-160.0, 240.0)  # abdomen, W400 L40


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: attention-map snapshots are skipped "
                    "(pip install 'AttentionUNetSeg[train]')")
        return False
    return True


def write_snapshot(snapshot: Snapshot, classes: Sequence[SegmentClass], title: str, path: Path,
                   aspect: float = 1.0) -> Path:
    """Draw `snapshot` into a PNG at `path` (atomically); `aspect` is row spacing / column spacing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("reference", snapshot.reference), ("prediction", snapshot.prediction)]
    panels += list(snapshot.attention.items())
    columns = 3
    rows = math.ceil((len(panels) + 1) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows), dpi=100)
    FigureCanvasAgg(figure)
    figure.suptitle(f"{title} - {snapshot.case}, axial slice {snapshot.slice_index}")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes:
        axis.set_axis_off()
    axes[0].imshow(snapshot.ct, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], aspect=aspect)
    axes[0].set_title("CT")
    for axis, (name, values) in zip(axes[1:], panels):
        axis.imshow(snapshot.ct, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], aspect=aspect)
        if name in ("reference", "prediction"):
            axis.imshow(_label_colours(values, classes), aspect=aspect)
        else:
            shown = axis.imshow(values, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.5, aspect=aspect)
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        axis.set_title(name)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _label_colours(labels: np.ndarray, classes: Sequence[SegmentClass]) -> np.ndarray:
    """RGBA image of the labels in their class colours, background transparent."""
    rgba = np.zeros(labels.shape + (4,), dtype=np.float32)
    for segment in classes:
        if segment.value:
            rgba[labels == segment.value] = [*(np.array(segment.color) / 255.0), 0.6]
    return rgba
