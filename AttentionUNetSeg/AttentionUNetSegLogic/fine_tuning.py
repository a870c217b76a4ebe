"""Fine-tuning from the scene: (CT volume, segmentation) pairs checked and turned into the engine's cases.

Each segmentation's segments are matched to the base model's classes (AttentionUNetSegLib.datasets.segment_matching:
terminology code, else name). The matched and the ignored segments are drawn onto their volume's grid, on
copies, with the segmentation's linear parent transform applied: class values of the base model, IGNORE_LABEL
for ignored segments, a later segment over an earlier one; unmatched segments stay background. Empty and
single-voxel segments are skipped with a warning (their class is then unlabelled in that case, not background).
Neither the volumes nor the segmentations are modified.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from AttentionUNetSegLib.models.segment_classes import SegmentClass
from AttentionUNetSegLib.errors import InputImageError
from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.inference.preprocessing import resample, validate_image
from AttentionUNetSegLib.datasets.segment_matching import IGNORED, Segment, SegmentMatch, match_segments

from .conversion import imageFromOrientedImage, volumeNodeToImage
from .inputs import validateInputVolume
from .segments import segmentTerminology

if TYPE_CHECKING:  # the engine's training side needs PyTorch: imported when a plan is made
    from AttentionUNetSegLib.training.fine_tuning import FineTuneCase

Pair = Tuple[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode]
MIN_SEGMENT_VOXELS = 2
"""Fewer voxels on the volume's grid than this and a segment is skipped (empty, or a stray click)."""


@dataclass
class PairPlan:
    """One pair as it will be used: its segments' matches and the engine's case."""

    volume: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    matches: List[SegmentMatch]
    case: FineTuneCase

    def describe(self) -> str:
        return (f"'{self.volume.GetName()}' with '{self.segmentation.GetName()}': "
                + "; ".join(str(match) for match in self.matches))


@dataclass
class FineTunePlan:
    """The checked training pairs, the validation pair (or None) and the warnings to show before training."""

    pairs: List[PairPlan]
    validation: Optional[PairPlan] = None
    warnings: List[str] = field(default_factory=list)

    @property
    def cases(self) -> List[FineTuneCase]:
        return [pair.case for pair in self.pairs]

    @property
    def validationCase(self) -> Optional[FineTuneCase]:
        return None if self.validation is None else self.validation.case

    @property
    def watched(self) -> List[slicer.vtkMRMLNode]:
        """Every node the fine-tuning reads (deleting one during a run stops it)."""
        return [node for pair in self.pairs + ([self.validation] if self.validation else [])
                for node in (pair.volume, pair.segmentation)]

    def describe(self) -> List[str]:
        lines = [f"training: {pair.describe()}" for pair in self.pairs]
        if self.validation is not None:
            lines.append(f"validation: {self.validation.describe()}")
        return lines + [f"warning: {warning}" for warning in self.warnings]


def segmentsOf(segmentationNode: slicer.vtkMRMLSegmentationNode) -> List[Segment]:
    """The segments of a segmentation node, in order: name and serialized terminology."""
    segmentation = segmentationNode.GetSegmentation()
    return [Segment(segmentation.GetNthSegment(i).GetName(), segmentTerminology(segmentation.GetNthSegment(i)))
            for i in range(segmentation.GetNumberOfSegments())]


def planFineTune(pairs: Sequence[Pair], classes: Sequence[SegmentClass], ignored: Sequence[str] = (),
                 validation: Optional[Pair] = None) -> FineTunePlan:
    """Check the pairs and make their cases; raises InputImageError naming the pair and the fix for pairs that
    cannot be used (and warns, in the plan, about doubtful ones)."""
    if not pairs:
        raise InputImageError("No training pairs were given: add at least one CT volume with its corrected "
                              "segmentation.")
    volumes = [pair[0] for pair in pairs if pair and pair[0] is not None]
    repeated = {volume.GetName() for volume in volumes if volumes.count(volume) > 1}
    if repeated:
        raise InputImageError(f"The volume(s) {sorted(repeated)} are given in more than one training pair: give "
                              "each CT once, with one segmentation.")
    if validation is not None and validation[0] in volumes:
        raise InputImageError(f"The validation volume '{validation[0].GetName()}' is also a training volume: "
                              "validate on a CT the fine-tuning does not see.")
    plan = FineTunePlan([])
    for index, pair in enumerate(pairs, start=1):
        plan.pairs.append(_planPair(pair, classes, ignored, f"training pair {index}", plan.warnings))
    if validation is not None:
        plan.validation = _planPair(validation, classes, ignored, "the validation pair", plan.warnings)
    return plan


def _planPair(pair: Pair, classes: Sequence[SegmentClass], ignored: Sequence[str], role: str,
              warnings: List[str]) -> PairPlan:
    from AttentionUNetSegLib.training.fine_tuning import FineTuneCase

    volume, segmentationNode = (tuple(pair) + (None, None))[:2]
    validateInputVolume(volume)
    if segmentationNode is None or not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise InputImageError(f"{role.capitalize()} ('{volume.GetName()}') has no segmentation: choose the "
                              "segmentation node that holds its corrected organs.")
    if segmentationNode.GetScene() is None:
        raise InputImageError(f"The segmentation '{segmentationNode.GetName()}' is no longer in the scene.")
    image = volumeNodeToImage(volume)
    warnings += [f"'{volume.GetName()}': {message}" for message in validate_image(image)]
    matches = match_segments(segmentsOf(segmentationNode), classes, ignored)
    names = ", ".join(c.name for c in classes if c.value)
    if not any(match.class_name for match in matches):
        raise InputImageError(
            f"No segment of '{segmentationNode.GetName()}' matches a class of the model ({names}): name the "
            "segments as the classes (e.g. 'Liver', 'Left kidney') or give them standard terminology.")
    labels, drawn = _labelsOnGrid(segmentationNode, matches, classes, image, warnings)
    if not drawn:
        raise InputImageError(
            f"No matched segment of '{segmentationNode.GetName()}' overlaps the volume '{volume.GetName()}' with "
            f"{MIN_SEGMENT_VOXELS} voxels or more: is it the segmentation of this CT (check their positions and "
            "transforms)?")
    return PairPlan(volume, segmentationNode, matches, FineTuneCase(volume.GetName(), image, labels))


def _labelsOnGrid(segmentationNode: slicer.vtkMRMLSegmentationNode, matches: List[SegmentMatch],
                  classes: Sequence[SegmentClass], image: sitk.Image, warnings: List[str]) -> Tuple[sitk.Image, bool]:
    """The matched and ignored segments drawn on `image`'s grid, and whether any matched segment was drawn."""
    from AttentionUNetSegLib.datasets.label_maps import IGNORE_LABEL

    values: Dict[str, int] = {c.name: c.value for c in classes}
    segmentation = _binaryLabelmapCopy(segmentationNode)
    toWorld = _linearToWorld(segmentationNode)
    grid = Grid.of(image)
    labels = np.zeros(grid.shape, np.uint8)
    drawn = False
    for index, match in enumerate(matches):
        if match.class_name is None and match.how != IGNORED:
            continue
        mask = _segmentMask(segmentation, segmentation.GetNthSegmentID(index), toWorld, grid)
        voxels = int(np.count_nonzero(mask))
        where = f"segment '{match.segment}' of '{segmentationNode.GetName()}'"
        if voxels < MIN_SEGMENT_VOXELS:
            warnings.append(f"{where} has {voxels} voxel(s) on its volume's grid: skipped"
                            + ("" if match.how == IGNORED else f" ({match.class_name} is unlabelled in this case)"))
            continue
        labels[mask] = IGNORE_LABEL if match.how == IGNORED else values[match.class_name]
        drawn = drawn or match.how != IGNORED
    return grid.image(labels), drawn


def _binaryLabelmapCopy(segmentationNode: slicer.vtkMRMLSegmentationNode) -> slicer.vtkSegmentation:
    """A copy of the node's segmentation that holds binary labelmaps (converted if its source is another)."""
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    copy = slicer.vtkSegmentation()
    copy.DeepCopy(segmentationNode.GetSegmentation())
    if not copy.ContainsRepresentation(name) and not copy.CreateRepresentation(name):
        raise InputImageError(f"The segmentation '{segmentationNode.GetName()}' cannot be converted to a binary "
                              "labelmap: convert it in the Segmentations module first.")
    return copy


def _linearToWorld(node: slicer.vtkMRMLTransformableNode) -> np.ndarray:
    """The 4x4 RAS matrix of a node's parent transforms (identity without); non-linear ones are refused."""
    transformNode = node.GetParentTransformNode()
    if transformNode is None:
        return np.eye(4)
    if not transformNode.IsTransformToWorldLinear():
        raise InputImageError(f"The segmentation '{node.GetName()}' is under a non-linear transform: harden the "
                              "transform on it (Data module, right-click, Harden transform) and try again.")
    matrix = vtk.vtkMatrix4x4()
    transformNode.GetMatrixTransformToWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _segmentMask(segmentation: slicer.vtkSegmentation, segmentId: str, toWorld: np.ndarray,
                 grid: Grid) -> np.ndarray:
    """A segment's voxels (z, y, x booleans) on `grid`, nearest neighbour."""
    segment = segmentation.GetSegment(segmentId)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if labelmap is None or labelmap.IsEmpty():
        return np.zeros(grid.shape, bool)
    layer = imageFromOrientedImage(labelmap, toWorld)
    mask = sitk.Cast(layer == segment.GetLabelValue(), sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resample(mask, grid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0


def validationSummary(metrics: dict) -> List[str]:
    """Lines with the validation Dice before and after, per class, from a fine-tuned model's metrics."""
    before, after = metrics.get("validation_dice_before"), metrics.get("validation_dice_after")
    if not before or not after:
        return []
    return [f"{name}: Dice {before[name]:.3f} -> {after.get(name, float('nan')):.3f}" for name in before]
