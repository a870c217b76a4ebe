"""HD95 and mean surface distance of ours, MONAI's and the pooled (MedPy-style) HD95 on the metric tests'
anisotropic shapes, in mm. Usage: python Testing/benchmarks/hd95_definitions.py"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine" / "evaluation"))
from test_metrics import anisotropic_shapes  # noqa: E402

from AttentionUNetSegLib.evaluation.metrics import binary_metrics, surface_distances  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore", FutureWarning)
    print("| shapes | spacing (mm, z y x) | HD95 ours | HD95 MONAI | pooled HD95 (MedPy) | MSD ours | MSD MONAI |")
    print("|---|---|---|---|---|---|---|")
    for name, pred, ref, spacing in anisotropic_shapes():
        ours = binary_metrics(pred, ref, spacing)
        p, r = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, ref))
        hd95 = float(compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing)))
        msd = float(compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                     spacing=list(spacing)))
        pooled = float(np.percentile(np.concatenate(surface_distances(pred, ref, spacing)), 95))
        print(f"| {name} | {' x '.join(map(str, spacing))} | {ours.hd95_mm:.3f} | {hd95:.3f} | {pooled:.3f} "
              f"| {ours.msd_mm:.3f} | {msd:.3f} |")


if __name__ == "__main__":
    main()
