"""What one segmentation's attention volumes take in the Slicer scene: their voxels' bytes, grid and the bytes saved
with the scene.

A headless scene (slicer-core, as the tests build it) gets the CT (the bundled sample CT, or `--ct`); the logic
segments it in process with the default model and its six attention maps; the script prints the maps' size, the
bytes of their voxels in the scene, and how many of those bytes a saved scene would hold (the maps whose node is
saved with the scene). `--module DIR` measures another checkout's module folder (unpacked with `git archive`):
each module runs in a process of its own, so the two do not mix.

Usage: python Testing/benchmarks/map_bytes.py [--ct FILE] [--module DIR ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TESTING = Path(__file__).resolve().parents[1]
MODULE_DIR = TESTING.parent / "AttentionUNetSeg"
SAMPLE_CT = MODULE_DIR / "AttentionUNetSegLib" / "data" / "sample" / "example_ct.nii.gz"

PROBE = r"""
import json, sys, tempfile
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # the measured module first: slicer_scene then uses its packages
import AttentionUNetSegLogic
import SimpleITK as sitk
import slicer
from slicer_scene import add_volume, new_scene
from AttentionUNetSegLib.inference.settings import InferenceSettings

with tempfile.TemporaryDirectory() as cache:
    node = add_volume(new_scene(Path(cache)), sitk.ReadImage(sys.argv[3]), "CT")
    outputs = AttentionUNetSegLogic.AttentionUNetSegLogic().process(node, None, InferenceSettings(attention=True))
    maps = [slicer.util.arrayFromVolume(gate) for gate in outputs.attention.values()]
    saved = [m for m, gate in zip(maps, outputs.attention.values()) if gate.GetSaveWithScene()]
    print(json.dumps({"maps": len(maps), "shape": list(maps[0].shape), "ct_shape": list(slicer.util.arrayFromVolume(node).shape),
                      "bytes": sum(m.nbytes for m in maps), "saved_bytes": sum(m.nbytes for m in saved)}))
"""


def measure(module: Path, ct: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(module), str(TESTING), str(ct)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, default=SAMPLE_CT, help="the CT (default: the bundled sample CT)")
    parser.add_argument("--module", type=Path, action="append",
                        help="a module folder (holding AttentionUNetSegLogic) to measure; default: this checkout's")
    args = parser.parse_args()
    for module in args.module or [MODULE_DIR]:
        result = measure(module, args.ct)
        print(f"{module}: {result['maps']} attention volumes of {'x'.join(map(str, result['shape']))} voxels "
              f"(the CT: {'x'.join(map(str, result['ct_shape']))}): {result['bytes'] / 2**20:.1f} MiB in the scene, "
              f"{result['saved_bytes'] / 2**20:.1f} MiB of it saved with the scene")


if __name__ == "__main__":
    main()
