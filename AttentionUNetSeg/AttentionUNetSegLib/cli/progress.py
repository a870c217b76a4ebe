"""Terminal progress bars: `segment`'s (stage, fraction) callback and a download's byte counts."""
from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm

from ..progress import SegmentationStage


class ProgressPrinter:
    """tqdm bar on a terminal; one line per stage when stderr is not a terminal; silent when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Optional[tqdm] = None
        self._stage: Optional[SegmentationStage] = None

    def __call__(self, stage: SegmentationStage, fraction: float) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self._stage = stage
            if self._bar is None and not sys.stderr.isatty():
                print(f"{stage.value}...", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            if self._bar is None:
                self._bar = tqdm(total=100, unit="%", file=sys.stderr,
                                 bar_format="{desc:<12} {bar} {n:3.0f}% {elapsed}")
            self._bar.set_description_str(stage.value)
            self._bar.n = round(100 * fraction)
            self._bar.refresh()

    def __enter__(self) -> "ProgressPrinter":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


class DownloadBar:
    """tqdm bar in bytes for `download`'s (received, total) callback; silent when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Optional[tqdm] = None

    def __call__(self, received: int, total: Optional[int]) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                             desc="download")
        self._bar.update(received - self._bar.n)

    def __enter__(self) -> "DownloadBar":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
