"""Volume nodes <-> SimpleITK images: the one place where Slicer's RAS meets ITK's LPS.

Slicer stores a volume's geometry as an IJK-to-RAS matrix on the node; SimpleITK as origin, spacing
and a direction matrix in LPS. The two differ by the sign of the first two physical axes. SimpleITK is imported
by the functions that make or read an image, when a run needs them, not with the module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer
from AttentionUNetSegLib.io.grid import Grid

if TYPE_CHECKING:
    import SimpleITK as sitk

    from AttentionUNetSegLib.inference.result import ResampledMaps

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])  # its own inverse


def volumeNodeToImage(volumeNode: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    """The volume's voxels on its world grid as a SimpleITK image; `volumeNode` is left untouched.

    A parent transform is hardened on a clone first: a linear one changes only the geometry, a
    non-linear one resamples the voxels onto the volume's own grid, as Slicer's "Harden transform" does.
    """
    world = _hardenedClone(volumeNode)
    return _imageOf(world.GetImageData(), _matrix(world))


def _hardenedClone(volumeNode: slicer.vtkMRMLScalarVolumeNode) -> slicer.vtkMRMLScalarVolumeNode:
    """A copy of `volumeNode`'s geometry and voxels (shared) with its parent transforms applied; not in a scene."""
    clone = slicer.vtkMRMLScalarVolumeNode()
    clone.CopyOrientation(volumeNode)
    clone.SetAndObserveImageData(volumeNode.GetImageData())
    transformNode = volumeNode.GetParentTransformNode()
    if transformNode is None:
        return clone
    if transformNode.IsTransformToWorldLinear():
        toWorld = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformToWorld(toWorld)
        clone.ApplyTransformMatrix(toWorld)
    else:
        toWorld = vtk.vtkGeneralTransform()
        transformNode.GetTransformToWorld(toWorld)
        clone.ApplyTransform(toWorld)
    return clone


def updateVolumeFromImage(volumeNode: slicer.vtkMRMLVolumeNode, image: sitk.Image) -> None:
    """Set `volumeNode`'s voxels and IJK-to-RAS matrix from a SimpleITK image (the node need not be in a scene)."""
    import SimpleITK as sitk

    slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayViewFromImage(image))
    volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRasMatrix(Grid.of(image))))


def volumesFromMaps(maps: ResampledMaps) -> List[slicer.vtkMRMLScalarVolumeNode]:
    """New volume nodes (not in a scene) holding the maps on the model's grid (`maps.source`: a few MB each, where the
    CT's grid would take hundreds), in `maps`' order; the slice views resample them onto the CT as they show them."""
    ijkToRas = slicer.util.vtkMatrixFromArray(ijkToRasMatrix(maps.source))
    nodes = []
    for name in maps:
        node = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(node, maps.source_values(name))
        node.SetIJKToRASMatrix(ijkToRas)
        nodes.append(node)
    return nodes


def orientedImageFromImage(image: sitk.Image) -> slicer.vtkOrientedImageData:
    """A vtkOrientedImageData (as segmentations store labelmaps) with `image`'s voxels and world geometry."""
    import SimpleITK as sitk

    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(image.GetSize())
    array = sitk.GetArrayViewFromImage(image)
    oriented.AllocateScalars(numpy_support.get_vtk_array_type(array.dtype), 1)
    numpy_support.vtk_to_numpy(oriented.GetPointData().GetScalars())[:] = array.ravel()
    oriented.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(ijkToRasMatrix(Grid.of(image))))
    return oriented


def imageFromOrientedImage(oriented: slicer.vtkOrientedImageData, toWorld: np.ndarray) -> sitk.Image:
    """A SimpleITK image (LPS) of a vtkOrientedImageData's voxels, placed in the world by the 4x4 `toWorld`
    (RAS to RAS, e.g. a segmentation's linear parent transform); the voxels are copied."""
    imageToWorld = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(imageToWorld)
    return _imageOf(oriented, toWorld @ slicer.util.arrayFromVTKMatrix(imageToWorld))


def _imageOf(imageData: vtk.vtkImageData, ijkToRas: np.ndarray) -> sitk.Image:
    """A copy of `imageData`'s voxels as a SimpleITK image whose index (0, 0, 0) is the first voxel of its extent,
    placed by the IJK-to-RAS matrix of the extent's indices."""
    import SimpleITK as sitk

    extent = imageData.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    voxels = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(shape)
    image = sitk.GetImageFromArray(voxels)  # copies
    ijkToRas = ijkToRas.copy()
    ijkToRas[:3, 3] = (ijkToRas @ np.array([extent[0], extent[2], extent[4], 1.0]))[:3]
    _setGeometry(image, ijkToRas)
    return image


def ijkToRasMatrix(grid: Grid) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a grid (`Grid.of(image)` for a SimpleITK image's)."""
    matrix = np.eye(4)
    direction = np.array(grid.direction).reshape(3, 3)
    matrix[:3, :3] = RAS_FROM_LPS @ direction @ np.diag(grid.spacing)
    matrix[:3, 3] = RAS_FROM_LPS @ np.array(grid.origin)
    return matrix


def _matrix(volumeNode: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _setGeometry(image: sitk.Image, ijkToRas: np.ndarray) -> None:
    """Set origin, spacing and direction (LPS) of `image` from an IJK-to-RAS matrix."""
    spacing = np.linalg.norm(ijkToRas[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((RAS_FROM_LPS @ ijkToRas[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin((RAS_FROM_LPS @ ijkToRas[:3, 3]).tolist())
