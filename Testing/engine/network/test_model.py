"""The network: parameter counts, fidelity to the authors' released code, options."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import AUTHORS_REFERENCE, run_cli

from AttentionUNetSegLib.models.model_file import read_model, read_metadata
from AttentionUNetSegLib.network.attention_unet import AttentionUNet3D, ModelConfig, count_parameters


@pytest.mark.shared_data
@pytest.mark.parametrize("architecture, expected", [("unet_3d", 5_888_004), ("attention_unet_3d", 6_473_322)])
def test_parameter_counts_match_the_released_code(architecture: str, expected: int) -> None:
    reference = json.loads((AUTHORS_REFERENCE / "paper_size_architectures.json").read_text())
    name = {"unet_3d": "unet_ct_dsv", "attention_unet_3d": "att_unet_ct_multi_dsv"}[architecture]
    assert reference[name]["num_parameters"] == expected
    model = AttentionUNet3D(ModelConfig(architecture=architecture, num_classes=4, feature_scale=4))
    assert count_parameters(model) == expected
    assert len(model.state_dict()) == len(reference[name]["state_dict_shapes"])


@pytest.mark.shared_data
@pytest.mark.parametrize("stem, architecture", [("att_unet_ct_multi_dsv", "attention_unet_3d"),
                                                ("unet_ct_dsv", "unet_3d")])
def test_imported_authors_checkpoint_reproduces_their_outputs(tmp_path, stem: str, architecture: str) -> None:
    model_file = tmp_path / f"{stem}.safetensors"
    completed = run_cli(["models", "import-authors", AUTHORS_REFERENCE / f"{stem}_fs16_state_dict.safetensors",
                         "-o", model_file, "--classes", "background,pancreas,spleen,kidney"])
    assert completed.returncode == 0, completed.stderr
    assert read_metadata(model_file).architecture.architecture == architecture
    model = read_model(model_file)
    reference = np.load(AUTHORS_REFERENCE / f"{stem}_fs16_io.npz")
    with torch.no_grad():
        logits, attention = model(torch.from_numpy(reference["input"]), return_attention=True)
    assert np.abs(logits.numpy() - reference["logits"]).max() < 1e-4
    expected_gates = sorted(k for k in reference.files if k.startswith("att"))
    assert sorted(attention) == expected_gates == sorted(model.gate_names)
    for gate in expected_gates:
        assert attention[gate].shape == reference[gate].shape
        assert np.abs(attention[gate].numpy() - reference[gate]).max() < 1e-4, gate


def test_attention_maps_live_on_their_skip_grids() -> None:
    model = AttentionUNet3D(ModelConfig(num_classes=3, feature_scale=16)).eval()
    x = torch.randn(1, 1, 32, 48, 64)
    with torch.no_grad():
        logits, attention, scales = model(x, return_attention=True, return_scale_logits=True)
    assert logits.shape == (1, 3, 32, 48, 64)
    assert list(attention) == model.gate_names == [f"att{lv}_gate{k}" for lv in (4, 3, 2) for k in (1, 2)]
    for name, alpha in attention.items():
        factor = 2 ** (int(name[3]) - 1)
        assert alpha.shape == (1, 1, 32 // factor, 48 // factor, 64 // factor)
        assert 0 <= alpha.min() <= alpha.max() <= 1
    assert [s.shape for s in scales] == [(1, 3, 32, 48, 64)] * 4


def test_plain_unet_has_no_gates() -> None:
    model = AttentionUNet3D(ModelConfig(architecture="unet_3d", feature_scale=16)).eval()
    with torch.no_grad():
        logits, attention = model(torch.randn(1, 1, 16, 16, 16), return_attention=True)
    assert attention == {}
    assert model.gate_names == []
    assert not any("attention" in key or "gating" in key for key in model.state_dict())


def test_passthrough_initialisation_opens_every_gate() -> None:
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        _, opened = AttentionUNet3D(ModelConfig(feature_scale=16, passthrough_gate_init=True)).eval()(
            x, return_attention=True)
        _, released = AttentionUNet3D(ModelConfig(feature_scale=16, passthrough_gate_init=False)).eval()(
            x, return_attention=True)
    for alpha in opened.values():
        assert torch.allclose(alpha, torch.full_like(alpha, 0.95), atol=1e-5)
    assert any(alpha.std() > 1e-3 for alpha in released.values())


@pytest.mark.parametrize("gates, sub_sample", [(1, [2, 2, 2]), (3, [2, 2, 2]), (2, [1, 1, 1]), (2, [2, 2, 1])])
def test_gate_count_and_sub_sampling_are_configurable(gates: int, sub_sample) -> None:
    config = ModelConfig(feature_scale=16, gates_per_level=gates, gate_sub_sample=sub_sample)
    model = AttentionUNet3D(config).eval()
    with torch.no_grad():
        logits, attention = model(torch.randn(1, 1, 32, 32, 16), return_attention=True)
    assert len(attention) == 3 * gates
    assert model.attention["2"].gates[0].theta.kernel_size == tuple(sub_sample)
    assert (model.attention["2"].combine is None) == (gates == 1)


def test_explicit_channels_and_config_round_trip() -> None:
    config = ModelConfig(channels=[8, 12, 16, 24, 32], num_classes=2, in_channels=2, deep_supervision="per_scale")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    model = AttentionUNet3D(config)
    assert model.encoder[0][0][0].in_channels == 2
    assert model.encoder[4][0][0].out_channels == 32


@pytest.mark.parametrize("bad", [{"architecture": "vnet"}, {"deep_supervision": "all"}, {"channels": [4, 8]},
                                 {"num_classes": 1}, {"gate_sub_sample": [2, 2]}, {"gates_per_level": 0}])
def test_invalid_configs_are_rejected_with_the_field_named(bad: dict) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field.split("_")[0]):
        ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"dropout": 0.3})
