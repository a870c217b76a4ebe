"""int8 against float32 on the real scans in ../shared/data, with the default model (or --model): per scan and
organ, the Dice between the two label volumes, the voxels that differ, and each precision's inference time
(the network's windows and their blending, same process, alternating which runs first).

The int8 model is quantized once (quantization.py) into the per-user cache before the first scan, like any
first `--precision int8` run. Usage:
    python Testing/benchmarks/int8_agreement.py [--model NAME] [--shared ../shared/data]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import SimpleITK as sitk

from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.models.registry import load_model

SCANS = {
    "sample CT (TotalSegmentator example, patient A)": "totalseg_example/example_ct.nii.gz",
    "TotalSegmentator example, patient B (DICOM)": "totalseg_example/example_ct_dicom",
    "TotalSegmentator s0009": "totalsegmentator_s0009/ct.nii.gz",
    "3D-IRCADb-01 1.1": "ircad/3Dircadb1.1/ct.nii.gz",
    "3D-IRCADb-01 1.7": "ircad/3Dircadb1.7/ct.nii.gz",
}
PRECISIONS = ("fp32", "int8")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return float("nan") if total == 0 else 2 * np.count_nonzero(a & b) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    args = parser.parse_args()
    model = load_model(args.model)
    classes = [c for c in model.metadata.classes if c.value > 0]
    started = time.perf_counter()
    segment(read_image(args.shared / SCANS["TotalSegmentator s0009"]), model, precision="int8", attention=False)
    print(f"quantized (or read from the cache) and ran once: {time.perf_counter() - started:.0f} s\n")
    print("| scan | " + " | ".join(c.name for c in classes) + " | voxels differing | inference fp32 / int8 |")
    print("|---|" + "---|" * (len(classes) + 2))
    for index, (title, relative) in enumerate(SCANS.items()):
        image = read_image(args.shared / relative)
        labels: Dict[str, np.ndarray] = {}
        seconds: Dict[str, float] = {}
        for precision in PRECISIONS if index % 2 == 0 else PRECISIONS[::-1]:
            result = segment(image, model, InferenceSettings(precision=precision, attention=False))
            labels[precision] = sitk.GetArrayFromImage(result.labels)
            seconds[precision] = result.timings["inference_s"]
        dices: List[str] = []
        for c in classes:
            value = dice(labels["fp32"] == c.value, labels["int8"] == c.value)
            dices.append("no voxels" if np.isnan(value) else f"{value:.3f}")
        differing = np.count_nonzero(labels["fp32"] != labels["int8"]) / labels["fp32"].size
        print(f"| {title} | " + " | ".join(dices) + f" | {100 * differing:.2f} % | {seconds['fp32']:.1f} / "
              f"{seconds['int8']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
