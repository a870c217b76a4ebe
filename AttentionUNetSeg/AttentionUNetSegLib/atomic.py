"""Atomic writes: a file or a set of files appears whole or not at all."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

from .errors import OutputError


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


class StagedOutputs:
    """Stage files in a hidden folder inside `directory`; `commit` moves them in, `discard` removes them.

    Used as a context manager: leaving the block with an exception discards everything, so a
    failed or cancelled run leaves no half-made outputs (and removes `directory` if it made it).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=".attention-unet-", dir=self.directory))
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
