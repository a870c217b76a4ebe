"""The engine's Python packages inside Slicer: which are missing, and installing them.

The list lives in Resources/requirements.txt. PyTorch is installed by the PyTorch extension's
installer (PyTorchUtils) where that extension is present, since it picks the build that matches
the GPU driver; everything else goes through slicer.util.pip_install.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import List, Sequence

import slicer

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Packages whose import name differs from their distribution name."""


class DependencyError(RuntimeError):
    """The engine's packages are missing and cannot be installed here."""


def requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """Requirement specifiers (e.g. 'monai>=1.3'), without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def missingRequirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """The requirements whose package cannot be imported."""
    return [requirement for requirement in requirements(path) if not _importable(requirement)]


def installRequirements(missing: Sequence[str]) -> None:
    """Install `missing` requirements (the caller asks the user first); raise DependencyError with the manual fix."""
    pipRequirements = list(missing)
    torch = [requirement for requirement in missing if _split(requirement)[0] == "torch"]
    try:
        if torch and _installTorchWithPyTorchExtension(_split(torch[0])[1]):
            pipRequirements.remove(torch[0])
        if pipRequirements:
            slicer.util.pip_install(pipRequirements)
    except Exception as exc:
        raise DependencyError(
            f"Installing {', '.join(missing)} failed ({exc}). Check the internet connection, or install them from "
            f"Slicer's Python console with slicer.util.pip_install({list(missing)!r}) and restart Slicer.") from exc
    still = [requirement for requirement in missing if not _importable(requirement)]
    if still:
        raise DependencyError(f"{', '.join(still)} could not be installed; restart Slicer and try again, or install "
                              f"them from the Python console with slicer.util.pip_install({still!r}).")


def _installTorchWithPyTorchExtension(versionRequirement: str) -> bool:
    """Install PyTorch through the PyTorch extension; False if that extension is not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        return False
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                     torchVersionRequirement=versionRequirement) is None:
        raise DependencyError("the PyTorch extension did not install PyTorch")
    return True


def _importable(requirement: str) -> bool:
    name = _split(requirement)[0]
    return importlib.util.find_spec(IMPORT_NAMES.get(name.lower(), name)) is not None


def _split(requirement: str) -> tuple:
    """'monai>=1.3' -> ('monai', '>=1.3')."""
    match = _NAME.match(requirement)
    return match.group(1), match.group(2).strip()
