"""The OpenVINO cache of converted models: `models cache` lists it, `--clear` empties it, `models remove` takes a
model's entry with it and `models info` shows it; real conversions in a per-test user folder."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from conftest import SAMPLE_CT, make_model_file, run_cli, start_cli

from AttentionUNetSegLib.io.atomic import _host
from AttentionUNetSegLib.cli import main
from AttentionUNetSegLib.models.model_file import file_sha256, read_model
from AttentionUNetSegLib.backends.openvino import (CONVERTING_PREFIX, INT8_SUFFIX, REMOVING_PREFIX, OpenVINOBackend,
                                                   _remove_entry, cache_entries, cache_root, ctrl_c_after,
                                                   remove_cache_entries)
from AttentionUNetSegLib.models.user_folders import HOME_VARIABLE


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user folder of this test's own (CLI subprocesses inherit it)."""
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    return tmp_path / "home"


def converted(path: Path) -> Path:
    """Convert the model file for OpenVINO (as a segmentation does) and return its cache entry."""
    OpenVINOBackend(read_model(path), torch.float32)
    (entry,) = cache_entries(file_sha256(path))
    return entry.path


def cli(capsys: pytest.CaptureFixture, *args: str) -> str:
    assert main(["models", *args]) == 0
    return capsys.readouterr().out


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_cache_lists_entries_and_clear_removes_them(tmp_path: Path, capsys) -> None:
    model = make_model_file(tmp_path / "mine.safetensors", seed=11)
    sha256 = file_sha256(model)
    cli(capsys, "add", "mine", "--file", str(model))
    assert "openvino:      not converted yet" in cli(capsys, "info", "mine")
    entry = converted(model)
    outdated = shutil.copytree(entry, cache_root() / f"{sha256}-openvino2000.1.0-v1")
    orphan = shutil.copytree(entry, cache_root() / f"{'0' * 64}-openvino2000.1.0-v1")
    killed_conversion = cache_root() / f"{CONVERTING_PREFIX}{dead_pid()}@{_host()}-abc"
    killed_conversion.mkdir()
    (cache_root() / f"{REMOVING_PREFIX}leftover").mkdir()

    listing = cli(capsys, "cache")
    assert str(cache_root()) in listing
    assert "3 converted model(s)" in listing
    lines = listing.splitlines()[1:-1]
    in_use = [line for line in lines if "unused" not in line]
    assert len(lines) == 3
    assert len(in_use) == 1
    assert in_use[0].split()[0] == sha256[:12]
    assert "mine" in in_use[0]
    assert any("(no registered model)" in line and line.split()[0] == "0" * 12 for line in lines)
    assert sorted(e.current for e in cache_entries(sha256)) == [False, True]
    assert "converted, " in cli(capsys, "info", "mine")

    result = run_cli(["models", "cache", "--clear"])  # a real CLI process
    assert result.returncode == 0, result.stderr
    assert "removed 3 converted model(s)" in result.stdout, result.stderr
    assert not entry.exists()
    assert not outdated.exists()
    assert not orphan.exists()
    assert sorted(p.name for p in cache_root().iterdir()) == []
    assert "openvino:      not converted yet" in cli(capsys, "info", "mine")
    assert "0 converted model(s)" in cli(capsys, "cache")


def test_cache_tells_the_int8_model_from_the_float_one(tmp_path: Path, capsys) -> None:
    """The quantized model (its folder: the float entry's name + INT8_SUFFIX, as --precision int8 makes it) has
    the same model file, so the same sha256 and name: the listing says which is which."""
    model = make_model_file(tmp_path / "mine.safetensors", seed=14)
    cli(capsys, "add", "mine", "--file", str(model))
    entry = converted(model)
    shutil.copytree(entry, entry.with_name(entry.name + INT8_SUFFIX))
    lines = cli(capsys, "cache").splitlines()[1:-1]
    assert [line.split()[:2] for line in lines] == [[file_sha256(model)[:12], "float"],
                                                    [file_sha256(model)[:12], "int8,"]]
    assert "int8, quantized" in lines[1]
    assert "int8" not in lines[0]
    assert all(line.endswith("  mine") for line in lines)


def test_remove_takes_the_models_entry_unless_shared(tmp_path: Path, capsys) -> None:
    first, second = (make_model_file(tmp_path / f"{name}.safetensors", seed=seed)
                     for name, seed in (("first", 12), ("second", 13)))
    for name, file in (("first", first), ("same-file", first), ("second", second)):
        cli(capsys, "add", name, "--file", str(file))
    first_entry, second_entry = converted(first), converted(second)

    assert "OpenVINO" not in cli(capsys, "remove", "same-file")  # "first" still uses the converted model
    assert first_entry.is_dir()
    removed = cli(capsys, "remove", "first")
    assert "and its converted OpenVINO model (" in removed
    assert not first_entry.exists()
    # another model's entry and a --file model's own file stay
    assert second_entry.is_dir()
    assert first.is_file()


def test_removal_tolerates_absence_and_stays_in_the_cache(tmp_path: Path) -> None:
    cache_root().mkdir(parents=True)
    assert remove_cache_entries() == []
    assert remove_cache_entries("a" * 64) == []
    assert not _remove_entry(cache_root() / f"{'a' * 64}-openvino1-v1")  # removed meanwhile by another process
    outside = tmp_path / f"{'a' * 64}-openvino1-v1"
    outside.mkdir()
    with pytest.raises(ValueError, match="not an entry of the OpenVINO cache"):
        _remove_entry(outside)
    assert outside.is_dir()


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler, also where the suite runs as a background job (SIGINT ignored, as start_cli
    says), then the one before."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_a_conversion_ends_the_run_when_the_conversion_ends(tmp_path: Path, python_ctrl_c) -> None:
    """In the process that converts: the Ctrl-C is held until OpenVINO's converter returns (interrupted inside it,
    the converter aborts the process or reports an ordinary error, and the run went on with PyTorch), then raised."""
    after = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_after():
            os.kill(os.getpid(), signal.SIGINT)
            after.append(converted(make_model_file(tmp_path / "m.safetensors", seed=4)))
    assert len(after) == 1  # the conversion was not cut short
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_segment_converts_the_model_stops_the_run(tmp_path: Path) -> None:
    """The whole command: Ctrl-C while `segment` converts the model for OpenVINO ends it as Ctrl-C does elsewhere
    (exit 130, nothing written, no traceback), not with a PyTorch run in its place."""
    model = make_model_file(tmp_path / "m.safetensors", seed=5)
    out = tmp_path / "out"
    process = start_cli(["segment", SAMPLE_CT, "-o", out, "--model", model])
    for line in process.stderr:
        if "converting the model for OpenVINO" in line:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=300)
    assert process.returncode == 130, rest
    assert "using PyTorch instead" not in rest
    assert "Traceback" not in rest
    assert not out.exists()
