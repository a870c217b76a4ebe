"""Segmentation in a separate Python process, advanced by polling so that a GUI stays responsive.

The input image and options go into a temporary job folder (AttentionUNetSegLib.worker), the
worker prints one JSON event per line on stdout, a reader thread queues those lines, and `poll()`
(called from the main thread, e.g. by a qt.QTimer) hands them out. When the worker has finished,
`poll()` reads its outputs and adds the nodes to the scene. `cancel()` kills the worker's whole
process group (see processes.py) and returns at once: it never waits for the process or the reader.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import SimpleITK as sitk

import slicer
from AttentionUNetSegLib.errors import AttentionUNetSegError, CancelledError, InputImageError
from AttentionUNetSegLib.inference_settings import InferenceSettings

from .outputs import SegmentationOutputs
from .processes import killProcessGroup, startProcessGroup

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
Commit = Callable[[object, float], SegmentationOutputs]
"""Adds the nodes for a finished run: (engine result, seconds since the run started) -> outputs."""


def pythonExecutable() -> str:
    """Slicer's own Python interpreter (PythonSlicer) inside Slicer, else the running interpreter."""
    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


class BackgroundSegmentation:
    """One segmentation running in a worker process; a future whose `poll()` drives it to completion."""

    def __init__(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, image: sitk.Image, model: Optional[str],
                 settings: InferenceSettings, commit: Commit, python: Optional[str] = None) -> None:
        """`python`: the interpreter (or a launcher of it) that runs the worker; default `pythonExecutable()`."""
        from AttentionUNetSegLib import worker

        self.inputVolume = inputVolume
        self.state = RUNNING
        self.started = time.monotonic()
        self._commit = commit
        self._outputs: Optional[SegmentationOutputs] = None
        self._error: Optional[BaseException] = None
        self._failure: Optional[dict] = None
        self._lock = threading.Lock()  # the reader's end and a stop agree on who removes the job folder
        self._ended = False
        self._jobDir = Path(tempfile.mkdtemp(prefix="AttentionUNetSeg-"))
        try:
            worker.write_job(self._jobDir, image, model=model, settings=settings)
            self._process = startProcessGroup(
                [python or pythonExecutable(), "-m", "AttentionUNetSegLib.worker", str(self._jobDir)],
                env={**os.environ, "PYTHONPATH": _pythonPath()})
        except BaseException:
            shutil.rmtree(self._jobDir, ignore_errors=True)
            raise
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._readLines, daemon=True)
        self._reader.start()

    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def poll(self) -> List[dict]:
        """Events since the last call (progress, log); finishes the run when the worker has ended."""
        if self.done:
            return []
        events = []
        finished = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                finished = True
                break
            event = _parse(line)
            if event["event"] == "error":
                self._failure = event
            events.append(event)
        if not finished and self.inputVolume.GetScene() is None:
            self._stop(InputImageError(f"The input volume '{self.inputVolume.GetName()}' was deleted while it was "
                                       "being segmented; nothing was added."), FAILED)
        elif finished:
            self._finish()
        return events

    def cancel(self) -> None:
        """Kill the worker and its process group and return at once; nothing is added to the scene."""
        if not self.done:
            self._stop(CancelledError("Segmentation cancelled; nothing was added."), CANCELLED)

    def result(self) -> SegmentationOutputs:
        """The outputs of a successful run; raises why the run failed or was cancelled, or if it still runs."""
        if self._error is not None:
            raise self._error
        if self._outputs is None:
            raise RuntimeError("the segmentation is still running: call poll() until done")
        return self._outputs

    def _readLines(self) -> None:
        """Reader thread: queue the output lines (any bytes decode), then, whatever happened, the end (None)."""
        try:
            for line in self._process.stdout:
                self._lines.put(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        finally:
            self._process.wait()
            with self._lock:
                self._ended = True
                stopped = self.state != RUNNING
            if stopped:  # cancelled or abandoned while the worker ran: the folder is no one else's to remove
                shutil.rmtree(self._jobDir, ignore_errors=True)
            self._lines.put(None)

    def _finish(self) -> None:
        from AttentionUNetSegLib import worker

        try:
            if self._process.returncode != 0:
                raise worker.error_from_event(self._failure) if self._failure else AttentionUNetSegError(
                    f"the segmentation process ended with exit status {self._process.returncode}; see the log")
            self._outputs = self._commit(worker.read_result(self._jobDir), time.monotonic() - self.started)
            self.state = SUCCEEDED
        except Exception as exc:
            self._error = exc
            self.state = FAILED
        finally:
            shutil.rmtree(self._jobDir, ignore_errors=True)

    def _stop(self, error: BaseException, state: str) -> None:
        """End the run as `state` without waiting: the reader thread sees the pipe close and tidies up."""
        with self._lock:
            self._error = error
            self.state = state
            ended = self._ended
        if ended:
            shutil.rmtree(self._jobDir, ignore_errors=True)
        else:
            killProcessGroup(self._process)


def _parse(line: str) -> dict:
    """A worker's JSON event, or a log event for any other output line."""
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "log", "message": line}
    return event if isinstance(event, dict) and "event" in event else {"event": "log", "message": line}


def _pythonPath() -> str:
    """PYTHONPATH for the worker: the folder holding AttentionUNetSegLib first, then the current one."""
    import AttentionUNetSegLib

    libraryParent = str(Path(AttentionUNetSegLib.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (libraryParent, os.environ.get("PYTHONPATH", "")) if p)
