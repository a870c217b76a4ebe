"""The OpenVINO backend against the PyTorch reference forward, its on-disk cache, and backend choice.

Tolerances as for the PyTorch fast path (test_optimize.py): float32 within 1e-4 of the logit range (and of
attention); bfloat16 within 5 % of the logit range, attention within 0.03, >= 97 % same argmax.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import run_cli

from AttentionUNetSegLib.backends.selection import TorchBackend, caused_by_ctrl_c, make_backend, resolve_backend
from AttentionUNetSegLib.models.model_file import read_model
from AttentionUNetSegLib.backends.device import cpu_has_native_bf16
from AttentionUNetSegLib.errors import InvalidOptionError
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.backends.openvino import COMPILED_FOLDER, IR_FILE, OpenVINOBackend
from AttentionUNetSegLib.models.user_folders import user_cache_dir
from AttentionUNetSegLib.inference.sliding_windows import window_size

CPU = torch.device("cpu")


def _reference(model, x: torch.Tensor):
    with torch.no_grad():
        logits, gates = model(x, return_attention=True)
    return logits, [gates[name] for name in model.gate_names]


@pytest.mark.parametrize("shape", [(1, 1, 48, 48, 32), (2, 1, 32, 64, 48)])
def test_openvino_float32_matches_the_reference(trained_like_model, shape: tuple) -> None:
    """One converted network serves every window size and batch (dynamic shapes)."""
    backend = OpenVINOBackend(trained_like_model, torch.float32)
    x = torch.randn(*shape)
    reference, reference_gates = _reference(trained_like_model, x)
    logits, gates = backend(x, attention=True)
    assert logits.shape == reference.shape
    assert len(gates) == len(reference_gates) == 6
    assert (logits - reference).abs().max() <= 1e-4 * reference.abs().max()
    for alpha, expected in zip(gates, reference_gates):
        assert alpha.shape == expected.shape
        assert (alpha - expected).abs().max() <= 1e-4
    assert backend(x, attention=False)[1] == []


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 inference is used only on CPUs with native bf16")
def test_openvino_bfloat16_within_tolerance(trained_like_model) -> None:
    x = torch.randn(1, 1, 48, 48, 32)
    reference, reference_gates = _reference(trained_like_model, x)
    logits, gates = OpenVINOBackend(trained_like_model, torch.bfloat16)(x, attention=True)
    assert (logits - reference).abs().max() <= 0.05 * (reference.max() - reference.min())
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() >= 0.97
    for alpha, expected in zip(gates, reference_gates):
        assert (alpha - expected).abs().max() <= 0.03


def test_outputs_are_not_overwritten_by_the_next_call(trained_like_model) -> None:
    backend = OpenVINOBackend(trained_like_model, torch.float32)
    first_input, second_input = torch.randn(1, 1, 32, 32, 32), torch.randn(1, 1, 32, 32, 32)
    first, _ = backend(first_input, attention=False)
    kept = first.clone()
    backend(second_input, attention=False)
    assert torch.equal(first, kept)


def test_segment_with_either_backend_agrees(patient_a: sitk.Image, tiny_model_path: Path) -> None:
    model = read_model(tiny_model_path)
    region = patient_a[20:100, 10:90, 30:90]
    results = {backend: segment(region, model, precision="fp32", backend=backend) for backend in ("torch", "openvino")}
    assert {b: r.backend for b, r in results.items()} == {"torch": "torch", "openvino": "openvino"}
    torch_labels, openvino_labels = (sitk.GetArrayFromImage(r.labels) for r in results.values())
    assert (torch_labels == openvino_labels).mean() >= 0.999
    for gate in results["torch"].attention:
        difference = sitk.GetArrayFromImage(results["torch"].attention[gate] - results["openvino"].attention[gate])
        assert np.abs(difference).max() <= 1e-3


def test_converted_network_is_cached_per_model_file(tiny_model_path: Path, caplog) -> None:
    model = read_model(tiny_model_path)
    for earlier in (user_cache_dir() / "openvino").glob(f"{model.sha256}-*"):  # start without a cached network
        shutil.rmtree(earlier)
    x = torch.randn(1, 1, 32, 32, 32)
    with caplog.at_level(logging.INFO):
        expected, _ = OpenVINOBackend(model, torch.float32)(x, attention=False)
    assert "converting the model for OpenVINO" in caplog.text
    (folder,) = (user_cache_dir() / "openvino").glob(f"{model.sha256}-*")
    assert (folder / IR_FILE).is_file()
    assert not list(folder.parent.glob(".converting-*"))

    compiled = list((folder / COMPILED_FOLDER).iterdir())  # OpenVINO's compiled network, kept in the entry
    assert compiled

    caplog.clear()
    with caplog.at_level(logging.INFO):
        again, _ = OpenVINOBackend(model, torch.float32)(x, attention=False)
    assert "converting" not in caplog.text
    assert torch.equal(again, expected)
    assert list((folder / COMPILED_FOLDER).iterdir()) == compiled  # compiled from it, not kept again

    for path in compiled:  # a damaged compiled network is compiled again, to the same outputs
        path.write_bytes(b"not a compiled network")
    recompiled, _ = OpenVINOBackend(model, torch.float32)(x, attention=False)
    assert torch.equal(recompiled, expected)
    assert all(path.stat().st_size > 100 for path in compiled)

    (folder / IR_FILE).write_text("<not a network")  # a damaged cache entry is converted again
    caplog.clear()
    with caplog.at_level(logging.INFO):
        repaired, _ = OpenVINOBackend(model, torch.float32)(x, attention=False)
    assert "unreadable" in caplog.text
    assert "converting" in caplog.text
    assert torch.equal(repaired, expected)


def test_backend_choice(trained_like_model) -> None:
    assert resolve_backend("auto", CPU) == "openvino"
    assert resolve_backend("torch", CPU) == "torch"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(InvalidOptionError, match="runs on the CPU"):
        resolve_backend("openvino", torch.device("cuda"))
    with pytest.raises(InvalidOptionError, match="backend must be one of"):
        resolve_backend("tensorrt", CPU)
    assert isinstance(make_backend(trained_like_model, CPU, torch.float32, "torch"), TorchBackend)


def raised(error: BaseException, cause: BaseException = None, context: BaseException = None) -> BaseException:
    """`error` as Python leaves it when raised from `cause` (raise ... from) or while handling `context`."""
    try:
        try:
            if context is not None:
                raise context
        finally:
            raise error from cause
    except BaseException as exc:
        return exc


def test_only_an_error_that_a_ctrl_c_caused_counts_as_a_ctrl_c() -> None:
    """make_backend falls back to PyTorch when OpenVINO fails, but not when the failure is a Ctrl-C that OpenVINO's
    bindings turned into an error (pybind11: ImportError "initialization failed" from the KeyboardInterrupt): that
    run would otherwise go on and the Ctrl-C be lost."""
    assert caused_by_ctrl_c(raised(ImportError("initialization failed"), cause=KeyboardInterrupt()))
    assert caused_by_ctrl_c(raised(RuntimeError("compile"), context=raised(ImportError("x"), KeyboardInterrupt())))
    assert caused_by_ctrl_c(KeyboardInterrupt())
    assert not caused_by_ctrl_c(raised(RuntimeError("unsupported operation"), context=ValueError("shape")))
    assert not caused_by_ctrl_c(RuntimeError("initialization failed"))


def test_window_size() -> None:
    patch = (32, 96, 96)
    assert window_size((45, 152, 183), patch, 0) == patch
    assert window_size((45, 152, 183), patch, 10**9) == (48, 160, 192)  # the volume, in multiples of 16
    assert window_size((20, 50, 60), patch, 10**9) == patch  # never below the training patch
    capped = window_size((150, 205, 205), patch, 2_000_000)
    assert np.prod(capped) <= 2_000_000
    assert all(c >= p for c, p in zip(capped, patch))
    assert all(c % 16 == 0 for c in capped)


@pytest.mark.shared_data
def test_cli_records_the_backend_and_refuses_bad_windows(tmp_path: Path, tiny_model_path: Path) -> None:
    from conftest import TOTALSEG

    ct = TOTALSEG / "example_ct_sm.nii.gz"
    done = run_cli(["segment", ct, "-o", tmp_path / "out", "--model", tiny_model_path, "--backend", "torch",
                    "--no-attention", "--quiet"])
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "example_ct_sm_summary.json").read_text())["backend"] == "torch"
    refused = run_cli(["segment", ct, "-o", tmp_path / "bad", "--model", tiny_model_path, "--window-voxels", "-1"])
    assert refused.returncode == 2
    assert "argument --window-voxels: -1 is not allowed" in refused.stderr
    assert not (tmp_path / "bad").exists()
