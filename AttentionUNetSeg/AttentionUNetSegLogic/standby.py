"""A worker started before it is needed (`python -m AttentionUNetSegLib.worker --standby`).

Loading the engine (PyTorch and the rest) is most of a worker's start: about 2 s of a click on a 2-core laptop
(docs/benchmarks.md). A standby worker loads it while the user picks a volume (and, told which model and
settings to expect, reads the model and builds its backend on the CPU), then waits for the path of its job
folder on stdin; the next background segmentation hands it the job (background.BackgroundRun) instead of
starting a worker. It serves one job. It holds a few hundred MB, so it is released (its process group killed)
after `idleSeconds` without a job, and by its owner (the logic: scene closed, fine-tuning started); it ends by
itself when its stdin closes, so it never outlives the program that started it, however that program ends. A
thread waits for its process, so a killed worker leaves no zombie.
"""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Optional

from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.worker.arguments import standby_arguments

from .processes import killProcessGroup
from .workers import pythonExecutable, startWorker

IDLE_RELEASE_S = 600.0
"""How long a standby worker waits for a job before it is released (its memory given back)."""


class StandbyWorker:
    """A worker process that has loaded (or is loading) the engine and waits for a job."""

    def __init__(self, python: Optional[str] = None, model: Optional[str] = None,
                 settings: Optional[InferenceSettings] = None, idleSeconds: float = IDLE_RELEASE_S,
                 prebuildOnGpu: bool = False) -> None:
        """`python`: the interpreter (or a launcher of it) that runs the worker; default `pythonExecutable()`.
        With `settings`, the worker also reads `model` and builds its backend for a segmentation with them if it
        runs on the CPU (on a GPU too with `prebuildOnGpu`); another job still runs, with a model made ready
        then. Released after `idleSeconds` without a job."""
        self.python = python or pythonExecutable()
        self.arguments = standby_arguments(model, settings, prebuildOnGpu)
        self.process = startWorker(self.python, self.arguments, stdin=subprocess.PIPE)
        self._lock = threading.Lock()  # a hand-over and a release agree on which one happens
        self._released = False
        threading.Thread(target=self.process.wait, name="standby worker reaper", daemon=True).start()
        self._idleTimer = threading.Timer(idleSeconds, self.release)
        self._idleTimer.daemon = True
        self._idleTimer.start()

    @property
    def alive(self) -> bool:
        return not self._released and self.process.poll() is None

    def expects(self, python: Optional[str] = None, model: Optional[str] = None,
                settings: Optional[InferenceSettings] = None, prebuildOnGpu: bool = False) -> bool:
        """Whether this worker was started as `StandbyWorker(python, model, settings, ..., prebuildOnGpu)` would
        start one."""
        return ((python or pythonExecutable()) == self.python
                and standby_arguments(model, settings, prebuildOnGpu) == self.arguments)

    def handOver(self, jobDir: Path) -> Optional[subprocess.Popen]:
        """Give the worker the job in `jobDir` and return its process (now running the job); None when the
        worker has ended or was released, and nothing was handed over."""
        with self._lock:
            if not self.alive:
                return None
            self._idleTimer.cancel()
            try:
                self.process.stdin.write(os.fsencode(str(jobDir)) + b"\n")
                self.process.stdin.close()
            except OSError:  # it ended meanwhile
                return None
            self._released = True  # the job's now: releasing it would end the run
            return self.process

    def release(self) -> None:
        """End the worker and anything it started (unless it was handed a job); returns at once."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._idleTimer.cancel()
            killProcessGroup(self.process)
            for pipe in (self.process.stdin, self.process.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
