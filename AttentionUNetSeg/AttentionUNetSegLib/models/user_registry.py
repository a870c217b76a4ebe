"""Changes to the user's model registry: add a local file or an https download, (re-)download, remove
(with the model's download and its converted OpenVINO model, unless another registered model shares them).

Each change checks the model file first and writes the registry atomically, so a failed change leaves the
registry and the download cache as they were.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, NamedTuple, Optional

from ..errors import InvalidOptionError, ModelFileError
from ..io.atomic import atomic_file
from .download import DownloadProgress, check_https_url, check_sha256, download
from .model_file import file_sha256
from .registry import RegistryEntry, cached_file, check_model_file, find_model, list_models, read_registry
from .user_folders import user_registry

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def add_file(name: str, file: Path, description: str = "") -> RegistryEntry:
    """Register a local model file under `name` (its sha256 is recorded, its metadata checked)."""
    file = Path(file).resolve()
    check_new_name(name)
    if not file.is_file():
        raise ModelFileError(f"model file {file} does not exist")
    entry = check_model_file(RegistryEntry(name, file, file_sha256(file), description))
    _write_user_entries(read_registry(user_registry()) + [entry])
    return entry


def add_url(name: str, url: str, sha256: str, description: str = "",
            progress: Optional[DownloadProgress] = None) -> RegistryEntry:
    """Register an https model under `name`: download it (verified), check its metadata, then record it.

    On any failure the registry and the cache are as they were.
    """
    check_new_name(name)
    url, sha256 = check_https_url(url), check_sha256(sha256)
    entry = RegistryEntry(name, cached_file(sha256), sha256, description, url=url)
    downloaded_here = not entry.available
    if downloaded_here:
        download(url, entry.file, entry.sha256, progress)
    try:
        entry = check_model_file(entry)
    except ModelFileError:
        if downloaded_here:
            entry.file.unlink(missing_ok=True)
        raise
    _write_user_entries(read_registry(user_registry()) + [entry])
    return entry


def download_model(name: str, progress: Optional[DownloadProgress] = None) -> RegistryEntry:
    """(Re-)download a registered URL model into the cache; a verified file already there is kept."""
    entry = find_model(name)
    if not entry.url:
        raise InvalidOptionError(f"model {name!r} is a local file ({entry.file}), not a download")
    if entry.available and file_sha256(entry.file) == entry.sha256:
        return entry
    download(entry.url, entry.file, entry.sha256, progress)
    return entry


class Removal(NamedTuple):
    """A removed model's entry, and whether no registered model has its sha256 any more (then its converted
    OpenVINO models are orphans: the caller removes them, backends.openvino.remove_cache_entries)."""

    entry: RegistryEntry
    orphaned: bool


def remove_model(name: str) -> Removal:
    """Remove a user-registered model, and its downloaded file unless another registered model has the same
    sha256; bundled models cannot be removed."""
    entry = find_model(name)
    if entry.bundled:
        raise InvalidOptionError(f"model {name!r} is bundled with AttentionUNetSeg and cannot be removed")
    remaining = [e for e in read_registry(user_registry()) if e.name != name]
    _write_user_entries(remaining)
    if any(e.sha256 == entry.sha256 for e in list_models()):
        return Removal(entry, orphaned=False)
    if entry.url:
        entry.file.unlink(missing_ok=True)
    return Removal(entry, orphaned=True)


def check_new_name(name: str) -> None:
    """Raise InvalidOptionError unless `name` can name a model and is not registered yet."""
    if not NAME_PATTERN.match(name) or name.endswith(".safetensors"):
        raise InvalidOptionError(f"{name!r} cannot be a model name: use letters, digits, '-', '_' and '.', "
                                 "starting with a letter or digit and not ending in .safetensors")
    if name in {e.name for e in list_models()}:
        raise InvalidOptionError(f"a model named {name!r} is already registered; choose another name or "
                                 f"`attention-unet models remove {name}` first")


def _write_user_entries(entries: List[RegistryEntry]) -> None:
    path = user_registry()
    values = {"models": [e.to_dict(path.parent) for e in entries]}
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
