"""The background (separate process) path: same labels as in process, progress, cancel (also behind a launcher
like PythonSlicer), output that is not UTF-8, failures, deleted input, a worker started ahead (standby)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
import SimpleITK as sitk
from safetensors import safe_open
from safetensors.torch import save_file
from slicer_scene import MODULE_DIR, add_volume, scene_state

import slicer
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.errors import CancelledError, InputImageError, ModelFileError
from AttentionUNetSegLib.progress import ProgressEvent, SegmentationStage
from AttentionUNetSegLib.worker.jobs import READY_MESSAGE, write_job
from AttentionUNetSegLib.worker.protocol import DoneEvent, ErrorEvent, LogEvent, serialise
from AttentionUNetSegLogic import AttentionUNetSegLogic
from AttentionUNetSegLogic.background import CANCELLED, FAILED, SUCCEEDED, BackgroundRun
from AttentionUNetSegLogic.outputs import EditedSegmentationError
from AttentionUNetSegLogic.processes import killProcessGroup
from AttentionUNetSegLogic.standby import StandbyWorker
from AttentionUNetSegLogic.workers import startWorker

LABELS_ONLY = InferenceSettings(attention=False)
"""No attention maps: the labels, faster."""
WITH_ATTENTION = InferenceSettings(attention=True)
ALL_MAPS = InferenceSettings(attention=True, probabilities=True)


TIMEOUT_S = 300
CANCEL_BOUND_S = 5.0
"""The issue asks for cancel() within a second; the bound is generous for a loaded 2-core machine, and the
measured time is printed (pytest -s) and recorded in the test report."""


def drive(run: BackgroundRun, until=lambda events: False) -> list:
    """Poll `run` (as the panel's timer does) until it is done or `until(events so far)`; return the events."""
    events = []
    deadline = time.monotonic() + TIMEOUT_S
    while not run.done and not until(events):
        assert time.monotonic() < deadline, "the background run did not finish in time"
        events += run.poll()
        time.sleep(0.05)
    return events


def labels_of(segmentation: slicer.vtkMRMLSegmentationNode) -> dict:
    return {segment_id: slicer.util.arrayFromSegmentInternalBinaryLabelmap(segmentation, segment_id).copy()
            for segment_id in segmentation.GetSegmentation().GetSegmentIDs()}


def started_inference(events: list) -> bool:
    return any(isinstance(e, ProgressEvent) and e.stage is SegmentationStage.INFERENCE for e in events)


def test_background_gives_the_in_process_labels_and_maps(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "Patient B CT")
    logic = AttentionUNetSegLogic()
    in_process = logic.process(node, tiny_model_path, settings=WITH_ATTENTION)
    expected_labels = labels_of(in_process.segmentation)
    expected_maps = {gate: slicer.util.arrayFromVolume(volume).copy() for gate, volume in in_process.attention.items()}

    run = logic.startBackground(node, tiny_model_path, settings=WITH_ATTENTION)
    events = drive(run)

    assert run.state == SUCCEEDED, run.result()
    outputs = run.result()
    assert outputs.segmentation is not in_process.segmentation  # each run its own node
    assert in_process.segmentation.GetScene() is scene
    actual_labels = labels_of(outputs.segmentation)
    assert list(actual_labels) == list(expected_labels)
    for segment_id, labels in expected_labels.items():
        np.testing.assert_array_equal(actual_labels[segment_id], labels, err_msg=segment_id)
    assert sum(labels.sum() for labels in expected_labels.values()) > 0
    assert list(outputs.attention) == list(expected_maps)
    for gate, values in expected_maps.items():
        np.testing.assert_allclose(slicer.util.arrayFromVolume(outputs.attention[gate]), values, atol=1e-6)
    assert outputs.volumesMl == pytest.approx(in_process.volumesMl)
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    fractions = [e.fraction for e in progress if e.stage is SegmentationStage.INFERENCE]
    assert fractions, "no inference progress"
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    overall = [e.overall for e in progress]
    assert overall == sorted(overall), "the panel's bar went back"
    assert overall[-1] >= 0.9
    assert events[-1] == DoneEvent()
    assert not run._jobDir.exists()


def test_cancel_ends_the_process_and_adds_nothing(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "CT")
    before = scene_state(scene)
    run = AttentionUNetSegLogic().startBackground(node, tiny_model_path, ALL_MAPS)
    drive(run, until=started_inference)
    assert not run.done
    run.cancel()
    assert run.state == CANCELLED
    assert run.poll() == []
    with pytest.raises(CancelledError, match="nothing was added"):
        run.result()
    assert scene_state(scene) == before
    run._reader.join(TIMEOUT_S)  # the test may wait for the reader; cancel() does not
    assert run._process.poll() is not None
    assert not run._jobDir.exists()


def launcher(folder: Path, before_python: str = "") -> str:
    """A launcher like PythonSlicer: a shell script that runs the real interpreter as its child (no exec) and
    waits for it, after running the shell command `before_python`."""
    script = folder / "PythonLauncher"
    script.write_text(f"#!/bin/sh\n{before_python}\n\"{sys.executable}\" \"$@\"\nexit $?\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def living_members(group: int) -> List[int]:
    """Processes of a process group that have not exited (zombies excluded), read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc (Linux)")
def test_cancel_behind_a_launcher_returns_at_once_and_leaves_no_worker(scene, patient_b: sitk.Image,
                                                                      tiny_model_path: Path, tmp_path: Path,
                                                                      record_property) -> None:
    node = add_volume(scene, patient_b, "CT")
    before = scene_state(scene)
    run = AttentionUNetSegLogic().startBackground(node, tiny_model_path, ALL_MAPS,
                                                  python=launcher(tmp_path))
    drive(run, until=started_inference)
    group = run._process.pid
    workers = living_members(group)
    assert len(workers) == 2, workers  # the launcher and the interpreter it started

    started = time.perf_counter()
    run.cancel()
    seconds = time.perf_counter() - started

    record_property("cancel_seconds", round(seconds, 4))
    print(f"\ncancel() behind the launcher returned after {seconds * 1000:.1f} ms")
    assert seconds < CANCEL_BOUND_S, f"cancel() took {seconds:.2f} s"
    assert run.state == CANCELLED
    assert scene_state(scene) == before
    run._reader.join(TIMEOUT_S)
    assert not run._reader.is_alive()
    assert ended(group)  # a killed process may take a moment to go (a loaded machine, a large heap)
    assert not run._jobDir.exists()


def test_output_that_is_not_utf8_does_not_stop_the_run(scene, small_ct: sitk.Image, tiny_model_path: Path,
                                                       tmp_path: Path) -> None:
    """Bytes that are not UTF-8 (a library's message in a Windows code page, say) are decoded with replacement
    characters; the reader thread keeps reading and the run ends as usual."""
    node = add_volume(scene, small_ct, "CT")
    run = AttentionUNetSegLogic().startBackground(
        node, tiny_model_path, LABELS_ONLY, python=launcher(tmp_path, r"printf 'Temp\351rature \377\n'"))
    events = drive(run)
    assert run.state == SUCCEEDED, run.result()
    assert LogEvent("Temp\ufffdrature \ufffd") in events
    assert not run._jobDir.exists()


def test_corrupt_weights_fail_in_the_worker_and_add_nothing(scene, small_ct: sitk.Image, tiny_model_path: Path,
                                                            tmp_path: Path) -> None:
    corrupt = tmp_path / "missing-weights.safetensors"
    with safe_open(str(tiny_model_path), framework="pt") as handle:  # header intact, one weight missing
        save_file({key: handle.get_tensor(key) for key in sorted(handle.keys())[1:]}, str(corrupt), handle.metadata())
    node = add_volume(scene, small_ct, "CT")
    before = scene_state(scene)
    run = AttentionUNetSegLogic().startBackground(node, corrupt)
    events = drive(run)
    assert run.state == FAILED
    assert any(isinstance(e, ErrorEvent) and e.type == "ModelFileError" for e in events)
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        run.result()
    assert scene_state(scene) == before


def test_editing_the_chosen_segmentation_during_the_run_stops_its_commit(scene, patient_b: sitk.Image,
                                                                         tiny_model_path: Path) -> None:
    """The output node was checked as the run started; an edit made while the worker ran is not overwritten."""
    node = add_volume(scene, patient_b, "CT")
    logic = AttentionUNetSegLogic()
    target = logic.process(node, tiny_model_path, settings=LABELS_ONLY).segmentation
    run = logic.startBackground(node, tiny_model_path, ALL_MAPS, outputSegmentation=target)
    before = scene_state(scene)
    drive(run, until=started_inference)
    target.GetSegmentation().GetSegment("liver").SetName("Liver (corrected)")
    drive(run)
    assert run.state == FAILED
    with pytest.raises(EditedSegmentationError, match="'CT segmentation' was edited while it was being segmented"):
        run.result()
    assert scene_state(scene) == before
    assert target.GetSegmentation().GetSegment("liver").GetName() == "Liver (corrected)"


def test_input_deleted_while_running_adds_nothing(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "CT")
    before_nodes, before_items = scene_state(scene)
    run = AttentionUNetSegLogic().startBackground(node, tiny_model_path)
    drive(run, until=started_inference)
    scene.RemoveNode(node)
    drive(run)
    assert run.state == FAILED
    with pytest.raises(InputImageError, match="deleted while it was being segmented"):
        run.result()
    assert scene_state(scene)[0] == before_nodes - {node.GetID()}


RESULT_INTO_A_SCENE = """
import json, sys
from pathlib import Path
sys.path[:0] = sys.argv[1:3]
import SimpleITK as sitk
from slicer_scene import add_volume, new_scene
from AttentionUNetSegLib.worker.jobs import read_result
from AttentionUNetSegLogic.outputs import writeOutputs
job = Path(sys.argv[3])
node = add_volume(new_scene(Path(sys.argv[4])), sitk.ReadImage(str(job / "input.nrrd")), "CT")
outputs = writeOutputs(node, read_result(job), 1.0)
print(json.dumps({"loaded": sorted(set(sys.argv[5:]) & set(sys.modules)), "gates": len(outputs.attention),
                  "segments": outputs.segmentation.GetSegmentation().GetNumberOfSegments()}))
"""


def test_a_workers_result_reaches_the_scene_without_torch(small_ct: sitk.Image, tiny_model_path: Path,
                                                          tmp_path: Path) -> None:
    """What poll() does when the worker says it is done (read its result, add the nodes), in a fresh interpreter:
    Slicer's process gets the labels and maps without loading PyTorch (SimpleITK it loads: a run needs it)."""
    job = tmp_path / "job"
    job.mkdir()
    write_job(job, small_ct, model=tiny_model_path, settings=WITH_ATTENTION)
    worker = startWorker(sys.executable, [str(job)])
    assert worker.communicate(timeout=TIMEOUT_S)[0].decode().splitlines()[-1] == serialise(DoneEvent())
    testing = Path(__file__).resolve().parents[1]  # Testing/, which holds slicer_scene.py
    output = subprocess.run([sys.executable, "-c", RESULT_INTO_A_SCENE, str(testing), str(MODULE_DIR), str(job),
                             str(tmp_path / "cache"), "torch", "monai", "openvino"],
                            capture_output=True, text=True, check=True)
    committed = json.loads(output.stdout.strip().splitlines()[-1])
    assert committed["loaded"] == []
    assert committed["segments"] == 4
    assert committed["gates"] == 6


def test_a_standby_worker_runs_the_next_segmentation(scene, small_ct: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, small_ct, "CT")
    logic = AttentionUNetSegLogic()
    expected = labels_of(logic.process(node, tiny_model_path, settings=LABELS_ONLY).segmentation)
    logic.prepareWorker(tiny_model_path, settings=LABELS_ONLY)
    standby = logic._standby.process
    logic.prepareWorker(tiny_model_path, settings=LABELS_ONLY)  # one is waiting: no second one
    assert logic._standby.process is standby

    run = logic.startBackground(node, tiny_model_path, settings=LABELS_ONLY)
    # the standby took the job, once
    assert run._process is standby
    assert logic._standby is None
    events = drive(run)
    assert run.state == SUCCEEDED, run.result()
    actual = labels_of(run.result().segmentation)
    assert list(actual) == list(expected)
    for segment_id, labels in expected.items():
        np.testing.assert_array_equal(actual[segment_id], labels, err_msg=segment_id)
    assert events[-1] == DoneEvent()
    assert not run._jobDir.exists()
    assert standby.wait(TIMEOUT_S) == 0
    assert made_ready(events)


def test_a_standby_worker_behind_a_launcher_gets_its_job(scene, small_ct: sitk.Image, tiny_model_path: Path,
                                                         tmp_path: Path) -> None:
    """PythonSlicer runs the interpreter as its child and forwards its stdin to it, as this launcher does."""
    node = add_volume(scene, small_ct, "CT")
    logic = AttentionUNetSegLogic()
    python = launcher(tmp_path)
    logic.prepareWorker(tiny_model_path, settings=LABELS_ONLY, python=python)
    standby = logic._standby.process
    run = logic.startBackground(node, tiny_model_path, settings=LABELS_ONLY, python=python)
    assert run._process is standby
    events = drive(run)
    assert run.state == SUCCEEDED, run.result()
    assert made_ready(events)
    assert standby.wait(TIMEOUT_S) == 0


def made_ready(events: list) -> bool:
    """Whether the worker ran the job with the model a standby worker had made ready for it."""
    return any(isinstance(e, LogEvent) and READY_MESSAGE in e.message for e in events)


def test_a_standby_worker_makes_a_new_model_for_another_job_or_a_changed_file(
        scene, small_ct: sitk.Image, tiny_model_path: Path, tmp_path: Path) -> None:
    node = add_volume(scene, small_ct, "CT")
    logic = AttentionUNetSegLogic()
    logic.prepareWorker(tiny_model_path, settings=WITH_ATTENTION)
    run = logic.startBackground(node, tiny_model_path, settings=LABELS_ONLY)  # other settings
    events = drive(run)
    assert run.state == SUCCEEDED
    assert not made_ready(events)

    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny_model_path.read_bytes())
    logic.prepareWorker(model, settings=LABELS_ONLY)
    time.sleep(2.0)  # the worker notes the file's state as it starts; then a new mtime, even in whole seconds
    model.write_bytes(tiny_model_path.read_bytes())
    run = logic.startBackground(node, model, settings=LABELS_ONLY)
    events = drive(run)
    assert run.state == SUCCEEDED
    assert not made_ready(events)


def reaped(pid: int) -> bool:
    """Whether process `pid` (a child of this one) has exited and been waited for: no /proc entry, not even a
    zombie's; waits up to TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def ended(group: int) -> bool:
    """Whether every process of group `group` has exited (a killed one may take a moment); waits up to TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while living_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    return living_members(group) == []


def started_behind(group: int) -> bool:
    """Whether the launcher of process group `group` has started its interpreter (waits up to TIMEOUT_S)."""
    deadline = time.monotonic() + TIMEOUT_S
    while len(living_members(group)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(living_members(group)) == 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_an_idle_standby_worker_is_released_and_reaped(scene, tmp_path: Path) -> None:
    """Behind a launcher, as in Slicer: after its idle time the launcher and its interpreter end, and the launcher
    (this process's child) is waited for, with no one polling it."""
    logic = AttentionUNetSegLogic()
    logic.prepareWorker(python=launcher(tmp_path), idleSeconds=3.0)
    standby = logic._standby
    group = standby.process.pid
    assert started_behind(group)
    assert standby.alive
    assert reaped(group), "the launcher is a zombie, or still runs"
    assert ended(group)
    assert not standby.alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_closing_the_scene_releases_the_standby_worker(scene, tmp_path: Path) -> None:
    logic = AttentionUNetSegLogic()
    logic.prepareWorker(python=launcher(tmp_path))
    group = logic._standby.process.pid
    assert started_behind(group)
    scene.Clear(False)
    assert logic._standby is None
    assert reaped(group), "the launcher is a zombie, or still runs"
    assert ended(group)
    logic.prepareWorker()  # the next scene gets one of its own, released when it closes in turn
    process = logic._standby.process
    scene.Clear(False)
    assert logic._standby is None
    assert process.wait(TIMEOUT_S) != 0


def test_a_standby_worker_ends_by_itself_when_its_stdin_closes() -> None:
    """As when Slicer ends, however it ends: a standby worker never outlives the program that started it."""
    standby = StandbyWorker()
    standby.process.stdin.close()
    assert standby.process.wait(TIMEOUT_S) == 0
    assert standby.process.stdout.read() == b""  # no job, no events


def test_a_released_ended_or_other_interpreter_standby_gives_way_to_a_new_worker(
        scene, small_ct: sitk.Image, tiny_model_path: Path, tmp_path: Path) -> None:
    logic = AttentionUNetSegLogic()
    logic.prepareWorker()
    released = logic._standby.process
    logic.releaseWorker()
    assert released.wait(TIMEOUT_S) != 0
    assert logic._standby is None

    node = add_volume(scene, small_ct, "CT")
    logic.prepareWorker()
    ended = logic._standby.process
    killProcessGroup(ended)
    ended.wait(TIMEOUT_S)
    run = logic.startBackground(node, tiny_model_path, settings=LABELS_ONLY)
    assert run._process is not ended
    drive(run)
    assert run.state == SUCCEEDED, run.result()

    logic.prepareWorker(python=launcher(tmp_path))
    other = logic._standby.process
    run = logic.startBackground(node, tiny_model_path, settings=LABELS_ONLY)  # this interpreter, not the launcher
    assert run._process is not other
    assert other.wait(TIMEOUT_S) != 0
    drive(run)
    assert run.state == SUCCEEDED, run.result()
