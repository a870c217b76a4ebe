"""The metadata of a .safetensors file, read from its header alone: no PyTorch, no weights.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (each tensor's dtype, shape and
`data_offsets` into the data that follows, and the string-to-string `__metadata__`), then the tensors' bytes. The
Slicer panel lists models and shows their metadata in Slicer's own process, which must not load PyTorch for it
(it takes seconds and hundreds of MB there); the checks are those of safetensors' own reader (`safe_open`), so a
truncated or corrupt file is refused here as there.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict

from ..errors import ModelFileError

MAX_HEADER_BYTES = 100_000_000
"""safetensors' own limit on the JSON header."""
_METADATA = "__metadata__"


def read_header_metadata(path: Path) -> Dict[str, str]:
    """The `__metadata__` strings of a safetensors file (empty if it has none); raises ModelFileError naming the
    file for one that is not a whole safetensors file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            size = path.stat().st_size
            if len(prefix) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"a header of {length} bytes does not fit the file's {size} bytes")
            header = json.loads(handle.read(length).decode("utf-8"))
        _check_tensors(header, size - 8 - length)
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a readable model file (corrupt or truncated?): {exc}") from exc
    metadata = header.get(_METADATA) or {}
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise ModelFileError(f"{path} is not a readable model file (corrupt?): its metadata is not text")
    return metadata


def _check_tensors(header: dict, data_bytes: int) -> None:
    """Every tensor's bytes lie in the data, which they fill without a gap: what safetensors checks on opening."""
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    spans = sorted(tuple(entry["data_offsets"]) for name, entry in header.items() if name != _METADATA)
    end = 0
    for start, stop in spans:
        if start != end or stop < start:
            raise ValueError(f"tensor data at bytes {start}-{stop} does not follow on from byte {end}")
        end = stop
    if end != data_bytes:
        raise ValueError(f"the tensors take {end} bytes but the file holds {data_bytes}")
