"""Whether a segmentation node may hold the user's edits: what writing a run into it again would lose.

A run watches the segmentation node it wrote, from then on, for the events Slicer's own editor effects watch
(AbstractScriptedSegmentEditorAutoCompleteEffect): a segment added or removed, a segment's voxels changed (its
source representation) or a segment modified. SegmentModified also comes when a segment's closed surface is made
or, in newer Slicers, its visibility changes: it counts only when a segment's name, colour or terminology
differs from what the run wrote. The first edit marks the node (EDITED_ATTRIBUTE, saved with the scene) and ends
the watch. A node that is not watched in this session (the user's own, or one read from a saved scene) may hold
edits. The watch lives on the node object as a Python attribute (VTK keeps it for the object's life), so it
ends with the node; its observers refer to no node, so they keep none alive.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import slicer

from .segments import segmentTerminology

EDITED_ATTRIBUTE = "AttentionUNetSeg.EditedSinceRun"
_WATCH = "attentionUNetSegEditWatch"
_EVENTS = ("SegmentAdded", "SegmentRemoved", "SegmentModified", "SourceRepresentationModified")
"""vtkSegmentation events, which the node invokes too; their names are those of Slicer 5.4 and later."""
SegmentFacts = Dict[str, Tuple[str, Tuple[float, ...], str]]


def watchForEdits(node: slicer.vtkMRMLSegmentationNode) -> None:
    """Watch `node` for edits from now on; it holds none until one comes."""
    stopWatching(node)
    node.RemoveAttribute(EDITED_ATTRIBUTE)
    written = _segmentFacts(node)

    def onEdit(caller: slicer.vtkMRMLSegmentationNode, event: str) -> None:
        caller.SetAttribute(EDITED_ATTRIBUTE, "1")
        stopWatching(caller)

    def onSegmentModified(caller: slicer.vtkMRMLSegmentationNode, event: str) -> None:
        if _segmentFacts(caller) != written:  # else a surface was made, or a segment shown or hidden
            onEdit(caller, event)

    events = [getattr(slicer.vtkSegmentation, name) for name in _EVENTS]
    setattr(node, _WATCH, [node.AddObserver(event, onSegmentModified if event == slicer.vtkSegmentation.SegmentModified
                                            else onEdit) for event in events])


def stopWatching(node: slicer.vtkMRMLSegmentationNode) -> None:
    """End `node`'s watch, if it has one (it then may hold edits)."""
    tags: Optional[List[int]] = getattr(node, _WATCH, None)
    for tag in tags or []:
        node.RemoveObserver(tag)
    setattr(node, _WATCH, None)


def isWatched(node: slicer.vtkMRMLSegmentationNode) -> bool:
    return getattr(node, _WATCH, None) is not None


def mayHoldEdits(node: slicer.vtkMRMLSegmentationNode) -> bool:
    """True unless a run wrote `node` in this session and nothing has edited it since."""
    return not isWatched(node) or node.GetAttribute(EDITED_ATTRIBUTE) is not None


def _segmentFacts(node: slicer.vtkMRMLSegmentationNode) -> SegmentFacts:
    """Segment ID -> name, colour and terminology: what a user changes besides voxels."""
    segmentation = node.GetSegmentation()
    segments = (segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments()))
    return {segmentation.GetSegmentIdBySegment(segment): (segment.GetName(), tuple(segment.GetColor()),
                                                          segmentTerminology(segment)) for segment in segments}
