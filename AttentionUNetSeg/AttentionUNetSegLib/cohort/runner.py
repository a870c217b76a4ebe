"""Segment the cases of a cohort with one loaded model, skipping those already complete in the output folder.

The model is made ready once (inference.Segmenter), while the first CT is read. Then three steps overlap: while
case k is segmented, a reader thread reads case k+1's CT and a writer thread writes case k-1's outputs; the
writer takes a case only once the previous one is written, so at most two results (and one CT read ahead) are
held. Each case's outputs are staged and committed as one set, by the writer thread, so a failure or Ctrl-C
leaves every earlier case whole and the case it stopped in absent.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, List, Optional, Sequence, Tuple

import torch

from ..errors import AttentionUNetSegError, DiskFullError, OutputError
from ..inference.case_outputs import (
    CaseInput,
    ModelRecord,
    RunRecord,
    is_complete,
    read_case,
    refuse_other_models,
    remove_error,
    stage_case,
    write_error,
)
from ..inference.segmenter import SegmentationResult, Segmenter
from ..inference.settings import InferenceSettings
from ..io.atomic import StagedOutputs
from ..io.disk_space import is_no_room
from ..progress import ProgressCallback, no_progress
from .inputs import CohortCase

ProgressBars = Callable[[], ContextManager[ProgressCallback]]
CaseWritten = Callable[[CohortCase, dict], None]
"""Called with a case and its summary record once its outputs are committed."""


@dataclass
class CohortOutcome:
    """The names of the cases segmented, skipped as complete, and failed (with their messages), of those failed
    whose `<name>_error.json` found no room on the disk; and why the run stopped before its end (a full disk), if
    it did."""

    done: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    unrecorded: List[str] = field(default_factory=list)
    stopped: Optional[str] = None


@dataclass(frozen=True)
class CohortJob:
    """What one run does: `cases` segmented with `model` (loaded, read from `model_file`) and `settings`,
    outputs in `output` in `output_format` (an image format or dicom-seg); `overwrite` redoes complete cases."""

    cases: Sequence[CohortCase]
    model: torch.nn.Module
    model_file: str
    settings: InferenceSettings
    output: Path
    output_format: str
    overwrite: bool = False


def check_output_folder(job: CohortJob, cohort: Sequence[CohortCase]) -> None:
    """Refuse, before any work, an output folder holding cases of `cohort` made with another model (unless
    overwriting), and make the folder."""
    if not job.overwrite:
        refuse_other_models(job.output, [case.name for case in cohort], job.model.sha256)
    try:
        job.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {job.output}: {exc.strerror}; choose a folder you can "
                          "write to with -o") from exc


def run_cohort(job: CohortJob, say: Callable[[str], None] = lambda line: None,
               bars: ProgressBars = lambda: nullcontext(no_progress),
               written: CaseWritten = lambda case, summary: None) -> CohortOutcome:
    """Segment every case of `job` not already complete; a case failing with an AttentionUNetSegError is
    recorded as `<name>_error.json` and the run goes on, unless the disk is full: then the run stops there
    (every later case would fail too), keeping the cases written. `say` receives a line per case and the ETA;
    `bars` makes each case's progress callback; `written` is called (in the writer thread) with each case
    written."""
    run = RunRecord(ModelRecord.of(job.model, job.model_file), job.settings, job.output_format)
    outcome = CohortOutcome()
    total = len(job.cases)
    todo: List[Tuple[int, CohortCase]] = []
    for k, case in enumerate(job.cases, 1):
        if not job.overwrite and is_complete(job.output, case.name, run):
            say(f"case {k}/{total}: {case.name}: already complete, skipped")
            outcome.skipped.append(case.name)
        else:
            todo.append((k, case))
    started = time.perf_counter()
    with ThreadPoolExecutor(1, "cohort-reader") as reader, ThreadPoolExecutor(1, "cohort-writer") as writer:
        reading = reader.submit(_read, todo[0][1].path, job.output_format) if todo else None
        segmenter = Segmenter(job.model, job.settings) if todo else None
        writing: Optional[Future] = None
        for position, (k, case) in enumerate(todo):
            if outcome.stopped:
                break
            say(f"case {k}/{total}: {case.name}")
            image_job = reading
            reading = (reader.submit(_read, todo[position + 1][1].path, job.output_format)
                       if position + 1 < len(todo) else None)
            try:
                case_input, read_s = image_job.result()
                clock = time.perf_counter()
                with bars() as progress:
                    result = segmenter(case_input.image, progress=progress)
                case_input.image = None
                result.timings = {"read_s": read_s, **result.timings}
                elapsed_s = read_s + time.perf_counter() - clock
            except AttentionUNetSegError as exc:
                _fail(job, case, run.model, exc, outcome, say, f"case {k}/{total}")
                continue
            if writing is not None:
                writing.result()
            if outcome.stopped:  # this case was segmented, but there is no room to write it
                break
            writing = writer.submit(_write, job, case, result, case_input, run, elapsed_s, outcome,
                                    say, f"case {k}/{total}", written)
            del result, case_input
            segmented = position + 1
            left = len(todo) - segmented
            if left:
                mean = (time.perf_counter() - started) / segmented
                say(f"cohort: {segmented} of {len(todo)} case(s) segmented, about {_duration(left * mean)} left")
        if writing is not None:
            writing.result()
    return outcome


def _read(path: Path, output_format: str) -> Tuple[CaseInput, float]:
    clock = time.perf_counter()
    return read_case(path, output_format), time.perf_counter() - clock


def _write(job: CohortJob, case: CohortCase, result: SegmentationResult, case_input: CaseInput, run: RunRecord,
           elapsed_s: float, outcome: CohortOutcome, say: Callable[[str], None], label: str,
           written: CaseWritten) -> None:
    """Write and commit one case's outputs (in the writer thread); a failed write is the case's failure."""
    try:
        with StagedOutputs(job.output) as outputs:
            summary = stage_case(result, outputs, case.name, case.path, run, elapsed_s, case_input.seg_sources)
            outputs.commit()
    except AttentionUNetSegError as exc:
        _fail(job, case, run.model, exc, outcome, say, label)
        if isinstance(exc, DiskFullError):
            outcome.stopped = str(exc)
        return
    remove_error(job.output, case.name)
    outcome.done.append(case.name)
    written(case, summary)


def _fail(job: CohortJob, case: CohortCase, model: ModelRecord, error: AttentionUNetSegError, outcome: CohortOutcome,
          say: Callable[[str], None], label: str) -> None:
    outcome.failed.append((case.name, str(error)))
    say(f"{label}: {case.name} failed: {error}")
    try:
        write_error(job.output, case.name, case.path, model, error)
    except OSError as exc:
        if not is_no_room(exc):
            raise
        outcome.unrecorded.append(case.name)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
