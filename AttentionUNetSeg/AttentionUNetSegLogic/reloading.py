"""Reloading the module's packages: Slicer's Reload re-executes only the module file."""
from __future__ import annotations

import importlib
import sys
from typing import List, Sequence


def reloadPackages(packages: Sequence[str]) -> List[str]:
    """Forget every loaded module of `packages` and import the packages again from their files.

    Submodules are imported afresh by whoever imports them next (the module file, when Slicer reloads it),
    in dependency order, so no module keeps a name from an old copy. Returns the forgotten module names.
    """
    forgotten = sorted(name for name in sys.modules if name.split(".")[0] in packages)
    for name in forgotten:
        del sys.modules[name]
    importlib.invalidate_caches()
    for package in packages:
        importlib.import_module(package)
    return forgotten
