"""Standard gzip files written and inflated fast: ISA-L (python-isal) where it is installed, else zlib.

On the six attention maps of a 512x512x300 CT, ISA-L at its level 2 (its default) compresses with about a
quarter of the CPU time of zlib at level 1 (nibabel's default) for 1.5 % more bytes, and lets go of the GIL,
so maps compress in threads beside other work (docs/benchmarks.md). Both write the same format, which every
gzip reader reads; the fallback is there for a platform without python-isal's wheels, where writing is slower.
ISA-L also inflates a whole CT's .nii.gz in about half of zlib's time (docs/benchmarks.md), also
without the GIL.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, BinaryIO

try:
    from isal import igzip, isal_zlib
except ImportError:  # python-isal is a dependency; see the module docstring
    igzip = isal_zlib = None

INFLATE_ERRORS = (zlib.error,) + ((isal_zlib.error,) if isal_zlib is not None else ())
"""What `gzip_inflater()` raises on data that is not gzip (ISA-L's error is not a zlib.error)."""

ISAL_LEVEL = 2
ZLIB_LEVEL = 1


def open_gzip(path: Path) -> BinaryIO:
    """A new gzip file at `path` open for writing (one gzip member, mtime 0), compressed in the calling thread."""
    if igzip is not None:
        return igzip.IGzipFile(path, "wb", compresslevel=ISAL_LEVEL, mtime=0)
    return gzip.GzipFile(path, "wb", compresslevel=ZLIB_LEVEL, mtime=0)


def gzip_inflater() -> Any:
    """A decompressor of one gzip member with zlib's decompressobj interface (decompress, eof, unused_data,
    unconsumed_tail)."""
    return (isal_zlib or zlib).decompressobj(wbits=31)
