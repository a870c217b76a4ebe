"""The command line's fast exit (cli.console_main): the exit status and everything printed survive it, and it
never cuts short a thread that is still running."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_cli

LATE_WRITER = """
import sys, threading, time
from pathlib import Path
from AttentionUNetSegLib.cli import console_main

def write_late(marker):
    time.sleep(3.0)  # still running when the command returns
    marker.write_text("written")

threading.Thread(target=write_late, args=(Path(sys.argv[1]),)).start()
sys.argv = ["attention-unet", "models", "list"]
sys.exit(console_main())
"""


def test_status_and_output_survive_the_fast_exit(tmp_path: Path) -> None:
    listing = run_cli(["models", "list"])
    assert listing.returncode == 0
    assert "attention-unet-abdomen-v2" in listing.stdout
    missing = run_cli(["segment", tmp_path / "no_such_ct.nii.gz", "-o", tmp_path / "out"])
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    assert not (tmp_path / "out").exists()


def test_a_running_thread_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run([sys.executable, "-c", LATE_WRITER, str(marker)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "attention-unet-abdomen-v2" in done.stdout
    assert marker.read_text() == "written"
