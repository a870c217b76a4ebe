"""Bad inputs, missing or corrupt models, cancel and deletion while running: a clear error and an unchanged scene."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from slicer_scene import add_volume, scene_state

from AttentionUNetSegLib.errors import CancelledError, InputImageError, ModelFileError
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.progress import SegmentationStage
from AttentionUNetSegLogic import AttentionUNetSegLogic

LABELS_ONLY = InferenceSettings(attention=False)
"""No attention maps: the labels, faster."""
WITH_ATTENTION = InferenceSettings(attention=True)


def run_in_process(node, model):
    return AttentionUNetSegLogic().process(node, model)


def start_in_background(node, model):
    return AttentionUNetSegLogic().startBackground(node, model)


ENTRY_POINTS = pytest.mark.parametrize("start", [run_in_process, start_in_background], ids=["process", "background"])


def volume_with(scene, class_name: str, components: int = 1, name: str = "odd volume"):
    node = scene.AddNewNodeByClass(class_name, name)
    image = vtk.vtkImageData()
    image.SetDimensions(16, 16, 8)
    image.AllocateScalars(vtk.VTK_SHORT, components)
    vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = -1000
    node.SetAndObserveImageData(image)
    return node


BAD_VOLUMES = {
    "no volume": (lambda scene: None, "No input volume is selected"),
    "labelmap": (lambda scene: volume_with(scene, "vtkMRMLLabelMapVolumeNode"), "is a labelmap volume"),
    "vector": (lambda scene: volume_with(scene, "vtkMRMLVectorVolumeNode", 3), "vector, colour or tensor"),
    "4D": (lambda scene: volume_with(scene, "vtkMRMLScalarVolumeNode", 5), "has 5 values per voxel"),
    "no voxels": (lambda scene: scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"), "has no voxels"),
}


@ENTRY_POINTS
@pytest.mark.parametrize("case", list(BAD_VOLUMES))
def test_bad_input_volume_is_refused(start, case: str, scene, tiny_model_path: Path) -> None:
    make, message = BAD_VOLUMES[case]
    node = make(scene)
    before = scene_state(scene)
    with pytest.raises(InputImageError, match=message):
        start(node, tiny_model_path)
    assert scene_state(scene) == before


def write_garbage(path: Path) -> Path:
    path.write_bytes(b"\x00\x01 this is not a model " * 40)
    return path


BAD_MODELS = {
    "missing file": (lambda tmp: tmp / "no-such-model.safetensors", "does not exist"),
    "corrupt file": (lambda tmp: write_garbage(tmp / "corrupt.safetensors"), "not a readable model file"),
    "unknown name": (lambda tmp: "no-such-registered-model", "no model named"),
}


@ENTRY_POINTS
@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_missing_or_corrupt_model_is_refused(start, case: str, scene, small_ct: sitk.Image, tmp_path: Path) -> None:
    make, message = BAD_MODELS[case]
    node = add_volume(scene, small_ct, "CT")
    before = scene_state(scene)
    with pytest.raises(ModelFileError, match=message):
        start(node, make(tmp_path))
    assert scene_state(scene) == before


def test_cancelled_in_process_run_adds_nothing(scene, small_ct: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, small_ct, "CT")
    before = scene_state(scene)
    with pytest.raises(CancelledError):
        AttentionUNetSegLogic().process(node, tiny_model_path, cancel=lambda: True)
    assert scene_state(scene) == before


def test_input_deleted_during_in_process_run_adds_nothing(scene, small_ct: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, small_ct, "CT")
    nodes_before, items_before = scene_state(scene)

    def delete_input(stage: SegmentationStage, fraction: float) -> None:
        if stage is SegmentationStage.INFERENCE and node.GetScene() is not None:
            scene.RemoveNode(node)

    with pytest.raises(InputImageError, match="deleted while it was being segmented"):
        AttentionUNetSegLogic().process(node, tiny_model_path, progress=delete_input)
    assert scene_state(scene)[0] == nodes_before - {node.GetID()}


def test_failure_while_adding_outputs_rolls_back(scene, small_ct: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, small_ct, "CT")
    logic = AttentionUNetSegLogic()
    logic.process(node, tiny_model_path, settings=WITH_ATTENTION)
    before = scene_state(scene)
    outputs_before = {n.GetID() for n in logic.outputsOf(node)}

    def fail_late(stage: SegmentationStage, fraction: float) -> None:
        if stage is SegmentationStage.OUTPUTS and fraction > 0.5:  # some new nodes are in the scene by now
            raise RuntimeError("simulated failure while adding outputs")

    with pytest.raises(RuntimeError, match="simulated failure"):
        logic.process(node, tiny_model_path, settings=WITH_ATTENTION, progress=fail_late)
    assert scene_state(scene) == before
    assert {n.GetID() for n in logic.outputsOf(node)} == outputs_before


def test_non_ct_intensities_still_run_with_a_warning(scene, small_ct: sitk.Image, tiny_model_path: Path) -> None:
    shifted = sitk.Cast(sitk.GetImageFromArray(np.full(small_ct.GetSize()[::-1], 500, np.int16)), sitk.sitkInt16)
    shifted.CopyInformation(small_ct)
    outputs = AttentionUNetSegLogic().process(add_volume(scene, shifted, "MR-like"), tiny_model_path, LABELS_ONLY)
    assert any("does not look like CT" in warning for warning in outputs.warnings)
