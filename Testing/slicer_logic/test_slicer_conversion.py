"""Volume node <-> SimpleITK conversion: RAS/LPS, oblique directions, parent transforms hardened on a clone."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from slicer_scene import add_volume, ijk_to_ras, oblique, world_ijk_to_ras

import slicer
from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLogic import volumeNodeToImage
from AttentionUNetSegLogic.conversion import ijkToRasMatrix


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def assert_same_image(actual: sitk.Image, expected: sitk.Image) -> None:
    assert actual.GetSize() == expected.GetSize()
    assert np.allclose(actual.GetOrigin(), expected.GetOrigin(), atol=1e-6)
    assert np.allclose(actual.GetSpacing(), expected.GetSpacing(), atol=1e-9)
    assert np.allclose(actual.GetDirection(), expected.GetDirection(), atol=1e-9)
    assert actual.GetPixelID() == expected.GetPixelID()
    assert np.array_equal(sitk.GetArrayViewFromImage(actual), sitk.GetArrayViewFromImage(expected))


def physical_ras(image: sitk.Image, index) -> np.ndarray:
    return LPS_TO_RAS @ np.array(image.TransformIndexToPhysicalPoint(tuple(int(i) for i in index)))


def test_patient_b_from_dicom_round_trips_exactly(scene, patient_b: sitk.Image) -> None:
    node = add_volume(scene, patient_b, "B")
    corner = np.array([511, 3, 19])
    assert np.allclose((ijk_to_ras(node) @ np.append(corner, 1.0))[:3], physical_ras(patient_b, corner))
    assert np.array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayViewFromImage(patient_b))
    assert_same_image(volumeNodeToImage(node), patient_b)


def test_oblique_left_handed_grid_round_trips(scene, small_ct: sitk.Image) -> None:
    flipped = sitk.Flip(small_ct, [False, True, False])  # negative determinant, as in example_seg_dicom
    image = oblique(flipped)
    node = add_volume(scene, image, "oblique")
    assert np.linalg.det(ijk_to_ras(node)[:3, :3]) < 0
    assert_same_image(volumeNodeToImage(node), image)
    assert np.allclose(ijkToRasMatrix(Grid.of(image)), ijk_to_ras(node))


def test_linear_parent_transform_is_hardened_on_a_clone(scene, small_ct: sitk.Image) -> None:
    node = add_volume(scene, oblique(small_ct), "transformed")
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    motion = vtk.vtkTransform()
    motion.Translate(12.0, -30.0, 7.5)
    motion.RotateWXYZ(25.0, 0.3, 1.0, 0.2)
    transform.SetMatrixTransformToParent(motion.GetMatrix())
    node.SetAndObserveTransformNodeID(transform.GetID())
    matrix_before, voxels_before = ijk_to_ras(node), slicer.util.arrayFromVolume(node).copy()

    image = volumeNodeToImage(node)

    world = world_ijk_to_ras(node)
    assert not np.allclose(world, matrix_before)
    assert np.allclose(ijkToRasMatrix(Grid.of(image)), world, atol=1e-6)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), voxels_before)
    assert np.array_equal(ijk_to_ras(node), matrix_before)
    assert np.array_equal(slicer.util.arrayFromVolume(node), voxels_before)
    assert node.GetParentTransformNode() is transform


def test_nonlinear_parent_transform_resamples_onto_the_volume_grid(scene, small_ct: sitk.Image) -> None:
    node = add_volume(scene, small_ct, "warped")
    voxels_before = slicer.util.arrayFromVolume(node).copy()
    shift_mm = 2 * small_ct.GetSpacing()[0]  # exactly two voxels along R-L
    grid = vtk.vtkImageData()
    grid.SetOrigin(-1000.0, -1000.0, -2000.0)
    grid.SetSpacing(500.0, 500.0, 1000.0)
    grid.SetDimensions(5, 5, 5)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    displacement = vtk.util.numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())
    displacement[:] = (shift_mm, 0.0, 0.0)
    warp = slicer.vtkOrientedGridTransform()
    warp.SetDisplacementGridData(grid)
    transform = slicer.vtkMRMLGridTransformNode()
    scene.AddNode(transform)
    transform.SetAndObserveTransformToParent(warp)
    node.SetAndObserveTransformNodeID(transform.GetID())

    image = volumeNodeToImage(node)

    assert np.allclose(ijkToRasMatrix(Grid.of(image)), ijk_to_ras(node))  # same grid, voxels resampled
    resampled = sitk.GetArrayViewFromImage(image)
    assert not np.array_equal(resampled, voxels_before)
    # RAS +x is image -i here (LPS direction identity): content moves two voxels towards lower i
    assert np.allclose(resampled[:, :, 4:-4], voxels_before[:, :, 6:-2], atol=1)
    assert np.array_equal(slicer.util.arrayFromVolume(node), voxels_before)
