"""Per-case label maps (a CSV's label_map column): a source that labels fewer organs than the model has
(3D-IRCADb has no pancreas masks) leaves them out of that case's loss, validation and evaluation scores,
instead of teaching them as background; "ignore" values leave voxels out of the loss altogether. Real CT: the
two TotalSegmentator example patients."""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOTALSEG, make_model_file
from training_support import shared_cache

from AttentionUNetSegLib.datasets.cases import discover_cases
from AttentionUNetSegLib.datasets.label_maps import IGNORE_LABEL, LabelMap, load_label_map
from AttentionUNetSegLib.errors import DatasetError, InvalidOptionError
from AttentionUNetSegLib.models.model_file import read_model
from AttentionUNetSegLib.evaluation.model_scoring import CaseSelection, evaluate_model
from AttentionUNetSegLib.models.intensity import IntensityNormalisation
from AttentionUNetSegLib.training import TrainConfig, train
from AttentionUNetSegLib.training.augment import training_transform
from AttentionUNetSegLib.training.losses import SegmentationLoss

NO_PANCREAS = {"name": "no-pancreas", "classes": {"spleen": [1], "kidney": [2, 3], "liver": [5]},
               "unlisted": "background"}


def _dataset(folder: Path, patient_b_map: str) -> Path:
    """Patient A with the run's label map, patient B with its own (`patient_b_map`, relative to the CSV)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no_pancreas.json").write_text(json.dumps(NO_PANCREAS))
    path = folder / "cases.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "image", "label", "label_map"])
        writer.writerow(["patient_a", TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz", ""])
        writer.writerow(["patient_b", TOTALSEG / "example_ct_dicom", TOTALSEG / "example_seg_dicom.nii.gz",
                         patient_b_map])
    return path


@pytest.mark.shared_data
def test_csv_label_map_column_is_read_relative_to_the_csv(tmp_path: Path) -> None:
    cases = {c.name: c for c in discover_cases(_dataset(tmp_path, "no_pancreas.json"))}
    assert cases["patient_a"].label_map is None
    assert cases["patient_b"].label_map == str(tmp_path / "no_pancreas.json")
    cases = {c.name: c for c in discover_cases(_dataset(tmp_path, "totalsegmentator"))}
    assert cases["patient_b"].label_map == "totalsegmentator"  # a bundled map by name


def test_an_unlabelled_class_gets_no_gradient_from_that_sample_only() -> None:
    torch.manual_seed(0)
    loss = SegmentationLoss(5, [0, 1, 2, 3, 4])
    logits = torch.randn(2, 5, 4, 6, 6, requires_grad=True)
    labels = torch.randint(0, 5, (2, 1, 4, 6, 6))
    labels[0][labels[0] == 1] = 0  # sample 0's source has no class 1: those voxels are background there
    labelled = torch.ones(2, 5, dtype=torch.bool)
    labelled[0, 1] = False
    value = loss(logits, labels, labelled)
    value.backward()
    assert torch.isfinite(value)
    assert torch.count_nonzero(logits.grad[0, 1]) == 0  # left out of sample 0's softmax and Dice
    assert torch.count_nonzero(logits.grad[1, 1]) > 0  # still trained by sample 1
    assert torch.count_nonzero(logits.grad[0, 2]) > 0
    everything = torch.ones(2, 5, dtype=torch.bool)
    assert loss(logits, labels, everything) == loss(logits, labels)  # all labelled: the plain loss
    assert loss(logits, labels, everything) != value


def test_marginal_partial_labels_merge_an_unlabelled_class_into_background() -> None:
    """With partial_labels "marginal", a case's unlabelled organ is background's: where that case says
    background, calling it the organ costs nothing, calling it another (labelled) organ still does."""
    labels = torch.zeros(2, 1, 2, 4, 4, dtype=torch.long)
    labels[:, :, 1] = 2  # half of each patch is class 2; the rest background (or the unlabelled class 1)
    labelled = torch.ones(2, 3, dtype=torch.bool)
    labelled[:, 1] = False
    confident = torch.full((2, 3, 2, 4, 4), -20.0)
    confident[:, 2, 1] = 20.0
    for kind in ("dice", "dice_ce"):
        marginal, exclude = (SegmentationLoss(3, [0, 1, 2], kind, mode) for mode in ("marginal", "exclude"))
        organ_found = confident.clone()
        organ_found[:, 1, 0] = 20.0  # the unlabelled class where the labels say background
        assert marginal(organ_found, labels, labelled) < 1e-6
        assert exclude(organ_found, labels, labelled) > 0.1  # excluded: background must claim it
        other_organ = confident.clone()
        other_organ[:, 2, 0] = 20.0  # the labelled class 2 there instead
        assert marginal(other_organ, labels, labelled) > 0.1
    logits = torch.randn(2, 3, 2, 4, 4, requires_grad=True)
    value = SegmentationLoss(3, [0, 1, 2], "dice", "marginal")(logits, labels, labelled)
    value.backward()
    assert torch.count_nonzero(logits.grad[:, 1]) > 0  # pushed up with background where background is


def test_ignored_voxels_get_no_gradient_and_leave_the_loss_of_the_others_as_it_is() -> None:
    """Voxels labelled IGNORE_LABEL (a label map's "ignore" values) are out of every term: their logits get no
    gradient, and the loss equals the loss of the same patch with those voxels cut away."""
    torch.manual_seed(1)
    for kind in ("dice", "dice_ce"):
        loss = SegmentationLoss(5, [0, 1, 2, 3, 4], kind)
        logits = torch.randn(2, 5, 4, 6, 6, requires_grad=True)
        labels = torch.randint(0, 5, (2, 1, 4, 6, 6))
        labels[:, :, 3] = IGNORE_LABEL  # the last slice of both samples
        value = loss(logits, labels)
        value.backward()
        assert torch.isfinite(value)
        assert torch.count_nonzero(logits.grad[:, :, 3]) == 0
        assert torch.count_nonzero(logits.grad[:, :, :3]) > 0
        if kind == "dice":  # Dice sums over voxels: the ignored ones count as if absent
            assert torch.allclose(value, loss(logits[:, :, :3], labels[:, :, :3]), atol=1e-6)


def test_ignore_values_of_a_label_map_become_the_ignore_label(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"classes": {"liver": [5]}, "ignore": [9], "unlisted": "background"}))
    label_map = load_label_map(str(path))
    remapped = label_map.remap(np.array([0, 5, 9, 7], np.uint8), {"liver": 4}, "case")
    assert remapped.tolist() == [0, 4, IGNORE_LABEL, 0]
    assert label_map.to_dict()["ignore"] == [9]
    assert "ignore" not in load_label_map("totalsegmentator").to_dict()
    with pytest.raises(InvalidOptionError, match="given to more than one class"):
        LabelMap({"liver": (5,)}, ignore=(5,))


@pytest.mark.shared_data
def test_a_case_without_pancreas_labels_trains_and_validates_without_its_pancreas(tmp_path: Path, tmp_path_factory,
                                                                                caplog) -> None:
    """With the marginal loss, as the v4 recipe trains: the unlabelled pancreas is merged into background."""
    caplog.set_level(logging.INFO)
    data = _dataset(tmp_path / "data", "no_pancreas.json")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps([{"train": ["patient_a", "patient_b"], "val": ["patient_b"]},
                                  {"train": ["patient_b"], "val": ["patient_a"]}]))
    result = train(TrainConfig(
        data=str(data), output=str(tmp_path / "run"), label_map="totalsegmentator", splits=str(splits), folds=2,
        fold=0, feature_scale=16, patch_size=(48, 48, 32), spacing_mm=(4.0, 4.0, 4.0), epochs=1,
        iterations_per_epoch=2, batch_size=2, cache_dir=str(shared_cache(tmp_path_factory)), tensorboard=False,
        snapshots=False, partial_labels="marginal",
    ))
    assert "case patient_b does not label ['pancreas']" in caplog.text
    assert "merged into background in its loss" in caplog.text
    scores = result.validation.cases[0]
    assert scores.name == "patient_b"
    assert math.isnan(scores.dice["pancreas"])
    assert math.isnan(scores.hd95_mm["pancreas"])
    assert math.isfinite(scores.dice["liver"])  # patient B's liver is labelled and scored
    provenance = read_model(result.files["final"]).metadata.provenance
    assert provenance["trained_classes"] == ["background", "pancreas", "spleen", "kidney", "liver"]  # on patient A
    assert list(provenance["case_label_maps"]) == ["patient_b"]
    assert provenance["case_label_maps"]["patient_b"]["name"] == "no-pancreas"
    assert provenance["config"]["partial_labels"] == "marginal"


@pytest.mark.shared_data
def test_a_case_label_map_with_a_class_the_run_does_not_train_is_refused_before_any_output(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data", "no_pancreas.json")
    output = tmp_path / "run"
    with pytest.raises(DatasetError, match="case patient_b: its label map 'no-pancreas' produces"):
        train(TrainConfig(data=str(data), output=str(output), label_map="7=pancreas", folds=2, feature_scale=16,
                          patch_size=(48, 48, 32), spacing_mm=(4.0, 4.0, 4.0), tensorboard=False))
    assert not output.exists()


@pytest.mark.shared_data
def test_evaluation_leaves_a_class_the_case_does_not_label_undefined(tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "tiny.safetensors")
    data = _dataset(tmp_path / "data", "no_pancreas.json")
    report = evaluate_model(str(model), data, tmp_path / "evaluation", "totalsegmentator",
                            CaseSelection(names=["patient_a", "patient_b"]), device="cpu")
    by_case = {case.case: case.metrics for case in report.cases}
    unlabelled = by_case["patient_b"][1]  # pancreas: labelled in patient B's file, but not by its label map
    assert math.isnan(unlabelled.dice)
    assert math.isnan(unlabelled.hd95_mm)
    assert unlabelled.ref_voxels == 0
    assert by_case["patient_a"][1].ref_voxels > 0
    assert math.isfinite(by_case["patient_a"][1].dice)
    assert by_case["patient_b"][4].ref_voxels > 0  # liver is scored as usual
    assert report.summary()[1]["dice"].n == 1
    assert report.summary()[1]["dice"].undefined == 1


def test_patches_reaching_past_a_thin_volume_are_padded_with_air_not_its_edge_slices(tmp_path: Path) -> None:
    """A scan thinner than the patch (patient B has 20 slices of 2 mm) must not repeat its edge slices, whose
    organs would then be labelled background: the padding is air (normalised, as the sliding window pads at
    inference) with background labels."""
    hu = np.full((1, 6, 64, 64), 60.0, np.float32)  # organ tissue up to the scan's edges
    label = np.ones((1, 6, 64, 64), np.uint8)
    config = TrainConfig(data=str(tmp_path), output=str(tmp_path / "o"), rotation_deg=0.0, scale_range=(1.0, 1.0),
                         shift=0.0, flips=False)
    transform = training_transform(config, (16, 32, 32), 5, {"background": 0, "organ": 1},
                                   IntensityNormalisation(-200, 300, 50, 100), (2.0, 2.0, 2.0))
    transform.set_random_state(seed=0)
    patch = transform({"image": hu, "label": label})[0]
    image, labels = patch["image"].numpy()[0], patch["label"].numpy()[0]
    inside = labels.any(axis=(1, 2))
    assert inside.sum() == 6  # the six real slices, centred
    assert np.allclose(image[~inside], (-200 - 50) / 100, atol=1e-6)
    assert np.all(labels[~inside] == 0)
    assert np.allclose(image[inside], 0.1, atol=1e-5)  # (60 - 50) / 100
