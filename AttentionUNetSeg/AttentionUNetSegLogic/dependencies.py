"""The engine's Python packages inside Slicer: which are missing or too old, and installing them.

The list lives in Resources/requirements.txt. An installed package counts only if its version meets the
specifier (Slicer 5.6 bundles SimpleITK 2.2.1, another extension may have installed an old monai).
PyTorch is installed by the PyTorch extension's installer (PyTorchUtils) where that extension is
present, since it picks the build that matches the GPU driver; everything else goes through
slicer.util.pip_install.
"""
from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import slicer

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Packages whose import name differs from their distribution name."""


class DependencyError(RuntimeError):
    """The engine's packages are missing or too old and cannot be installed here."""


@dataclass(frozen=True)
class UnmetRequirement:
    """A requirement (e.g. 'SimpleITK>=2.3') and the version installed (None: not installed)."""

    requirement: str
    installed: Optional[str]

    @property
    def name(self) -> str:
        return Requirement(self.requirement).name

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} ({self.name} {self.installed} is too old)"


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


def unmetRequirements(path: Path = REQUIREMENTS_FILE) -> List[UnmetRequirement]:
    """The requirements that are not installed or whose installed version does not meet the specifier."""
    versions = installedVersions()
    unmet = []
    for text in requirements(path):
        requirement = Requirement(text)
        installed = versions.get(canonicalize_name(requirement.name))
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(UnmetRequirement(text, installed))
    return unmet


def installRequirements(unmet: Sequence[UnmetRequirement]) -> List[str]:
    """Install or upgrade `unmet` requirements (the caller asks the user first); raise DependencyError with the
    manual fix. Returns the upgraded packages this process has imported already (Slicer must restart to use them)."""
    pipRequirements = [item.requirement for item in unmet]
    torch = [item for item in unmet if canonicalize_name(item.name) == "torch"]
    try:
        if torch and _installTorchWithPyTorchExtension(str(Requirement(torch[0].requirement).specifier)):
            pipRequirements.remove(torch[0].requirement)
        if pipRequirements:
            slicer.util.pip_install(pipRequirements)
    except Exception as exc:
        raise DependencyError(
            f"Installing {', '.join(map(str, unmet))} failed ({exc}). Check the internet connection, or install them "
            f"from Slicer's Python console with slicer.util.pip_install({pipRequirements!r}) and restart Slicer.") from exc
    wanted = {item.requirement for item in unmet}
    still = [item for item in unmetRequirements() if item.requirement in wanted]
    if still:
        raise DependencyError(f"{', '.join(map(str, still))}: could not be installed; restart Slicer and try again, or "
                              f"install from the Python console with "
                              f"slicer.util.pip_install({[item.requirement for item in still]!r}).")
    return [item.name for item in unmet if item.installed is not None and _importName(item.name) in sys.modules]


def _importName(distributionName: str) -> str:
    """The top-level module a distribution provides (its name, unless IMPORT_NAMES says otherwise)."""
    return IMPORT_NAMES.get(distributionName.lower(), distributionName)


def _installTorchWithPyTorchExtension(versionSpecifier: str) -> bool:
    """Install PyTorch through the PyTorch extension; False if that extension is not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        return False
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                     torchVersionRequirement=versionSpecifier) is None:
        raise DependencyError("the PyTorch extension did not install PyTorch")
    return True
