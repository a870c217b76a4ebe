"""Model files and the registry: round trips, and every way a file can be broken."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_model_file
from safetensors.torch import load_file, save_file

from AttentionUNetSegLib.models.model_file import (METADATA_KEY, ModelMetadata, file_sha256, read_model,
                                                   read_metadata, save_model)
from AttentionUNetSegLib.errors import ModelFileError
from AttentionUNetSegLib.models.header import read_header_metadata
from AttentionUNetSegLib.models.registry import BUNDLED_REGISTRY, default_model, list_models, resolve_model_path


def _header(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[METADATA_KEY])


def _rewrite(path: Path, target: Path, tensors=None, metadata: dict = None) -> Path:
    save_file(tensors if tensors is not None else load_file(str(path)), str(target),
              metadata={METADATA_KEY: json.dumps(metadata if metadata is not None else _header(path))})
    return target


def test_round_trip_keeps_weights_metadata_and_outputs(tmp_path: Path, tiny_model_path: Path) -> None:
    model = read_model(tiny_model_path)
    copy = save_model(model, model.metadata, tmp_path / "copy.safetensors")
    again = read_model(copy)
    assert again.metadata == model.metadata
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert again.sha256 == file_sha256(copy)
    assert not again.training


def test_half_precision_files_are_smaller_and_close(tmp_path: Path, tiny_model_path: Path) -> None:
    model = read_model(tiny_model_path)
    half = save_model(model, model.metadata, tmp_path / "half.safetensors", half_precision=True)
    assert half.stat().st_size < 0.6 * tiny_model_path.stat().st_size
    stored = load_file(str(half))
    assert stored["encoder.0.0.0.weight"].dtype == torch.float16
    assert {stored[k].dtype for k in stored if k.endswith(("running_mean", "running_var"))} == {torch.float32}
    restored = read_model(half)
    assert all(t.dtype != torch.float16 for t in restored.state_dict().values())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        reference, approximate = model(x), restored(x)
    assert (reference - approximate).abs().max() < 0.05 * reference.abs().max()


def test_truncated_file_is_reported_as_corrupt(tmp_path: Path, tiny_model_path: Path) -> None:
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(tiny_model_path.read_bytes()[: tiny_model_path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated.safetensors.*(corrupt|truncated)"):
        read_model(broken)


@pytest.mark.parametrize("damage", ["cut in the weights", "cut in the header", "empty", "bytes added"])
def test_metadata_of_a_damaged_file_is_refused_as_safetensors_refuses_it(tmp_path: Path, tiny_model_path: Path,
                                                                        damage: str) -> None:
    """The header reader (no PyTorch) checks what safetensors' own reader checks on opening."""
    from safetensors import safe_open

    data = tiny_model_path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    damaged = {"cut in the weights": data[: len(data) // 2], "cut in the header": data[: header_end // 2],
               "empty": b"", "bytes added": data + b"\x00" * 16}[damage]
    broken = tmp_path / "damaged.safetensors"
    broken.write_bytes(damaged)
    with pytest.raises(ModelFileError, match="damaged.safetensors is not a readable model file"):
        read_metadata(broken)
    with pytest.raises(Exception):
        safe_open(str(broken), framework="pt")


def test_header_metadata_is_what_safetensors_reads(tiny_model_path: Path) -> None:
    from safetensors import safe_open

    for path in [tiny_model_path, *(entry.file for entry in list_models())]:
        with safe_open(str(path), framework="pt") as handle:
            assert read_header_metadata(path) == handle.metadata(), path


def test_random_bytes_and_pickles_are_refused_without_unpickling(tmp_path: Path) -> None:
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ModelFileError, match="noise.safetensors"):
        read_model(noise)
    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, pickled)
    with pytest.raises(ModelFileError, match="model.pt"):
        read_model(pickled)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="absent.safetensors does not exist"):
        read_model(tmp_path / "absent.safetensors")


def test_unknown_format_version(tmp_path: Path, tiny_model_path: Path) -> None:
    metadata = _header(tiny_model_path) | {"format_version": 99}
    future = _rewrite(tiny_model_path, tmp_path / "future.safetensors", metadata=metadata)
    with pytest.raises(ModelFileError, match="future.safetensors.*format version 99 is not supported"):
        read_metadata(future)


@pytest.mark.parametrize("field", ["classes", "spacing_mm", "architecture"])
def test_metadata_missing_a_required_field(tmp_path: Path, tiny_model_path: Path, field: str) -> None:
    metadata = {k: v for k, v in _header(tiny_model_path).items() if k != field}
    broken = _rewrite(tiny_model_path, tmp_path / "incomplete.safetensors", metadata=metadata)
    with pytest.raises(ModelFileError, match=f"incomplete.safetensors.*{field}"):
        read_model(broken)


def test_safetensors_without_our_metadata(tmp_path: Path, tiny_model_path: Path) -> None:
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(tiny_model_path)), str(bare))
    with pytest.raises(ModelFileError, match="bare.safetensors.*without AttentionUNetSeg metadata"):
        read_model(bare)


def test_missing_and_misshaped_weights(tmp_path: Path, tiny_model_path: Path) -> None:
    tensors = load_file(str(tiny_model_path))
    missing = dict(tensors)
    missing.pop("final.weight")
    with pytest.raises(ModelFileError, match="missing.safetensors.*missing.*final.weight"):
        read_model(_rewrite(tiny_model_path, tmp_path / "missing.safetensors", tensors=missing))
    misshaped = dict(tensors, **{"final.bias": torch.zeros(7)})
    with pytest.raises(ModelFileError, match="misshaped.safetensors.*mis-shaped.*final.bias"):
        read_model(_rewrite(tiny_model_path, tmp_path / "misshaped.safetensors", tensors=misshaped))


def test_weights_of_another_architecture(tmp_path: Path, tiny_model_path: Path) -> None:
    unet = make_model_file(tmp_path / "unet.safetensors", architecture="unet_3d")
    mixed = _rewrite(tiny_model_path, tmp_path / "mixed.safetensors", tensors=load_file(str(unet)),
                     metadata=_header(tiny_model_path))
    with pytest.raises(ModelFileError, match="mixed.safetensors.*do not match the architecture"):
        read_model(mixed)


def test_metadata_validation_names_the_problem(tiny_model_path: Path) -> None:
    metadata = read_metadata(tiny_model_path)
    values = json.loads(metadata.to_json())
    with pytest.raises(ValueError, match="patch_size"):
        ModelMetadata.from_json(json.dumps(values | {"patch_size": [30, 32, 32]}))
    with pytest.raises(ValueError, match="classes"):
        ModelMetadata.from_json(json.dumps(values | {"classes": values["classes"][:2]}))


def test_bundled_registry_default_model_verifies() -> None:
    entry = default_model()
    assert entry in list_models()
    assert resolve_model_path(None) == entry.file
    assert resolve_model_path(entry.name) == entry.file
    metadata = read_metadata(entry.file)
    assert metadata.name == entry.name
    assert metadata.trained
    assert list(entry.classes) == metadata.class_names


def test_bundled_model_is_small_half_precision_and_has_its_card() -> None:
    entry = default_model()
    assert entry.file.stat().st_size <= 15 * 2**20
    assert load_file(str(entry.file))["final.weight"].dtype == torch.float16
    card = entry.file.with_suffix(".md").read_text(encoding="utf-8")
    # the card describes this very file
    assert entry.sha256 in card
    assert "not for clinical use" in card


def test_registry_checksum_mismatch_and_unknown_name(tmp_path: Path) -> None:
    registry = tmp_path / "models.json"
    entries = json.loads(BUNDLED_REGISTRY.read_text())
    for entry in entries["models"]:
        shutil.copy(BUNDLED_REGISTRY.parent / entry["file"], tmp_path / entry["file"])
        entry["sha256"] = "0" * 64
    registry.write_text(json.dumps(entries))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        resolve_model_path(None, registry=registry)
    with pytest.raises(ModelFileError, match="no model named 'nonexistent'.*known models"):
        resolve_model_path("nonexistent", registry=registry)


def test_the_python_api_takes_a_registry_name_a_path_or_nothing(tiny_model_path) -> None:
    import AttentionUNetSegLib

    entry = default_model()
    by_name = AttentionUNetSegLib.load_model(entry.name)
    assert by_name.sha256 == entry.sha256
    assert by_name.metadata.name == entry.name
    assert not by_name.training
    assert AttentionUNetSegLib.load_model().sha256 == entry.sha256
    assert AttentionUNetSegLib.load_model(tiny_model_path).sha256 == file_sha256(tiny_model_path)
    assert AttentionUNetSegLib.load_model(str(tiny_model_path)).sha256 == file_sha256(tiny_model_path)
    with pytest.raises(ModelFileError, match=r"no model named 'attention-unet-abdomen-v9'; known models: \[.*"
                                             r"attention-unet-abdomen-v1"):
        AttentionUNetSegLib.load_model("attention-unet-abdomen-v9")
