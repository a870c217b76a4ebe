"""A headless Slicer scene from the `slicer-core` package (the module folder on sys.path, the module logics
registered as Slicer registers them) and the CT nodes the tests use.

conftest.py loads it as a plugin for the fixtures; test modules import its helpers.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Dict, Optional, Set, Tuple

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from paths import REPO_ROOT, TOTALSEG

import slicer

MODULE_DIR = REPO_ROOT / "AttentionUNetSeg"
if str(MODULE_DIR) not in sys.path:  # the module folder, as Slicer puts it on sys.path
    sys.path.insert(0, str(MODULE_DIR))

from AttentionUNetSegLib.io.images import read_image  # noqa: E402
from AttentionUNetSegLogic import updateVolumeFromImage  # noqa: E402
from AttentionUNetSegLogic.conversion import orientedImageFromImage  # noqa: E402
from AttentionUNetSegLogic.transaction import nodeIds  # noqa: E402


def new_scene(cache_dir: Path) -> slicer.vtkMRMLScene:
    """A fresh scene with the application, colour, volumes and segmentations logics; set as `slicer.mrmlScene`.

    `cache_dir` is where .mrb files are unpacked when read.
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    for name, logic in (("Volumes", volumes), ("Segmentations", segmentations)):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(cache_dir))
    dataIO = slicer.vtkDataIOManager()
    dataIO.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(dataIO)
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(volumes=types.SimpleNamespace(logic=lambda: volumes),
                                           segmentations=types.SimpleNamespace(logic=lambda: segmentations))
    scene._keepAlive = (app, volumes, segmentations, cache, dataIO)  # logics live as long as the scene
    return scene


def add_volume(scene: slicer.vtkMRMLScene, image: sitk.Image, name: str,
               parent_item: Optional[int] = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Add `image` as a scalar volume node (through the module's conversion), under `parent_item` if given."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    updateVolumeFromImage(node, image)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    if parent_item is not None:
        scene.GetSubjectHierarchyNode().CreateItem(parent_item, node)
    return node


def add_segment(node: slicer.vtkMRMLSegmentationNode, name: str, mask: sitk.Image, terminology: str = "") -> str:
    """Add a binary mask (a SimpleITK image in LPS) as a segment of its own, as a user's segment would be."""
    segment = slicer.vtkSegment()
    segment.SetName(name)
    if terminology:
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              orientedImageFromImage(sitk.Cast(mask > 0, sitk.sitkUInt8)))
    node.GetSegmentation().AddSegment(segment)
    return node.GetSegmentation().GetSegmentIdBySegmentName(name)


def serialized(type_code_value: str, meaning: str, modifier: str = "") -> str:
    """A terminology entry as Slicer serializes it (SNOMED CT type, optional side modifier)."""
    modifier_code = {"Left": "7771000", "Right": "24028007"}.get(modifier, "")
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        "Segmentation category and type - DICOM master list", "123037004", "SCT", "Anatomical Structure",
        type_code_value, "SCT", meaning, modifier_code, "SCT" if modifier else "", modifier,
        "Anatomic codes - DICOM master list", "", "", "", "", "", "")


def user_segmentation(scene: slicer.vtkMRMLScene, masks: Dict[str, sitk.Image], name: str = "Corrected",
                      extra: Optional[Dict[str, sitk.Image]] = None) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node as a user would make it: names of their own, terminology on one segment, a spleen
    cut off at the top of the scan, and any `extra` segments."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    add_segment(node, "Pancreas", masks["pancreas"])
    add_segment(node, "Left Kidney", masks["kidney_left"])
    add_segment(node, "kidney_right", masks["kidney_right"])
    add_segment(node, "Segment_4", masks["liver"], serialized("10200004", "Liver"))
    add_segment(node, "Spleen (cut)", masks["spleen"])
    for segment, mask in (extra or {}).items():
        add_segment(node, segment, mask)
    return node


def add_study(scene: slicer.vtkMRMLScene, patient: str = "Patient B", study: str = "Abdomen CT") -> int:
    """A patient and study in the subject hierarchy (as DICOM import makes them); returns the study item."""
    shNode = scene.GetSubjectHierarchyNode()
    return shNode.CreateStudyItem(shNode.CreateSubjectItem(shNode.GetSceneItemID(), patient), study)


def scene_state(scene: slicer.vtkMRMLScene) -> Tuple[Set[str], Set[int]]:
    """Node IDs and subject hierarchy items: equal states mean nothing was added or removed."""
    shNode = scene.GetSubjectHierarchyNode()
    items = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
    return nodeIds(scene), {items.GetId(i) for i in range(items.GetNumberOfIds())}


def ijk_to_ras(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def world_ijk_to_ras(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """IJK-to-RAS including a linear parent transform."""
    to_world = vtk.vtkMatrix4x4()
    if volume.GetParentTransformNode() is not None:
        volume.GetParentTransformNode().GetMatrixTransformToWorld(to_world)
    return slicer.util.arrayFromVTKMatrix(to_world) @ ijk_to_ras(volume)


def oblique(image: sitk.Image, degrees: Tuple[float, float, float] = (20.0, -10.0, 15.0)) -> sitk.Image:
    """The same voxels with an oblique direction (rotated about x, y and z); origin kept."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(*np.radians(degrees))
    copy = sitk.Image(image)
    copy.SetDirection((np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(image.GetDirection()).reshape(3, 3))
                      .ravel().tolist())
    return copy


@pytest.fixture
def scene(tmp_path: Path) -> slicer.vtkMRMLScene:
    scene = new_scene(tmp_path / "cache")
    yield scene
    scene.Clear(True)


@pytest.fixture(scope="session")
def patient_b() -> sitk.Image:
    """Patient B (512x512x20, 0.98x0.98x2 mm) read from its DICOM series."""
    return read_image(TOTALSEG / "example_ct_dicom")


@pytest.fixture(scope="session")
def small_ct(patient_b: sitk.Image) -> sitk.Image:
    """A 128x128x20 crop of patient B (12.5 cm across): one network window with the tiny model, so fast."""
    return patient_b[192:320, 160:288, :]
