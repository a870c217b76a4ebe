"""The AttentionUNetSeg module's logic: Slicer nodes in, segmentation and attention-map nodes out; no Qt."""
from .background import BackgroundSegmentation
from .conversion import updateVolumeFromImage, volumeNodeToImage
from .follower import FineTuneFollower, FineTuneUpdate, MapLook, RunFollower, RunUpdate
from .logic import AttentionUNetSegLogic
from .outputs import CohortOutputs, EditedSegmentationError, SegmentationOutputs, VolumeRun

__all__ = ["AttentionUNetSegLogic", "BackgroundSegmentation", "CohortOutputs", "EditedSegmentationError",
           "FineTuneFollower", "FineTuneUpdate", "MapLook", "RunFollower", "RunUpdate", "SegmentationOutputs", "VolumeRun",
           "updateVolumeFromImage", "volumeNodeToImage"]
