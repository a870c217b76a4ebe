"""All-or-nothing scene changes: what a failed block added to the scene is removed again."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Set

import vtk

import slicer


@contextmanager
def sceneTransaction(scene: slicer.vtkMRMLScene) -> Iterator[None]:
    """Run the block; if it raises, remove the nodes and subject hierarchy items it added, then re-raise."""
    nodesBefore = nodeIds(scene)
    itemsBefore = _hierarchyItems(scene)
    try:
        yield
    except BaseException:
        for nodeId in nodeIds(scene) - nodesBefore:
            node = scene.GetNodeByID(nodeId)
            if node is not None:
                scene.RemoveNode(node)
        shNode = scene.GetSubjectHierarchyNode()
        for item in sorted(_hierarchyItems(scene) - itemsBefore, reverse=True):
            if item in _hierarchyItems(scene):
                shNode.RemoveItem(item, False, False)
        raise


def nodeIds(scene: slicer.vtkMRMLScene) -> Set[str]:
    """IDs of every node in the scene."""
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _hierarchyItems(scene: slicer.vtkMRMLScene) -> Set[int]:
    shNode = scene.GetSubjectHierarchyNode()
    items = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
    return {items.GetId(i) for i in range(items.GetNumberOfIds())}
