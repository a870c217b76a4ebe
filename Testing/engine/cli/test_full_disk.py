"""A full disk is an ordinary error (segment, a cohort, train), on a real small tmpfs where this machine lets the
tests mount one (root in a sandbox that allows it; skipped elsewhere); and Ctrl-C in the first seconds."""
from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from conftest import SAMPLE_CT, TOTALSEG, run_cli, start_cli
from training_support import run_train

PAGE = 4096
SMALL_CT = TOTALSEG / "example_ct_sm.nii.gz"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator:
    """`small_disk(kib)`: a folder on a tmpfs of that many KiB, unmounted after the test."""
    mounted = []

    def mount(kib: int) -> Path:
        folder = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): not root, or a "
                        "sandbox that forbids it")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def _pages(size: int) -> int:
    return math.ceil(size / PAGE) * PAGE


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "OSError" not in stderr


@pytest.mark.shared_data
def test_one_ct_onto_a_full_disk_is_a_one_line_error_and_leaves_nothing(small_disk, tiny_model_path: Path) -> None:
    out = small_disk(16)
    completed = run_cli(["segment", SMALL_CT, "-o", out, "--model", tiny_model_path, "--quiet"])
    assert completed.returncode == 1
    _no_traceback(completed.stderr)
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: no room in {out} for the outputs of example_ct_sm (up to ")
    assert "MB needed, " in errors[0]
    assert "MB free there): free some space there, or choose another folder with -o" in errors[0]
    assert list(out.iterdir()) == [], "no half-written output, no staging folder"


@pytest.mark.shared_data
def test_a_cohort_that_fills_the_disk_keeps_its_cases_records_the_failure_and_a_true_table(
        small_disk, tiny_model_path: Path, tmp_path: Path) -> None:
    inputs = [Path(shutil.copyfile(SMALL_CT, tmp_path / f"{name}.nii.gz")) for name in ("p1", "p2", "p3")]
    measured = tmp_path / "measured"
    first = run_cli(["segment", inputs[0], "-o", measured, "--model", tiny_model_path, "--no-attention", "--quiet"])
    assert first.returncode == 0, first.stderr
    one_case = sum(_pages(path.stat().st_size) for path in measured.iterdir())
    out = small_disk((one_case + 3 * PAGE) // 1024)  # one case and the small records, not two cases
    completed = run_cli(["segment", *inputs, "-o", out, "--model", tiny_model_path, "--no-attention"])
    assert completed.returncode == 1
    _no_traceback(completed.stderr)
    assert "case 2/3: p2 failed: no room in" in completed.stderr
    assert "error: the run stopped: no room in" in completed.stderr
    assert "p3 failed" not in completed.stderr, "the run stops (every later case would fail too), p3 unwritten"
    assert "1 case(s) segmented, 0 already complete, 1 failed" in completed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cohort.csv", "p1_seg.nii.gz", "p1_summary.json",
                                                     "p2_error.json"]
    error = json.loads((out / "p2_error.json").read_text())
    assert error["error_type"] == "DiskFullError"
    with (out / "cohort.csv").open(newline="") as handle:
        rows = {row["name"]: row["status"] for row in csv.DictReader(handle)}
    assert rows == {"p1": "done", "p2": "failed"}


@pytest.mark.shared_data
def test_training_without_room_for_its_checkpoint_says_so_in_one_line(small_disk, tmp_path: Path) -> None:
    out = small_disk(256)
    data = tmp_path / "data.csv"
    data.write_text(f"image,label\n{SMALL_CT},{TOTALSEG / 'example_seg.nii.gz'}\n")
    completed = run_train([data, "-o", out, "--label-map", "totalsegmentator", "--cache-dir", tmp_path / "cache",
                           "--feature-scale", "16", "--patch-size", "48", "48", "32", "--spacing-mm", "4", "4", "4",
                           "--fold", "all", "--epochs", "1", "--iterations-per-epoch", "1", "--batch-size", "1",
                           "--no-tensorboard", "--no-snapshots"])
    assert completed.returncode == 1
    _no_traceback(completed.stderr)
    assert f"error: no room in {out} for the checkpoint checkpoint.pt (up to " in completed.stderr
    assert f"continue with attention-unet train --resume -o {out}" in completed.stderr
    assert not list(out.glob(".checkpoint.pt.*")), "no half-written checkpoint"


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_in_the_first_seconds_prints_no_traceback(tmp_path: Path, delay: float) -> None:
    """Ctrl-C while the command line imports its modules (PyTorch's take a second) ends it like Ctrl-C later."""
    out = tmp_path / "out"
    process = start_cli(["segment", SAMPLE_CT, "-o", out])
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted: nothing was written" in stderr
    assert not out.exists()
