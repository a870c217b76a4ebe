"""OpenVINO's usage statistics stay off in the command line and the worker: `import openvino` alone creates its
telemetry state in ~/intel (and sends an event); our processes, which import it too, leave no such state."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.worker.arguments import standby_arguments

pytest.importorskip("openvino_telemetry")

CI_VARIABLES = ("CI", "TF_BUILD", "JENKINS_URL")
"""Where these are set, OpenVINO sends nothing anyway: the processes here run without them."""


def run_with_home(arguments: List[str], home: Path) -> subprocess.CompletedProcess:
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    home.mkdir()
    return subprocess.run([sys.executable, *arguments], env={**env, "HOME": str(home)}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


def test_plain_import_of_openvino_starts_its_telemetry(tmp_path: Path) -> None:
    done = run_with_home(["-c", "import openvino"], tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "intel").is_dir()


def test_command_line_keeps_it_off(tmp_path: Path) -> None:
    done = run_with_home(["-m", "AttentionUNetSegLib", "models", "cache"], tmp_path / "home")  # imports openvino
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home" / "intel").exists()


def test_worker_keeps_it_off(tmp_path: Path) -> None:
    ready = standby_arguments(None, InferenceSettings(backend="openvino", attention=False))
    done = run_with_home(["-m", "AttentionUNetSegLib.worker", *ready], tmp_path / "home")  # stdin closed: it ends
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home" / "intel").exists()
