"""How long the rest of a training run takes: its steps and its validations at their measured pace, and how many
steps a time budget allows."""
from __future__ import annotations

from typing import Optional, Tuple


def time_left(steps: int, seconds_per_step: float, validations: int, seconds_per_validation: Optional[float]) -> str:
    """The time the rest of a run takes: its steps and its validations, each at its measured pace; before any
    validation has been timed, how many come on top of the steps' time."""
    seconds = steps * seconds_per_step
    if not validations:
        return f"about {_duration(seconds)} left"
    if seconds_per_validation is None:
        return f"about {_duration(seconds)} left + {validations} validation(s), not yet timed"
    seconds += validations * seconds_per_validation
    return f"about {_duration(seconds)} left, {validations} validation(s) included"


def seconds_per_step(steps: int, seconds: float, start: Tuple[int, float]) -> float:
    """The pace of the steps made since `start`, the run's (steps, seconds of training) when this process began or
    resumed it: a run resumed on another machine, or on a busier or quieter one, is timed at its pace now. Before
    its first step here, the run's pace so far."""
    start_steps, start_seconds = start
    if steps > start_steps:
        return (seconds - start_seconds) / (steps - start_steps)
    return seconds / max(steps, 1)


def steps_at_end(done: int, total: int, used: float, max_seconds: Optional[float]) -> int:
    """The steps a run will have made at its end: all `total`, or as many as the time budget `max_seconds`
    allows at the pace so far (`used` seconds of training for the `done` steps)."""
    if max_seconds is None:
        return total
    affordable = int(max(max_seconds - used, 0.0) * done / max(used, 1e-9))
    return min(total, done + affordable)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"
