"""A background run as the panel follows it, with no panel needed: progress, stages, log lines and its end.

The panel's timer calls `tick()` until an update says `ended`. A segmentation's ending update holds the outputs
(their first attention gate shown in the slice views when the panel is) or the error; a fine-tuning's holds the new
model's name or the error. Nothing here refers to the panel or its parameter node, so leaving the module or
losing the parameter node during a run does not change how the run ends: outputs shown, or the error handed
over to be reported. The progress bar's share of each stage is the stage's own (AttentionUNetSegLib.progress).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, List, Optional, Type, TypeVar

import slicer
from AttentionUNetSegLib.errors import CancelledError
from AttentionUNetSegLib.progress import FineTuneStage, ProgressEvent, Stage
from AttentionUNetSegLib.worker.protocol import LogEvent

from .background import BackgroundRun, BackgroundSegmentation
from .outputs import DEFAULT_THRESHOLD, SegmentationOutputs


@dataclass(frozen=True)
class MapLook:
    """How an attention map is shown: opacity over the CT, lower threshold, colour map (None: the heat map)."""

    opacity: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    colorNode: Optional[slicer.vtkMRMLColorNode] = None


ShowMap = Callable[[slicer.vtkMRMLScalarVolumeNode, float, float, Optional[slicer.vtkMRMLColorNode]], None]


@dataclass
class Update:
    """What happened in a background run since the last tick."""

    progress: Optional[float] = None
    """Overall fraction of the latest progress event (None: no news)."""
    stages: List[Stage] = field(default_factory=list)
    """Stages entered, in order."""
    messages: List[str] = field(default_factory=list)
    """The worker's log lines."""
    ended: bool = False
    error: Optional[BaseException] = None
    """Why the run failed or was cancelled (CancelledError), or why its result could not be shown."""

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)


@dataclass
class RunUpdate(Update):
    """A segmentation's update; when it has ended, its outputs and the gate shown."""

    outputs: Optional[SegmentationOutputs] = None
    shownGate: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    """The gate shown in the slice views as the run ended (None: none, or the panel was not shown)."""


@dataclass
class FineTuneUpdate(Update):
    """A fine-tuning's update: the latest training step in words; when it has ended, the new model's name."""

    status: str = ""
    """E.g. "step 12 of 100, loss 0.4321, about 2 min left"."""
    modelName: Optional[str] = None


UpdateType = TypeVar("UpdateType", bound=Update)


class Follower(Generic[UpdateType]):
    """Drives a BackgroundRun tick by tick: hands out its progress, stages and log lines, and its result or
    error when it has ended. Subclasses say what an update holds (`updateType`) and what to make of a progress
    event (`_progressed`) and of the result (`_ended`)."""

    updateType: Type[UpdateType]

    def __init__(self, run: BackgroundRun) -> None:
        self.run = run
        self._stage: Optional[Stage] = None

    def tick(self) -> UpdateType:
        """Hand out the run's events; when it has ended, its result or error. Never raises."""
        update = self.updateType()
        for event in self.run.poll():
            if isinstance(event, ProgressEvent):
                update.progress = event.overall
                if event.stage is not self._stage:
                    self._stage = event.stage
                    update.stages.append(event.stage)
                self._progressed(update, event)
            elif isinstance(event, LogEvent):  # an error event becomes the run's error, reported once it has ended
                update.messages.append(event.message)
        if not self.run.done:
            return update
        update.ended = True
        try:
            self._ended(update, self.run.result())
        except Exception as exc:
            update.error = exc
        return update

    def _progressed(self, update: UpdateType, event: ProgressEvent) -> None:
        """A progress event beyond its stage and overall progress."""

    def _ended(self, update: UpdateType, result: object) -> None:
        """Put the finished run's `result` into the ending update (raising says why it cannot be shown)."""
        raise NotImplementedError


class RunFollower(Follower[RunUpdate]):
    """Follows a BackgroundSegmentation and, when it ends, shows its first attention gate in the slice views if
    `shown()` says the panel is shown (a run that ends while the user works in another module leaves the views
    alone).

    `showMap(volume, opacity, threshold, colorNode)` shows a map (the logic's showMap); `look()` is asked
    for the map settings only when the outputs are there (the panel's, or MapLook() without a panel).
    """

    updateType = RunUpdate

    def __init__(self, run: BackgroundSegmentation, showMap: ShowMap, look: Callable[[], MapLook] = MapLook,
                 shown: Callable[[], bool] = lambda: True) -> None:
        super().__init__(run)
        self._showMap = showMap
        self._look = look
        self._shown = shown

    def _ended(self, update: RunUpdate, result: SegmentationOutputs) -> None:
        update.outputs = result
        gate = next(iter(result.attention.values()), None)
        if gate is not None and self._shown():
            look = self._look()
            self._showMap(gate, look.opacity, look.threshold, look.colorNode)
            update.shownGate = gate


class FineTuneFollower(Follower[FineTuneUpdate]):
    """Follows a background fine-tuning (logic.startFineTune)."""

    updateType = FineTuneUpdate

    def _progressed(self, update: FineTuneUpdate, event: ProgressEvent) -> None:
        if event.stage is FineTuneStage.TRAINING and event.step:
            update.status = stepStatus(event)

    def _ended(self, update: FineTuneUpdate, result: str) -> None:
        update.modelName = result


def stepStatus(event: ProgressEvent) -> str:
    """A training step's progress event in words."""
    text = f"step {event.step} of {event.total_steps if event.total_steps is not None else '?'}"
    if event.loss is not None:
        text += f", loss {event.loss:.4f}"
    if event.seconds_left is not None:
        minutes = event.seconds_left / 60.0
        text += f", about {minutes:.0f} min left" if minutes >= 1 else ", under a minute left"
    return text
