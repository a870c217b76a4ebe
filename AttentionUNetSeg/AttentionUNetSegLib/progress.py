"""How a run reports its progress and is cancelled: the stages of a segmentation and of a fine-tuning, each with
its share of a progress bar, the progress event a fine-tuning reports, and the callbacks a run is given.

Torch-free, so that the Slicer panel and the worker protocol (worker/protocol.py) use the same stages as the
engine: a stage is an enum member, so every stage a run can report has its span.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from numbers import Real
from typing import Callable, Optional

from .errors import CancelledError


class Stage(Enum):
    """A stage of a run: its name (the value, as the command line prints it and the worker sends it) and the
    span [start, end] of the whole run's progress it fills, in the order the stages come."""

    def __new__(cls, name: str, start: float, end: float) -> "Stage":
        stage = object.__new__(cls)
        stage._value_ = name
        stage.start, stage.end = start, end
        return stage

    def overall(self, fraction: float) -> float:
        """The whole run's progress in [0, 1] when `fraction` of this stage is done."""
        return self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)


class SegmentationStage(Stage):
    """What a segmentation reports: the engine (preparing to done), the worker (saving) and the Slicer logic
    adding the output nodes (outputs)."""

    PREPARING = ("preparing", 0.0, 0.05)
    INFERENCE = ("inference", 0.05, 0.85)
    RESAMPLING = ("resampling", 0.85, 0.9)
    DONE = ("done", 0.9, 0.9)
    SAVING = ("saving", 0.9, 0.93)
    OUTPUTS = ("outputs", 0.93, 1.0)


class FineTuneStage(Stage):
    """What a fine-tuning reports (training.fine_tuning); the validations run only with a validation case."""

    PREPARING = ("preparing", 0.0, 0.05)
    VALIDATING_BEFORE = ("validating before", 0.05, 0.1)
    TRAINING = ("training", 0.1, 0.9)
    VALIDATING_AFTER = ("validating after", 0.9, 0.95)
    SAVING = ("saving", 0.95, 1.0)


@dataclass(frozen=True)
class ProgressEvent:
    """Progress: the stage, the fraction of it done and, while a fine-tuning trains, the step, the steps in all,
    the loss and the estimated seconds of training left."""

    stage: Stage
    fraction: float
    step: Optional[int] = None
    total_steps: Optional[int] = None
    loss: Optional[float] = None
    seconds_left: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.stage, Stage):
            raise TypeError(f"a progress event's stage is a Stage member, not {self.stage!r}")
        if not isinstance(self.fraction, Real) or isinstance(self.fraction, bool):
            raise TypeError(f"a progress event's fraction is a number, not {self.fraction!r}")

    @property
    def overall(self) -> float:
        """The whole run's progress in [0, 1]."""
        return self.stage.overall(self.fraction)


ProgressCallback = Callable[[SegmentationStage, float], None]
"""Called with a segmentation's stage and the fraction of that stage done."""
EventCallback = Callable[[ProgressEvent], None]
"""Called with a fine-tuning's progress events."""
CancelCheck = Callable[[], bool]
"""Polled between steps; True stops the run."""


def no_progress(stage: SegmentationStage, fraction: float) -> None:
    """A progress callback that reports nothing."""


def raise_if_cancelled(cancel: Optional[CancelCheck]) -> None:
    """Raise CancelledError when `cancel` says so; nothing has been written by then."""
    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled; nothing was written")
