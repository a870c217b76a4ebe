"""The model registry: named models with their file or https URL, sha256, classes and description.

Two registry files are read, in this order:
- the bundled one (`data/models.json`, shipped with the package, read-only): the bundled models; its
  entry marked `"default": true` is what `segment` and the Slicer module use when no model is given;
- the user's (`models.json` in the per-user config folder): models added with `attention-unet models add`.
Downloads go to the per-user cache folder, named by their sha256. `ATTENTION_UNET_SEG_HOME` moves
both folders under one root (tests, shared installations). Every use of a model checks its sha256
against the registry; a mismatch is an error. Nothing is downloaded unless the user asks.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .atomic import atomic_file
from .model_file import file_sha256, read_metadata
from .download import DownloadProgress, check_https_url, check_sha256, download
from .errors import InvalidOptionError, ModelFileError
from .repeats import repeated

BUNDLED_DATA = Path(__file__).resolve().parent / "data"
BUNDLED_REGISTRY = BUNDLED_DATA / "models.json"
HOME_VARIABLE = "ATTENTION_UNET_SEG_HOME"
APP_NAME = "AttentionUNetSeg"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def user_config_dir() -> Path:
    """Where the user's registry lives."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE])
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    """Where downloaded model files are kept."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_registry() -> Path:
    return user_config_dir() / "models.json"


@dataclass(frozen=True)
class RegistryEntry:
    """One registered model: a local `file`, or an https `url` whose download lands in the cache."""

    name: str
    file: Path
    sha256: str
    description: str = ""
    default: bool = False
    url: Optional[str] = None
    classes: Tuple[str, ...] = ()
    bundled: bool = False

    @property
    def available(self) -> bool:
        """Whether the file is on disk (a URL model may not have been downloaded yet)."""
        return self.file.is_file()

    def to_dict(self, registry_folder: Path) -> dict:
        """The entry as stored in a registry file (files relative to it where they lie below it)."""
        values = {"name": self.name, "sha256": self.sha256, "description": self.description,
                  "classes": list(self.classes)}
        if self.url:
            values["url"] = self.url
        else:
            values["file"] = _relative_if_below(self.file, registry_folder)
        if self.default:
            values["default"] = True
        return values


def _relative_if_below(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def _cached_file(sha256: str) -> Path:
    return user_cache_dir() / "models" / f"{sha256}.safetensors"


def read_registry(registry: Path, bundled: bool = False) -> List[RegistryEntry]:
    """The entries of one registry file (a missing user registry is empty); errors name the file."""
    registry = Path(registry)
    if not bundled and not registry.exists():
        return []
    try:
        items = json.loads(registry.read_text(encoding="utf-8"))["models"]
        entries = []
        for item in items:
            sha256 = check_sha256(item["sha256"])
            if item.get("url"):
                check_https_url(item["url"])
                file = _cached_file(sha256)
            else:
                file = (registry.parent / item["file"]).resolve()
            entries.append(RegistryEntry(item["name"], file, sha256, item.get("description", ""),
                                         bool(item.get("default", False)), item.get("url"),
                                         tuple(item.get("classes", ())), bundled))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model registry {registry} is unreadable or malformed ({exc}); fix or delete it"
                             + ("" if bundled else " (`attention-unet models add` makes a new one)")) from exc
    _refuse_duplicates(entries, str(registry))
    return entries


def _refuse_duplicates(entries: List[RegistryEntry], where: str) -> None:
    duplicates = repeated(e.name for e in entries)
    if duplicates:
        raise ModelFileError(f"model names {duplicates} occur more than once in {where}; every model needs its own "
                             "name (`attention-unet models remove NAME` one of them)")


def list_models(registry: Path = BUNDLED_REGISTRY, include_user: bool = True) -> List[RegistryEntry]:
    """Every registered model: the bundled registry's, then the user's."""
    entries = read_registry(registry, bundled=True)
    if include_user:
        entries += read_registry(user_registry())
        _refuse_duplicates(entries, f"{registry} and {user_registry()} together")
    return entries


def find_model(name: str, registry: Path = BUNDLED_REGISTRY) -> RegistryEntry:
    entries: Dict[str, RegistryEntry] = {e.name: e for e in list_models(registry)}
    if name not in entries:
        raise ModelFileError(f"no model named {name!r}; known models: {sorted(entries)} "
                             "(or give the path of a .safetensors model file)")
    return entries[name]


def default_model(registry: Path = BUNDLED_REGISTRY) -> RegistryEntry:
    """The bundled registry's default entry."""
    defaults = [e for e in list_models(registry, include_user=False) if e.default]
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
        entry = find_model(str(name_or_path), registry)
    verify_entry(entry)
    return entry.file


def verify_entry(entry: RegistryEntry) -> None:
    """Raise if the entry's file is missing or its sha256 differs from the registry's."""
    if not entry.available:
        how = (f"download it with `attention-unet models download {entry.name}`" if entry.url
               else "reinstall AttentionUNetSeg" if entry.bundled
               else f"restore the file, or `attention-unet models remove {entry.name}`")
        raise ModelFileError(f"model {entry.name!r}: file {entry.file} is missing; {how}")
    actual = file_sha256(entry.file)
    if actual != entry.sha256:
        raise ModelFileError(f"model {entry.name!r}: checksum mismatch for {entry.file} "
                             f"(registry {entry.sha256}, file {actual}); the file is corrupt or was replaced")


def check_model_file(entry: RegistryEntry) -> RegistryEntry:
    """Verify the checksum and the metadata (classes, spacing...) of an entry's file; the entry with its
    classes filled in from the file."""
    verify_entry(entry)
    try:
        metadata = read_metadata(entry.file)
    except ModelFileError as exc:
        raise ModelFileError(f"model {entry.name!r} cannot be used: {exc}") from exc
    return replace(entry, classes=tuple(metadata.class_names),
                   description=entry.description or metadata.description)


# --- changing the user's registry ------------------------------------------------------------------------------

def add_file(name: str, file: Path, description: str = "") -> RegistryEntry:
    """Register a local model file under `name` (its sha256 is recorded, its metadata checked)."""
    file = Path(file).resolve()
    _check_new_name(name)
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
    _check_new_name(name)
    url, sha256 = check_https_url(url), check_sha256(sha256)
    entry = RegistryEntry(name, _cached_file(sha256), sha256, description, url=url)
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


def remove_model(name: str) -> RegistryEntry:
    """Remove a user-registered model (and its downloaded file); bundled models cannot be removed."""
    entry = find_model(name)
    if entry.bundled:
        raise InvalidOptionError(f"model {name!r} is bundled with AttentionUNetSeg and cannot be removed")
    remaining = [e for e in read_registry(user_registry()) if e.name != name]
    _write_user_entries(remaining)
    if entry.url and not any(e.sha256 == entry.sha256 for e in remaining):
        entry.file.unlink(missing_ok=True)
    return entry


def verify_models(names: Optional[List[str]] = None) -> Dict[str, Optional[str]]:
    """name -> None if the model's file is present, matches its sha256 and has valid metadata, else why not."""
    entries = [find_model(n) for n in names] if names else list_models()
    problems: Dict[str, Optional[str]] = {}
    for entry in entries:
        try:
            check_model_file(entry)
            problems[entry.name] = None
        except ModelFileError as exc:
            problems[entry.name] = str(exc)
    return problems


def _check_new_name(name: str) -> None:
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

