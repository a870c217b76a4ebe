"""Telling the user's edits of a segmentation from what Slicer does to it on its own (edits.py), on real nodes."""
from __future__ import annotations

import gc
from typing import Callable, Dict

import pytest
import SimpleITK as sitk
from slicer_scene import add_segment, add_volume

import slicer
from AttentionUNetSegLogic.edits import EDITED_ATTRIBUTE, isWatched, mayHoldEdits, stopWatching, watchForEdits


def watched_segmentation(scene: slicer.vtkMRMLScene, small_ct: sitk.Image):
    """A CT and a segmentation with two segments on its grid, watched as a run leaves the node it wrote."""
    volume = add_volume(scene, small_ct, "CT")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "organs")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    node.CreateDefaultDisplayNodes()
    for name, threshold in (("liver", 100), ("spleen", 300)):
        add_segment(node, name, sitk.Cast(small_ct > threshold, sitk.sitkUInt8))
    watchForEdits(node)
    return volume, node


@pytest.fixture
def watched(scene, small_ct: sitk.Image):
    return watched_segmentation(scene, small_ct)


def _voxels(volume: slicer.vtkMRMLScalarVolumeNode, node: slicer.vtkMRMLSegmentationNode) -> None:
    segmentId = node.GetSegmentation().GetSegmentIdBySegmentName("liver")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, volume)
    mask[:, :4, :4] = 1 - mask[:, :4, :4]
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segmentId, volume)


EDITS: Dict[str, Callable] = {
    "renamed": lambda volume, node: node.GetSegmentation().GetNthSegment(0).SetName("Liver (checked)"),
    "recoloured": lambda volume, node: node.GetSegmentation().GetNthSegment(0).SetColor(0.1, 0.9, 0.1),
    "voxels painted": _voxels,
    "segment added": lambda volume, node: node.GetSegmentation().AddEmptySegment("tumour"),
    "segment removed": lambda volume, node: node.GetSegmentation().RemoveSegment(
        node.GetSegmentation().GetNthSegmentID(1)),
}
NOT_EDITS: Dict[str, Callable] = {
    "3D surfaces made": lambda volume, node: node.CreateClosedSurfaceRepresentation(),
    "segment hidden": lambda volume, node: node.GetDisplayNode().SetSegmentVisibility(
        node.GetSegmentation().GetNthSegmentID(0), False),
    "opacity changed": lambda volume, node: node.GetDisplayNode().SetOpacity3D(0.4),
    "node renamed": lambda volume, node: node.SetName("my organs"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_marks_the_node_and_ends_the_watch(watched, edit: str) -> None:
    volume, node = watched
    assert not mayHoldEdits(node)
    EDITS[edit](volume, node)
    assert mayHoldEdits(node)
    assert node.GetAttribute(EDITED_ATTRIBUTE) == "1"
    assert not isWatched(node)


@pytest.mark.parametrize("change", list(NOT_EDITS))
def test_what_slicer_does_on_its_own_is_no_edit(watched, change: str) -> None:
    volume, node = watched
    NOT_EDITS[change](volume, node)
    assert not mayHoldEdits(node)
    assert node.GetAttribute(EDITED_ATTRIBUTE) is None


def test_an_unwatched_node_may_hold_edits(scene, watched) -> None:
    """The user's own node, one read from a saved scene, one whose watch ended: nothing says it holds no edits."""
    _, node = watched
    stopWatching(node)
    assert mayHoldEdits(node)
    assert node.GetAttribute(EDITED_ATTRIBUTE) is None
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    assert mayHoldEdits(mine)


def test_the_watch_lives_with_the_node_object(scene, small_ct: sitk.Image) -> None:
    """The watch is a Python attribute of the VTK object: kept while the node lives, whichever wrapper reads it."""
    volume, node = watched_segmentation(scene, small_ct)
    nodeId = node.GetID()
    del node
    gc.collect()
    again = scene.GetNodeByID(nodeId)
    assert isWatched(again)
    EDITS["renamed"](volume, again)
    del again
    gc.collect()
    assert scene.GetNodeByID(nodeId).GetAttribute(EDITED_ATTRIBUTE) == "1"
    assert not isWatched(scene.GetNodeByID(nodeId))
