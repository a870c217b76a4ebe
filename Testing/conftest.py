"""Shared fixtures: real CT data and small, fast model files.

Patient A is the bundled sample CT (the same file as shared/data/totalseg_example/example_ct.nii.gz), so it is
there on a fresh clone. Everything else real (patient B's DICOM series, the other scans, the authors' reference
outputs) is in the project's shared/ folder, which is not in the repository: the tests that read it are marked
`shared_data` and are skipped, saying so, where it is missing. Test modules in the folders below import these
names as `from conftest import ...` (pytest puts Testing/ on sys.path when it loads this file); as pytest's
default import mode imports each test file by its base name, test file names stay unique across the folders.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from AttentionUNetSegLib.models.model_file import ModelMetadata, save_model
from AttentionUNetSegLib.models.intensity import IntensityNormalisation
from AttentionUNetSegLib.models.segment_classes import DEFAULT_CLASS_NAMES, make_classes
from AttentionUNetSegLib.network.attention_unet import AttentionUNet3D, ModelConfig
from AttentionUNetSegLib.models.user_folders import HOME_VARIABLE
from paths import AUTHORS_REFERENCE, REPO_ROOT, SAMPLE_CT, SHARED, TOTALSEG  # noqa: F401 (the tests' paths)

GRID_DIRECTIONS = {"identity": np.eye(3), "LPS flip": np.diag([-1.0, -1.0, 1.0]),
                   "permuted": np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0.0]]),
                   "oblique": np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))[0]}
"""Image directions the geometry tests cover: axis-aligned, flipped, permuted and oblique."""
SHARED_DATA_MISSING = ("needs the project's shared/ data folder (real CT scans with labels, the authors' reference "
                       "outputs) beside the repository or at $ATTENTION_UNET_SHARED; it is not in the repository "
                       f"(not found: {TOTALSEG})")
"""Why a `shared_data` test is skipped: what it needs and where that comes from."""
SHARED_DATA_FIXTURES = {"patient_b"}
"""Fixtures that read the shared/ folder (slicer_scene.py): pytest cannot mark a fixture, so a test that uses one,
itself or through another fixture (small_ct), is marked `shared_data` here."""

pytest_plugins = ["slicer_scene"]  # the headless Slicer scene and CT-node fixtures (slicer_scene.py)


def pytest_configure(config: pytest.Config) -> None:
    # the user's model registry and download cache: never the real ones (subprocesses inherit this)
    home = tempfile.mkdtemp(prefix="attention-unet-home-")
    os.environ[HOME_VARIABLE] = home
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Without the shared/ folder the tests marked `shared_data` are skipped; the rest run on a fresh clone."""
    for item in items:
        if SHARED_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared_data)
    if TOTALSEG.is_dir():
        return
    for item in items:
        if item.get_closest_marker("shared_data") is not None:
            item.add_marker(pytest.mark.skip(reason=SHARED_DATA_MISSING))


def make_model_file(path: Path, architecture: str = "attention_unet_3d", patch_size=(32, 32, 32),
                    spacing=(4.0, 4.0, 4.0), seed: int = 0) -> Path:
    """A small (feature_scale 16) model file with the default classes: fast enough for every test."""
    torch.manual_seed(seed)
    config = ModelConfig(architecture=architecture, num_classes=len(DEFAULT_CLASS_NAMES), feature_scale=16,
                         passthrough_gate_init=False)
    metadata = ModelMetadata(name=path.stem, architecture=config, classes=make_classes(DEFAULT_CLASS_NAMES),
                             spacing_mm=spacing, patch_size=patch_size, intensity=IntensityNormalisation(),
                             trained=False, description="test model with random weights")
    return save_model(AttentionUNet3D(config), metadata, path)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def patient_a() -> sitk.Image:
    """Patient A: the bundled sample CT."""
    return sitk.ReadImage(str(SAMPLE_CT))


def run_cli(args: List[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m AttentionUNetSegLib ARGS` in a real subprocess and capture its output."""
    return subprocess.run([sys.executable, "-m", "AttentionUNetSegLib", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def start_cli(args: List) -> subprocess.Popen:
    """Start `python -m AttentionUNetSegLib ARGS` with its stderr piped, to be interrupted: SIGINT acts in it as
    Ctrl-C in a terminal even where the suite runs as a background job (whose children a shell starts with SIGINT
    ignored, which Python then keeps)."""
    return subprocess.Popen([sys.executable, "-m", "AttentionUNetSegLib", *map(str, args)], stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.fixture(scope="session")
def trained_like_model() -> AttentionUNet3D:
    """A model whose BatchNorm layers hold non-trivial statistics, as after training."""
    torch.manual_seed(3)
    model = AttentionUNet3D(ModelConfig(num_classes=5, feature_scale=8, passthrough_gate_init=False))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return model.eval()
