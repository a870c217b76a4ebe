"""The model registry: named models with their file or https URL, sha256, classes and description.

Two registry files are read, in this order:
- the bundled one (`data/models.json`, shipped with the package, read-only): the bundled models; its
  entry marked `"default": true` is what `segment` and the Slicer module use when no model is given;
- the user's (`models.json` in the per-user config folder, see `user_folders`): models added with
  `attention-unet models add` (`user_registry`). Downloads go to the per-user cache folder, named by
  their sha256. Every use of a model checks its sha256 against the registry; a mismatch is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

from ..errors import ModelFileError
from ..repeats import repeated
from .bundled_data import BUNDLED_DATA
from .download import check_https_url, check_sha256
from .model_file import file_sha256, read_metadata, read_model
from .user_folders import model_cache_dir, user_registry

if TYPE_CHECKING:  # listing and resolving models needs no PyTorch (the Slicer panel lists them in Slicer's process)
    from ..network.attention_unet import AttentionUNet3D

BUNDLED_REGISTRY = BUNDLED_DATA / "models.json"


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


def cached_file(sha256: str) -> Path:
    """Where the download of the model file with this sha256 is kept."""
    return model_cache_dir() / f"{sha256}.safetensors"


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
                file = cached_file(sha256)
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


def load_model(model: Union[str, Path, None] = None, device: str = "cpu") -> AttentionUNet3D:
    """A model by registry name, model-file path, or (None) the default model; in eval mode, with
    `.metadata` and `.sha256`."""
    return read_model(resolve_model_path(model), device)


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
