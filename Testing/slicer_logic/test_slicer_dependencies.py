"""Installing the engine's packages into Slicer's Python (dependencies.py, installer.py): what is installed how,
what is refused before anything is installed, Slicer's own packages pinned, one install at a time.

pip itself is the one thing replaced: a function that, as pip would, writes the installed package's record (a
.dist-info folder) onto sys.path, and records the arguments and the constraints file it was given.
"""
from __future__ import annotations

import platform
import types
from pathlib import Path
from typing import List

import pytest

from AttentionUNetSegLogic.dependencies import (MACOS_UNSUPPORTED, DependencyError, RestartRequiredError,
                                                UnmetRequirement, changedLoaded, constraints, installedVersions,
                                                planInstall, unsupportedPlatform)
from AttentionUNetSegLogic.installer import installRequirements

PROBE = "attention-unet-seg-probe"


def record(folder: Path, name: str, version: str) -> None:
    """An installed-package record (a .dist-info folder) as pip writes it, with no code."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")


class Pip:
    """pip as installRequirements calls it: `install` writes the package's record; calls and pins are kept."""

    def __init__(self, site: Path, during=None, failing: str = "") -> None:
        """`during()` runs while pip runs; a requirement starting with `failing` fails to install."""
        self.site, self.during, self.failing = site, during, failing
        self.calls: List[List[str]] = []
        self.pinned: List[List[str]] = []

    def __call__(self, arguments: List[str]) -> None:
        self.calls.append(list(arguments))
        assert arguments[0] == "-c"
        self.pinned.append(Path(arguments[1]).read_text(encoding="utf-8").split())
        if self.during is not None:
            self.during()
        if self.failing and arguments[2].startswith(self.failing):
            raise RuntimeError("no wheel for this platform")
        for requirement in arguments[2:]:
            record(self.site, requirement.split(">=")[0], requirement.split(">=")[1])


@pytest.fixture
def site(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_the_plan_sorts_what_each_package_needs() -> None:
    unmet = [UnmetRequirement("torch>=2.5", None), UnmetRequirement("numpy>=1.24", "1.19.5"),
             UnmetRequirement("monai>=1.4", "1.2.0"), UnmetRequirement("pyyaml>=6", "5.4"),
             UnmetRequirement("nibabel>=5", None), UnmetRequirement("tqdm>=4.60", "4.50")]
    optional = [UnmetRequirement("openvino>=2024.4", None)]
    plan = planInstall(unmet, optional, loadedModules={"numpy", "monai", "yaml", "slicer"})
    assert plan.torch == unmet[0]
    assert plan.bundledTooOld == [unmet[1]]
    assert plan.loaded == [unmet[2], unmet[3]]  # pyyaml is imported as yaml
    assert plan.pip == [unmet[4], unmet[5]]
    assert plan.optional == optional


def test_refusals_come_before_anything_is_installed_and_say_why() -> None:
    assert str(planInstall([]).refusal(unsupportedPlatform("Darwin"))) == MACOS_UNSUPPORTED
    assert "PyTorch's last release for them is 2.2" in MACOS_UNSUPPORTED
    assert unsupportedPlatform("Linux") is None
    assert unsupportedPlatform("Windows") is None
    bundled = planInstall([UnmetRequirement("SimpleITK>=2.2", "2.1.1")]).refusal(None)
    assert isinstance(bundled, DependencyError)
    assert not isinstance(bundled, RestartRequiredError)
    assert "Slicer's own SimpleITK>=2.2 (SimpleITK 2.1.1 is too old)" in str(bundled)
    loaded = planInstall([UnmetRequirement("monai>=1.4", "1.2.0")], loadedModules={"monai"}).refusal(None)
    assert isinstance(loaded, RestartRequiredError)
    assert "Restart Slicer" in str(loaded)
    assert planInstall([UnmetRequirement("monai>=1.4", "1.2.0")]).refusal(None) is None  # not loaded: upgraded


def test_slicers_own_packages_are_pinned_at_their_versions() -> None:
    versions = {"numpy": "1.26.1", "simpleitk": "2.2.1", "scipy": "1.11.3", "requests": "2.31.0", "torch": "2.6.0",
                "monai": "1.4.0"}
    assert constraints(versions) == ["numpy==1.26.1", "SimpleITK==2.2.1", "scipy==1.11.3", "requests==2.31.0",
                                     "torch==2.6.0"]
    assert constraints({"numpy": "2.0.2"}) == ["numpy==2.0.2"]


def test_packages_upgraded_under_loaded_modules_need_a_restart() -> None:
    before = {"typing-extensions": "4.5.0", "monai": "1.4.0", "pyyaml": "5.4"}
    after = {"typing-extensions": "4.12.2", "monai": "1.4.0", "pyyaml": "6.0"}
    assert changedLoaded(before, after, {"typing_extensions", "yaml"}) == ["pyyaml", "typing-extensions"]
    assert changedLoaded(before, after, {"monai"}) == []


def test_an_install_pins_slicers_packages_and_refuses_a_second_one_meanwhile(site: Path) -> None:
    """A second click while pip runs (slicer.util.pip_install lets the GUI handle events) starts no second install."""
    nested = []

    def second_click() -> None:
        with pytest.raises(DependencyError, match="being installed already") as refused:
            installRequirements([UnmetRequirement(f"{PROBE}>=1.0", None)], Pip(site))
        nested.append(refused.value)

    pip = Pip(site, during=second_click)
    result = installRequirements([UnmetRequirement(f"{PROBE}>=1.0", None)], pip)
    assert [call[2:] for call in pip.calls] == [[f"{PROBE}>=1.0"]]
    versions = installedVersions()
    assert pip.pinned[0] == constraints(versions)
    assert {pin.split("==")[0] for pin in pip.pinned[0]} >= {"numpy", "SimpleITK", "scipy", "torch"}
    assert len(nested) == 1
    assert versions[PROBE] == "1.0"
    assert result.restartNeeded == []
    assert result.optionalFailed == []


def test_without_the_pytorch_extension_nothing_is_installed(site: Path) -> None:
    pip = Pip(site)
    with pytest.raises(DependencyError, match="Install the PyTorch extension from the Extensions Manager"):
        installRequirements([UnmetRequirement("torch>=2.5", None), UnmetRequirement(f"{PROBE}>=1.0", None)], pip)
    assert pip.calls == []


def test_on_macos_nothing_is_installed(site: Path, monkeypatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    pip = Pip(site)
    with pytest.raises(DependencyError, match="macOS is not supported"):
        installRequirements([UnmetRequirement(f"{PROBE}>=1.0", None)], pip)
    assert pip.calls == []


def test_a_loaded_package_is_upgraded_only_after_a_restart(site: Path, monkeypatch) -> None:
    record(site, PROBE, "1.0")
    monkeypatch.setitem(__import__("sys").modules, "attention_unet_seg_probe", types.ModuleType("probe"))
    pip = Pip(site)
    with pytest.raises(RestartRequiredError, match=f"{PROBE}>=2.0 \\({PROBE} 1.0 is too old\\): loaded in Slicer"):
        installRequirements([UnmetRequirement(f"{PROBE}>=2.0", "1.0")], pip)
    assert pip.calls == []


def test_an_optional_package_that_fails_is_reported_not_fatal(site: Path, monkeypatch) -> None:
    optional = site.parent / "optional-requirements.txt"
    optional.write_text("attention-unet-seg-optional>=1.0\n", encoding="utf-8")
    monkeypatch.setattr("AttentionUNetSegLogic.installer.OPTIONAL_REQUIREMENTS_FILE", optional)
    logged = []
    pip = Pip(site, failing="attention-unet-seg-optional")
    result = installRequirements([UnmetRequirement(f"{PROBE}>=1.0", None)], pip, log=logged.append)
    assert [call[2:] for call in pip.calls] == [[f"{PROBE}>=1.0"], ["attention-unet-seg-optional>=1.0"]]
    assert result.optionalFailed == ["attention-unet-seg-optional>=1.0 (no wheel for this platform)"]
    assert "could not be installed" in logged[0]
    assert installedVersions()[PROBE] == "1.0"
