"""Atomic writes: a file or a set of files appears whole or not at all.

Staging folders carry their maker's pid and host in their name (`staging_folder`), so one left behind by a
killed process is removed by the next staging in the same folder; a live process's is never touched.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from ..errors import OutputError


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


OUTPUT_STAGING_PREFIX = ".attention-unet-"


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new hidden folder `PREFIX<pid>@<host>-<random>` in `parent`, after removing stale ones there."""
    remove_stale_staging(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}@{_host()}-", dir=parent))


def remove_stale_staging(parent: Path, prefix: str) -> List[Path]:
    """Remove the staging folders in `parent` made on this host by processes that are gone; return them."""
    removed = []
    for folder in Path(parent).glob(f"{prefix}*"):
        pid = _owner_pid(folder.name[len(prefix):])
        if pid is not None and folder.is_dir() and not _pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)  # a racing run may be removing it too
            if not folder.exists():
                removed.append(folder)
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _owner_pid(suffix: str) -> Optional[int]:
    """The pid in `<pid>@<host>-<random>` when made on this host; None otherwise (another host, old name)."""
    match = re.fullmatch(r"(\d+)@(.+)-[^-]*", suffix)
    return int(match.group(1)) if match and match.group(2) == _host() else None


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists; on Windows always True (os.kill there would end the process)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


class StagedOutputs:
    """Stage files in a hidden folder inside `directory`; `commit` moves them in, `discard` removes them.

    Used as a context manager: leaving the block with an exception discards everything, so a
    failed or cancelled run leaves no half-made outputs (and removes `directory` if it made it); what a
    killed run leaves is removed by the next staging in `directory`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._staging = staging_folder(self.directory, OUTPUT_STAGING_PREFIX)
        except OSError as exc:
            raise OutputError(f"cannot write to output folder {self.directory}: {exc.strerror}; "
                              "choose a folder you can write to with -o") from exc
        self._names: List[str] = []

    def path(self, name: str) -> Path:
        """Where to write the staged file `name` (a bare file name)."""
        if Path(name).name != name:
            raise ValueError(f"output names must be bare file names, not {name!r}")
        self._names.append(name)
        return self._staging / name

    def commit(self) -> List[Path]:
        """Move every staged file into the output folder (replacing older ones) and return their paths."""
        final = []
        for name in self._names:
            target = self.directory / name
            os.replace(self._staging / name, target)
            final.append(target)
        shutil.rmtree(self._staging, ignore_errors=True)
        return final

    def discard(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)
        if self._created:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
