"""The module panel's first open, as Slicer's own process sees it: time and resident memory.

What the panel does when it opens, before any click, in a fresh interpreter that has imported `slicer` (as
Slicer's process has): import the logic, build it, check the engine's packages, list the models, read the
default model's metadata, and get the device text (`logic.deviceDescription()` where the logic has it: the code
before issue 29, which imported PyTorch for it; now the panel's text needs no call). Each round is a new
process, so every import is a first one. Prints, per round and as medians, the seconds those steps took and the
resident memory (VmRSS, Linux) they added, and whether PyTorch and SimpleITK were loaded.

`--module DIR` measures another checkout's module folder (e.g. an older commit's, unpacked with `git archive`);
run both in the same session, rounds interleaved, to compare them.

Usage: python Testing/benchmarks/panel_open.py [--rounds N] [--module DIR ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

MODULE_DIR = Path(__file__).resolve().parents[2] / "AttentionUNetSeg"
HEAVY = ("torch", "SimpleITK", "monai", "openvino")

PROBE = r"""
import json, sys, time
from pathlib import Path

def resident_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
import slicer
before, started = resident_mib(), time.perf_counter()
sys.path.insert(0, sys.argv[1])
import AttentionUNetSegLogic
logic = AttentionUNetSegLogic.AttentionUNetSegLogic()
logic.unmetDependencies()
names = [entry.name for entry in logic.models()]
logic.modelMetadata(None)
if hasattr(logic, "deviceDescription"):
    logic.deviceDescription()
print(json.dumps({"seconds": time.perf_counter() - started, "added_mib": resident_mib() - before,
                  "models": len(names), "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


def open_panel(module: Path) -> Dict:
    """One first open in a new interpreter: its seconds, added resident MiB and the heavy packages it loaded."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(module), *HEAVY], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="first opens per module folder (default 5)")
    parser.add_argument("--module", type=Path, action="append",
                        help="a module folder (holding AttentionUNetSegLogic) to measure; default: this checkout's")
    args = parser.parse_args()
    modules: List[Path] = args.module or [MODULE_DIR]
    results: Dict[Path, List[Dict]] = {module: [] for module in modules}
    for round_ in range(1, args.rounds + 1):
        for module in modules:  # interleaved, so that a busy moment hits every folder alike
            result = open_panel(module)
            results[module].append(result)
            print(f"round {round_} {module}: {result['seconds']:.2f} s, +{result['added_mib']:.0f} MiB, "
                  f"loaded {result['loaded'] or 'none of ' + ', '.join(HEAVY)}")
    for module, rounds in results.items():
        print(f"{module}: median {statistics.median(r['seconds'] for r in rounds):.2f} s "
              f"(range {min(r['seconds'] for r in rounds):.2f}-{max(r['seconds'] for r in rounds):.2f}), "
              f"+{statistics.median(r['added_mib'] for r in rounds):.0f} MiB resident")


if __name__ == "__main__":
    main()
