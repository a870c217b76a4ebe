"""The callbacks a run is given: progress reports and cancel checks."""
from __future__ import annotations

from typing import Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[str, float], None]
"""Called with a stage name and the fraction of that stage done."""
CancelCheck = Callable[[], bool]
"""Polled between steps; True stops the run."""


def no_progress(stage: str, fraction: float) -> None:
    """A progress callback that reports nothing."""


def raise_if_cancelled(cancel: Optional[CancelCheck]) -> None:
    """Raise CancelledError when `cancel` says so; nothing has been written by then."""
    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled; nothing was written")
