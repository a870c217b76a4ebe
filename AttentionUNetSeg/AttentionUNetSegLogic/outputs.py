"""Output nodes of a run: segmentation, attention and probability volumes, organ volume table.

Every output node refers to its input volume (node reference role `INPUT_ROLE`) and says what it is
(attribute `OUTPUT_ATTRIBUTE`); nodes this module created also carry `CREATED_ATTRIBUTE`. A re-run for
the same input replaces exactly the nodes this module created before; a segmentation node the user
chose as the output is filled, never removed. Outputs are written in one scene transaction: all or
nothing, and an existing segmentation node is put back as it was if the run fails.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional

import vtk

import slicer
from AttentionUNetSegLib.progress import ProgressCallback, SegmentationStage
from AttentionUNetSegLib.errors import InputImageError

from .conversion import volumesFromMaps
from .display import configureMapDisplay, heatColorNode
from .segments import addSegmentsFromLabels
from .transaction import sceneTransaction

INPUT_ROLE = "attentionUNetSegInput"
OUTPUT_ATTRIBUTE = "AttentionUNetSeg.Output"
GATE_ATTRIBUTE = "AttentionUNetSeg.Gate"
CLASS_ATTRIBUTE = "AttentionUNetSeg.Class"
CREATED_ATTRIBUTE = "AttentionUNetSeg.Created"
SEGMENTATION, ATTENTION, PROBABILITY, VOLUMES, FOLDER = "segmentation", "attention", "probability", "volumes", "folder"
DEFAULT_THRESHOLD = 0.2
SEGMENT_COLUMN = "Segment"
VOLUME_COLUMN = "Volume [mL]"
RUN_TIME_COLUMN = "Run time [s]"
COMPUTED_ON_COLUMN = "Computed on"
COHORT = "cohort"
COHORT_INPUT_ROLE = "attentionUNetSegCohortInput"
INPUT_VOLUME_COLUMN = "Input volume"
STATUS_COLUMN = "Status"
DONE, FAILED, CANCELLED, NOT_RUN = "done", "failed", "cancelled", "not run"
_GATE_NAME = re.compile(r"att(\d+)_gate(\d+)$")



@dataclass
class SegmentationOutputs:
    """The nodes one run made or filled, and what the engine reported."""

    segmentation: slicer.vtkMRMLSegmentationNode
    attention: Dict[str, slicer.vtkMRMLScalarVolumeNode]
    probabilities: Dict[str, slicer.vtkMRMLScalarVolumeNode]
    volumesTable: slicer.vtkMRMLTableNode
    volumesMl: Dict[str, float]
    seconds: float
    """Wall time from the start of the run to its outputs."""
    device: str
    backend: str
    precision: str
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def computedOn(self) -> str:
        """Device, backend and precision in words, e.g. 'cpu (torch, float32)'."""
        return computedOn(self.device, self.backend, self.precision)


@dataclass
class VolumeRun:
    """One input of a cohort run: its outputs when it was segmented, else why not."""

    volume: slicer.vtkMRMLScalarVolumeNode
    volumeName: str
    outputs: Optional[SegmentationOutputs] = None
    status: str = NOT_RUN
    """DONE, FAILED, CANCELLED (the run it was in was stopped) or NOT_RUN (cancelled before its turn)."""
    message: str = ""
    """Why it failed or was cancelled."""


@dataclass
class CohortOutputs:
    """What a cohort run made: one VolumeRun per input, in input order, and the cohort table."""

    runs: List[VolumeRun]
    table: slicer.vtkMRMLTableNode
    cancelled: bool = False

    @property
    def failures(self) -> List[VolumeRun]:
        """The inputs that failed (their names and messages)."""
        return [run for run in self.runs if run.status == FAILED]

    @property
    def outputs(self) -> List[SegmentationOutputs]:
        """The outputs of the inputs segmented, in input order."""
        return [run.outputs for run in self.runs if run.outputs is not None]


def computedOn(device: str, backend: str, precision: str) -> str:
    return f"{device} ({backend}, {precision})"


def gateLabel(gateName: str) -> str:
    """'att4_gate1' -> 'level 4 gate 1' (other names are returned unchanged)."""
    match = _GATE_NAME.match(gateName)
    return f"level {match.group(1)} gate {match.group(2)}" if match else gateName


def previousOutputs(inputVolume: slicer.vtkMRMLNode, kind: Optional[str] = None) -> List[slicer.vtkMRMLNode]:
    """Nodes this module made for `inputVolume` (of one kind, or all), in scene order."""
    scene = inputVolume.GetScene()
    if scene is None:
        return []
    nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
    return [node for node in nodes
            if node.GetNodeReferenceID(INPUT_ROLE) == inputVolume.GetID()
            and node.GetAttribute(OUTPUT_ATTRIBUTE) is not None
            and (kind is None or node.GetAttribute(OUTPUT_ATTRIBUTE) == kind)]


def writeOutputs(inputVolume: slicer.vtkMRMLScalarVolumeNode, result, seconds: float,
                 outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None,
                 progress: Optional[ProgressCallback] = None) -> SegmentationOutputs:
    """Add the nodes for an engine `result` (a SegmentationResult) and remove this input's earlier outputs.

    `seconds`: how long the run has taken so far, recorded in the volumes table with the device it ran on.

    Raises InputImageError (and changes nothing) if `inputVolume` left the scene while the engine ran.
    """
    scene = inputVolume.GetScene()
    if scene is None:
        raise InputImageError(f"The input volume '{inputVolume.GetName()}' was deleted while it was being "
                              "segmented; nothing was added.")
    report = progress or (lambda stage, fraction: None)
    earlier = previousOutputs(inputVolume)
    name = inputVolume.GetName()
    with sceneTransaction(scene):
        parentItem = _hierarchyParent(inputVolume)
        colorNode = heatColorNode(scene) if (result.attention or result.probabilities) else None
        mapSets = [(ATTENTION, result.attention), (PROBABILITY, result.probabilities or {})]
        total = sum(len(images) for _, images in mapSets)
        nodes: Dict[str, Dict[str, slicer.vtkMRMLScalarVolumeNode]] = {}
        written = 0
        for kind, images in mapSets:
            nodes[kind] = {}
            folder = _folder(scene, parentItem, f"{name} {kind} maps") if images else None
            for key, volumeNode in zip(images, volumesFromMaps(images) if images else []):
                label = gateLabel(key) if kind == ATTENTION else key
                nodes[kind][key] = _addMapVolume(scene, inputVolume, volumeNode, key, f"{name} {kind} {label}",
                                                 kind, colorNode, folder)
                written += 1
                report(SegmentationStage.OUTPUTS, written / (total + 1))
        volumes = result.volumes_ml()
        table = _addVolumesTable(scene, inputVolume, volumes, f"{name} organ volumes", parentItem, seconds,
                                 computedOn(result.device, result.backend, result.precision))
        segmentationNode = outputSegmentation or _reusableSegmentation(earlier)
        with _restoredOnFailure(segmentationNode):
            if segmentationNode is None:
                segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
                segmentationNode.SetAttribute(CREATED_ATTRIBUTE, "1")
                useSurfaceNets(segmentationNode.GetSegmentation())
            _fillSegmentation(segmentationNode, inputVolume, result, parentItem)
            report(SegmentationStage.OUTPUTS, 1.0)
            # the commit: earlier outputs go only once everything new is in place (a failure above keeps them)
            _removeOutputs(scene, [node for node in earlier if node is not segmentationNode
                                   and node.GetAttribute(CREATED_ATTRIBUTE) is not None])
    return SegmentationOutputs(segmentationNode, nodes[ATTENTION], nodes[PROBABILITY], table, volumes, seconds,
                               result.device, result.backend, result.precision, dict(result.timings),
                               list(result.warnings))


def _hierarchyParent(inputVolume: slicer.vtkMRMLNode) -> int:
    """The subject hierarchy item the input sits in (its study, typically), or the scene item."""
    shNode = inputVolume.GetScene().GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(inputVolume)
    return shNode.GetItemParent(item) if item else shNode.GetSceneItemID()


def _placeInHierarchy(node: slicer.vtkMRMLNode, parentItem: int) -> None:
    """Put `node`'s subject hierarchy item under `parentItem` (creating the item where no plugin did)."""
    shNode = node.GetScene().GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(node)
    if item:
        shNode.SetItemParent(item, parentItem)
    else:
        shNode.CreateItem(parentItem, node)


def _folder(scene: slicer.vtkMRMLScene, parentItem: int, name: str) -> int:
    shNode = scene.GetSubjectHierarchyNode()
    folder = shNode.CreateFolderItem(parentItem, name)
    shNode.SetItemAttribute(folder, OUTPUT_ATTRIBUTE, FOLDER)
    return folder


def _markAsOutput(node: slicer.vtkMRMLNode, inputVolume: slicer.vtkMRMLNode, kind: str) -> None:
    node.SetAttribute(OUTPUT_ATTRIBUTE, kind)
    node.SetNodeReferenceID(INPUT_ROLE, inputVolume.GetID())


@contextmanager
def _restoredOnFailure(node: Optional[slicer.vtkMRMLSegmentationNode]) -> Iterator[None]:
    """If the block raises, put an existing segmentation node's segments, output marks and hierarchy place
    back as they were (nodes the block added are the scene transaction's to remove)."""
    if node is None:
        yield
        return
    segments = slicer.vtkSegmentation()
    segments.DeepCopy(node.GetSegmentation())
    attributes = {name: node.GetAttribute(name) for name in (OUTPUT_ATTRIBUTE, CREATED_ATTRIBUTE)}
    inputId = node.GetNodeReferenceID(INPUT_ROLE)
    shNode = node.GetScene().GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(node)
    parent = shNode.GetItemParent(item) if item else None
    try:
        yield
    except BaseException:
        node.GetSegmentation().DeepCopy(segments)
        for name, value in attributes.items():
            node.SetAttribute(name, value) if value is not None else node.RemoveAttribute(name)
        node.SetNodeReferenceID(INPUT_ROLE, inputId)
        if item and shNode.GetItemByDataNode(node) == item:
            shNode.SetItemParent(item, parent)
        raise


def _addMapVolume(scene: slicer.vtkMRMLScene, inputVolume: slicer.vtkMRMLNode,
                  volumeNode: slicer.vtkMRMLScalarVolumeNode, key: str, name: str, kind: str,
                  colorNode: slicer.vtkMRMLColorNode, folder: int) -> slicer.vtkMRMLScalarVolumeNode:
    """Put a map's new volume node (volumesFromMaps) into the scene as this input's output, displayed as a map."""
    volumeNode.SetName(name)
    volumeNode.SetAttribute(GATE_ATTRIBUTE if kind == ATTENTION else CLASS_ATTRIBUTE, key)
    _markAsOutput(volumeNode, inputVolume, kind)
    volumeNode.SetAttribute(CREATED_ATTRIBUTE, "1")
    scene.AddNode(volumeNode)
    configureMapDisplay(volumeNode, colorNode, DEFAULT_THRESHOLD)
    _placeInHierarchy(volumeNode, folder)
    return volumeNode


def _addVolumesTable(scene: slicer.vtkMRMLScene, inputVolume: slicer.vtkMRMLNode, volumes: Mapping[str, float],
                     name: str, parentItem: int, seconds: float, device: str) -> slicer.vtkMRMLTableNode:
    """One row per segment: its volume, and how long the run took on which device (the same in every row,
    so that each row read or exported alone still says where it came from)."""
    columns = {SEGMENT_COLUMN: vtk.vtkStringArray(), VOLUME_COLUMN: vtk.vtkDoubleArray(),
               RUN_TIME_COLUMN: vtk.vtkDoubleArray(), COMPUTED_ON_COLUMN: vtk.vtkStringArray()}
    for segmentName, volume in volumes.items():
        columns[SEGMENT_COLUMN].InsertNextValue(segmentName)
        columns[VOLUME_COLUMN].InsertNextValue(volume)
        columns[RUN_TIME_COLUMN].InsertNextValue(round(seconds, 1))
        columns[COMPUTED_ON_COLUMN].InsertNextValue(device)
    table = _newTable(name, columns)
    _markAsOutput(table, inputVolume, VOLUMES)
    scene.AddNode(table)
    _placeInHierarchy(table, parentItem)
    return table


def writeCohortTable(scene: slicer.vtkMRMLScene, runs: List[VolumeRun], name: str) -> slicer.vtkMRMLTableNode:
    """Add a table with one row per cohort input: its volume of each organ in mL (NaN where it was not
    segmented), run time and device as in its own volumes table, and its status (with the error, if any).

    The table refers to every input (role COHORT_INPUT_ROLE, not INPUT_ROLE: a later run for one input must
    not replace it) and sits in the inputs' common subject hierarchy folder or study, else at the top.
    """
    organs = list(dict.fromkeys(organ for run in runs if run.outputs for organ in run.outputs.volumesMl))
    columns = {INPUT_VOLUME_COLUMN: vtk.vtkStringArray(),
               **{cohortVolumeColumn(organ): vtk.vtkDoubleArray() for organ in organs},
               RUN_TIME_COLUMN: vtk.vtkDoubleArray(), COMPUTED_ON_COLUMN: vtk.vtkStringArray(),
               STATUS_COLUMN: vtk.vtkStringArray()}
    for run in runs:
        outputs = run.outputs
        columns[INPUT_VOLUME_COLUMN].InsertNextValue(run.volumeName)
        for organ in organs:
            columns[cohortVolumeColumn(organ)].InsertNextValue(outputs.volumesMl.get(organ, math.nan) if outputs
                                                                else math.nan)
        columns[RUN_TIME_COLUMN].InsertNextValue(round(outputs.seconds, 1) if outputs else math.nan)
        columns[COMPUTED_ON_COLUMN].InsertNextValue(outputs.computedOn if outputs else "")
        columns[STATUS_COLUMN].InsertNextValue(f"{run.status}: {run.message}" if run.message else run.status)
    with sceneTransaction(scene):
        table = _newTable(scene.GenerateUniqueName(name), columns)
        table.SetAttribute(OUTPUT_ATTRIBUTE, COHORT)
        inputs = [run.volume for run in runs if run.volume.GetScene() is scene]
        for inputVolume in inputs:
            table.AddNodeReferenceID(COHORT_INPUT_ROLE, inputVolume.GetID())
        scene.AddNode(table)
        parents = {_hierarchyParent(inputVolume) for inputVolume in inputs}
        _placeInHierarchy(table, parents.pop() if len(parents) == 1 else
                          scene.GetSubjectHierarchyNode().GetSceneItemID())
    return table


def cohortVolumeColumn(organ: str) -> str:
    """The cohort table's column for one organ's volume, e.g. 'liver Volume [mL]'."""
    return f"{organ} {VOLUME_COLUMN}"


def _newTable(name: str, columns: Mapping[str, vtk.vtkAbstractArray]) -> slicer.vtkMRMLTableNode:
    """A table node of `columns` (titles as headers), marked as created by this module; not yet in a scene."""
    table = slicer.vtkMRMLTableNode()
    table.SetName(name)
    for columnName, column in columns.items():
        column.SetName(columnName)
        table.AddColumn(column)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.SetAttribute(CREATED_ATTRIBUTE, "1")
    return table


def _reusableSegmentation(earlier: List[slicer.vtkMRMLNode]) -> Optional[slicer.vtkMRMLSegmentationNode]:
    """The segmentation node this module created for the input before (a user's node is not reused unasked)."""
    return next((node for node in earlier if node.GetAttribute(OUTPUT_ATTRIBUTE) == SEGMENTATION
                 and node.GetAttribute(CREATED_ATTRIBUTE) is not None), None)


def _fillSegmentation(segmentationNode: slicer.vtkMRMLSegmentationNode, inputVolume: slicer.vtkMRMLScalarVolumeNode,
                      result, parentItem: int) -> None:
    """Replace the model's segments in `segmentationNode` and show it in slice and 3D views."""
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
    addSegmentsFromLabels(segmentationNode.GetSegmentation(), result.labels, result.classes)
    _markAsOutput(segmentationNode, inputVolume, SEGMENTATION)
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.GetDisplayNode().SetVisibility(True)
    segmentationNode.CreateClosedSurfaceRepresentation()
    _placeInHierarchy(segmentationNode, parentItem)


def useSurfaceNets(segmentation: slicer.vtkSegmentation) -> None:
    """3D surfaces by VTK's SurfaceNets with its own smoothing (Segment Editor's Show 3D options): faster than
    the default flying edges and windowed-sinc smoothing (docs/benchmarks.md), without their slight shrinkage.
    A Slicer without this conversion method keeps its default."""
    rule = slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule
    if not hasattr(rule, "GetSurfaceNetInternalSmoothingParameterName"):
        return
    segmentation.SetConversionParameter(rule.GetConversionMethodParameterName(), "1")
    segmentation.SetConversionParameter(rule.GetSurfaceNetInternalSmoothingParameterName(), "1")


def _removeOutputs(scene: slicer.vtkMRMLScene, nodes: List[slicer.vtkMRMLNode]) -> None:
    """Remove earlier outputs (with display and storage nodes and hierarchy items), then emptied output folders."""
    shNode = scene.GetSubjectHierarchyNode()
    folders = set()
    for node in nodes:
        item = shNode.GetItemByDataNode(node)
        if item:
            folders.add(shNode.GetItemParent(item))
            shNode.RemoveItem(item, False, False)
        helpers = []
        if node.IsA("vtkMRMLDisplayableNode"):
            helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        for removed in [node] + helpers:
            if removed is not None:
                scene.RemoveNode(removed)
    for folder in folders:
        if shNode.GetItemAttribute(folder, OUTPUT_ATTRIBUTE) == FOLDER and shNode.GetNumberOfItemChildren(folder) == 0:
            shNode.RemoveItem(folder, False, False)
