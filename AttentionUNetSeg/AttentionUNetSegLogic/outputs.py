"""Output nodes of a run: segmentation, attention and probability volumes, organ volume table.

Every output node refers to its input volume (node reference role `INPUT_ROLE`), says what it is (attribute
`OUTPUT_ATTRIBUTE`) and which run made it (`RUN_ATTRIBUTE`). Each run adds a new segmentation node and new maps
and table, and removes nothing, unless the user chose a segmentation node as the output: that node is filled
(its segments of the model's classes replaced, its others kept), and the maps and table of the run that filled
it before are replaced with it; if it may hold the user's edits (edits.py), only when the caller says so
(`OutputChoice.overwriteEdited`). The maps stay on the model's grid (a few MB each; the slice views resample
them as they show them) and are saved with the scene only when asked. Outputs are written in one scene
transaction: all or nothing, and a chosen segmentation node is put back as it was if the run fails.
"""
from __future__ import annotations

import math
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import vtk

import slicer
from AttentionUNetSegLib.progress import ProgressCallback, SegmentationStage
from AttentionUNetSegLib.errors import AttentionUNetSegError, InputImageError

from .conversion import volumesFromMaps
from .display import configureMapDisplay, heatColorNode
from .edits import isWatched, mayHoldEdits, stopWatching, watchForEdits
from .segments import addSegmentsFromLabels
from .transaction import sceneTransaction

INPUT_ROLE = "attentionUNetSegInput"
OUTPUT_ATTRIBUTE = "AttentionUNetSeg.Output"
GATE_ATTRIBUTE = "AttentionUNetSeg.Gate"
CLASS_ATTRIBUTE = "AttentionUNetSeg.Class"
RUN_ATTRIBUTE = "AttentionUNetSeg.Run"
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
MAPS = (ATTENTION, PROBABILITY)


class EditedSegmentationError(AttentionUNetSegError):
    """The segmentation chosen as the output may hold the user's edits, which writing into it would replace."""


@dataclass(frozen=True)
class OutputChoice:
    """Where a run's outputs go. `segmentation`: a segmentation node to fill (None: a new one); `overwriteEdited`:
    its segments of the model's classes may be replaced even if they may hold the user's edits (made before the
    run started: edits during the run still stop it); `saveMapsWithScene`: whether the map volumes are saved with
    the scene (a whole CT's six maps are tens of MB even on the model's grid)."""

    segmentation: Optional[slicer.vtkMRMLSegmentationNode] = None
    overwriteEdited: bool = False
    saveMapsWithScene: bool = False


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
    return [node for node in _nodes(scene)
            if node.GetNodeReferenceID(INPUT_ROLE) == inputVolume.GetID()
            and node.GetAttribute(OUTPUT_ATTRIBUTE) is not None
            and (kind is None or node.GetAttribute(OUTPUT_ATTRIBUTE) == kind)]


def editsAtRisk(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode], classNames: Iterable[str]) -> List[str]:
    """The names of `segmentationNode`'s segments that a run writing `classNames` would replace and that may hold
    the user's edits (edits.py); empty when there are none, or no node."""
    if segmentationNode is None or not mayHoldEdits(segmentationNode):
        return []
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetSegment(name).GetName() for name in classNames if segmentation.GetSegment(name)]


def claimOutput(choice: OutputChoice, classNames: Sequence[str]) -> None:
    """Check, as a run starts, that it may write into the chosen segmentation node (EditedSegmentationError naming
    the segments at risk and the fix if not), and watch it from now on: edits during the run stop its commit."""
    node = choice.segmentation
    if node is None:
        return
    atRisk = editsAtRisk(node, classNames)
    if atRisk and not choice.overwriteEdited:
        raise EditedSegmentationError(
            f"The segmentation '{node.GetName()}' may hold your edits in {', '.join(atRisk)}, which this run would "
            "replace: choose 'Create new segmentation' as the output, or confirm overwriting them "
            "(overwriteEdited=True).")
    watchForEdits(node)


def writeOutputs(inputVolume: slicer.vtkMRMLScalarVolumeNode, result, seconds: float,
                 choice: OutputChoice = OutputChoice(),
                 progress: Optional[ProgressCallback] = None) -> SegmentationOutputs:
    """Add the nodes of an engine `result` (a SegmentationResult) as a new run for `inputVolume`: a new segmentation
    node, or the chosen one filled (claimOutput checked it as the run started), whose earlier run's maps and table
    this run's replace.

    `seconds`: how long the run has taken so far, recorded in the volumes table with the device it ran on.

    Raises InputImageError if `inputVolume` left the scene while the engine ran, and EditedSegmentationError if
    the chosen segmentation was edited meanwhile; the scene is then unchanged.
    """
    scene = inputVolume.GetScene()
    if scene is None:
        raise InputImageError(f"The input volume '{inputVolume.GetName()}' was deleted while it was being "
                              "segmented; nothing was added.")
    chosen = choice.segmentation
    atRisk = editsAtRisk(chosen, [c.name for c in result.classes if c.value > 0])  # edited since claimOutput
    if atRisk:
        raise EditedSegmentationError(f"The segmentation '{chosen.GetName()}' was edited while it was being "
                                      f"segmented ({', '.join(atRisk)}); nothing was added: run again.")
    report = progress or (lambda stage, fraction: None)
    earlier = _runOutputs(scene, chosen.GetAttribute(RUN_ATTRIBUTE)) if chosen is not None else []
    run = uuid.uuid4().hex
    label = _runLabel(scene, inputVolume.GetName())
    with sceneTransaction(scene):
        parentItem = _hierarchyParent(inputVolume)
        colorNode = heatColorNode(scene) if (result.attention or result.probabilities) else None
        mapSets = [(ATTENTION, result.attention), (PROBABILITY, result.probabilities or {})]
        total = sum(len(images) for _, images in mapSets)
        nodes: Dict[str, Dict[str, slicer.vtkMRMLScalarVolumeNode]] = {}
        written = 0
        for kind, images in mapSets:
            nodes[kind] = {}
            folder = _folder(scene, parentItem, f"{label} {kind} maps") if images else None
            for key, volumeNode in zip(images, volumesFromMaps(images) if images else []):
                mapLabel = gateLabel(key) if kind == ATTENTION else key
                volumeNode.SetName(f"{label} {kind} {mapLabel}")
                nodes[kind][key] = _addMapVolume(scene, inputVolume, volumeNode, key, kind, run, colorNode, folder)
                written += 1
                report(SegmentationStage.OUTPUTS, written / (total + 1))
        saveWithScene(list(nodes[ATTENTION].values()) + list(nodes[PROBABILITY].values()), choice.saveMapsWithScene)
        volumes = result.volumes_ml()
        table = _addVolumesTable(scene, inputVolume, volumes, f"{label} organ volumes", parentItem, seconds,
                                 computedOn(result.device, result.backend, result.precision), run)
        with _restoredOnFailure(chosen):
            segmentationNode = chosen or _newSegmentation(scene, f"{label} segmentation")
            _fillSegmentation(segmentationNode, inputVolume, result, parentItem, run)
            report(SegmentationStage.OUTPUTS, 1.0)
            # the commit: the chosen node's earlier maps and table go only once everything new is in place
            _removeOutputs(scene, earlier)
    watchForEdits(segmentationNode)
    return SegmentationOutputs(segmentationNode, nodes[ATTENTION], nodes[PROBABILITY], table, volumes, seconds,
                               result.device, result.backend, result.precision, dict(result.timings),
                               list(result.warnings))


def saveWithScene(nodes: Iterable[slicer.vtkMRMLNode], save: bool) -> None:
    """Whether `nodes` are saved with the scene, with their display and storage nodes (Slicer writes those of a
    node it skips otherwise)."""
    for node in nodes:
        helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        for saved in [node] + helpers:
            if saved is not None:
                saved.SetSaveWithScene(save)


def mapOutputs(scene: slicer.vtkMRMLScene) -> List[slicer.vtkMRMLNode]:
    """Every attention and probability map this module made in `scene`."""
    return [node for node in _nodes(scene) if node.GetAttribute(OUTPUT_ATTRIBUTE) in MAPS]


def latestRunOutputs(inputVolume: slicer.vtkMRMLNode, kind: str) -> List[slicer.vtkMRMLNode]:
    """`inputVolume`'s outputs of one kind from the latest run that made any."""
    nodes = previousOutputs(inputVolume, kind)
    if not nodes:
        return []
    latest = nodes[-1].GetAttribute(RUN_ATTRIBUTE)
    return [node for node in nodes if node.GetAttribute(RUN_ATTRIBUTE) == latest]


def _nodes(scene: slicer.vtkMRMLScene) -> List[slicer.vtkMRMLNode]:
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]


def _runOutputs(scene: slicer.vtkMRMLScene, run: Optional[str]) -> List[slicer.vtkMRMLNode]:
    """The maps and table of one run (its segmentation node left out)."""
    return [node for node in _nodes(scene) if run is not None and node.GetAttribute(RUN_ATTRIBUTE) == run
            and node.GetAttribute(OUTPUT_ATTRIBUTE) in MAPS + (VOLUMES,)]


def _runLabel(scene: slicer.vtkMRMLScene, inputName: str) -> str:
    """What a run's node names start with: the input's name, then 'NAME 2', 'NAME 3'... for later runs (told by
    their organ volume tables)."""
    label, number = inputName, 1
    while scene.GetFirstNodeByName(f"{label} organ volumes") is not None:
        number += 1
        label = f"{inputName} {number}"
    return label


def _newSegmentation(scene: slicer.vtkMRMLScene, name: str) -> slicer.vtkMRMLSegmentationNode:
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    useSurfaceNets(node.GetSegmentation())
    return node


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


def _markAsOutput(node: slicer.vtkMRMLNode, inputVolume: slicer.vtkMRMLNode, kind: str, run: str) -> None:
    node.SetAttribute(OUTPUT_ATTRIBUTE, kind)
    node.SetAttribute(RUN_ATTRIBUTE, run)
    node.SetNodeReferenceID(INPUT_ROLE, inputVolume.GetID())


@contextmanager
def _restoredOnFailure(node: Optional[slicer.vtkMRMLSegmentationNode]) -> Iterator[None]:
    """If the block raises, put an existing segmentation node's segments, output marks, hierarchy place and edit
    watch back as they were (nodes the block added are the scene transaction's to remove). The block's own
    writes are not edits: the node is not watched while it runs."""
    if node is None:
        yield
        return
    segments = slicer.vtkSegmentation()
    segments.DeepCopy(node.GetSegmentation())
    attributes = {name: node.GetAttribute(name) for name in (OUTPUT_ATTRIBUTE, RUN_ATTRIBUTE)}
    inputId = node.GetNodeReferenceID(INPUT_ROLE)
    shNode = node.GetScene().GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(node)
    parent = shNode.GetItemParent(item) if item else None
    watched = isWatched(node)
    stopWatching(node)
    try:
        yield
    except BaseException:
        node.GetSegmentation().DeepCopy(segments)
        for name, value in attributes.items():
            node.SetAttribute(name, value) if value is not None else node.RemoveAttribute(name)
        node.SetNodeReferenceID(INPUT_ROLE, inputId)
        if item and shNode.GetItemByDataNode(node) == item:
            shNode.SetItemParent(item, parent)
        if watched:
            watchForEdits(node)
        raise


def _addMapVolume(scene: slicer.vtkMRMLScene, inputVolume: slicer.vtkMRMLNode,
                  volumeNode: slicer.vtkMRMLScalarVolumeNode, key: str, kind: str, run: str,
                  colorNode: slicer.vtkMRMLColorNode, folder: int) -> slicer.vtkMRMLScalarVolumeNode:
    """Put a map's new volume node (volumesFromMaps) into the scene as this input's output, displayed as a map."""
    volumeNode.SetAttribute(GATE_ATTRIBUTE if kind == ATTENTION else CLASS_ATTRIBUTE, key)
    _markAsOutput(volumeNode, inputVolume, kind, run)
    scene.AddNode(volumeNode)
    configureMapDisplay(volumeNode, colorNode, DEFAULT_THRESHOLD)
    _placeInHierarchy(volumeNode, folder)
    return volumeNode


def _addVolumesTable(scene: slicer.vtkMRMLScene, inputVolume: slicer.vtkMRMLNode, volumes: Mapping[str, float],
                     name: str, parentItem: int, seconds: float, device: str, run: str) -> slicer.vtkMRMLTableNode:
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
    _markAsOutput(table, inputVolume, VOLUMES, run)
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
    """A table node of `columns` (titles as headers); not yet in a scene."""
    table = slicer.vtkMRMLTableNode()
    table.SetName(name)
    for columnName, column in columns.items():
        column.SetName(columnName)
        table.AddColumn(column)
    table.SetUseColumnTitleAsColumnHeader(True)
    return table


def _fillSegmentation(segmentationNode: slicer.vtkMRMLSegmentationNode, inputVolume: slicer.vtkMRMLScalarVolumeNode,
                      result, parentItem: int, run: str) -> None:
    """Replace the model's segments in `segmentationNode` and show it in slice and 3D views."""
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
    addSegmentsFromLabels(segmentationNode.GetSegmentation(), result.labels, result.classes)
    _markAsOutput(segmentationNode, inputVolume, SEGMENTATION, run)
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
    """Remove outputs (with display and storage nodes and hierarchy items), then emptied output folders."""
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
