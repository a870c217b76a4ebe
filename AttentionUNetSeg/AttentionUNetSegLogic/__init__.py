"""The AttentionUNetSeg module's logic: Slicer nodes in, segmentation and attention-map nodes out; no Qt."""
from .background import BackgroundSegmentation
from .conversion import updateVolumeFromImage, volumeNodeToImage
from .logic import AttentionUNetSegLogic, overallProgress
from .outputs import SegmentationOutputs

__all__ = ["AttentionUNetSegLogic", "BackgroundSegmentation", "SegmentationOutputs", "overallProgress",
           "updateVolumeFromImage", "volumeNodeToImage"]
