"""Helpers shared by the training tests: a small real-CT dataset, tiny-run options and subprocess launchers."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch
from conftest import TOTALSEG
from safetensors.torch import load_file

TINY_RUN: List[str] = [
    "--label-map", "totalsegmentator", "--feature-scale", "16", "--patch-size", "48", "48", "32",
    "--spacing-mm", "4", "4", "4", "--folds", "2", "--no-tensorboard", "--workers", "0",
]
"""Options of a run small enough for a 2-core CPU: feature_scale 16, 48x48x32 patches at 4 mm."""


def real_ct_csv(folder: Path) -> Path:
    """A CSV dataset of both real scans: patient A (NIfTI) and patient B (DICOM folder, label on a flipped grid)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cases.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "image", "label"])
        writer.writerow(["patient_a", TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz"])
        writer.writerow(["patient_b", TOTALSEG / "example_ct_dicom", TOTALSEG / "example_seg_dicom.nii.gz"])
    return path


def shared_cache(factory: pytest.TempPathFactory) -> Path:
    """One preprocessing cache for the whole session (entries are keyed by inputs and settings)."""
    return factory.getbasetemp() / "training-cache"


def train_command(args: Sequence[object]) -> List[str]:
    return [sys.executable, "-m", "AttentionUNetSegLib.training", *map(str, args)]


def run_train(args: Sequence[object], timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m AttentionUNetSegLib.training ARGS` in a real subprocess."""
    return subprocess.run(train_command(args), capture_output=True, text=True, timeout=timeout)


def model_tensors(path: Path) -> Dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_tensors(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def log_rows(output: Path) -> List[Dict[str, str]]:
    with open(output / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))
