"""The leave-one-scan-out tables of the model card: per held-out scan and organ, the Attention U-Net and the
U-Net side by side (Dice, precision, recall, S2S, HD95), from each fold's `attention-unet evaluate` output, and
the organ volumes each labels in the known-empty pelvis (where every voxel it labels is a false positive).

    python models/abdomen-v2/loso_tables.py OUT      (OUT: run.sh's output folder)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
NETWORKS = {"attention_unet_3d": "Attention U-Net", "unet_3d": "U-Net"}
METRICS = ("dice", "precision", "recall", "msd_mm", "hd95_mm")


def rows(out: Path, network: str) -> Dict[tuple, Dict[str, str]]:
    """(scan, organ) -> that fold's evaluation row, over the five folds."""
    found = {}
    for fold in range(len(json.loads((HERE / "splits.json").read_text()))):
        with open(out / f"{network}-fold{fold}" / "evaluation" / "evaluation.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                found[row["case"], row["class"]] = row
    return found


def number(text: str, digits: int) -> str:
    value = float(text) if text not in ("", "nan", None) else math.nan
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run.sh's output folder")
    args = parser.parse_args()
    results = {network: rows(args.out, network) for network in NETWORKS}
    keys: List[tuple] = list(results["attention_unet_3d"])
    print("| held-out scan | organ | network | Dice | precision | recall | S2S mm | HD95 mm | voxels predicted / reference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scan, organ in keys:
        if scan.endswith("_pelvis"):
            continue
        for network, title in NETWORKS.items():
            row = results[network][scan, organ]
            values = [number(row[m], 3 if m in ("dice", "precision", "recall") else 1) for m in METRICS]
            print(f"| {scan} | {organ} | {title} | " + " | ".join(values)
                  + f" | {row['pred_voxels']} / {row['ref_voxels']} |")
    print("\nThe known-empty pelvis (patient A's lowest 36 slices), held out in fold 0: what each network labels there")
    print("(every voxel a false positive; 27 mm³ per voxel)\n")
    print("| organ | " + " | ".join(NETWORKS.values()) + " |")
    print("|---|" + "---|" * len(NETWORKS))
    for scan, organ in keys:
        if scan.endswith("_pelvis"):
            volumes = [f"{int(results[n][scan, organ]['pred_voxels']) * 27 / 1000:.1f} mL" for n in NETWORKS]
            print(f"| {organ} | " + " | ".join(volumes) + " |")


if __name__ == "__main__":
    main()
