"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) part-way and resumed with --resume ends with the
same weights and the same log as an uninterrupted run (CPU, fixed seed)."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, List

import pytest
import torch
from training_support import (TINY_RUN, assert_same_tensors, log_rows, model_tensors, real_ct_csv, run_train,
                              shared_cache, train_command)

pytestmark = pytest.mark.shared_data

RUN = [*TINY_RUN, "--epochs", 3, "--iterations-per-epoch", 3, "--batch-size", 1, "--accumulate", 2,
       "--validate-every", 2, "--no-snapshots"]


@pytest.fixture(scope="module")
def run_args(tmp_path_factory: pytest.TempPathFactory) -> List[object]:
    data = real_ct_csv(tmp_path_factory.mktemp("resume-data"))
    return [data, *RUN, "--cache-dir", shared_cache(tmp_path_factory)]


@pytest.fixture(scope="module")
def uninterrupted(run_args, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    completed = run_train([*run_args, "-o", out])
    assert completed.returncode == 0, completed.stderr
    return out


def _scores(output: Path) -> List[tuple]:
    return [(r["epoch"], r["step"], r["loss"], r["val_mean_dice"]) for r in log_rows(output)]


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def _assert_resumes_to(out: Path, uninterrupted: Path) -> None:
    completed = run_train(["--resume", "-o", out])
    assert completed.returncode == 0, completed.stderr
    assert_same_tensors(model_tensors(out / "final.safetensors"), model_tensors(uninterrupted / "final.safetensors"))
    assert_same_tensors(model_tensors(out / "best.safetensors"), model_tensors(uninterrupted / "best.safetensors"))
    assert _scores(out) == _scores(uninterrupted)


def test_killed_run_resumes_exactly(run_args, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(train_command([*run_args, "-o", out]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "checkpoint.pt").is_file(), process)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "final.safetensors").exists()
    _assert_resumes_to(out, uninterrupted)


def test_stopped_run_checkpoints_mid_epoch_and_resumes_exactly(run_args, uninterrupted: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    process = subprocess.Popen(train_command([*run_args, "-o", out]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "log.csv").is_file() and len(log_rows(out)) >= 1, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "--resume" in stderr
    assert not (out / "final.safetensors").exists()
    progress = torch.load(out / "checkpoint.pt", weights_only=True)["progress"]
    assert 1 <= progress["epoch"] < 3
    assert progress["global_step"] == 3 * progress["epoch"] + progress["step"]
    _assert_resumes_to(out, uninterrupted)
