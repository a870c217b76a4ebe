"""The out-of-distribution guard (plausibility.py) on constructed label volumes and real reference masks."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SAMPLE_CT, SHARED, run_cli

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.inference.plausibility import plausibility_warnings

DATA = SHARED / "data"
CLASSES = {0: "background", 1: "pancreas", 2: "spleen", 3: "kidney", 4: "liver"}
LPS = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
RAS = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)  # voxel x grows towards the patient's right
PERMUTED = (0, 1.0, 0, 0, 0, 1.0, 1.0, 0, 0)  # voxel x runs along LPS y, voxel z along LPS x


def _grid(direction, size=(100, 100, 100), spacing=(2.0, 2.0, 2.0)) -> Grid:
    return Grid(size, (0.0, 0.0, 0.0), spacing, direction)


def _organs(liver_patient_side: str, direction) -> np.ndarray:
    """A liver box on the given patient side and a spleen box on the other, on a 2 mm grid."""
    grid = _grid(direction)
    labels = np.zeros(grid.shape, np.uint8)
    d = np.asarray(direction).reshape(3, 3)
    axis_zyx = 2 - int(np.argmax(np.abs(d[0])))  # the array axis along LPS x
    sign = np.sign(d[0][2 - axis_zyx])
    left_high = sign > 0  # a higher index is further to the patient's left
    right, left = (slice(15, 40), slice(60, 85)) if left_high else (slice(60, 85), slice(15, 40))
    liver, spleen = (right, left) if liver_patient_side == "right" else (left, right)
    liver_box, spleen_box = [slice(35, 65)] * 3, [slice(45, 55)] * 3
    liver_box[axis_zyx], spleen_box[axis_zyx] = liver, slice(spleen.start, spleen.start + 25)
    labels[tuple(liver_box)] = 4
    labels[tuple(spleen_box)] = 2
    return labels


@pytest.mark.parametrize("direction", [LPS, RAS, PERMUTED], ids=["LPS", "RAS", "permuted"])
def test_organs_on_their_sides_pass_and_swapped_ones_warn(direction):
    grid = _grid(direction)
    assert not [w for w in plausibility_warnings(_organs("right", direction), grid, CLASSES) if "patient's" in w]
    swapped = [w for w in plausibility_warnings(_organs("left", direction), grid, CLASSES) if "patient's" in w]
    assert len(swapped) == 2
    assert "liver lies on the patient's left" in swapped[0] + swapped[1]


def test_a_small_whole_liver_warns_but_one_cut_by_the_scan_does_not():
    grid = _grid(LPS)
    labels = np.zeros(grid.shape, np.uint8)
    labels[40:50, 40:50, 20:30] = 4  # 8 mL inside the scan
    assert any("liver is 8.0 mL" in w for w in plausibility_warnings(labels, grid, CLASSES))
    labels[:] = 0
    labels[0:10, 40:50, 20:30] = 4  # the same, cut by the top or bottom of the scan
    assert not any("mL" in w for w in plausibility_warnings(labels, grid, CLASSES))


def test_fragments_and_nothing_found():
    grid = _grid(LPS)
    labels = np.zeros(grid.shape, np.uint8)
    assert plausibility_warnings(labels, grid, CLASSES)[0].startswith("No organ was found")
    labels[40:50, 40:50, 10:20] = 2
    for z in range(5, 95, 10):
        labels[z:z + 4, 80:84, 80:84] = 2  # nine far specks, 37% of the spleen
    assert any("pieces apart" in w for w in plausibility_warnings(labels, grid, CLASSES))


def test_organs_on_a_few_slices_of_a_long_scan_say_most_lies_outside_the_abdomen():
    grid = _grid(LPS, size=(100, 100, 400))  # 800 mm head to foot
    labels = np.zeros(grid.shape, np.uint8)
    labels[0:40, 30:60, 10:40] = 4  # 80 mm of liver at the bottom edge
    assert any("outside the abdomen" in w for w in plausibility_warnings(labels, grid, CLASSES))


def _reference(folder: Path, files: dict):
    """Labels merged from per-organ masks, their grid and the CT, read at test time."""
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    labels = None
    for name, value in files.items():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name))) > 0
        labels = np.zeros(mask.shape, np.uint8) if labels is None else labels
        labels[mask] = value
    return labels, Grid.of(ct), sitk.GetArrayFromImage(ct)


@pytest.mark.shared_data
def test_the_s0009_reference_masks_are_plausible():
    folder = DATA / "totalsegmentator_s0009"
    files = {"segmentations/pancreas.nii.gz": 1, "segmentations/spleen.nii.gz": 2,
             "segmentations/kidney_left.nii.gz": 3, "segmentations/kidney_right.nii.gz": 3,
             "segmentations/liver.nii.gz": 4}
    labels, grid, ct = _reference(folder, files)
    assert plausibility_warnings(labels, grid, CLASSES, ct) == []


@pytest.mark.shared_data
@pytest.mark.parametrize("case", ["3Dircadb1.1", "3Dircadb1.7"])
def test_the_ircad_full_organ_masks_are_plausible(case):
    files = {"masks/spleen.nii.gz": 2, "masks/leftkidney.nii.gz": 3, "masks/rightkidney.nii.gz": 3,
             "masks/liver.nii.gz": 4}
    labels, grid, ct = _reference(DATA / "ircad" / case, files)
    labelled = {value: name for value, name in CLASSES.items() if name != "pancreas"}  # 3D-IRCADb has no pancreas mask
    assert plausibility_warnings(labels, grid, labelled, ct) == []
    flipped = np.ascontiguousarray(labels[:, :, ::-1])  # the same labels mirrored left-right on the grid
    assert sum("patient's" in w for w in plausibility_warnings(flipped, grid, labelled, ct)) == 2


def test_the_pelvis_of_the_sample_ct_holds_no_organ():
    ct = sitk.ReadImage(str(SAMPLE_CT))[:, :, 0:41]
    labels = np.zeros(Grid.of(ct).shape, np.uint8)
    warnings = plausibility_warnings(labels, Grid.of(ct), CLASSES, sitk.GetArrayViewFromImage(ct))
    assert warnings
    assert warnings[0].startswith("No organ was found")


def test_the_warnings_reach_summary_json_through_segment(tmp_path: Path, tiny_model_path: Path) -> None:
    """End to end: a CT of air holds no organ, so whatever a model labels there (nothing, or "organs" in air)
    the guard warns, and the warning must reach the summary."""
    ct = sitk.Image([48, 48, 24], sitk.sitkInt16) - 1000
    ct.SetSpacing((2.0, 2.0, 3.0))
    sitk.WriteImage(ct, str(tmp_path / "air.nii.gz"))
    completed = run_cli(["segment", tmp_path / "air.nii.gz", "-o", tmp_path / "out", "--model", tiny_model_path,
                         "--no-attention", "--quiet"])
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((tmp_path / "out" / "air_summary.json").read_text())
    assert any(w.startswith("No organ was found") or "lies in air" in w for w in summary["warnings"]), summary["warnings"]


def test_an_organ_labelled_in_the_air_around_the_patient_warns():
    ct = sitk.ReadImage(str(SAMPLE_CT))[:, :, 0:41]
    hu = sitk.GetArrayFromImage(ct)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, :10, :10] = 4  # a corner of the field of view, outside the body
    assert (hu[labels == 4] < -500).mean() > 0.5  # the premise: that corner is mostly air
    assert any("liver" in w and "lies in air" in w for w in plausibility_warnings(labels, Grid.of(ct), CLASSES, hu))


def _abdomen(direction, left_kidney_size: int, top: int = 80) -> np.ndarray:
    """Liver (right), spleen (left), pancreas and two kidneys whole inside a 200 mm scan on a 2 mm grid; the left
    kidney `left_kidney_size` voxels wide (the right one 20), the organs' top at slice `top`."""
    grid = _grid(direction)
    labels = np.zeros(grid.shape, np.uint8)
    d = np.asarray(direction).reshape(3, 3)
    axis_x = 2 - int(np.argmax(np.abs(d[0])))  # the array axis along LPS x (patient left)
    sign = np.sign(d[0][2 - axis_x])

    def put(value: int, x: slice, y: slice, z: slice) -> None:
        if sign < 0:
            x = slice(100 - x.stop, 100 - x.start)
        box = [None, None, None]
        box[axis_x], box[2 - int(np.argmax(np.abs(d[1])))], box[2 - int(np.argmax(np.abs(d[2])))] = x, y, z
        labels[tuple(box)] = value

    put(4, slice(5, 45), slice(10, 60), slice(top - 30, top))  # liver, patient's right: 480 mL
    put(2, slice(70, 85), slice(40, 60), slice(top - 15, top))  # spleen, left: 36 mL
    put(1, slice(45, 70), slice(40, 48), slice(top - 39, top - 31))  # pancreas: 13 mL
    put(3, slice(25, 45), slice(60, 80), slice(top - 60, top - 40))  # right kidney, 64 mL
    put(3, slice(60, 60 + left_kidney_size), slice(60, 80), slice(top - 60, top - 40))
    return labels


@pytest.mark.parametrize("direction", [LPS, RAS], ids=["LPS", "RAS"])
def test_a_kidney_far_smaller_than_the_other_warns_naming_its_side(direction):
    grid = _grid(direction)
    assert plausibility_warnings(_abdomen(direction, 20), grid, CLASSES) == []
    warnings = plausibility_warnings(_abdomen(direction, 4), grid, CLASSES)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("The left kidney is 13 mL and the right 64 mL"), warnings


def test_an_organ_missing_from_a_scan_holding_the_whole_upper_abdomen_warns():
    grid = _grid(LPS)
    labels = _abdomen(LPS, 20)
    labels[labels == 1] = 0  # no pancreas
    warnings = plausibility_warnings(labels, grid, CLASSES)
    assert warnings == ["No pancreas was found, although the scan holds the whole upper abdomen (the kidneys are whole "
                        "inside it): the model probably missed it (or it was removed)."]
    cut = np.ascontiguousarray(labels[45:])  # a scan that ends inside the kidneys (slices 40-60): no expectation
    assert not any("No pancreas" in w for w in plausibility_warnings(cut, _grid(LPS, size=(100, 100, 55)), CLASSES))


@pytest.mark.shared_data
def test_liver_in_the_chest_left_of_the_midline_is_called_the_heart():
    """On the real NIH case 1, whose top reaches the heart: a "liver" box between the lungs left of the midline warns,
    the same box on the right, under the right lung where the liver's dome lies, does not."""
    ct = sitk.ReadImage(str(DATA / "nih_pancreas_0001" / "ct.nii.gz"))
    hu = sitk.GetArrayFromImage(ct)
    grid = Grid.of(ct)
    labels = np.zeros(hu.shape, np.uint8)
    top = hu.shape[0]  # index z grows towards the head (identity LPS direction)
    centre = hu.shape[2] // 2
    labels[top - 30:top - 5, 200:300, centre + 40:centre + 120] = 4  # 25 mm x 86 mm x 69 mm: 149 mL, the heart's place
    warnings = plausibility_warnings(labels, grid, {0: "background", 4: "liver"}, hu)
    assert any("of the liver lies in the chest" in w and "probably the heart" in w for w in warnings), warnings
    labels[:] = 0
    labels[top - 30:top - 5, 200:300, centre - 120:centre - 40] = 4  # the mirror image: right, under the right lung
    assert not any("chest" in w for w in plausibility_warnings(labels, grid, {0: "background", 4: "liver"}, hu))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["kidney", "pancreas"])
def test_a_kidney_or_pancreas_in_the_chest_warns(name):
    """On the real NIH case 1: 10 mL of kidney or pancreas in the slices between the lungs warns, wherever it lies
    left or right; the same box at the level of the pancreas (NIH's manual pancreas spans slices 70-140) does not."""
    ct = sitk.ReadImage(str(DATA / "nih_pancreas_0001" / "ct.nii.gz"))
    hu = sitk.GetArrayFromImage(ct)
    grid = Grid.of(ct)
    value = next(v for v, n in CLASSES.items() if n == name)
    labels = np.zeros(hu.shape, np.uint8)
    top, centre = hu.shape[0], hu.shape[2] // 2
    labels[top - 20:top - 10, 250:290, centre - 150:centre - 120] = value  # 10 mm x 34 mm x 26 mm: 9 mL, right
    warnings = plausibility_warnings(labels, grid, {0: "background", value: name}, hu)
    assert any(f"mL of the {name} lies in the chest" in w for w in warnings), warnings
    labels[:] = 0
    labels[100:110, 250:290, centre - 150:centre - 120] = value
    assert not any("chest" in w for w in plausibility_warnings(labels, grid, {0: "background", value: name}, hu))
