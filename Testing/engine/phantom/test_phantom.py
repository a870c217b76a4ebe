"""Synthetic phantoms: reproducibility, anatomy (labels, volumes, HU, positions in LPS space), label ids, CLI."""
from __future__ import annotations

import json
from typing import Dict, List

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import TOTALSEG, run_cli
from scipy import ndimage

from AttentionUNetSegLib.errors import InvalidOptionError
from AttentionUNetSegLib.phantom import DEFAULT_LABELS, DEFAULT_SIZE, DEFAULT_SPACING, generate_phantom

SMALL = {"size": (48, 48, 40), "spacing": (6.5, 6.5, 7.0)}  # the default field of view, coarsely sampled
VERTEBRAE = [value for name, value in DEFAULT_LABELS.items() if name.startswith("vertebrae_")]


def arrays(seed: int, **kwargs):
    image, labels = generate_phantom(seed, **kwargs)
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(labels)


@pytest.fixture(scope="module")
def phantoms() -> List[tuple]:
    """Three default-size phantoms: (image, labels, hu array, label array)."""
    result = []
    for seed in (0, 1, 2):
        image, labels = generate_phantom(seed)
        result.append((image, labels, sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(labels)))
    return result


def test_same_seed_gives_identical_volumes_and_another_seed_does_not():
    hu, labels = arrays(5, **SMALL)
    hu_again, labels_again = arrays(5, **SMALL)
    hu_other, labels_other = arrays(6, **SMALL)
    np.testing.assert_array_equal(hu, hu_again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(hu, hu_other)
    assert not np.array_equal(labels, labels_other)


def test_geometry_is_lps_centred_and_as_requested():
    image, labels = generate_phantom(1, size=(40, 36, 30), spacing=(7.0, 8.0, 9.0))
    for volume in (image, labels):
        assert volume.GetSize() == (40, 36, 30)
        assert volume.GetSpacing() == (7.0, 8.0, 9.0)
        assert volume.GetOrigin() == pytest.approx((-19.5 * 7.0, -17.5 * 8.0, -14.5 * 9.0))
        assert volume.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert image.GetPixelID() == sitk.sitkInt16
    assert labels.GetPixelID() == sitk.sitkUInt8


def _volumes_ml(labels: np.ndarray, image: sitk.Image) -> Dict[str, float]:
    counts = np.bincount(labels.ravel(), minlength=256)
    return {name: counts[value] * np.prod(image.GetSpacing()) / 1000 for name, value in DEFAULT_LABELS.items()}


def test_target_organs_are_present_with_plausible_volumes(phantoms):
    for image, _, _, labels in phantoms:
        ml = _volumes_ml(labels, image)
        assert 700 < ml["liver"] < 3000
        assert 60 < ml["spleen"] < 400
        assert 50 < ml["kidney_left"] < 350
        assert 50 < ml["kidney_right"] < 350
        assert 30 < ml["pancreas"] < 130
        for name in ("aorta", "inferior_vena_cava", "duodenum", "vertebrae_L1", "portal_vein_and_splenic_vein"):
            assert ml[name] > 1, name


def _interior_median(hu: np.ndarray, labels: np.ndarray, values) -> float:
    return float(np.median(hu[ndimage.binary_erosion(np.isin(labels, values))]))


@pytest.mark.parametrize("names, low, high", [
    (["liver"], 45, 80), (["spleen"], 35, 65), (["pancreas"], 25, 55), (["kidney_left", "kidney_right"], 50, 180),
    (["aorta"], 140, 240), (["inferior_vena_cava"], 110, 200), (["lung_lower_lobe_left"], -950, -750),
])
def test_organs_have_ct_like_hounsfield_units(phantoms, names, low, high):
    for _, _, hu, labels in phantoms:
        assert low < _interior_median(hu, labels, [DEFAULT_LABELS[n] for n in names]) < high


def test_bone_is_bright_and_air_outside_the_body_is_dark(phantoms):
    for _, _, hu, labels in phantoms:
        assert np.median(hu[np.isin(labels, VERTEBRAE)]) > 300
        assert np.median(hu[:, :4, :4]) < -950  # an anterior corner of every slice: outside the body


def _centroid(image: sitk.Image, labels: np.ndarray, names) -> np.ndarray:
    """Physical (LPS) centroid of the structures `names`."""
    index = np.argwhere(np.isin(labels, [DEFAULT_LABELS[n] for n in names])).mean(axis=0)[::-1]
    return np.array(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def test_organs_sit_where_anatomy_puts_them_in_lps_space(phantoms):
    for image, _, _, labels in phantoms:
        c = {name: _centroid(image, labels, [name]) for name in
             ("liver", "spleen", "kidney_left", "kidney_right", "pancreas", "aorta", "lung_lower_lobe_left")}
        spine = _centroid(image, labels, [n for n in DEFAULT_LABELS if n.startswith("vertebrae_")])
        assert c["liver"][0] < 0 < c["spleen"][0]  # +x is patient left
        assert c["kidney_right"][0] < c["pancreas"][0] < c["kidney_left"][0]
        assert spine[1] > c["aorta"][1] + 20  # +y is posterior
        assert c["lung_lower_lobe_left"][2] > c["liver"][2] > c["kidney_right"][2]  # +z is superior


def test_label_values_are_configurable_without_changing_the_anatomy():
    hu, default = arrays(3, **SMALL)
    image, labels = generate_phantom(3, label_ids={"pancreas": 1, "liver": 300}, **SMALL)
    custom = sitk.GetArrayFromImage(labels)
    assert labels.GetPixelID() == sitk.sitkUInt16
    assert set(np.unique(custom)) == {0, 1, 300}
    np.testing.assert_array_equal(custom == 1, default == DEFAULT_LABELS["pancreas"])
    np.testing.assert_array_equal(custom == 300, default == DEFAULT_LABELS["liver"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)


@pytest.mark.parametrize("label_ids, message", [
    ({"pancreas": 1, "appendix": 2}, "unknown phantom structures"),
    ({"pancreas": 1, "liver": 1}, "repeated"),
    ({"pancreas": 0}, "from 1 to 65535"),
])
def test_bad_label_ids_are_refused(label_ids, message):
    with pytest.raises(InvalidOptionError, match=message):
        generate_phantom(0, label_ids=label_ids, **SMALL)


@pytest.mark.shared_data
def test_default_labels_are_totalsegmentator_v2_ids():
    totalseg = {name: int(value) for value, name in json.loads((TOTALSEG / "labels_total_v2.json").read_text()).items()}
    assert {name: totalseg[name] for name in DEFAULT_LABELS} == DEFAULT_LABELS
    assert DEFAULT_SIZE == (128, 128, 96)
    assert len(DEFAULT_SPACING) == 3


def test_cli_writes_a_decathlon_dataset_that_matches_the_api(tmp_path):
    out = tmp_path / "phantoms"
    result = run_cli(["phantom", "-o", out, "--count", "2", "--seed", "11", "--size", "40", "40", "32",
                      "--spacing", "8", "8", "9", "--format", "nrrd"])
    assert result.returncode == 0, result.stderr
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2
    assert dataset["modality"] == {"0": "CT"}
    assert dataset["labels"]["7"] == "pancreas"
    assert dataset["labels"]["0"] == "background"
    assert dataset["training"][1] == {"image": "./imagesTr/phantom_001.nrrd", "label": "./labelsTr/phantom_001.nrrd"}
    image, labels = generate_phantom(12, size=(40, 40, 32), spacing=(8, 8, 9))
    written_image = sitk.ReadImage(str(out / "imagesTr" / "phantom_001.nrrd"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written_image), sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "phantom_001.nrrd"))),
                                  sitk.GetArrayFromImage(labels))
    assert written_image.GetOrigin() == pytest.approx(image.GetOrigin())
    assert sorted(p.name for p in out.rglob("*")) == sorted(
        ["dataset.json", "imagesTr", "labelsTr", "phantom_000.nrrd", "phantom_000.nrrd", "phantom_001.nrrd",
         "phantom_001.nrrd"])  # no temporary files left behind
