"""Training inputs: options and config files, label maps, dataset layouts, splits, sample order, and the bad
inputs a run must refuse with a message naming the problem (or, for a case without organs, accept with a warning)."""
from __future__ import annotations

import csv
import json
import logging
import subprocess
from pathlib import Path
from typing import List

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import TOTALSEG, make_model_file, run_cli
from training_support import TINY_RUN, real_ct_csv, shared_cache, train_command

from AttentionUNetSegLib.models.model_file import read_metadata
from AttentionUNetSegLib.models.segment_classes import DEFAULT_CLASS_NAMES
from AttentionUNetSegLib.datasets.cases import discover_cases
from AttentionUNetSegLib.datasets.label_maps import LabelMap, bundled_label_maps, load_label_map
from AttentionUNetSegLib.datasets.splits import fold_cases
from AttentionUNetSegLib.errors import DatasetError, InvalidOptionError, OutputError
from AttentionUNetSegLib.training import TrainConfig, train
from AttentionUNetSegLib.training.config import config_from_sources
from AttentionUNetSegLib.training.data import EpochSampler
from AttentionUNetSegLib.training.setup import plan_model


def _tiny_config(data: Path, output: Path, cache: Path, **options) -> TrainConfig:
    values = dict(data=str(data), output=str(output), cache_dir=str(cache), label_map="totalsegmentator",
                  feature_scale=16, patch_size=(48, 48, 32), spacing_mm=(4.0, 4.0, 4.0), folds=2, epochs=1,
                  iterations_per_epoch=1, batch_size=1, tensorboard=False, snapshots=False)
    return TrainConfig(**{**values, **options})


def _write_csv(path: Path, rows: List[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("case", "image", "label"), *rows])
    return path


def _image(path: Path, size=(6, 5, 4), spacing=(1.0, 1.0, 1.0), value: int = 0) -> Path:
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image += value
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


# options and config files

def test_flags_override_the_config_file_which_overrides_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "options.yaml"
    config_file.write_text("data: cases.csv\noutput: out\nepochs: 7\nlr: 0.001\npatch_size: [64, 64, 32]\n")
    config = config_from_sources({"lr": 0.01}, config_file)
    assert (config.epochs, config.lr, config.patch_size, config.batch_size) == (7, 0.01, (64, 64, 32), 2)


def test_unknown_and_invalid_options_are_named(tmp_path: Path) -> None:
    config_file = tmp_path / "options.json"
    config_file.write_text(json.dumps({"data": "d", "output": "o", "learning_rate": 1}))
    with pytest.raises(InvalidOptionError, match="unknown option.*learning_rate"):
        config_from_sources({}, config_file)
    with pytest.raises(InvalidOptionError, match="patch_size must be three multiples of 16"):
        TrainConfig(data="d", output="o", patch_size=(50, 48, 32))
    with pytest.raises(InvalidOptionError, match="fold must be 0..4"):
        TrainConfig(data="d", output="o", fold=5)
    with pytest.raises(InvalidOptionError, match="no dataset"):
        TrainConfig(output="o")


def test_module_entry_point_prints_the_train_help() -> None:
    completed = subprocess.run(train_command(["--help"]),
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    assert "--resume" in completed.stdout
    assert "torchrun" in completed.stdout


def test_fine_tuning_options_may_not_contradict_the_model(tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "base.safetensors")
    label_map = load_label_map("nih-pancreas")
    with pytest.raises(InvalidOptionError, match=r"feature_scale 8 \(the model has 16\)"):
        plan_model(TrainConfig(data="d", output="o", init_model=str(model), feature_scale=8), label_map)
    plan = plan_model(TrainConfig(data="d", output="o", init_model=str(model)), label_map)
    assert [c.name for c in plan.trained_classes(label_map)] == ["background", "pancreas"]


# label maps

def test_bundled_label_maps_produce_the_default_classes() -> None:
    assert bundled_label_maps() == ["amos", "btcv", "msd-pancreas", "nih-pancreas", "totalsegmentator"]
    for name in bundled_label_maps():
        label_map = load_label_map(name)
        assert label_map.class_names == [n for n in DEFAULT_CLASS_NAMES[1:] if n in label_map.classes], name


def test_totalsegmentator_kidneys_merge_and_other_structures_become_background() -> None:
    label_map = load_label_map("totalsegmentator")
    values = {name: i for i, name in enumerate(DEFAULT_CLASS_NAMES)}
    source = np.array([0, 1, 2, 3, 5, 7, 52, 117], dtype=np.uint8)
    assert label_map.remap(source, values, "c").tolist() == [0, 2, 3, 3, 4, 1, 0, 0]


def test_decathlon_dataset_json_labels_are_the_default_label_map(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"labels": {"0": "background", "1": "pancreas", "2": "cancer"}, "training": []}))
    label_map = load_label_map(None, dataset)
    assert label_map.classes == {"pancreas": (1,), "cancer": (2,)}
    assert label_map.unlisted == "error"
    with pytest.raises(InvalidOptionError, match="no label map: give --label-map"):
        load_label_map(None, None)


def test_label_map_definitions_are_checked() -> None:
    with pytest.raises(InvalidOptionError, match=r"source value\(s\) \[2\] are given to more than one class"):
        LabelMap(classes={"kidney": (2, 3), "spleen": (2,)})
    with pytest.raises(InvalidOptionError, match="neither a bundled map"):
        load_label_map("totalsegmentater")


@pytest.mark.shared_data
def test_label_values_missing_from_the_label_map_stop_the_run_naming_the_case(tmp_path: Path) -> None:
    data = _write_csv(tmp_path / "cases.csv", [("patient_a", TOTALSEG / "example_ct_sm.nii.gz",
                                                TOTALSEG / "example_seg.nii.gz")])
    config = _tiny_config(data, tmp_path / "out", tmp_path / "cache", label_map="7=pancreas,1=spleen", fold="all")
    with pytest.raises(DatasetError, match=r"case patient_a: 39 label value\(s\) \[2, 3, 4, 5,") as error:
        train(config)
    assert "unlisted" in str(error.value)


@pytest.mark.shared_data
def test_cpu_bfloat16_is_refused_where_its_convolution_gradients_are_wrong(tmp_path: Path) -> None:
    # PyTorch 2.13's CPU bf16 weight gradient of a 3x3x3 convolution is wrong on maps 2 voxels deep (on this
    # project's CPUs; off by up to 1e36, or NaN) and right on other depths, which training therefore allows
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(16, 32, 3, padding=1)
    for depth in (1, 3, 4):
        x = torch.randn(1, 16, depth, 4, 4)
        conv.zero_grad()
        conv(x).sum().backward()
        exact = conv.weight.grad.clone()
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x).float().sum().backward()
        assert float((conv.weight.grad - exact).abs().max() / exact.abs().max()) < 0.02, depth
    data = _write_csv(tmp_path / "cases.csv", [("patient_a", TOTALSEG / "example_ct_sm.nii.gz",
                                                TOTALSEG / "example_seg.nii.gz")])
    config = _tiny_config(data, tmp_path / "out", tmp_path / "cache", precision="bf16", fold="all")
    with pytest.raises(InvalidOptionError, match=r"patch depth of 32 gives feature maps 2 voxels deep at level 4.*"
                                                 r"--precision fp32"):
        train(config)
    assert not (tmp_path / "cache").exists(), "refused before any case was preprocessed"


# dataset layouts

def test_dataset_layouts_msd_folder_pairs_and_csv(tmp_path: Path) -> None:
    msd = tmp_path / "msd"
    for name in ("a", "b"):
        _image(msd / "imagesTr" / f"{name}.nii.gz")
        _image(msd / "labelsTr" / f"{name}.nii.gz")
    (msd / "dataset.json").write_text(json.dumps({"training": [
        {"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ("b", "a")]}))
    assert [c.name for c in discover_cases(msd)] == ["a", "b"]

    pairs = tmp_path / "pairs"
    _image(pairs / "images" / "case1_0000.nrrd")
    _image(pairs / "labels" / "case1.nrrd")
    (pairs / "images" / "dicom_case").mkdir()
    _image(pairs / "labels" / "dicom_case.nii.gz")
    cases = discover_cases(pairs)
    assert [(c.name, c.image.name) for c in cases] == [("case1", "case1_0000.nrrd"), ("dicom_case", "dicom_case")]

    table = _write_csv(tmp_path / "list.csv", [("x", "pairs/images/case1_0000.nrrd", "pairs/labels/case1.nrrd")])
    assert discover_cases(table)[0].image == pairs / "images" / "case1_0000.nrrd"


def test_unmatched_and_missing_files_are_listed(tmp_path: Path) -> None:
    _image(tmp_path / "imagesTr" / "only_image.nii.gz")
    _image(tmp_path / "labelsTr" / "only_label.nii.gz")
    with pytest.raises(DatasetError, match=r"\['only_image', 'only_label'\]"):
        discover_cases(tmp_path)
    table = _write_csv(tmp_path / "list.csv", [("gone", "nowhere.nii.gz", "labelsTr/only_label.nii.gz")])
    with pytest.raises(DatasetError, match="missing files: gone: .*nowhere.nii.gz"):
        discover_cases(table)


@pytest.mark.shared_data
def test_image_and_label_grids_that_do_not_match_name_the_case(tmp_path: Path) -> None:
    label = sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz"))
    sitk.WriteImage(label[:, :, :20], str(tmp_path / "cropped_seg.nii.gz"))
    data = _write_csv(tmp_path / "cases.csv", [
        ("patient_a", TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz"),
        ("cropped", TOTALSEG / "example_ct_sm.nii.gz", tmp_path / "cropped_seg.nii.gz"),
    ])
    completed = run_cli(["train", data, "-o", tmp_path / "out", *TINY_RUN, "--cache-dir", tmp_path / "cache"])
    assert completed.returncode == 1
    assert "case cropped: the label grid (size (122, 101, 20)" in completed.stderr
    assert "does not match the image grid (size (122, 101, 30)" in completed.stderr


@pytest.mark.shared_data
def test_unwritable_output_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    completed = run_cli(["train", real_ct_csv(tmp_path), "-o", blocker / "out", *TINY_RUN])
    assert completed.returncode == 1
    assert f"cannot write to output folder {blocker / 'out'}" in completed.stderr
    with pytest.raises(OutputError, match="choose a folder you can write to"):
        train(_tiny_config(real_ct_csv(tmp_path), blocker, tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.shared_data
def test_case_without_foreground_is_kept_with_a_warning(tmp_path: Path, tmp_path_factory, caplog) -> None:
    reference = sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz"))
    empty = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(reference)
    sitk.WriteImage(empty, str(tmp_path / "empty_seg.nii.gz"))
    data = _write_csv(tmp_path / "cases.csv", [
        ("patient_a", TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz"),
        ("no_organs", TOTALSEG / "example_ct_sm.nii.gz", tmp_path / "empty_seg.nii.gz"),
    ])
    with caplog.at_level(logging.WARNING):
        result = train(_tiny_config(data, tmp_path / "out", shared_cache(tmp_path_factory), fold="all",
                                    iterations_per_epoch=2, batch_size=2))
    assert any("case no_organs has no foreground" in r.getMessage() and "kept" in r.getMessage()
               for r in caplog.records)
    assert result.progress.global_step == 2
    assert read_metadata(result.files["final"]).provenance["cases"] == {"train": 2, "validation": 0}


# splits and sample order

def test_splits_are_made_once_and_reused(tmp_path: Path) -> None:
    names = [f"case{i}" for i in range(7)]
    path = tmp_path / "splits.json"
    train_names, val_names = fold_cases(names, 1, 3, seed=0, path=path, write=True)
    assert sorted(train_names + val_names) == names
    assert not set(train_names) & set(val_names)
    splits = json.loads(path.read_text())
    assert sorted(n for s in splits for n in s["val"]) == names
    assert fold_cases(names, 1, 3, seed=99, path=path, write=True) == (train_names, val_names)
    with pytest.raises(DatasetError, match=r"cases the dataset does not have: \['case6'\]"):
        fold_cases(names[:6], 0, 3, seed=0, path=path, write=False)
    with pytest.raises(DatasetError, match="needs at least 5 cases"):
        fold_cases(names[:3], 0, 5, seed=0, path=tmp_path / "other.json", write=False)


def test_one_fixed_split_comes_from_a_splits_file_only(tmp_path: Path) -> None:
    names = [f"case{i}" for i in range(5)]
    path = tmp_path / "holdout.json"
    path.write_text(json.dumps([{"train": names[:3], "val": names[3:]}]))
    assert TrainConfig(data="d", output="o", folds=1, splits=str(path)).folds == 1
    assert fold_cases(names, 0, 1, seed=0, path=path, write=False) == (names[:3], names[3:])
    with pytest.raises(InvalidOptionError, match="folds must be >= 2 .* or 1 with a --splits file"):
        TrainConfig(data="d", output="o", folds=1)
    with pytest.raises(DatasetError, match="single train/val split must be given as a --splits file"):
        fold_cases(names, 0, 1, seed=0, path=tmp_path / "missing.json", write=True)
    assert not (tmp_path / "missing.json").exists()


def test_two_ranks_see_the_samples_of_one_process_and_resume_skips_exactly() -> None:
    single = EpochSampler(8, seed=3, rank=0, world_size=1)
    ranks = [EpochSampler(8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for sampler in (single, *ranks):
        sampler.set_epoch(2)
    one, both = list(single), [list(s) for s in ranks]
    assert sorted(one) == sorted(both[0] + both[1])
    for step in range(2):  # a global batch of 4 = 2 per rank
        per_rank = both[0][2 * step:2 * step + 2] + both[1][2 * step:2 * step + 2]
        assert sorted(one[4 * step:4 * step + 4]) == sorted(per_rank)
    single.set_epoch(2, skip=3)
    assert list(single) == one[3:]
    single.set_epoch(3)
    assert list(single) != one


# augmentation

def test_intensity_augmentation_moves_hu_within_its_bounds_reproducibly(tmp_path: Path) -> None:
    """Off by default (the paper); on, each patch's HU are scaled around water and shifted, seeded."""
    from AttentionUNetSegLib.models.intensity import IntensityNormalisation
    from AttentionUNetSegLib.training.augment import training_transform

    intensity = IntensityNormalisation(-200.0, 300.0, 50.0, 100.0)
    hu, label = np.full((1, 24, 24, 24), 40.0, np.float32), np.zeros((1, 24, 24, 24), np.uint8)
    label[0, 8:16, 8:16, 8:16] = 1
    geometry_off = dict(rotation_deg=0.0, scale_range=(1.0, 1.0), shift=0.0, flips=False)

    def patch_hu(config: TrainConfig, seed: int) -> np.ndarray:
        transform = training_transform(config, (16, 16, 16), 5, {"background": 0, "organ": 1}, intensity, (2.0, 2.0, 2.0))
        transform.set_random_state(seed=seed)
        patch = transform({"image": hu.copy(), "label": label.copy()})[0]["image"].numpy()
        return patch * intensity.std + intensity.mean

    plain = _tiny_config(tmp_path, tmp_path / "o", tmp_path / "c", **geometry_off)
    assert plain.intensity_shift_hu == 0
    assert plain.intensity_scale == 0
    assert np.allclose(patch_hu(plain, 1), 40.0, atol=1e-3)
    augmented = _tiny_config(tmp_path, tmp_path / "o", tmp_path / "c", intensity_shift_hu=60.0,
                             intensity_scale=0.2, **geometry_off)
    means = [float(patch_hu(augmented, seed).mean()) for seed in range(16)]
    assert all(40 * 0.8 - 60 - 1e-3 <= m <= 40 * 1.2 + 60 + 1e-3 for m in means)
    assert np.ptp(means) > 40  # the offsets really spread
    assert np.array_equal(patch_hu(augmented, 3), patch_hu(augmented, 3))
    with pytest.raises(InvalidOptionError, match="intensity_shift_hu"):
        _tiny_config(tmp_path, tmp_path / "o", tmp_path / "c", intensity_shift_hu=-1.0)


def test_paper_augmentation_patch_size_organ_oversampling_and_geometry(tmp_path: Path) -> None:
    """Patches have the patch size, centre on organs as often as asked, and vary by affine and flips."""
    from AttentionUNetSegLib.models.intensity import IntensityNormalisation
    from AttentionUNetSegLib.training.augment import context_size, crop_ratios, training_transform

    assert crop_ratios(5, [0, 1, 2, 3, 4], 0.5) == [4.0, 1.0, 1.0, 1.0, 1.0]  # organs share half the crops
    assert crop_ratios(5, [0, 1], 1.0)[0] > 0  # a case without organs still yields patches
    context = context_size((16, 32, 32), 15.0, 1.3, 0.1)
    assert context[0] > 16 * 1.3
    assert context[1] >= 32 * 1.3 * (np.cos(np.radians(15)) + np.sin(np.radians(15)))

    hu = np.full((1, 40, 96, 96), -100.0, np.float32)
    label = np.zeros((1, 40, 96, 96), np.uint8)
    hu[0, 14:26, 60:72, 10:22], label[0, 14:26, 60:72, 10:22] = 60.0, 1  # one small organ in a corner
    config = _tiny_config(tmp_path, tmp_path / "o", tmp_path / "c", foreground_probability=0.5)
    transform = training_transform(config, (16, 32, 32), 5, {"background": 0, "organ": 1},
                                   IntensityNormalisation(-200, 300, 50, 100), (2.0, 2.0, 2.0))
    patches = []
    for seed in range(40):
        transform.set_random_state(seed=seed)
        patches.append(transform({"image": hu.copy(), "label": label.copy()})[0])
    assert all(p["image"].shape == (1, 16, 32, 32) for p in patches)
    assert all(p["label"].shape == (1, 16, 32, 32) for p in patches)
    assert all(set(np.unique(p["label"].numpy())) <= {0, 1} for p in patches)  # nearest-neighbour labels
    with_organ = sum(bool((p["label"] == 1).any()) for p in patches)
    assert 12 <= with_organ <= 36  # about half, though the organ fills 0.4 % of the volume
    organ_voxels = {int((p["label"] == 1).sum()) for p in patches if (p["label"] == 1).any()}
    assert len(organ_voxels) > 5  # rotation, scaling and shift change what the patch holds
    transform.set_random_state(seed=7)
    again = transform({"image": hu.copy(), "label": label.copy()})[0]
    assert np.array_equal(again["image"], patches[7]["image"])  # seeded


def _dataset_naming(folder: Path, count: int) -> Path:
    """An MSD-style dataset of one case whose dataset.json names `count` structures, as whole-body datasets do."""
    _image(folder / "imagesTr" / "a.nii.gz", value=-1000)
    _image(folder / "labelsTr" / "a.nii.gz", value=1)
    labels = {"0": "background", **{str(v): f"structure{v}" for v in range(1, count + 1)}}
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "training": [
        {"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]}))
    return folder


def test_more_classes_than_max_classes_are_refused_and_the_classes_are_said(tmp_path: Path) -> None:
    """Without --label-map every structure the dataset.json names becomes a class: more than --max-classes (16)
    is refused before anything is written; a run within the limit says which classes it trains."""
    data = _dataset_naming(tmp_path / "data", 20)
    out = tmp_path / "run"
    refused = run_cli(["train", data, "-o", out])
    assert refused.returncode == 1
    assert "the new model would have 20 classes besides background (structure1, structure2," in refused.stderr
    assert "more than --max-classes 16; without --label-map every label the dataset.json names is a class" \
        in refused.stderr
    assert "or --max-classes 20 to train them all" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not out.exists()
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier run")  # stops the run right after its classes are planned
    allowed = run_cli(["train", data, "-o", out, "--max-classes", "20"])
    assert allowed.returncode == 1
    assert "already holds a training run" in allowed.stderr
    assert f"the new model's classes: background, {', '.join(f'structure{v}' for v in range(1, 21))} (from label " \
           f"map '{data / 'dataset.json'}')" in allowed.stderr
