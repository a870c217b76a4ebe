"""Starting the engine's worker process (`python -m AttentionUNetSegLib.worker`): which interpreter runs it and
where it finds the engine. Used by a background run (background.py) and a worker started ahead (standby.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import slicer

from .processes import startProcessGroup


def startWorker(python: str, arguments: Sequence[str], stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m AttentionUNetSegLib.worker ARGUMENTS` in a process group of its own (processes.py), finding
    this engine first on its path."""
    return startProcessGroup([python, "-m", "AttentionUNetSegLib.worker", *arguments],
                             env={**os.environ, "PYTHONPATH": _pythonPath()}, stdin=stdin)


def pythonExecutable() -> str:
    """Slicer's own Python interpreter (PythonSlicer) inside Slicer, else the running interpreter."""
    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def _pythonPath() -> str:
    """PYTHONPATH for the worker: the folder holding AttentionUNetSegLib first, then the current one."""
    import AttentionUNetSegLib

    libraryParent = str(Path(AttentionUNetSegLib.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (libraryParent, os.environ.get("PYTHONPATH", "")) if p)
