"""Errors in GUI slots: reported, and contained.

`slicer.util.tryWithErrorDisplay` shows an error and then raises it again; raised from setup() or from a
timer slot, it stops whatever was to follow (the rest of the panel, the end of a run).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Report = Callable[[str, Exception], None]


@contextmanager
def reportedErrors(message: str, report: Report) -> Iterator[None]:
    """Run the block; an Exception it raises goes to `report(message, error)` and no further."""
    try:
        yield
    except Exception as exc:
        report(message, exc)
