"""Background worker: `python -m AttentionUNetSegLib.worker JOB_DIR`, for a segmentation or a fine-tuning.

The Slicer module runs `segment` (or `fine_tune`) in this separate process so that its GUI stays responsive
and a run can be cancelled by ending the process. Files are exchanged through JOB_DIR:

- segmentation: `job.json` and `input.nrrd`, written by `write_job` in the calling process; `result.json`,
  `labels.nrrd`, `attention-<n>.nii`, `probability-<n>.nii`, written by the worker and read back by
  `read_result` as a `SegmentationResult`. The maps travel on the model's grid (a few MB each; on the input's
  grid a whole CT's are hundreds of MB) and are resampled onto the input's grid when read, as `segment` does
  (ResampledMaps): the same values as in-process;
- fine-tuning: `job.json` (kind "fine_tune") and `case-<n>-ct.nrrd`/`case-<n>-labels.nrrd`, written by
  `write_fine_tune_job`; `result.json` and the new model file in `work/`, read back by `read_fine_tune_result`
  as a `FineTuneResult` (the caller registers the model: a killed worker leaves none).

With `--standby [--prebuild-on-gpu] [JOB]` instead of JOB_DIR (arguments.py) the worker loads the engine first
(PyTorch and the rest: most of a worker's start) and, given the job.json it expects (`standby_arguments`), makes
that job's Segmenter ready if it runs on the CPU (on a GPU only when asked: its backend would hold GPU memory while
it waits); then it waits for the job folder's path, one line on stdin. The job runs with the ready Segmenter if it is the one
expected and the model file is unchanged, else with a new one. stdin closing without a path ends the worker
quietly (status 0), so a standby worker never outlives the program that started it.

Progress goes to stdout as one event per line (protocol.py), then a done or an error event; the exit status is 0
on success, 1 when the run failed, 2 on a usage error. Log messages go to stderr.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple, Union

import SimpleITK as sitk

from ..backends.telemetry_off import keep_telemetry_off
from ..errors import AttentionUNetSegError
from ..inference.result import ResampledMaps, SegmentationResult
from ..inference.settings import InferenceSettings
from ..io.grid import Grid
from ..io.images import read_map, write_map
from ..models.segment_classes import SegmentClass
from ..progress import ProgressEvent, SegmentationStage
from .arguments import WorkerArguments, parse_arguments, segmentation_job
from .protocol import DoneEvent, ErrorEvent, Event, serialise

JOB_FILE = "job.json"
INPUT_FILE = "input.nrrd"
RESULT_FILE = "result.json"
LABELS_FILE = "labels.nrrd"
FINE_TUNE = "fine_tune"
READY_MESSAGE = "the model was made ready before the job came"

if TYPE_CHECKING:
    from ..inference.segmenter import Segmenter
    from ..training.fine_tuning import FineTuneCase, FineTuneResult, FineTuneSettings

Emit = Callable[[Event], None]


def write_job(job_dir: Path, image: sitk.Image, *, model: Union[str, Path, None] = None,
              settings: InferenceSettings = InferenceSettings()) -> None:
    """Write the input image, the model and the settings of one run into `job_dir` (which must exist)."""
    job_dir = Path(job_dir)
    sitk.WriteImage(image, str(job_dir / INPUT_FILE), False)
    (job_dir / JOB_FILE).write_text(json.dumps(segmentation_job(model, settings)), encoding="utf-8")


def write_fine_tune_job(job_dir: Path, cases: Sequence["FineTuneCase"], settings: "FineTuneSettings",
                        validation: Optional["FineTuneCase"] = None) -> None:
    """Write the cases, the validation case and the settings of one fine-tuning into `job_dir` (which must exist)."""
    entries = []
    for index, case in enumerate([*cases, *([validation] if validation is not None else [])]):
        files = {"image": f"case-{index}-ct.nrrd", "labels": f"case-{index}-labels.nrrd"}
        sitk.WriteImage(case.image, str(job_dir / files["image"]), False)
        sitk.WriteImage(case.labels, str(job_dir / files["labels"]), False)
        entries.append({"name": case.name, **files})
    job = {"kind": FINE_TUNE, "settings": asdict(settings), "cases": entries[:len(cases)],
           "validation": entries[len(cases)] if validation is not None else None}
    (Path(job_dir) / JOB_FILE).write_text(json.dumps(job), encoding="utf-8")


@dataclass(frozen=True)
class _Prepared:
    """The Segmenter a standby worker made ready for the `job` (job.json's content) it was told to expect, and
    the model file's state when it read it."""

    job: dict
    model_state: Optional[Tuple[int, int]]
    segmenter: "Segmenter"

    def serves(self, job: dict) -> bool:
        return job == self.job and _model_state(job["model"]) == self.model_state


def _model_state(model: Optional[str]) -> Optional[Tuple[int, int]]:
    """A model file's size and modification time; None for the registry's default or a missing file."""
    try:
        state = os.stat(model) if model else None
    except OSError:
        return None
    return None if state is None else (state.st_size, state.st_mtime_ns)


def run_job(job_dir: Path, emit: Emit, prepared: Optional[_Prepared] = None) -> None:
    """Run the job in `job_dir` (a segmentation or a fine-tuning) and write its outputs there; `emit` receives
    the progress events."""
    job_dir = Path(job_dir)
    job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    if job.get("kind") == FINE_TUNE:
        _run_fine_tune(job_dir, job, emit)
    else:
        _run_segmentation(job_dir, job, emit, prepared)


def _segmenter(job: dict) -> "Segmenter":
    from ..inference.segmenter import Segmenter

    return Segmenter(job["model"], InferenceSettings(**job["settings"]))


def _run_segmentation(job_dir: Path, job: dict, emit: Emit, prepared: Optional[_Prepared]) -> None:
    with ThreadPoolExecutor(1, "reader") as reader:
        reading = reader.submit(sitk.ReadImage, str(job_dir / INPUT_FILE))  # while the model is made ready
        if prepared is not None and prepared.serves(job):
            logging.getLogger(__name__).info(READY_MESSAGE)
            segmenter = prepared.segmenter
        else:
            segmenter = _segmenter(job)
        image = reading.result()
    result = segmenter(image, progress=lambda stage, fraction: emit(ProgressEvent(stage, fraction)))
    emit(ProgressEvent(SegmentationStage.SAVING, 0.0))
    sitk.WriteImage(result.labels, str(job_dir / LABELS_FILE), True)
    summary = {"classes": [c.to_dict() for c in result.classes],
               "attention": _write_maps(job_dir, "attention", result.attention),
               "probabilities": None if result.probabilities is None else
               _write_maps(job_dir, "probability", result.probabilities),
               "device": result.device, "precision": result.precision, "backend": result.backend,
               "timings": result.timings,
               "warnings": result.warnings}
    (job_dir / RESULT_FILE).write_text(json.dumps(summary), encoding="utf-8")


def _run_fine_tune(job_dir: Path, job: dict, emit: Emit) -> None:
    from ..training.fine_tuning import FineTuneCase, FineTuneSettings, fine_tune

    def case(entry: dict) -> FineTuneCase:
        return FineTuneCase(entry["name"], sitk.ReadImage(str(job_dir / entry["image"])),
                            sitk.ReadImage(str(job_dir / entry["labels"])))

    work = job_dir / "work"
    work.mkdir()
    result = fine_tune([case(entry) for entry in job["cases"]], FineTuneSettings(**job["settings"]), work,
                       validation=case(job["validation"]) if job["validation"] else None,
                       progress=emit)
    (job_dir / RESULT_FILE).write_text(json.dumps(result.to_dict()), encoding="utf-8")


def read_fine_tune_result(job_dir: Path) -> "FineTuneResult":
    """The `FineTuneResult` a finished fine-tuning job wrote (its model file still in `job_dir`)."""
    from ..training.fine_tuning import FineTuneResult

    return FineTuneResult.from_dict(json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding="utf-8")))


def _write_maps(job_dir: Path, prefix: str, maps: ResampledMaps) -> dict:
    """Write every map's model-grid values as `<prefix>-<n>.nii` (float32, uncompressed); return what
    `_read_maps` needs: map name -> file name, the model grid and the step."""
    files = {name: f"{prefix}-{index}.nii" for index, name in enumerate(maps)}
    for name, file in files.items():
        write_map(maps.source_maps[name], maps.source, job_dir / file)
    return {"files": files, "grid": asdict(maps.source), "step": maps.step}


def _read_maps(job_dir: Path, record: dict, grid: Grid) -> ResampledMaps:
    """The maps `_write_maps` wrote, resampled onto `grid` when read."""
    source = Grid(**{key: tuple(value) for key, value in record["grid"].items()})
    return ResampledMaps({name: read_map(job_dir / file) for name, file in record["files"].items()}, source, grid,
                         record["step"])


def read_result(job_dir: Path) -> SegmentationResult:
    """The `SegmentationResult` a finished job wrote (its maps read into memory on the model grid); without
    PyTorch, as the Slicer logic reads it in Slicer's own process."""
    job_dir = Path(job_dir)
    summary = json.loads((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
    labels = sitk.ReadImage(str(job_dir / LABELS_FILE))
    probabilities = summary["probabilities"]
    return SegmentationResult(
        labels=labels,
        classes=[SegmentClass.from_dict(c) for c in summary["classes"]],
        attention=_read_maps(job_dir, summary["attention"], Grid.of(labels)),
        probabilities=None if probabilities is None else _read_maps(job_dir, probabilities, Grid.of(labels)),
        device=summary["device"],
        precision=summary["precision"],
        backend=summary["backend"],
        timings=summary["timings"],
        warnings=summary["warnings"],
    )


def _print_event(event: Event) -> None:
    print(serialise(event), flush=True)


def _prepare(arguments: WorkerArguments) -> Optional[_Prepared]:
    """Load the engine and, for the job a standby worker expects (job.json's text), make its Segmenter ready where
    it runs on the CPU (or anywhere, asked to); a job that cannot be made ready now is left to fail, with its
    message, when it runs."""
    expected = arguments.expected_job
    job = json.loads(expected) if expected is not None else None
    state = _model_state(job["model"]) if job is not None else None  # before the file is read: a change then shows
    from ..backends.selection import openvino_installed
    from ..inference import segmenter  # noqa: F401  (PyTorch, SimpleITK and the engine's modules)
    from ..backends.device import resolve_device

    if openvino_installed():  # backends.openvino imports OpenVINO only when a backend is built: load it now
        import openvino  # noqa: F401

        from ..backends import openvino as openvino_backend  # noqa: F401
    if job is None:
        return None
    try:
        device = resolve_device(InferenceSettings(**job["settings"]).device)
        if device.type != "cpu" and not arguments.prebuild_on_gpu:
            logging.getLogger(__name__).info("the model is made ready on %s when the job comes", device)
            return None
        return _Prepared(job, state, _segmenter(job))
    except Exception as exc:  # the job reports it, if it is run
        logging.getLogger(__name__).info("the expected job's model was not made ready: %s", exc)
        return None


def _job_dir_from_stdin() -> Optional[Path]:
    """The job folder's path, one line on stdin; None when stdin closes without one."""
    line = sys.stdin.buffer.readline().rstrip(b"\r\n")
    return Path(os.fsdecode(line)) if line else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the job in the folder given as the only argument (or, as a standby worker, read from stdin once the
    engine is loaded: arguments.py); 0 on success or when stdin closed first, 1 on failure, 2 on a usage error."""
    keep_telemetry_off()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        prepared = _prepare(arguments) if arguments.standby else None
        job_dir = _job_dir_from_stdin() if arguments.standby else arguments.job_dir
        if job_dir is None:
            return 0
        run_job(job_dir, _print_event, prepared)
    except AttentionUNetSegError as exc:
        _print_event(ErrorEvent.of(exc))
        return 1
    except Exception as exc:  # reported to the parent too, with the traceback on stderr
        logging.getLogger(__name__).exception("unexpected failure")
        _print_event(ErrorEvent.of(AttentionUNetSegError(f"{type(exc).__name__}: {exc}")))
        return 1
    _print_event(DoneEvent())
    return 0

