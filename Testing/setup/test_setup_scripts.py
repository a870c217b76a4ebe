"""scripts/setup.sh installs only when needed, so the quick-start commands' second run works offline.

Each test runs the real script on a copy of the project's set-up files and package, into a throwaway venv
that sees the packages of the interpreter running the tests through a .pth file (so "installing" resolves
everything locally in about a second instead of downloading PyTorch). pip runs with no index at all
(PIP_NO_INDEX, an unreachable index URL, no configuration files): nothing here needs a network. Whether
the script calls pip is observed directly: a `pip` package placed first on the venv's path fails loudly.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import REPO_ROOT

PIP_CALLED = "pip was called"
UNREACHABLE = "http://127.0.0.1:9/"   # the discard port: any download attempt fails at once


def _have_build_tools() -> bool:
    try:
        setuptools = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("pip") is not None and int(setuptools.split(".")[0]) >= 77   # pyproject's build-system


pytestmark = [
    pytest.mark.skipif(os.name == "nt" or shutil.which("bash") is None, reason="scripts/setup.sh needs bash"),
    pytest.mark.skipif(not _have_build_tools(), reason="the test interpreter lacks pip or setuptools>=77, which "
                       "the throwaway venv borrows to install offline"),
]


def _site_dirs() -> List[str]:
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(d for d in dirs if Path(d, "torch").is_dir() or Path(d, "pip").is_dir()))


def _project_dist_info() -> List[Path]:
    """This interpreter's own install of the project (the shared .venv's): the tests must leave it alone."""
    return sorted(p for d in _site_dirs() for p in Path(d).glob("attentionunetseg-*.dist-info"))


class Checkout:
    """A copy of what scripts/setup.sh reads and installs, with a venv borrowing this interpreter's packages."""

    def __init__(self, root: Path):
        self.root = root
        (root / "scripts").mkdir(parents=True)
        shutil.copy2(REPO_ROOT / "scripts" / "setup.sh", root / "scripts")
        for name in ("pyproject.toml", "README.md", "LICENSE.txt"):
            shutil.copy2(REPO_ROOT / name, root)
        package = Path("AttentionUNetSeg") / "AttentionUNetSegLib"
        shutil.copytree(REPO_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.nii.gz"))
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
        self.python = root / ".venv" / "bin" / "python"
        self.site = Path(subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
        (self.site / "borrowed.pth").write_text("\n".join(_site_dirs()) + "\n")
        self.stamp = root / ".venv" / ".setup-stamp"

    def setup(self, **variables: str) -> subprocess.CompletedProcess:
        env: Dict[str, str] = {k: v for k, v in os.environ.items()
                               if not k.startswith("PIP_") and k not in ("EXTRAS", "SETUP_FORCE", "CPU_ONLY", "TORCH_INDEX_URL",
                                                                         "TORCH_VERSION", "VIRTUAL_ENV", "PYTHONPATH")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_INDEX_URL=UNREACHABLE,
                   PIP_NO_BUILD_ISOLATION="0",   # build with the borrowed setuptools instead of downloading one
                   PIP_DISABLE_PIP_VERSION_CHECK="1", **variables)
        result = subprocess.run(["bash", "scripts/setup.sh"], cwd=self.root, env=env, capture_output=True, text=True,
                                timeout=300)
        result.output = result.stdout + result.stderr
        return result

    def block_pip(self) -> None:
        """From now on `python -m pip install ...` in the venv finds this package first and fails."""
        (self.site / "pip").mkdir()
        (self.site / "pip" / "__init__.py").write_text("")
        (self.site / "pip" / "__main__.py").write_text(  # `pip --version` (a health check) still answers
            f"import sys\nif sys.argv[1:] == ['--version']:\n    sys.exit(print('pip (blocked)'))\n"
            f"sys.stderr.write({PIP_CALLED!r} + ': ' + ' '.join(sys.argv[1:]) + '\\n')\nsys.exit(3)\n")

    def unblock_pip(self) -> None:
        shutil.rmtree(self.site / "pip")

    def importable(self, module: str) -> bool:
        code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        return subprocess.run([str(self.python), "-c", code]).returncode == 0


@pytest.fixture
def checkout(tmp_path: Path):
    before = {p: p.stat().st_mtime_ns for p in _project_dist_info()}
    project = Checkout(tmp_path / "AttentionUNetSeg")
    first = project.setup(EXTRAS="test")
    assert first.returncode == 0, first.output
    assert "installing AttentionUNetSeg (editable) with extras [test]" in first.output
    assert project.stamp.is_file()
    assert "extras test" in project.stamp.read_text()
    assert project.importable("AttentionUNetSegLib")
    assert (project.root / ".venv" / "bin" / "attention-unet").is_file()
    yield project
    assert {p: p.stat().st_mtime_ns for p in _project_dist_info()} == before, "the interpreter's own install changed"


def test_second_call_runs_no_pip_and_needs_no_network(checkout: Checkout):
    checkout.block_pip()
    for extras in ("test", "", "Test"):   # the same extras, none (segment-sample.sh after test.sh), any case
        again = checkout.setup(EXTRAS=extras)
        assert again.returncode == 0, again.output
        assert PIP_CALLED not in again.output
        assert "up to date" in again.output
        assert "installing" not in again.output


def test_changed_requirements_and_new_extras_install_again(checkout: Checkout):
    checkout.block_pip()
    train = checkout.setup(EXTRAS="train")
    assert train.returncode != 0, train.output
    assert PIP_CALLED in train.output, train.output
    assert "extras [train] not installed yet" in train.output
    # pip failed before changing anything (as offline): the set-up recorded before still stands
    assert "up to date" in checkout.setup(EXTRAS="").output

    pyproject = checkout.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a changed requirement\n")
    changed = checkout.setup(EXTRAS="test")
    assert changed.returncode != 0, changed.output
    assert PIP_CALLED in changed.output, changed.output
    assert "pyproject.toml (the requirements)" in changed.output

    checkout.unblock_pip()   # the reinstall itself, still offline: every requirement is already there
    reinstall = checkout.setup()
    assert reinstall.returncode == 0, reinstall.output
    assert "Successfully installed AttentionUNetSeg" in reinstall.output
    assert "extras test" in checkout.stamp.read_text(), "the extras installed before are kept in the stamp"
    checkout.block_pip()
    assert "up to date" in checkout.setup(EXTRAS="test").output


def test_forced_reinstall_and_a_failed_one(checkout: Checkout):
    forced = checkout.setup(SETUP_FORCE="1")
    assert forced.returncode == 0, forced.output
    assert "installing into .venv: SETUP_FORCE=1" in forced.output, forced.output
    assert "Successfully installed AttentionUNetSeg" in forced.output
    # a requirement that cannot be found (offline, or a typo): a clear error, and the next call tries again
    pyproject = checkout.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6",', '"pyyaml>=6", "no-such-package-anywhere>=1",'))
    for _ in range(2):
        failed = checkout.setup()
        assert failed.returncode != 0, failed.output
        assert "could not install AttentionUNetSeg" in failed.output, failed.output
        assert "no-such-package-anywhere" in failed.output
