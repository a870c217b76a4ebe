"""The background (separate process) path: same labels as in process, progress, cancel, failures, deleted input."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from safetensors import safe_open
from safetensors.torch import save_file
from slicer_scene import add_volume, scene_state

import slicer
from AttentionUNetSegLib.errors import CancelledError, InputImageError, ModelFileError
from AttentionUNetSegLogic import AttentionUNetSegLogic, BackgroundSegmentation, overallProgress
from AttentionUNetSegLogic.background import CANCELLED, FAILED, SUCCEEDED


TIMEOUT_S = 300


def drive(run: BackgroundSegmentation, until=lambda events: False) -> list:
    """Poll `run` (as the panel's timer does) until it is done or `until(events so far)`; return the events."""
    events = []
    deadline = time.monotonic() + TIMEOUT_S
    while not run.done and not until(events):
        assert time.monotonic() < deadline, "background segmentation did not finish in time"
        events += run.poll()
        time.sleep(0.05)
    return events


def labels_of(segmentation: slicer.vtkMRMLSegmentationNode) -> dict:
    return {segment_id: slicer.util.arrayFromSegmentInternalBinaryLabelmap(segmentation, segment_id).copy()
            for segment_id in segmentation.GetSegmentation().GetSegmentIDs()}


def started_inference(events: list) -> bool:
    return any(e["event"] == "progress" and e["stage"] == "inference" for e in events)


def test_background_gives_the_in_process_labels_and_maps(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "Patient B CT")
    logic = AttentionUNetSegLogic()
    in_process = logic.process(node, tiny_model_path, attention=True)
    expected_labels = labels_of(in_process.segmentation)
    expected_maps = {gate: slicer.util.arrayFromVolume(volume).copy() for gate, volume in in_process.attention.items()}

    run = logic.startBackground(node, tiny_model_path, attention=True)
    events = drive(run)

    assert run.state == SUCCEEDED, run.result()
    outputs = run.result()
    assert outputs.segmentation is in_process.segmentation  # the re-run replaced the first run's outputs
    actual_labels = labels_of(outputs.segmentation)
    assert list(actual_labels) == list(expected_labels)
    for segment_id, labels in expected_labels.items():
        np.testing.assert_array_equal(actual_labels[segment_id], labels, err_msg=segment_id)
    assert sum(labels.sum() for labels in expected_labels.values()) > 0
    assert list(outputs.attention) == list(expected_maps)
    for gate, values in expected_maps.items():
        np.testing.assert_allclose(slicer.util.arrayFromVolume(outputs.attention[gate]), values, atol=1e-6)
    assert outputs.volumesMl == pytest.approx(in_process.volumesMl)
    fractions = [e["fraction"] for e in events if e["event"] == "progress" and e["stage"] == "inference"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    overall = [overallProgress(e["stage"], e["fraction"]) for e in events if e["event"] == "progress"]
    assert None not in overall and overall == sorted(overall) and overall[-1] >= 0.9  # the panel's bar never goes back
    assert events[-1] == {"event": "done"}
    assert not run._jobDir.exists()


def test_cancel_ends_the_process_and_adds_nothing(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "CT")
    before = scene_state(scene)
    run = AttentionUNetSegLogic().startBackground(node, tiny_model_path, attention=True, probabilities=True)
    drive(run, until=started_inference)
    assert not run.done
    run.cancel()
    assert run.state == CANCELLED and run._process.poll() is not None
    assert run.poll() == []
    with pytest.raises(CancelledError, match="nothing was added"):
        run.result()
    assert scene_state(scene) == before
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
    assert any(e["event"] == "error" and e["type"] == "ModelFileError" for e in events)
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        run.result()
    assert scene_state(scene) == before


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
