"""A background run as the panel follows it, with no panel needed: progress, stages, log lines and its end.

The panel's timer calls `tick()` until an update says `ended`; the ending update holds the outputs
(their first attention gate already shown in the slice views) or the error. Nothing here refers to the
panel or its parameter node, so leaving the module or losing the parameter node during a run does not
change how the run ends: outputs shown, or the error handed over to be reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import slicer
from AttentionUNetSegLib.errors import CancelledError

from .background import BackgroundSegmentation
from .outputs import DEFAULT_THRESHOLD, SegmentationOutputs

# Share of the progress bar for each stage reported by the engine, the worker and the output writer.
_STAGE_SPANS: Dict[str, Tuple[float, float]] = {
    "preparing": (0.0, 0.05), "inference": (0.05, 0.85), "resampling": (0.85, 0.9), "done": (0.9, 0.9),
    "saving": (0.9, 0.93), "outputs": (0.93, 1.0),
}


def overallProgress(stage: str, fraction: float) -> Optional[float]:
    """Progress of the whole run in [0, 1] for a stage's own fraction; None for an unknown stage."""
    if stage not in _STAGE_SPANS:
        return None
    start, end = _STAGE_SPANS[stage]
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


@dataclass(frozen=True)
class MapLook:
    """How an attention map is shown: opacity over the CT, lower threshold, colour map (None: the heat map)."""

    opacity: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    colorNode: Optional[slicer.vtkMRMLColorNode] = None


ShowMap = Callable[[slicer.vtkMRMLScalarVolumeNode, float, float, Optional[slicer.vtkMRMLColorNode]], None]


@dataclass
class RunUpdate:
    """What happened since the last tick."""

    progress: Optional[float] = None
    """Overall fraction of the latest progress event (None: no news)."""
    stages: List[str] = field(default_factory=list)
    """Stages entered, in order."""
    messages: List[str] = field(default_factory=list)
    """The worker's log lines."""
    ended: bool = False
    outputs: Optional[SegmentationOutputs] = None
    shownGate: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    error: Optional[BaseException] = None
    """Why the run failed or was cancelled (CancelledError), or why its outputs could not be shown."""

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)


class RunFollower:
    """Drives a BackgroundSegmentation tick by tick and shows its outputs when it ends.

    `showMap(volume, opacity, threshold, colorNode)` shows a map (the logic's showMap); `look()` is asked
    for the map settings only when the outputs are there (the panel's, or MapLook() without a panel).
    """

    def __init__(self, run: BackgroundSegmentation, showMap: ShowMap, look: Callable[[], MapLook] = MapLook) -> None:
        self.run = run
        self._showMap = showMap
        self._look = look
        self._stage: Optional[str] = None

    def tick(self) -> RunUpdate:
        """Hand out the run's events; when it has ended, show its outputs and say how it ended. Never raises."""
        update = RunUpdate()
        for event in self.run.poll():
            kind = event.get("event")
            if kind == "progress":
                self._progress(update, str(event.get("stage")), event.get("fraction"))
            elif kind == "log":  # an "error" event becomes the run's error, reported once it has ended
                update.messages.append(str(event.get("message", "")))
        if not self.run.done:
            return update
        update.ended = True
        try:
            update.outputs = self.run.result()
            update.shownGate = next(iter(update.outputs.attention.values()), None)
            if update.shownGate is not None:
                look = self._look()
                self._showMap(update.shownGate, look.opacity, look.threshold, look.colorNode)
        except Exception as exc:
            update.error = exc
        return update

    def _progress(self, update: RunUpdate, stage: str, fraction) -> None:
        overall = overallProgress(stage, float(fraction)) if isinstance(fraction, (int, float)) else None
        if overall is not None:
            update.progress = overall
        if stage != self._stage:
            self._stage = stage
            update.stages.append(stage)
