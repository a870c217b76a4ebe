"""How attention and probability maps look: heat colour map, window 0-1, threshold, slice-view layers.

Everything here works on MRML nodes only, so it runs headless too: slice views are addressed through
their vtkMRMLSliceCompositeNode, the view layout through the vtkMRMLLayoutNode (absent without a GUI).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

import slicer

HEAT_COLOR_NODE_TAG = "AttentionUNetSeg.AttentionHeat"
HEAT_COLOR_NODE_NAME = "Attention heat"
# Samples of the perceptually uniform "inferno" colour map (matplotlib, CC0) at 0, 1/8, ..., 1.
_INFERNO_ANCHORS = np.array([
    (0, 0, 3), (32, 12, 74), (87, 15, 109), (137, 34, 105), (187, 55, 84),
    (228, 90, 49), (249, 142, 8), (248, 203, 52), (252, 254, 164),
]) / 255.0
GATES_LAYOUT_ID = 7301
GATES_VIEW_PREFIX = "AttentionGate"
MAX_REGISTERED_GATES = 12
"""Side-by-side layouts registered at start-up: up to four levels of three gates (the bundled models have six)."""
_GATES_PER_ROW = 3


def heatColorNode(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLColorTableNode:
    """The module's heat colour table (256 colours), added to `scene` once."""
    node = scene.GetSingletonNode(HEAT_COLOR_NODE_TAG, "vtkMRMLColorTableNode")
    if node is not None:
        return node
    node = slicer.vtkMRMLColorTableNode()
    node.SetSingletonTag(HEAT_COLOR_NODE_TAG)
    node.SetName(HEAT_COLOR_NODE_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    positions = np.linspace(0.0, 1.0, len(_INFERNO_ANCHORS))
    for index, value in enumerate(np.linspace(0.0, 1.0, 256)):
        rgb = [np.interp(value, positions, _INFERNO_ANCHORS[:, channel]) for channel in range(3)]
        node.SetColor(index, f"{value:.3f}", *rgb, 1.0)
    scene.AddNode(node)
    return node


def configureMapDisplay(volumeNode: slicer.vtkMRMLScalarVolumeNode, colorNode: slicer.vtkMRMLColorNode,
                        threshold: float) -> None:
    """Colour map, fixed window 0..1 and a lower threshold (voxels below it are transparent in slice views)."""
    displayNode = volumeNode.GetDisplayNode()
    if displayNode is None:  # not CreateDefaultDisplayNodes: its automatic window would scan every voxel
        displayNode = slicer.vtkMRMLScalarVolumeDisplayNode()
        displayNode.SetAutoWindowLevel(False)
        volumeNode.GetScene().AddNode(displayNode)
        volumeNode.SetAndObserveDisplayNodeID(displayNode.GetID())
    with slicer.util.NodeModify(displayNode):
        displayNode.SetAndObserveColorNodeID(colorNode.GetID())
        displayNode.SetAutoWindowLevel(False)
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        displayNode.SetAutoThreshold(False)
        displayNode.SetThreshold(threshold, 1.0)
        displayNode.SetApplyThreshold(True)
        displayNode.SetInterpolate(True)


def showInSliceViews(scene: slicer.vtkMRMLScene, background: Optional[slicer.vtkMRMLVolumeNode],
                     foreground: Optional[slicer.vtkMRMLVolumeNode], opacity: float,
                     layoutNames: Optional[Sequence[str]] = None) -> None:
    """Show `foreground` over `background` at `opacity` in every slice view (or those named in `layoutNames`)."""
    for compositeNode in _compositeNodes(scene):
        if layoutNames is not None and compositeNode.GetLayoutName() not in layoutNames:
            continue
        with slicer.util.NodeModify(compositeNode):
            if background is not None:
                compositeNode.SetBackgroundVolumeID(background.GetID())
            compositeNode.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            compositeNode.SetForegroundOpacity(opacity)


def hideInSliceViews(scene: slicer.vtkMRMLScene, volumes: Sequence[slicer.vtkMRMLVolumeNode]) -> None:
    """Clear the foreground of the slice views that show one of `volumes` there."""
    shown = {volume.GetID() for volume in volumes}
    for compositeNode in _compositeNodes(scene):
        if compositeNode.GetForegroundVolumeID() in shown:
            compositeNode.SetForegroundVolumeID(None)


def showGatesSideBySide(scene: slicer.vtkMRMLScene, background: slicer.vtkMRMLVolumeNode,
                        gates: Sequence[slicer.vtkMRMLVolumeNode], opacity: float) -> bool:
    """Switch to a layout with one slice view per gate, each showing its gate; False without a view layout."""
    layoutNode = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layoutNode is None or not gates:
        return False
    layoutId = GATES_LAYOUT_ID + len(gates)
    if not layoutNode.IsLayoutDescription(layoutId):  # more gates than registerGatesLayouts registers
        layoutNode.AddLayoutDescription(layoutId, gatesLayoutDescription(len(gates)))
    layoutNode.SetViewArrangement(layoutId)
    for index, gate in enumerate(gates):
        showInSliceViews(scene, background, gate, opacity, layoutNames=[f"{GATES_VIEW_PREFIX}{index + 1}"])
    return True


def registerGatesLayouts(layoutNode: slicer.vtkMRMLLayoutNode) -> None:
    """Register the side-by-side layouts for 1 to MAX_REGISTERED_GATES gates (ids GATES_LAYOUT_ID + count), as
    Slicer starts: a saved scene stores only the layout's id, so reopening one shown in such a layout needs its
    description there first (5.6 falls back to the default layout with a warning, newer Slicers to none)."""
    for count in range(1, MAX_REGISTERED_GATES + 1):
        if not layoutNode.IsLayoutDescription(GATES_LAYOUT_ID + count):
            layoutNode.AddLayoutDescription(GATES_LAYOUT_ID + count, gatesLayoutDescription(count))


def gatesLayoutDescription(count: int) -> str:
    """Slicer layout XML with `count` axial slice views, three to a row."""
    views = [
        f'<item><view class="vtkMRMLSliceNode" singletontag="{GATES_VIEW_PREFIX}{n}">'
        '<property name="orientation" action="default">Axial</property>'
        f'<property name="viewlabel" action="default">{n}</property>'
        '<property name="viewcolor" action="default">#F0A030</property></view></item>'
        for n in range(1, count + 1)
    ]
    rows = [f'<item><layout type="horizontal">{"".join(views[i:i + _GATES_PER_ROW])}</layout></item>'
            for i in range(0, count, _GATES_PER_ROW)]
    return f'<layout type="vertical">{"".join(rows)}</layout>'


def _compositeNodes(scene: slicer.vtkMRMLScene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
