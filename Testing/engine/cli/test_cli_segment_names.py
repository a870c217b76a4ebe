"""`train --init-model ... --segment-names`: fine-tuning from the command line on label files whose values are
named as a user's segments (a Slicer .seg.nrrd's own header, or VALUE=NAME pairs), matched to the model's
classes as the Slicer module matches them. Real CT: TotalSegmentator s0009 and its organ masks."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED, run_cli
from slicer_scene import new_scene, user_segmentation

import slicer
from AttentionUNetSegLib.datasets.segment_names import label_file_segments
from AttentionUNetSegLib.models.model_file import read_metadata

pytestmark = pytest.mark.shared_data

S0009 = SHARED / "data" / "totalsegmentator_s0009"
TINY_STEPS = ["--epochs", "1", "--iterations-per-epoch", "1", "--batch-size", "1", "--no-tensorboard",
              "--no-snapshots", "--fold", "all"]


@pytest.fixture(scope="module")
def masks():
    images = {"ct": sitk.ReadImage(str(S0009 / "ct.nii.gz"))}
    for organ in ("pancreas", "kidney_left", "kidney_right", "liver", "spleen"):
        images[organ] = sitk.ReadImage(str(S0009 / "segmentations" / f"{organ}.nii.gz"), sitk.sitkUInt8)
    return images


def dataset(folder: Path, label: Path) -> Path:
    path = folder / "corrected.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["case", "image", "label"], ["s0009", S0009 / "ct.nii.gz", label]])
    return path


def test_a_slicer_segmentation_file_trains_with_its_own_segment_names(tmp_path: Path, masks,
                                                                      tiny_model_path: Path) -> None:
    scene = new_scene(tmp_path / "cache")
    node = user_segmentation(scene, masks)
    node.GetSegmentation().CollapseBinaryLabelmaps(False)  # one layer, as the Segment Editor keeps them
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(tmp_path / "corrected.seg.nrrd"))
    assert storage.WriteData(node)
    segments = label_file_segments(tmp_path / "corrected.seg.nrrd")
    assert [s.name for s in segments.values()] == ["Pancreas", "Left Kidney", "kidney_right", "Segment_4",
                                                   "Spleen (cut)"]
    assert sitk.ReadImage(str(tmp_path / "corrected.seg.nrrd")).GetSize() != masks["ct"].GetSize()  # cropped

    out = tmp_path / "run"
    completed = run_cli(["train", dataset(tmp_path, tmp_path / "corrected.seg.nrrd"), "-o", out, "--init-model",
                         tiny_model_path, "--segment-names", "--ignore-segments", "spleen (cut)", *TINY_STEPS])

    assert completed.returncode == 0, completed.stderr
    assert ("case s0009: Pancreas -> pancreas (by name); Left Kidney -> kidney (by name); kidney_right -> kidney "
            "(by name); Segment_4 -> liver (by terminology); Spleen (cut) -> ignored") in completed.stderr
    provenance = read_metadata(out / "final.safetensors").provenance
    assert provenance["trained_classes"] == ["background", "pancreas", "kidney", "liver"]
    case_map = provenance["case_label_maps"]["s0009"]
    assert case_map["classes"] == {"pancreas": [1], "kidney": [2, 3], "liver": [4]}
    assert case_map["ignore"] == [5]
    voxels = provenance["training_voxels"]
    assert voxels["pancreas"] > 0
    assert voxels["kidney"] > voxels["pancreas"]
    assert "spleen" not in voxels


def test_value_names_for_plain_label_files_and_what_is_refused(tmp_path: Path, masks, tiny_model_path: Path) -> None:
    labels = np.zeros(sitk.GetArrayViewFromImage(masks["ct"]).shape, np.uint8)
    for organ, value in (("liver", 10), ("kidney_left", 20), ("pancreas", 30)):
        labels[sitk.GetArrayViewFromImage(masks[organ]) > 0] = value
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(masks["ct"])
    sitk.WriteImage(image, str(tmp_path / "labels.nii.gz"))
    data = dataset(tmp_path, tmp_path / "labels.nii.gz")

    completed = run_cli(["train", data, "-o", tmp_path / "run", "--init-model", tiny_model_path, "--segment-names",
                         "10=Liver,20=Kidney (left),30=Tumour", *TINY_STEPS])
    assert completed.returncode == 0, completed.stderr
    provenance = read_metadata(tmp_path / "run" / "final.safetensors").provenance
    assert provenance["trained_classes"] == ["background", "kidney", "liver"]
    assert provenance["case_label_maps"]["s0009"]["background"] == [30]  # an unmatched segment is background

    refused = run_cli(["train", data, "-o", tmp_path / "none", "--init-model", tiny_model_path, "--segment-names",
                       "10=Bone,20=Fat,30=Tumour", *TINY_STEPS])
    assert refused.returncode == 1
    assert "none of its segments (Bone -> background, Fat -> background, Tumour -> background) matches a class of " \
           "the model" in refused.stderr
    no_model = run_cli(["train", data, "-o", tmp_path / "nomodel", "--segment-names", "10=Liver", *TINY_STEPS])
    assert no_model.returncode != 0
    assert "give --init-model" in no_model.stderr
    not_a_segmentation = run_cli(["train", data, "-o", tmp_path / "header", "--init-model", tiny_model_path,
                                  "--segment-names", *TINY_STEPS])
    assert not_a_segmentation.returncode == 1
    assert "names no segments" in not_a_segmentation.stderr
    assert not any((tmp_path / name).exists() for name in ("none", "nomodel", "header"))
