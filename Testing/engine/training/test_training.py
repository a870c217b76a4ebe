"""`attention-unet train` end to end on the two real CT scans: a tiny run, its outputs and model files,
fine-tuning with classes left out (AFT), and the guards around resuming a finished run."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Tuple

import pytest
import SimpleITK as sitk
import torch
from conftest import TOTALSEG, run_cli
from training_support import TINY_RUN, log_rows, real_ct_csv, shared_cache

from AttentionUNetSegLib.models.model_file import file_sha256, read_model
from AttentionUNetSegLib.models.segment_classes import DEFAULT_CLASS_NAMES
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.training import TrainConfig, train
from AttentionUNetSegLib.training.config import config_from_sources
from AttentionUNetSegLib.training.time_left import seconds_per_step, time_left

EPOCHS = 4


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("smoke")
    out = folder / "run"
    completed = run_cli(["train", real_ct_csv(folder), "-o", out, *TINY_RUN, "--epochs", EPOCHS,
                         "--iterations-per-epoch", 4, "--batch-size", 2, "--lr", 3e-3, "--validate-every", 2,
                         "--cache-dir", shared_cache(tmp_path_factory)])
    assert completed.returncode == 0, completed.stderr
    return out, completed


@pytest.mark.shared_data
def test_loss_falls_and_every_output_is_written(smoke_run) -> None:
    out, completed = smoke_run
    rows = log_rows(out)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0] - 0.05, losses
    assert [bool(r["val_mean_dice"]) for r in rows] == [False, True, False, True]
    for name in ("final.safetensors", "best.safetensors", "checkpoint.pt", "train_config.yaml", "splits.json"):
        assert (out / name).is_file(), name
    assert str(out / "final.safetensors") in completed.stdout
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(splits[0]["train"] + splits[0]["val"]) == ["patient_a", "patient_b"]
    for epoch in (2, 4):
        picture = sitk.ReadImage(str(out / "attention" / f"epoch_{epoch:04d}.png"))
        assert picture.GetDimension() == 2
        assert picture.GetNumberOfComponentsPerPixel() == 4
        assert min(picture.GetSize()) > 300


@pytest.mark.shared_data
def test_validation_reports_each_case_and_counts_in_the_time_left(smoke_run) -> None:
    _, completed = smoke_run
    lines = completed.stderr.splitlines()
    cases = [i for i, line in enumerate(lines) if "validation: case 1/1 (patient_" in line]
    epochs = {int(line.split("epoch ")[1].split("/")[0]): (i, line) for i, line in enumerate(lines)
              if line.startswith("INFO: epoch ")}
    assert len(cases) == 2, completed.stderr
    assert sorted(epochs) == list(range(1, EPOCHS + 1)), completed.stderr
    assert epochs[1][0] < cases[0] < epochs[2][0] < epochs[3][0] < cases[1] < epochs[4][0]  # after epochs 2 and 4
    assert "left + 2 validation(s), not yet timed" in epochs[1][1]  # none timed yet: said, not left out
    assert " s; " in epochs[2][1].split("validation mean Dice")[1]  # how long the validation took
    for epoch in (2, 3):
        assert "left, 1 validation(s) included" in epochs[epoch][1]
    assert epochs[4][1].endswith("about 0:00:00 left")


def test_time_left_adds_the_validations_to_come_at_their_measured_pace() -> None:
    assert time_left(10, 2.0, 0, None) == "about 0:00:20 left"
    assert time_left(10, 2.0, 2, 45.0) == "about 0:01:50 left, 2 validation(s) included"
    assert time_left(10, 2.0, 2, None) == "about 0:00:20 left + 2 validation(s), not yet timed"


def test_a_resumed_run_is_timed_at_its_pace_since_it_resumed() -> None:
    # 300 steps in 6000 s on a busy machine, resumed: 200 steps more in 300 s
    assert seconds_per_step(500, 6300.0, (300, 6000.0)) == 1.5
    assert seconds_per_step(300, 6000.0, (300, 6000.0)) == 20.0  # no step yet since resuming: the run's pace
    assert seconds_per_step(50, 100.0, (0, 0.0)) == 2.0


@pytest.mark.shared_data
def test_model_file_has_full_metadata_and_segments(smoke_run) -> None:
    out, _ = smoke_run
    model = read_model(out / "final.safetensors")
    metadata = model.metadata
    assert metadata.class_names == DEFAULT_CLASS_NAMES
    assert metadata.spacing_mm == (4.0, 4.0, 4.0)
    assert metadata.patch_size == (48, 48, 32)
    assert metadata.trained
    assert metadata.architecture.feature_scale == 16
    intensity = metadata.intensity
    assert -1024 <= intensity.clip_min < intensity.mean < intensity.clip_max <= 3000
    assert intensity.std > 0
    provenance = metadata.provenance
    assert provenance["epochs"] == EPOCHS
    assert provenance["steps"] == EPOCHS * 4
    assert provenance["seed"] == 0
    assert provenance["label_map"]["classes"]["kidney"] == [2, 3]
    assert provenance["cases"] == {"train": 1, "validation": 1}
    assert provenance["world_size"] == 1
    validation = metadata.metrics["validation"]
    assert validation["epoch"] == EPOCHS
    assert validation["cases"] == 1
    assert set(validation["dice"]) == set(DEFAULT_CLASS_NAMES[1:])

    best = read_model(out / "best.safetensors").metadata.metrics
    logged = [float(r["val_mean_dice"]) for r in log_rows(out) if r["val_mean_dice"]]
    assert best["validation"]["mean_dice"] == pytest.approx(max(logged), rel=1e-4)

    image = read_image(TOTALSEG / "example_ct_sm.nii.gz")
    result = segment(image, model, device="cpu")
    assert result.labels.GetSize() == image.GetSize()
    assert list(result.attention) == model.gate_names


@pytest.mark.shared_data
def test_saved_config_repeats_the_run(smoke_run) -> None:
    out, _ = smoke_run
    config = config_from_sources({}, out / "train_config.yaml")
    assert (config.epochs, config.feature_scale, config.patch_size) == (EPOCHS, 16, (48, 48, 32))
    assert Path(config.data).is_absolute()
    assert Path(config.output) == out.resolve()


@pytest.mark.shared_data
def test_resume_with_another_architecture_is_refused(smoke_run) -> None:
    out, _ = smoke_run
    before = file_sha256(out / "checkpoint.pt")
    completed = run_cli(["train", "--resume", "-o", out, "--epochs", EPOCHS + 1, "--architecture", "unet_3d"])
    assert completed.returncode == 1
    assert "different network" in completed.stderr
    assert "unet_3d" in completed.stderr
    assert file_sha256(out / "checkpoint.pt") == before


@pytest.mark.shared_data
def test_resuming_a_finished_run_asks_for_more_epochs(smoke_run) -> None:
    out, _ = smoke_run
    completed = run_cli(["train", "--resume", "-o", out])
    assert completed.returncode == 1
    assert f"already trained its {EPOCHS} epochs" in completed.stderr


@pytest.mark.shared_data
def test_nan_loss_stops_and_leaves_the_last_checkpoint_intact(smoke_run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(smoke_run[0], copy)
    before = {name: file_sha256(copy / name) for name in ("checkpoint.pt", "final.safetensors")}
    completed = run_cli(["train", "--resume", "-o", copy, "--epochs", EPOCHS + 2, "--lr", 1e30])
    assert completed.returncode == 1
    assert "loss became nan" in completed.stderr
    assert "diverged" in completed.stderr
    assert f"{copy / 'checkpoint.pt'} (after epoch {EPOCHS}), is intact" in completed.stderr
    assert {name: file_sha256(copy / name) for name in before} == before
    assert len(log_rows(copy)) == EPOCHS
    state = torch.load(copy / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] == EPOCHS
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.shared_data
def test_fine_tuning_leaves_unlabelled_classes_out_of_softmax_and_loss(smoke_run, tmp_path: Path,
                                                                        tmp_path_factory) -> None:
    base_path = smoke_run[0] / "final.safetensors"
    pancreas_only = tmp_path / "pancreas_only.json"
    pancreas_only.write_text(json.dumps({"classes": {"pancreas": [7]}, "unlisted": "background"}))
    result = train(TrainConfig(
        data=str(real_ct_csv(tmp_path)), output=str(tmp_path / "aft"), init_model=str(base_path),
        label_map=str(pancreas_only), folds=2, epochs=1, iterations_per_epoch=2, batch_size=1, lr=1e-3,
        weight_decay=0.0, cache_dir=str(shared_cache(tmp_path_factory)), tensorboard=False, snapshots=False,
    ))
    base = read_model(base_path)
    tuned = read_model(tmp_path / "aft" / "final.safetensors")
    assert tuned.metadata.class_names == DEFAULT_CLASS_NAMES
    assert tuned.metadata.provenance["trained_classes"] == ["background", "pancreas"]
    assert tuned.metadata.provenance["fine_tuned_from"]["sha256"] == base.sha256
    excluded = [DEFAULT_CLASS_NAMES.index(n) for n in ("spleen", "kidney", "liver")]
    for name in ("final.weight", "final.bias"):
        before, after = base.state_dict()[name], result.model.state_dict()[name].cpu()
        assert torch.equal(after[excluded], before[excluded]), f"{name}: left-out outputs changed"
        assert not torch.equal(after[1], before[1]), f"{name}: the pancreas output did not train"


@pytest.mark.shared_data
def test_a_time_budget_ends_the_run_after_a_step_with_its_final_model(tmp_path: Path, tmp_path_factory) -> None:
    """`max_seconds` ends the run after the step that uses it up, as if its epochs were done: the checkpoint, the
    log row and the final model are written; `on_step` saw every step, the last with nothing left to do."""
    reports: list = []
    result = train(TrainConfig(
        data=str(real_ct_csv(tmp_path)), output=str(tmp_path / "budget"), label_map="totalsegmentator",
        feature_scale=16, patch_size=(48, 48, 32), spacing_mm=(4.0, 4.0, 4.0), folds=2, epochs=5,
        iterations_per_epoch=3, batch_size=1, max_seconds=1e-3, cache_dir=str(shared_cache(tmp_path_factory)),
        tensorboard=False, snapshots=False,
    ), on_step=reports.append)
    assert not result.stopped
    assert result.progress.global_step == 1
    assert result.progress.epoch == 1
    assert set(result.files) >= {"final", "checkpoint", "log"}
    assert [(r.step, r.total_steps, r.seconds_left) for r in reports] == [(1, 1, 0.0)]
    assert reports[0].loss > 0
    assert read_model(result.files["final"]).metadata.provenance["steps"] == 1
    assert len(log_rows(tmp_path / "budget")) == 1


@pytest.mark.shared_data
def test_unet_baseline_with_per_scale_dice_ce_and_bf16(tmp_path: Path, tmp_path_factory) -> None:
    result = train(TrainConfig(
        data=str(real_ct_csv(tmp_path)), output=str(tmp_path / "unet"), label_map="totalsegmentator",
        architecture="unet_3d", feature_scale=16, deep_supervision="per_scale", loss="dice_ce", precision="bf16",
        patch_size=(48, 48, 48), spacing_mm=(4.0, 4.0, 4.0), folds=2, epochs=1, iterations_per_epoch=2,
        batch_size=1, accumulate=2, cache_dir=str(shared_cache(tmp_path_factory)), tensorboard=False,
    ))
    model = read_model(result.files["final"])
    assert (model.config.architecture, model.config.deep_supervision) == ("unet_3d", "per_scale")
    assert model.gate_names == []
    assert model.metadata.provenance["precision"] == "bfloat16"
    assert 0 < float(log_rows(tmp_path / "unet")[0]["loss"]) < 3
