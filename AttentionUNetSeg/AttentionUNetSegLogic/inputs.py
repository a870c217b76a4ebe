"""Checks on the input volume node, with messages that say what to choose instead."""
from __future__ import annotations

from typing import Optional

import slicer
from AttentionUNetSegLib.errors import InputImageError


def validateInputVolume(volumeNode: Optional[slicer.vtkMRMLNode]) -> None:
    """Raise InputImageError unless `volumeNode` is a single-component scalar volume with voxels in a scene."""
    if volumeNode is None:
        raise InputImageError("No input volume is selected: choose the CT volume to segment.")
    name = volumeNode.GetName()
    if volumeNode.GetScene() is None:
        raise InputImageError(f"The input volume '{name}' is no longer in the scene: choose another input volume.")
    if volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputImageError(f"'{name}' is a labelmap volume (a segmentation), not a CT image: "
                              "choose the CT volume as input.")
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode") or volumeNode.IsA("vtkMRMLTensorVolumeNode"):
        raise InputImageError(f"'{name}' is a {volumeNode.GetClassName()} (vector, colour or tensor volume), "
                              "not a CT image: choose a scalar CT volume in Hounsfield units.")
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetNumberOfPoints() == 0 or imageData.GetPointData().GetScalars() is None:
        raise InputImageError(f"The volume '{name}' has no voxels (its image data is empty or was not loaded): "
                              "load the CT again or choose another volume.")
    components = imageData.GetNumberOfScalarComponents()
    if components != 1:
        raise InputImageError(f"The volume '{name}' has {components} values per voxel (a 4D or multi-frame volume): "
                              "extract a single 3D frame first (e.g. with the Sequences module).")
