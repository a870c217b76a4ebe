"""The engine's Python packages inside Slicer: which are missing or too old, and what installing them may do.

Pure functions over versions, `sys.modules` and the platform (installer.py acts on them). The required packages
are listed in Resources/requirements.txt, the optional ones (OpenVINO for a faster CPU, NNCF for int8) in
Resources/optional-requirements.txt. An installed package counts only if its version meets the specifier (Slicer
5.6 bundles SimpleITK 2.2.1, another extension may have installed an old monai). Rules, as the best extensions
keep them (SlicerTotalSegmentator, SlicerNNUNet, SlicerMONAIAuto3DSeg):
- PyTorch comes from the PyTorch extension (the build that fits the GPU driver), never from PyPI;
- the packages Slicer bundles (PROTECTED) keep their versions: pip gets them as constraints;
- a package already imported at an older version is upgraded only after a restart (a loaded module cannot be
  replaced, on Windows not even its files);
- macOS is not supported: Slicer's macOS builds are x86_64, run under Rosetta on Apple silicon, and PyTorch's
  last x86_64 macOS release is 2.2, older than the engine needs.
"""
from __future__ import annotations

import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Dict, List, Mapping, Optional, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RESOURCES = Path(__file__).resolve().parent.parent / "Resources"
REQUIREMENTS_FILE = RESOURCES / "requirements.txt"
OPTIONAL_REQUIREMENTS_FILE = RESOURCES / "optional-requirements.txt"
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Packages whose import name differs from their distribution name."""
PROTECTED = ("numpy", "SimpleITK", "scipy", "requests", "torch")
"""Slicer's own packages (and the PyTorch extension's torch): pinned at their installed versions while pip
installs the rest. SimpleITK carries Slicer's own IO; replacing requests or numpy breaks what imported them."""
TORCH = "torch"
MACOS_UNSUPPORTED = (
    "macOS is not supported: Slicer's macOS builds are x86_64 programs (run under Rosetta on Apple silicon), and "
    "PyTorch's last release for them is 2.2, older than this module needs (2.5). Nothing was installed; on macOS "
    "use the engine from the command line in a native Python instead (see the README).")


class DependencyError(RuntimeError):
    """The engine's packages are missing or too old and cannot be installed here, as the message says."""


class RestartRequiredError(DependencyError):
    """Packages to upgrade are loaded in Slicer already: Slicer must restart before they can be upgraded."""


@dataclass(frozen=True)
class UnmetRequirement:
    """A requirement (e.g. 'SimpleITK>=2.3') and the version installed (None: not installed)."""

    requirement: str
    installed: Optional[str]

    @property
    def name(self) -> str:
        return Requirement(self.requirement).name

    @property
    def importName(self) -> str:
        """The top-level module the distribution provides."""
        return IMPORT_NAMES.get(canonicalize_name(self.name), self.name.replace("-", "_"))

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} ({self.name} {self.installed} is too old)"


@dataclass
class InstallPlan:
    """What installing unmet requirements takes, decided before anything is installed."""

    pip: List[UnmetRequirement] = field(default_factory=list)
    """To install with pip, Slicer's packages pinned."""
    torch: Optional[UnmetRequirement] = None
    """For the PyTorch extension to install."""
    optional: List[UnmetRequirement] = field(default_factory=list)
    """Each on its own; one that fails is reported, not fatal."""
    loaded: List[UnmetRequirement] = field(default_factory=list)
    """Imported already at a version too old: Slicer must restart before they are upgraded."""
    bundledTooOld: List[UnmetRequirement] = field(default_factory=list)
    """Slicer's own packages at versions too old: a newer Slicer is needed."""

    def refusal(self, unsupported: Optional[str]) -> Optional[DependencyError]:
        """Why the install cannot go ahead (None: it can): the platform, Slicer's own packages, or loaded ones."""
        if unsupported:
            return DependencyError(unsupported)
        if self.bundledTooOld:
            return DependencyError(f"Slicer's own {', '.join(map(str, self.bundledTooOld))}: this module needs a newer "
                                   "Slicer (5.6 or later).")
        if self.loaded:
            return RestartRequiredError(
                f"{', '.join(map(str, self.loaded))}: loaded in Slicer already, so they can be upgraded only after a "
                "restart. Restart Slicer, then click Segment first, before another module loads them.")
        return None


def requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """Requirement specifiers (e.g. 'monai>=1.3'), without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def installedVersions() -> Dict[str, str]:
    """Canonical distribution name -> version of every package on sys.path (the first one found wins, as for import)."""
    versions: Dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), distribution.version)
    return versions


def unmetRequirements(path: Path = REQUIREMENTS_FILE,
                      versions: Optional[Mapping[str, str]] = None) -> List[UnmetRequirement]:
    """The requirements that are not installed or whose installed version does not meet the specifier."""
    versions = installedVersions() if versions is None else versions
    unmet = []
    for text in requirements(path):
        requirement = Requirement(text)
        installed = versions.get(canonicalize_name(requirement.name))
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(UnmetRequirement(text, installed))
    return unmet


def planInstall(unmet: Sequence[UnmetRequirement], optional: Sequence[UnmetRequirement] = (),
                loadedModules: Collection[str] = ()) -> InstallPlan:
    """Sort unmet requirements (and unmet optional ones) into what installing them takes; `loadedModules`: the
    names in `sys.modules`."""
    protected = {canonicalize_name(name) for name in PROTECTED if name != TORCH}
    plan = InstallPlan()
    for item in unmet:
        name = canonicalize_name(item.name)
        if name in protected and item.installed is not None:
            plan.bundledTooOld.append(item)
        elif item.installed is not None and item.importName in loadedModules:
            plan.loaded.append(item)
        elif name == TORCH:
            plan.torch = item
        else:
            plan.pip.append(item)
    plan.optional.extend(item for item in optional if item.installed is None or item.importName not in loadedModules)
    return plan


def constraints(versions: Mapping[str, str]) -> List[str]:
    """pip constraints pinning the PROTECTED packages installed, at their versions (e.g. 'numpy==1.26.1')."""
    return [f"{name}=={versions[canonicalize_name(name)]}" for name in PROTECTED
            if canonicalize_name(name) in versions]


def changedLoaded(before: Mapping[str, str], after: Mapping[str, str],
                  loadedModules: Collection[str]) -> List[str]:
    """Distributions (canonical names, as installedVersions gives them) that changed version and whose module is
    loaded: Slicer must restart to use them."""
    loaded = {module.lower() for module in loadedModules}
    return sorted(name for name, version in before.items() if after.get(name, version) != version
                  and IMPORT_NAMES.get(name, name.replace("-", "_")) in loaded)


def unsupportedPlatform(system: Optional[str] = None) -> Optional[str]:
    """Why the engine cannot be installed on this platform (`system` as platform.system() names it); None where it
    can."""
    return MACOS_UNSUPPORTED if (system or platform.system()) == "Darwin" else None


def loadedModules() -> List[str]:
    """The top-level modules this process has imported."""
    return sorted({name.split(".")[0] for name in sys.modules})
