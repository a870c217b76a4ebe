"""Whether larger sliding windows change what the fold models find on their held-out scans: each fold's final
Attention U-Net segments its held-out scans with its 96x96x48 training patch as the window and with larger windows
(`segment(..., window_voxels=x*y*z)`: up to that many voxels, shaped like the scan, as `attention-unet segment
--window-voxels` makes them; the patch's own volume gives the patch), and the Dice against the mapped references
(its evaluation's references/) is compared, with the inference time. At 3 mm a window of 160x160x96 voxels holds a
whole abdomen, so a segmentation has no window seams at all; this decides the default (`models export
--window-voxels`).

    python models/abdomen-v3/window_check.py OUT [--windows 96,96,48 160,160,96]     (OUT: run.sh's output folder)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy as np
import SimpleITK as sitk

from AttentionUNetSegLib.datasets.cases import discover_cases
from AttentionUNetSegLib.evaluation.metrics import label_metrics
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.models.registry import load_model

HERE = Path(__file__).resolve().parent


def window(text: str) -> Tuple[int, int, int]:
    x, y, z = (int(v) for v in text.split(","))
    return x, y, z


def scored_classes(evaluation_csv: Path) -> Dict[str, Set[int]]:
    """Per case, the class values its evaluation scored (a Dice defined: the class is labelled in the case and
    present in its reference or its prediction); a class the case does not label is not scored."""
    scored: Dict[str, Set[int]] = {}
    with open(evaluation_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["dice"] not in ("", "nan"):
                scored.setdefault(row["case"], set()).add(int(row["label"]))
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run.sh's output folder")
    parser.add_argument("--windows", type=window, nargs="+", default=[(96, 96, 48), (160, 160, 96)],
                        help="windows x,y,z to compare (default: 96,96,48 160,160,96)")
    args = parser.parse_args()
    cases = {case.name: case for case in discover_cases(args.out / "data" / "dataset.csv")}
    splits = json.loads((HERE / "splits.json").read_text())
    print("| held-out scan | windows of up to the voxels of (x y z) | windows' voxels | inference s | " + " | ".join(
        f"Dice {c}" for c in ("pancreas", "spleen", "kidney", "liver")) + " |")
    print("|---|---|---|---|---|---|---|---|")
    totals: List[List[float]] = [[] for _ in args.windows]
    for fold, split in enumerate(splits):
        if not (args.out / f"attention_unet_3d-fold{fold}" / "evaluation").is_dir():
            print(f"| fold {fold} not finished yet |")
            continue
        model = load_model(args.out / f"attention_unet_3d-fold{fold}" / "final.safetensors")
        scored = scored_classes(args.out / f"attention_unet_3d-fold{fold}" / "evaluation" / "evaluation.csv")
        for name in split["val"]:
            reference = sitk.GetArrayFromImage(sitk.ReadImage(
                str(args.out / f"attention_unet_3d-fold{fold}" / "evaluation" / "references" / f"{name}.nii.gz")))
            image = read_image(cases[name].image)
            for index, size in enumerate(args.windows):
                clock = time.perf_counter()
                result = segment(image, model, attention=False, window_voxels=math.prod(size))
                seconds = time.perf_counter() - clock
                labels = sitk.GetArrayFromImage(result.labels)
                metrics = label_metrics(labels, reference, image.GetSpacing()[::-1], [1, 2, 3, 4])
                dice = [metrics[v].dice if v in scored.get(name, set()) else math.nan for v in (1, 2, 3, 4)]
                totals[index] += [d for d in dice if not np.isnan(d)]
                print(f"| {name} | {' '.join(map(str, size))} | {math.prod(size)} | "
                      f"{result.timings['inference_s']:.1f} ({seconds:.1f} in all) | "
                      + " | ".join("n/a" if np.isnan(d) else f"{d:.3f}" for d in dice) + " |", flush=True)
    for size, values in zip(args.windows, totals):
        print(f"\nwindow {size}: mean Dice over every defined (scan, organ) {np.mean(values):.3f} (n={len(values)})")


if __name__ == "__main__":
    main()
