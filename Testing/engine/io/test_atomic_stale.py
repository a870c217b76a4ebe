"""Staging folders left by a process killed with SIGKILL are removed by the next staging in the same folder;
a live process's, another host's and unrecognised ones are left alone. Real subprocesses, really killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from AttentionUNetSegLib.io.atomic import OUTPUT_STAGING_PREFIX, StagedOutputs, _host

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and pid probing are POSIX")

STAGING_WRITER = """
import sys, time
from AttentionUNetSegLib.io.atomic import StagedOutputs
staged = StagedOutputs(sys.argv[1])
staged.path("labels.nii.gz").write_text("half-written")
print(staged._staging, flush=True)
time.sleep(600)
"""


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process staging an output in tmp_path/out and then sleeping (killed at the end in any case)."""
    process = subprocess.Popen([sys.executable, "-c", STAGING_WRITER, str(tmp_path / "out")], stdout=subprocess.PIPE,
                               text=True)
    yield process
    process.kill()
    process.wait()


def staging_of(process: subprocess.Popen) -> Path:
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir(), folder
    assert folder.name.startswith(f"{OUTPUT_STAGING_PREFIX}{process.pid}@"), folder
    return folder


def hidden(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path: Path, writer: subprocess.Popen) -> None:
    stale = staging_of(writer)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert stale.is_dir()  # what SIGKILL leaves behind

    with StagedOutputs(tmp_path / "out") as staged:
        assert not stale.exists()
        staged.path("labels.nii.gz").write_text("complete")
        (written,) = staged.commit()
    assert written.read_text() == "complete"
    assert hidden(tmp_path / "out") == []


def test_a_live_runs_staging_folder_is_kept(tmp_path: Path, writer: subprocess.Popen) -> None:
    live = staging_of(writer)
    with StagedOutputs(tmp_path / "out") as staged:
        staged.path("report.md").write_text("mine")
        staged.commit()
    assert live.is_dir()
    assert (live / "labels.nii.gz").read_text() == "half-written"
    assert (tmp_path / "out" / "report.md").read_text() == "mine"


def test_other_hosts_and_unrecognised_folders_are_kept(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = int(finished.stdout)
    kept = [f"{OUTPUT_STAGING_PREFIX}{dead}@{_host()}x-abc", f"{OUTPUT_STAGING_PREFIX}abc123_x",
            f"{OUTPUT_STAGING_PREFIX}{dead}@other.host-abc"]
    for name in kept + [f"{OUTPUT_STAGING_PREFIX}{dead}@{_host()}-abc"]:
        (tmp_path / name).mkdir()
    StagedOutputs(tmp_path).discard()
    assert hidden(tmp_path) == sorted(kept)
