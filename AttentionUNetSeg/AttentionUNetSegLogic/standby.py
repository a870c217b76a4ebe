"""A worker started before it is needed (`python -m AttentionUNetSegLib.worker --standby`).

Loading the engine (PyTorch and the rest) is most of a worker's start: about 2 s of a click on a 2-core laptop
(docs/benchmarks.md). A standby worker loads it while the user picks a volume, then waits for the path of its
job folder on stdin; the next background segmentation hands it the job (background.BackgroundRun) instead of
starting a worker. It serves one job. It ends when released, and by itself when its stdin closes, so it never
outlives the program that started it, however that program ends.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from .background import pythonExecutable, startWorker
from .processes import killProcessGroup


class StandbyWorker:
    """A worker process that has loaded (or is loading) the engine and waits for a job."""

    def __init__(self, python: Optional[str] = None) -> None:
        """`python`: the interpreter (or a launcher of it) that runs the worker; default `pythonExecutable()`."""
        from AttentionUNetSegLib.worker import STANDBY

        self.python = python or pythonExecutable()
        self.process = startWorker(self.python, STANDBY, stdin=subprocess.PIPE)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

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
        try:
            self.process.stdin.close()
        except OSError:
            pass
