"""A terminal progress bar fed by `segment`'s (stage, fraction) callback."""
from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm


class ProgressPrinter:
    """tqdm bar on a terminal; one line per stage when stderr is not a terminal; silent when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Optional[tqdm] = None
        self._stage: Optional[str] = None

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self._stage = stage
            if self._bar is None and not sys.stderr.isatty():
                print(f"{stage}...", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            if self._bar is None:
                self._bar = tqdm(total=100, unit="%", file=sys.stderr,
                                 bar_format="{desc:<12} {bar} {n:3.0f}% {elapsed}")
            self._bar.set_description_str(stage)
            self._bar.n = round(100 * fraction)
            self._bar.refresh()

    def __enter__(self) -> "ProgressPrinter":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
