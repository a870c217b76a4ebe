"""Installing the engine's packages into Slicer's Python, as dependencies.py plans it.

PyTorch through the PyTorch extension's installer (PyTorchUtils), or not at all; then the required packages in one
pip call and each optional one in its own (a failure only reported), all with Slicer's own packages pinned by a
constraints file (`pip install -c FILE`: Slicer 5.6's one-argument slicer.util.pip_install passes pip's arguments
through). One install at a time: slicer.util.pip_install lets the GUI handle events while pip runs, so a second
click could otherwise start an install inside the first.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from packaging.requirements import Requirement

from .dependencies import (OPTIONAL_REQUIREMENTS_FILE, DependencyError, UnmetRequirement, changedLoaded, constraints,
                           installedVersions, loadedModules, planInstall, unmetRequirements, unsupportedPlatform)

PipInstall = Callable[[List[str]], None]
"""Runs `pip install ARGUMENTS` in Slicer's Python (slicer.util.pip_install)."""
_installing = threading.Lock()


@dataclass
class InstallResult:
    """What an install did besides meeting the requirements."""

    restartNeeded: List[str] = field(default_factory=list)
    """Packages it upgraded that Slicer had loaded: restart to use the new versions."""
    optionalFailed: List[str] = field(default_factory=list)
    """Optional packages it could not install, each with why."""


def installRequirements(unmet: Sequence[UnmetRequirement], pipInstall: Optional[PipInstall] = None,
                        log: Callable[[str], None] = logging.info) -> InstallResult:
    """Install or upgrade `unmet` requirements, and the optional packages not installed yet (the caller asked the
    user first). Raises DependencyError with the fix (RestartRequiredError when loaded packages need a restart
    first) before installing anything where the plan cannot work, and when an install fails or one is running.
    `pipInstall`: default slicer.util.pip_install."""
    if not _installing.acquire(blocking=False):
        raise DependencyError("The engine's packages are being installed already: wait for that to end.")
    try:
        return _install(unmet, pipInstall or _slicerPipInstall, log)
    finally:
        _installing.release()


def _install(unmet: Sequence[UnmetRequirement], pipInstall: PipInstall, log: Callable[[str], None]) -> InstallResult:
    before = installedVersions()
    plan = planInstall(unmet, unmetRequirements(OPTIONAL_REQUIREMENTS_FILE, before), loadedModules())
    refusal = plan.refusal(unsupportedPlatform())
    if refusal is not None:
        raise refusal
    if plan.torch is not None:
        _installTorch(plan.torch)
    result = InstallResult()
    with tempfile.TemporaryDirectory(prefix="AttentionUNetSeg-pip-") as folder:
        pinned = Path(folder) / "constraints.txt"
        pinned.write_text("\n".join(constraints(installedVersions())) + "\n", encoding="utf-8")
        if plan.pip:
            requirements = [item.requirement for item in plan.pip]
            try:
                pipInstall(["-c", str(pinned), *requirements])
            except Exception as exc:
                raise DependencyError(
                    f"Installing {', '.join(map(str, plan.pip))} failed ({exc}). Check the internet connection, or "
                    f"install them from Slicer's Python console with slicer.util.pip_install({requirements!r}) and "
                    "restart Slicer.") from exc
        for item in plan.optional:
            try:
                pipInstall(["-c", str(pinned), item.requirement])
            except Exception as exc:  # optional: the engine runs without it
                result.optionalFailed.append(f"{item.requirement} ({exc})")
                log(f"The optional {item.requirement} could not be installed ({exc}); the engine runs without it.")
    still = [item for item in unmetRequirements() if item.requirement in {u.requirement for u in unmet}]
    if still:
        raise DependencyError(f"{', '.join(map(str, still))}: could not be installed; restart Slicer and try again, or "
                              f"install from the Python console with "
                              f"slicer.util.pip_install({[item.requirement for item in still]!r}).")
    result.restartNeeded = changedLoaded(before, installedVersions(), loadedModules())
    return result


def _installTorch(torch: UnmetRequirement) -> None:
    """PyTorch through the PyTorch extension, which picks the build for this computer's GPU; never from PyPI."""
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError(
            f"{torch}: this module uses the PyTorch extension's PyTorch. Install the PyTorch extension from the "
            "Extensions Manager, restart Slicer, and click Segment again.") from None
    specifier = str(Requirement(torch.requirement).specifier)
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=specifier) is None:
        raise DependencyError(f"The PyTorch extension did not install {torch.requirement}; install it with its "
                              "PyTorch Utils module, restart Slicer, and click Segment again.")


def _slicerPipInstall(arguments: List[str]) -> None:
    import slicer

    slicer.util.pip_install(arguments)
