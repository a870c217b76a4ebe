"""A worker started before it is needed (`python -m AttentionUNetSegLib.worker --standby`).

Loading the engine (PyTorch and the rest) is most of a worker's start: about 2 s of a click on a 2-core laptop
(docs/benchmarks.md). A standby worker loads it while the user picks a volume (and, told which model and
settings to expect, reads the model and builds its backend), then waits for the path of its job folder on
stdin; the next background segmentation hands it the job (background.BackgroundRun) instead of starting a
worker. It serves one job. It ends when released, and by itself when its stdin closes, so it never
outlives the program that started it, however that program ends.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from AttentionUNetSegLib.inference.settings import InferenceSettings

from .processes import killProcessGroup
from .workers import pythonExecutable, startWorker


class StandbyWorker:
    """A worker process that has loaded (or is loading) the engine and waits for a job."""

    def __init__(self, python: Optional[str] = None, model: Optional[str] = None,
                 settings: Optional[InferenceSettings] = None) -> None:
        """`python`: the interpreter (or a launcher of it) that runs the worker; default `pythonExecutable()`.
        With `settings`, the worker also reads `model` and builds its backend for a segmentation with them
        (another job still runs, with a model made ready then)."""
        from AttentionUNetSegLib.worker.jobs import standby_arguments

        self.python = python or pythonExecutable()
        self.arguments = standby_arguments(model, settings)
        self.process = startWorker(self.python, self.arguments, stdin=subprocess.PIPE)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def expects(self, python: Optional[str] = None, model: Optional[str] = None,
                settings: Optional[InferenceSettings] = None) -> bool:
        """Whether this worker was started as `StandbyWorker(python, model, settings)` would start one."""
        from AttentionUNetSegLib.worker.jobs import standby_arguments

        return (python or pythonExecutable()) == self.python and standby_arguments(model, settings) == self.arguments

    def handOver(self, jobDir: Path) -> Optional[subprocess.Popen]:
        """Give the worker the job in `jobDir` and return its process (now running the job); None when the
        worker has ended, and nothing was handed over."""
        if not self.alive:
            return None
        try:
            self.process.stdin.write(os.fsencode(str(jobDir)) + b"\n")
            self.process.stdin.close()
        except OSError:  # it ended meanwhile
            return None
        return self.process

    def release(self) -> None:
        """End the worker and anything it started; returns at once."""
        killProcessGroup(self.process)
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
