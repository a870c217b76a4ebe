"""A full disk as an ordinary error: `room_for` turns the write errors of a full disk, a quota or a file-size limit
(Python's OSError, ITK's RuntimeError) into one DiskFullError that names the folder, the space needed and free,
and the fix."""
from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..errors import DiskFullError

NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
ITK_NO_ROOM = ("No space left on device", "Disk quota exceeded", "File too large", "failed to write",
               "couldn't write")
"""What ITK's writers say when the disk is full (NRRD's gzip writer gives no reason, only that it failed)."""


def is_no_room(exc: Optional[BaseException]) -> bool:
    """Whether `exc` is a write that failed for want of room: a full disk, a quota or a file-size limit, also
    where a library raised its own error while handling the OSError (torch.save into a Python file)."""
    if exc is None:
        return False
    if isinstance(exc, OSError):
        return exc.errno in NO_ROOM_ERRNOS
    if isinstance(exc, RuntimeError) and any(text in str(exc) for text in ITK_NO_ROOM):
        return True
    return is_no_room(exc.__cause__ or exc.__context__)


@contextmanager
def room_for(folder: Path, what: str, fix: str, needed_bytes: Optional[int] = None) -> Iterator[None]:
    """Run the block, which writes `what` into `folder`; a failure for want of room becomes a DiskFullError
    saying so, with the space needed (if known) and free, and `fix`."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not is_no_room(exc):
            raise
        raise no_room_error(folder, what, fix, needed_bytes) from exc


def no_room_error(folder: Path, what: str, fix: str, needed_bytes: Optional[int] = None) -> DiskFullError:
    needed = f"up to {_megabytes(needed_bytes)} needed, " if needed_bytes else ""
    return DiskFullError(f"no room in {folder} for {what} ({needed}{_megabytes(free_bytes(folder))} free there): "
                         f"{fix}")


def free_bytes(folder: Path) -> int:
    """The bytes free on the disk of `folder` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
