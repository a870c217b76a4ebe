"""Fine-tuning from the scene on real CT (TotalSegmentator s0009 and its organ masks as a user's segmentation):
the new model is registered, loads and segments; the background path gives the in-process weights; cancel,
failures and bad pairs leave no model, no registry entry and unmodified inputs."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support
from conftest import SHARED
from safetensors.torch import load_file
from slicer_scene import add_segment, add_volume, user_segmentation
from test_slicer_background import drive

import slicer
from AttentionUNetSegLib.errors import CancelledError, DatasetError, InputImageError, InvalidOptionError, OutputError
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.models.model_file import read_metadata
from AttentionUNetSegLib.models.registry import find_model, list_models, load_model
from AttentionUNetSegLib.models.user_registry import add_file
from AttentionUNetSegLib.models.user_folders import user_models_dir
from AttentionUNetSegLib.progress import FineTuneStage, ProgressEvent
from AttentionUNetSegLib.training.fine_tuning import FineTuneSettings
from AttentionUNetSegLogic import AttentionUNetSegLogic
from AttentionUNetSegLogic.background import CANCELLED, FAILED, SUCCEEDED

pytestmark = pytest.mark.shared_data

S0009 = SHARED / "data" / "totalsegmentator_s0009"
TIMEOUT_S = 600
LABELS_ONLY = InferenceSettings(attention=False)
"""No attention maps: the labels, faster."""


@pytest.fixture(scope="module")
def s0009() -> Dict[str, sitk.Image]:
    """The CT (1.5 mm) and its organ masks, as read from disk."""
    images = {"ct": sitk.ReadImage(str(S0009 / "ct.nii.gz"))}
    for organ in ("pancreas", "kidney_left", "kidney_right", "liver", "spleen"):
        images[organ] = sitk.ReadImage(str(S0009 / "segmentations" / f"{organ}.nii.gz"), sitk.sitkUInt8)
    return images


def pair(scene: slicer.vtkMRMLScene, s0009: Dict[str, sitk.Image], name: str = "s0009"):
    return add_volume(scene, s0009["ct"], name), user_segmentation(scene, s0009, f"{name} corrected")


def snapshot(volume: slicer.vtkMRMLScalarVolumeNode, segmentation: slicer.vtkMRMLSegmentationNode) -> tuple:
    """What must not change: the CT's voxels and geometry, the segments, their voxels and representations."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    segments = segmentation.GetSegmentation()
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    voxels = [(segments.GetNthSegment(i).GetName(), int(numpy_support.vtk_to_numpy(
        segments.GetNthSegment(i).GetRepresentation(binary).GetPointData().GetScalars()).sum()))
        for i in range(segments.GetNumberOfSegments())]
    surfaces = segments.ContainsRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
    return slicer.util.arrayFromVolume(volume).copy(), slicer.util.arrayFromVTKMatrix(matrix), voxels, surfaces


def assert_unchanged(before: tuple, after: tuple) -> None:
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def tuning(name: str, base: Path, **options) -> FineTuneSettings:
    """The settings of a fine-tuning of `base` into the model `name`."""
    return FineTuneSettings(name, str(base), **options)


def registered() -> List[str]:
    return sorted(entry.name for entry in list_models())


def training_started(events: list) -> bool:
    return any(isinstance(e, ProgressEvent) and e.stage is FineTuneStage.TRAINING and e.step for e in events)


def test_fine_tuned_model_is_registered_and_segments_the_volume(scene, s0009, tiny_model_path: Path) -> None:
    volume, segmentation = pair(scene, s0009)
    validation = (add_volume(scene, s0009["ct"][:, :, 40:], "s0009 lower"), user_segmentation(scene, {
        organ: mask[:, :, 40:] for organ, mask in s0009.items()}, "s0009 lower corrected"))
    before = snapshot(volume, segmentation)
    logic = AttentionUNetSegLogic()
    plan = logic.fineTunePlan([(volume, segmentation)], tiny_model_path, ignoredSegments=["Spleen (cut)"])
    assert plan.describe()[0] == ("training: 's0009' with 's0009 corrected': Pancreas -> pancreas (by name); "
                                  "Left Kidney -> kidney (by name); kidney_right -> kidney (by name); "
                                  "Segment_4 -> liver (by terminology); Spleen (cut) -> ignored")
    labels = sitk.GetArrayViewFromImage(plan.cases[0].labels)
    assert set(np.unique(labels)) == {0, 1, 3, 4, 255}  # pancreas, kidney, liver, ignored spleen
    assert np.count_nonzero(labels == 3) == sum(int(np.count_nonzero(sitk.GetArrayViewFromImage(s0009[k])))
                                                for k in ("kidney_left", "kidney_right"))
    events: List[ProgressEvent] = []

    name = logic.fineTune([(volume, segmentation)], tuning("s0009-tuned", tiny_model_path, steps=2),
                          validation=validation, ignoredSegments=["Spleen (cut)"], progress=events.append)

    assert name == "s0009-tuned"
    assert name in registered()
    entry = find_model(name)
    assert entry.file.parent == user_models_dir()
    assert entry.file.is_file()
    metadata = read_metadata(entry.file)
    base = read_metadata(tiny_model_path)
    provenance = metadata.provenance
    assert provenance["fine_tuned_from"]["name"] == "tiny"
    assert provenance["steps"] == 2
    assert provenance["fine_tuning"]["cases"] == 1
    assert provenance["fine_tuning"]["validation_case"] == "s0009 lower"
    assert set(provenance["fine_tuning"]["class_voxels"]) == {"pancreas", "kidney", "liver"}  # spleen ignored
    assert provenance["trained_classes"] == ["background", "pancreas", "kidney", "liver"]  # spleen left out (AFT)
    assert metadata.classes == base.classes
    assert metadata.spacing_mm == base.spacing_mm
    assert metadata.intensity == base.intensity
    assert metadata.license == base.license
    for when in ("before", "after"):
        dice = metadata.metrics[f"validation_dice_{when}"]
        assert set(dice) == {"pancreas", "kidney", "liver"}
        assert all(0.0 <= v <= 1.0 for v in dice.values())
    steps = [e for e in events if e.stage is FineTuneStage.TRAINING and e.step]
    assert [e.step for e in steps] == [1, 2]
    assert all(e.total_steps == 2 for e in steps)
    assert all(e.loss > 0 for e in steps)
    assert steps[-1].seconds_left == 0
    assert events[-1] == ProgressEvent(FineTuneStage.SAVING, 1.0)
    assert [e.stage for e in events if not e.step] == [FineTuneStage.PREPARING, FineTuneStage.VALIDATING_BEFORE,
                                                        FineTuneStage.TRAINING, FineTuneStage.VALIDATING_AFTER,
                                                        FineTuneStage.SAVING, FineTuneStage.SAVING]
    assert_unchanged(before, snapshot(volume, segmentation))

    model = load_model(name)
    outputs = logic.process(volume, name, settings=LABELS_ONLY)
    assert model.metadata.name == name
    assert outputs.segmentation is not None
    assert set(outputs.volumesMl) == {"pancreas", "spleen", "kidney", "liver"}


def test_background_gives_the_in_process_weights_and_cancel_leaves_nothing(scene, s0009,
                                                                           tiny_model_path: Path) -> None:
    volume, segmentation = pair(scene, s0009)
    logic = AttentionUNetSegLogic()
    in_process = logic.fineTune([(volume, segmentation)], tuning("in-process", tiny_model_path, steps=2, device="cpu"))

    logic.prepareWorker(tiny_model_path)
    standby = logic._standby.process
    run = logic.startFineTune([(volume, segmentation)], tuning("background", tiny_model_path, steps=2, device="cpu"))
    assert logic._standby is None  # killed: the training has its memory
    assert standby.wait(TIMEOUT_S) != 0
    events = drive(run)

    assert run.state == SUCCEEDED
    assert run.result() == "background"
    training = [e for e in events if isinstance(e, ProgressEvent) and e.stage is FineTuneStage.TRAINING and e.step]
    assert [e.step for e in training] == [1, 2]
    assert all(e.loss is not None for e in training)
    assert all(e.seconds_left is not None for e in training)
    ours, theirs = (load_file(str(find_model(n).file)) for n in (in_process, "background"))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].equal(theirs[key]), key  # same cases, seed and CPU: the same weights

    models, files = registered(), sorted(os.listdir(user_models_dir()))
    run = logic.startFineTune([(volume, segmentation)], tuning("cancelled", tiny_model_path, steps=50, device="cpu"))
    drive(run, until=training_started)
    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 1.0
    assert run.state == CANCELLED
    with pytest.raises(CancelledError, match="nothing was added"):
        run.result()
    with pytest.raises(CancelledError):
        logic.fineTune([(volume, segmentation)], tuning("cancelled", tiny_model_path, steps=50),
                       cancel=lambda: True)
    assert registered() == models
    assert sorted(os.listdir(user_models_dir())) == files


def test_input_deleted_during_training_adds_no_model(scene, s0009, tiny_model_path: Path) -> None:
    volume, segmentation = pair(scene, s0009)
    models = registered()
    run = AttentionUNetSegLogic().startFineTune([(volume, segmentation)], tuning("deleted", tiny_model_path, steps=50))
    drive(run, until=training_started)
    scene.RemoveNode(segmentation)
    drive(run)
    assert run.state == FAILED
    with pytest.raises(InputImageError, match="'s0009 corrected' was deleted during the fine-tuning"):
        run.result()
    assert registered() == models
    assert not (user_models_dir() / "deleted.safetensors").exists()


def test_pairs_that_cannot_be_used_are_refused_before_any_work(scene, s0009, tiny_model_path: Path) -> None:
    logic = AttentionUNetSegLogic()
    volume, segmentation = pair(scene, s0009)
    models = registered()
    with pytest.raises(InputImageError, match="No training pairs"):
        logic.fineTune([], tuning("none", tiny_model_path, steps=1))
    unnamed = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Unnamed")
    add_segment(unnamed, "Segment_1", s0009["liver"])
    with pytest.raises(InputImageError, match="No segment of 'Unnamed' matches a class of the model"):
        logic.fineTune([(volume, unnamed)], tuning("unnamed", tiny_model_path, steps=1))
    moved = user_segmentation(scene, s0009, "Moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[2, 3] = 1000.0  # a metre up: nowhere near the CT
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    moved.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputImageError, match="No matched segment of 'Moved' overlaps the volume 's0009'"):
        logic.fineTune([(volume, moved)], tuning("moved", tiny_model_path, steps=1))
    with pytest.raises(InputImageError, match="more than one training pair"):
        logic.fineTune([(volume, segmentation), (volume, moved)], tuning("twice", tiny_model_path, steps=1))
    with pytest.raises(InputImageError, match="is also a training volume"):
        logic.fineTune([(volume, segmentation)], tuning("self", tiny_model_path, steps=1),
                       validation=(volume, segmentation))
    add_file("tiny-user", tiny_model_path)
    with pytest.raises(InvalidOptionError, match="'tiny-user' is already registered"):
        logic.fineTune([(volume, segmentation)], tuning("tiny-user", tiny_model_path, steps=1))
    with pytest.raises(InvalidOptionError, match="cannot be a model name"):
        logic.startFineTune([(volume, segmentation)], tuning("../escape", tiny_model_path))
    assert registered() == sorted(models + ["tiny-user"])


def test_doubtful_pairs_are_warned_about_and_their_empty_segments_skipped(scene, s0009,
                                                                          tiny_model_path: Path) -> None:
    ct = s0009["ct"]
    bright = sitk.Cast(sitk.RescaleIntensity(ct, 0, 255), sitk.sitkUInt8)  # an 8-bit export, not HU
    volume = add_volume(scene, bright, "8-bit export")
    empty = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(ct)
    single = sitk.Image(empty)
    single[60, 60, 90] = 1
    segmentation = user_segmentation(scene, s0009, extra={"Liver": empty, "pancreas_left": single})
    plan = AttentionUNetSegLogic().fineTunePlan([(volume, segmentation)], tiny_model_path)
    warnings = " | ".join(plan.warnings)
    assert "'8-bit export': intensities range from 0 to 255, which does not look like CT" in warnings
    assert "segment 'Liver' of 'Corrected' has 0 voxel(s) on its volume's grid: skipped (liver is unlabelled" in warnings
    assert "segment 'pancreas_left' of 'Corrected' has 1 voxel(s) on its volume's grid: skipped" in warnings
    labels = sitk.GetArrayViewFromImage(plan.cases[0].labels)
    assert labels[90, 60, 60] == 0 or s0009["pancreas"][60, 60, 90]  # the stray voxel is not drawn
    assert np.count_nonzero(labels == 4) > 0  # the other, real liver segment is


def test_an_unwritable_user_model_folder_is_refused_before_training(scene, s0009, tiny_model_path: Path,
                                                                     monkeypatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").write_text("a file where the model folder should be")
    monkeypatch.setenv("ATTENTION_UNET_SEG_HOME", str(home))
    volume, segmentation = pair(scene, s0009)
    with pytest.raises(OutputError, match="cannot write to the user's model folder"):
        AttentionUNetSegLogic().fineTune([(volume, segmentation)], tuning("nowhere", tiny_model_path, steps=1))
    assert not (home / "models.json").exists()


def test_a_case_labelling_no_class_is_refused_by_the_engine(tmp_path: Path, s0009, tiny_model_path: Path) -> None:
    from AttentionUNetSegLib.training.fine_tuning import FineTuneCase, fine_tune

    empty = sitk.Image(s0009["ct"].GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(s0009["ct"])
    with pytest.raises(DatasetError, match="labels none of the base model's classes"):
        fine_tune([FineTuneCase("empty", s0009["ct"], empty)], tuning("e", tiny_model_path), tmp_path)
    with pytest.raises(InvalidOptionError, match="steps must be >= 1"):
        FineTuneSettings("e", steps=0)


def test_the_panel_follower_reports_steps_and_the_validation_dice(scene, s0009, tiny_model_path: Path) -> None:
    from AttentionUNetSegLogic import FineTuneFollower
    from AttentionUNetSegLogic.fine_tuning import validationSummary

    volume, segmentation = pair(scene, s0009)
    validation = (add_volume(scene, s0009["ct"][:, :, 60:], "lower"), user_segmentation(scene, {
        organ: mask[:, :, 60:] for organ, mask in s0009.items()}, "lower corrected"))
    logic = AttentionUNetSegLogic()
    run = logic.startFineTune([(volume, segmentation)], tuning("followed", tiny_model_path, steps=2), validation)
    follower = FineTuneFollower(run)
    updates = []
    deadline = time.monotonic() + TIMEOUT_S
    while not (updates and updates[-1].ended):
        assert time.monotonic() < deadline
        updates.append(follower.tick())
        time.sleep(0.05)
    assert updates[-1].modelName == "followed"
    assert updates[-1].error is None
    progress = [u.progress for u in updates if u.progress is not None]
    assert progress == sorted(progress)
    assert progress[-1] == 1.0
    stages = [stage for u in updates for stage in u.stages]
    assert stages == list(FineTuneStage)
    statuses = [u.status for u in updates if u.status]
    assert statuses[-1].startswith("step 2 of 2, loss ")
    assert statuses[-1].endswith("under a minute left")
    summary = validationSummary(logic.modelMetadata("followed").metrics)
    assert [line.split(":")[0] for line in summary] == ["kidney", "liver", "pancreas"]  # "Spleen (cut)": background
    assert all(" -> " in line for line in summary)
