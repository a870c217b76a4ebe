"""The model registry: named models with their file and sha256; a checksum mismatch is an error.

The bundled registry (`data/models.json`, shipped with the package) lists the bundled models; the
entry marked `"default": true` is what `segment` and the Slicer module use when no model is given.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

from .bundle import file_sha256
from .errors import ModelFileError

BUNDLED_DATA = Path(__file__).resolve().parent / "data"
BUNDLED_REGISTRY = BUNDLED_DATA / "models.json"


@dataclass(frozen=True)
class RegistryEntry:
    """One registered model."""

    name: str
    file: Path
    sha256: str
    description: str = ""
    default: bool = False


def list_models(registry: Path = BUNDLED_REGISTRY) -> List[RegistryEntry]:
    """Every model in the registry file, file paths resolved against the registry's folder."""
    try:
        entries = json.loads(Path(registry).read_text())["models"]
        return [
            RegistryEntry(e["name"], (Path(registry).parent / e["file"]).resolve(), e["sha256"],
                          e.get("description", ""), bool(e.get("default", False)))
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model registry {registry} is unreadable or malformed: {exc}") from exc


def default_model(registry: Path = BUNDLED_REGISTRY) -> RegistryEntry:
    """The registry's default entry."""
    defaults = [e for e in list_models(registry) if e.default]
    if len(defaults) != 1:
        raise ModelFileError(f"model registry {registry} must mark exactly one model as default")
    return defaults[0]


def resolve_model_path(name_or_path: Union[str, Path, None] = None, registry: Path = BUNDLED_REGISTRY) -> Path:
    """A model file for a registry name, a file path, or None (the default model), checksum-verified."""
    if name_or_path is None:
        entry = default_model(registry)
    else:
        candidate = Path(name_or_path)
        if candidate.suffix == ".safetensors" or candidate.exists():
            if not candidate.is_file():
                raise ModelFileError(f"model file {candidate} does not exist")
            return candidate
        entries = {e.name: e for e in list_models(registry)}
        if str(name_or_path) not in entries:
            raise ModelFileError(f"no model named {name_or_path!r}; known models: {sorted(entries)} "
                                 "(or give the path of a .safetensors model file)")
        entry = entries[str(name_or_path)]
    verify_entry(entry)
    return entry.file


def verify_entry(entry: RegistryEntry) -> None:
    """Raise if the entry's file is missing or its sha256 differs from the registry's."""
    if not entry.file.is_file():
        raise ModelFileError(f"model {entry.name!r}: file {entry.file} is missing; reinstall or re-download it")
    actual = file_sha256(entry.file)
    if actual != entry.sha256:
        raise ModelFileError(f"model {entry.name!r}: checksum mismatch for {entry.file} "
                             f"(registry {entry.sha256}, file {actual}); the file is corrupt or was replaced")
