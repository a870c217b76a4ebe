"""Shared fixtures: real CT data from ../shared/data and small, fast model files."""
from __future__ import annotations

import os
import shutil
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

pytest_plugins = ["slicer_scene"]  # the headless Slicer scene and CT-node fixtures (slicer_scene.py)


def pytest_configure(config: pytest.Config) -> None:
    if not TOTALSEG.is_dir():
        raise pytest.UsageError(f"test data not found at {TOTALSEG}: the suite expects the shared/ folder beside the "
                                "repository (or ATTENTION_UNET_SHARED pointing at it)")
    # the user's model registry and download cache: never the real ones (subprocesses inherit this)
    home = tempfile.mkdtemp(prefix="attention-unet-home-")
    os.environ[HOME_VARIABLE] = home
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


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
    return sitk.ReadImage(str(TOTALSEG / "example_ct.nii.gz"))


def run_cli(args: List[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m AttentionUNetSegLib ARGS` in a real subprocess and capture its output."""
    return subprocess.run([sys.executable, "-m", "AttentionUNetSegLib", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


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
