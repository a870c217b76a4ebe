"""Segmentation and fine-tuning in a separate Python process, advanced by polling so that a GUI stays responsive.

The inputs and options go into a temporary job folder (AttentionUNetSegLib.worker), the worker prints one
event per line on stdout (AttentionUNetSegLib.worker.protocol), a reader thread queues those lines, and `poll()`
(called from the main thread, e.g. by a qt.QTimer) hands them out as events. When the worker says it is done,
`poll()` commits its outputs (adds the nodes to the scene, or registers the fine-tuned model) while the worker
exits. `cancel()` kills the worker's
whole process group (see processes.py) and returns at once: it never waits for the process or the reader.
"""
from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Type

import slicer
from AttentionUNetSegLib.errors import AttentionUNetSegError, CancelledError, InputImageError
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.progress import SegmentationStage, Stage
from AttentionUNetSegLib.worker.protocol import DoneEvent, ErrorEvent, Event, parse

from .outputs import SegmentationOutputs
from .processes import killProcessGroup
from .standby import StandbyWorker
from .workers import pythonExecutable, startWorker

if TYPE_CHECKING:
    import SimpleITK as sitk

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
Commit = Callable[[object, float], SegmentationOutputs]
"""Adds the nodes for a finished segmentation: (engine result, seconds since the run started) -> outputs."""


class BackgroundRun:
    """One job running in a worker process; a future whose `poll()` drives it to completion.

    `writeJob(folder)` writes the job into its (new, empty) folder; `commit(folder, seconds)` turns the finished
    job's files into the run's result. `watched`: nodes the job reads; deleting one stops the run. `what` names
    the job in messages ("segmentation", "fine-tuning"); `stages` are those its progress events report."""

    def __init__(self, writeJob: Callable[[Path], None], commit: Callable[[Path, float], object],
                 watched: Sequence[slicer.vtkMRMLNode], what: str, stages: Type[Stage], python: Optional[str] = None,
                 standby: Optional[StandbyWorker] = None) -> None:
        """`python`: the interpreter (or a launcher of it) that runs the worker; default `pythonExecutable()`.
        `standby`: a worker started ahead with the same interpreter runs the job if it is still there (else it is
        released and a worker started)."""
        self.watched = list(watched)
        self.what = what
        self.stages = stages
        self.state = RUNNING
        self.started = time.monotonic()
        self._commit = commit
        self._result: Optional[object] = None
        self._error: Optional[BaseException] = None
        self._failure: Optional[ErrorEvent] = None
        self._completed = False  # the worker said "done"
        self._lock = threading.Lock()  # the reader's end and a stop agree on who removes the job folder
        self._ended = False
        self._jobDir = Path(tempfile.mkdtemp(prefix="AttentionUNetSeg-"))
        try:
            writeJob(self._jobDir)
            self._process = _workerFor(self._jobDir, python or pythonExecutable(), standby)
        except BaseException:
            shutil.rmtree(self._jobDir, ignore_errors=True)
            if standby is not None:
                standby.release()
            raise
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._readLines, daemon=True)
        self._reader.start()

    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def poll(self) -> List[Event]:
        """Events since the last call (progress, log, and the run's done or error); finishes the run when the worker
        says it is done or has ended."""
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
            event = parse(line, self.stages)
            events.append(event)
            if isinstance(event, ErrorEvent):
                self._failure = event
            elif isinstance(event, DoneEvent):  # its outputs are whole: the worker's exit is not waited for
                self._completed = finished = True
                break
        deleted = next((node for node in self.watched if node.GetScene() is None), None)
        if not finished and deleted is not None:
            self._stop(InputImageError(self._deletedMessage(deleted)), FAILED)
        elif finished:
            self._finish()
        return events

    def cancel(self) -> None:
        """Kill the worker and its process group and return at once; nothing is added (no nodes, no model)."""
        if not self.done:
            self._stop(CancelledError(f"{self.what.capitalize()} cancelled; nothing was added."), CANCELLED)

    def result(self):
        """The committed result of a successful run; raises why the run failed or was cancelled, or if it still
        runs."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError(f"the {self.what} is still running: call poll() until done")
        return self._result

    def _deletedMessage(self, node: slicer.vtkMRMLNode) -> str:
        return f"'{node.GetName()}' was deleted during the {self.what}; nothing was added."

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
        try:
            if not self._completed:
                raise self._failure.exception() if self._failure else AttentionUNetSegError(
                    f"the {self.what} process ended with exit status {self._process.returncode}; see the log")
            self._result = self._commit(self._jobDir, time.monotonic() - self.started)
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


class BackgroundSegmentation(BackgroundRun):
    """A segmentation of `inputVolume` in a worker; its result is the SegmentationOutputs `commit` adds."""

    def __init__(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, image: sitk.Image, model: Optional[str],
                 settings: InferenceSettings, commit: Commit, python: Optional[str] = None,
                 standby: Optional[StandbyWorker] = None) -> None:
        from AttentionUNetSegLib.worker import jobs as worker

        self.inputVolume = inputVolume
        super().__init__(lambda folder: worker.write_job(folder, image, model=model, settings=settings),
                         lambda folder, seconds: commit(worker.read_result(folder), seconds),
                         [inputVolume], "segmentation", SegmentationStage, python, standby)

    def _deletedMessage(self, node: slicer.vtkMRMLNode) -> str:
        return f"The input volume '{node.GetName()}' was deleted while it was being segmented; nothing was added."


def _workerFor(jobDir: Path, python: str, standby: Optional[StandbyWorker]) -> subprocess.Popen:
    """The standby worker, given the job, where it runs `python` and is still there; else a new worker."""
    if standby is not None:
        process = standby.handOver(jobDir) if standby.python == python else None
        if process is not None:
            return process
        standby.release()
    return startWorker(python, [str(jobDir)])
