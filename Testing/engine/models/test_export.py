"""`attention-unet models export`: the file to ship, and --background-offset on the real default model and CT."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from conftest import run_cli
from paths import SAMPLE_CT

from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.models.background_offset import lower_background_logit
from AttentionUNetSegLib.models.model_file import file_sha256, read_model
from AttentionUNetSegLib.models.registry import resolve_model_path


def test_a_lowered_background_grows_every_organ_and_moves_no_boundary_between_organs(tmp_path: Path) -> None:
    source = resolve_model_path(None)
    exported = tmp_path / "offset.safetensors"
    result = run_cli(["models", "export", source, "-o", exported, "--background-offset", "3", "--name", "calibrated"])
    assert result.returncode == 0, result.stderr
    assert file_sha256(exported) in result.stdout
    before, after = read_model(source), read_model(exported)
    assert after.metadata.name == "calibrated"
    already = before.metadata.provenance.get("background_offset", 0.0)  # the default model's own offset
    assert after.metadata.provenance["background_offset"] == already + 3.0
    assert after.metadata.provenance["exported_from"] == {"file": source.name, "sha256": before.sha256}
    window = torch.randn(1, 1, 32, 64, 64)
    with torch.no_grad():
        shift = after.eval()(window) - before.eval()(window)
    assert torch.allclose(shift[:, 0], torch.tensor(-3.0), atol=1e-5)
    assert torch.allclose(shift[:, 1:], torch.tensor(0.0), atol=1e-5)

    image = sitk.ReadImage(str(SAMPLE_CT))
    labels = [sitk.GetArrayFromImage(segment(image, model, precision="fp32", backend="torch", attention=False).labels)
              for model in (source, exported)]
    for value in range(1, len(before.metadata.classes)):
        was, now = labels[0] == value, labels[1] == value
        assert now[was].all(), f"class {value} lost voxels"
    assert np.count_nonzero(labels[1]) > np.count_nonzero(labels[0])

    again = tmp_path / "twice.safetensors"
    assert run_cli(["models", "export", exported, "-o", again, "--background-offset", "1.5"]).returncode == 0
    assert read_model(again).metadata.provenance["background_offset"] == already + 4.5


def test_a_model_changed_in_memory_is_no_longer_taken_for_its_file(tiny_model_path: Path) -> None:
    """OpenVINO keeps converted models by their file's sha256: a model whose background was lowered in memory
    must not be served the conversion of the unchanged file."""
    model = read_model(tiny_model_path)
    assert model.sha256 == file_sha256(tiny_model_path)
    lower_background_logit(model, 2.0)
    assert model.sha256 is None
