"""The worker protocol: every stage a run can report has its span of the progress bar, the events go through one
serialiser and one parser unchanged, anything else the worker prints is a log line, and a real worker's run reports
progress that never goes back."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import SimpleITK as sitk

from AttentionUNetSegLib.errors import AttentionUNetSegError, ModelFileError
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.progress import FineTuneStage, ProgressEvent, SegmentationStage, Stage
from AttentionUNetSegLib.worker.arguments import WorkerArguments, parse_arguments, segmentation_job, standby_arguments
from AttentionUNetSegLib.worker.jobs import write_job
from AttentionUNetSegLib.worker.protocol import DoneEvent, ErrorEvent, Event, LogEvent, parse, serialise

STAGES = [SegmentationStage, FineTuneStage]


@pytest.mark.parametrize("stages", STAGES, ids=lambda stages: stages.__name__)
def test_the_stages_fill_the_bar_in_order(stages: type) -> None:
    """Each stage has a span; one starts where the one before ended, from 0 to 1."""
    members: List[Stage] = list(stages)
    assert members[0].start == 0.0
    assert members[-1].end == 1.0
    for stage in members:
        assert stage.start <= stage.end, stage
    for before, after in zip(members, members[1:]):
        assert before.end == after.start, (before, after)
    assert [stage.overall(0.5) for stage in members] == sorted(stage.overall(0.5) for stage in members)


def test_a_stage_is_a_member_not_a_name() -> None:
    with pytest.raises(TypeError, match="Stage member"):
        ProgressEvent("inference", 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="number"):
        ProgressEvent(SegmentationStage.INFERENCE, None)  # type: ignore[arg-type]


def test_overall_progress_is_clipped_to_the_stages_span() -> None:
    assert SegmentationStage.INFERENCE.overall(-1.0) == SegmentationStage.INFERENCE.start
    assert SegmentationStage.INFERENCE.overall(2.0) == SegmentationStage.INFERENCE.end
    assert FineTuneStage.TRAINING.overall(0.5) == pytest.approx(0.5)


def every_event() -> List[Event]:
    events: List[Event] = [ProgressEvent(stage, 0.25) for stages in STAGES for stage in stages]
    return events + [ProgressEvent(FineTuneStage.TRAINING, 0.5, 3, 6, 0.125, 42.5), LogEvent("a line"),
                     DoneEvent(), ErrorEvent("ModelFileError", "the file is corrupt")]


@pytest.mark.parametrize("event", every_event(), ids=repr)
def test_every_event_goes_through_the_wire_unchanged(event: Event) -> None:
    stages = type(event.stage) if isinstance(event, ProgressEvent) else SegmentationStage
    line = serialise(event)
    assert "\n" not in line
    assert parse(line, stages) == event


def test_the_wire_format_is_plain_json() -> None:
    """What earlier workers sent, field for field (None fields left out)."""
    assert serialise(ProgressEvent(SegmentationStage.INFERENCE, 0.5)) == \
        '{"event": "progress", "stage": "inference", "fraction": 0.5}'
    assert serialise(ProgressEvent(FineTuneStage.TRAINING, 0.5, 1, 2, 0.25, 3.0)) == \
        ('{"event": "progress", "stage": "training", "fraction": 0.5, "step": 1, "total_steps": 2, "loss": 0.25, '
         '"seconds_left": 3.0}')
    assert serialise(DoneEvent()) == '{"event": "done"}'
    assert serialise(ErrorEvent("CancelledError", "stop")) == \
        '{"event": "error", "type": "CancelledError", "message": "stop"}'


@pytest.mark.parametrize("line", [
    "plain text from a library", "", "[1, 2]", '{"no": "event"}', '{"event": "unknown"}',
    '{"event": "progress", "stage": "validating", "fraction": 0.5}',  # a stage of no run of this kind
    '{"event": "progress", "stage": "training", "fraction": 0.5}',  # a fine-tuning's, in a segmentation
    '{"event": "progress", "stage": "inference"}', '{"event": "progress", "stage": "inference", "fraction": "half"}',
    '{"event": "done", "extra": 1}',
])
def test_anything_else_is_a_log_line(line: str) -> None:
    assert parse(line, SegmentationStage) == LogEvent(line)


def test_an_error_event_gives_back_the_engines_exception() -> None:
    error = ErrorEvent.of(ModelFileError("the weights do not match"))
    assert error == ErrorEvent("ModelFileError", "the weights do not match")
    raised = error.exception()
    assert type(raised) is ModelFileError
    assert str(raised) == "the weights do not match"
    assert type(ErrorEvent("KeyError", "x").exception()) is AttentionUNetSegError  # not one of the engine's errors
    assert "without a message" in str(ErrorEvent("ModelFileError", "").exception())


def test_a_real_workers_progress_never_goes_back(tmp_path: Path, tiny_model_path: Path, small_ct: sitk.Image) -> None:
    """Every line the worker prints for a segmentation is an event of its stages; the bar only moves on."""
    write_job(tmp_path, small_ct, model=tiny_model_path, settings=InferenceSettings(device="cpu"))
    worker = subprocess.run([sys.executable, "-m", "AttentionUNetSegLib.worker", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    events = [parse(line, SegmentationStage) for line in worker.stdout.splitlines()]
    assert not [event for event in events if isinstance(event, LogEvent)]
    assert events[-1] == DoneEvent()
    progress = [event for event in events if isinstance(event, ProgressEvent)]
    assert [stage for stage in dict.fromkeys(event.stage for event in progress)] == [
        SegmentationStage.PREPARING, SegmentationStage.INFERENCE, SegmentationStage.RESAMPLING,
        SegmentationStage.DONE, SegmentationStage.SAVING]
    overall = [event.overall for event in progress]
    assert overall == sorted(overall)


def test_the_workers_command_line_reads_what_the_logic_writes() -> None:
    settings = InferenceSettings(attention=False)
    expected = parse_arguments(standby_arguments("model.safetensors", settings, prebuild_on_gpu=True))
    assert expected.standby
    assert expected.prebuild_on_gpu
    assert json.loads(expected.expected_job) == segmentation_job("model.safetensors", settings)
    assert parse_arguments(standby_arguments()) == WorkerArguments()
    assert parse_arguments(["/tmp/job"]) == WorkerArguments(job_dir=Path("/tmp/job"))


@pytest.mark.parametrize("arguments", [[], ["a", "b"], ["--standby", "{}", "{}"], ["--prebuild-on-gpu"],
                                       ["--standby", "--other"]])
def test_a_wrong_command_line_is_a_usage_error(arguments: List[str]) -> None:
    with pytest.raises(ValueError, match="usage: python -m AttentionUNetSegLib.worker"):
        parse_arguments(arguments)
    done = subprocess.run([sys.executable, "-m", "AttentionUNetSegLib.worker", *arguments], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    assert "usage:" in done.stderr
