"""What the worker tells the program that started it: one event per line on stdout, as JSON.

`{"event": "progress", "stage": "inference", "fraction": 0.5}` (a fine-tuning's training steps add `step`,
`total_steps`, `loss` and `seconds_left`), `{"event": "log", "message": ...}`, `{"event": "done"}` and
`{"event": "error", "type": <exception class>, "message": ...}`. `serialise` writes them and `parse` reads them
back; any other line (a library printing to stdout, the launcher's own output) is a log line. Torch-free: the
Slicer logic reads the events without the engine.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Type, Union

from .. import errors
from ..errors import AttentionUNetSegError
from ..progress import ProgressEvent, Stage


@dataclass(frozen=True)
class LogEvent:
    """A line of the worker's output that is not an event (its log goes to stderr, which is merged in)."""

    message: str


@dataclass(frozen=True)
class DoneEvent:
    """The job's outputs are whole: the worker exits next."""


@dataclass(frozen=True)
class ErrorEvent:
    """The job failed: the exception's class name and message."""

    type: str
    message: str

    @classmethod
    def of(cls, error: AttentionUNetSegError) -> "ErrorEvent":
        return cls(type(error).__name__, str(error))

    def exception(self) -> AttentionUNetSegError:
        """The exception this event describes (this package's class where it names one)."""
        cls = getattr(errors, self.type, None)
        if not (isinstance(cls, type) and issubclass(cls, AttentionUNetSegError)):
            cls = AttentionUNetSegError
        return cls(self.message or "the worker process failed without a message")


Event = Union[ProgressEvent, LogEvent, DoneEvent, ErrorEvent]
_KINDS = {"progress": ProgressEvent, "log": LogEvent, "done": DoneEvent, "error": ErrorEvent}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def serialise(event: Event) -> str:
    """The event as one line of JSON (no newline); a progress event's stage by its name, fields that are None
    left out."""
    record = {"event": _KIND_OF[type(event)]}
    for name, value in asdict(event).items():
        if value is not None:
            record[name] = value.value if isinstance(value, Stage) else value
    return json.dumps(record)


def parse(line: str, stages: Type[Stage]) -> Event:
    """The event a line of the worker's output holds, its stage one of `stages`; a LogEvent of the line for
    anything else (not JSON, not an event, an unknown stage or field)."""
    try:
        record = json.loads(line)
        cls = _KINDS[record.pop("event")]
        if cls is ProgressEvent:
            record["stage"] = stages(record["stage"])
        if set(record) - {field.name for field in fields(cls)}:
            raise TypeError("unknown fields")
        return cls(**record)
    except (ValueError, TypeError, KeyError, AttributeError):
        return LogEvent(line)
