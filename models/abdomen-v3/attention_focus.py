"""How focused each attention gate is (the paper's Fig. 3 claim as a number): mean attention coefficient alpha
inside the labelled organs against inside the body outside them, per gate and scan, as Markdown tables: for
each fold's final Attention U-Net on its held-out scans (and, with --runs, other runs' final models on fold 0's), and
for the final model on its own training scans (labelled as such: no measure of generalisation).

    python models/abdomen-v3/attention_focus.py OUT [--runs ablation-no-phases-fold0 ...]   (OUT: run.sh's output)

Each model segments the scans as `attention-unet segment` does, with the attention maps on the CT's grid.
"Organs" are the voxels of the classes the scan labels (its evaluation's mapped reference); "body" is
HU > -500 (air and the table's foam excluded). A ratio above 1 means the gate passes more of the organs than
of the rest of the body. 3D-IRCADb labels no pancreas and NIH case 1 only the pancreas, so there the
unlabelled organs count as "outside the organs" (which lowers the ratio: a conservative figure).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Iterable, List

import SimpleITK as sitk

from AttentionUNetSegLib.datasets.cases import Case, discover_cases
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import segment
from AttentionUNetSegLib.models.registry import load_model

HERE = Path(__file__).resolve().parent
BODY_HU = -500.0
HEADER = ["| scan | gate | mean α in organs | mean α in body outside organs | ratio |", "|---|---|---|---|---|"]


def focus_rows(model_file: Path, evaluation: Path, names: Iterable[str], cases: Dict[str, Case]) -> List[str]:
    """One row per scan and gate for this model on these scans; `evaluation` holds their mapped references."""
    model = load_model(model_file)
    rows = []
    for name in names:
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(evaluation / "references" / f"{name}.nii.gz")))
        if not reference.any():
            continue  # a scan without organs (patient A's pelvis) has no "inside"
        image = read_image(cases[name].image)
        result = segment(image, model, attention=True)
        organs = reference > 0
        outside = (sitk.GetArrayViewFromImage(image) > BODY_HU) & ~organs
        for gate in result.attention:
            alpha = result.attention.array(gate)
            inside_mean, outside_mean = float(alpha[organs].mean()), float(alpha[outside].mean())
            rows.append(f"| {name} | {gate} | {inside_mean:.3f} | {outside_mean:.3f} | "
                        f"{inside_mean / max(outside_mean, 1e-6):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run.sh's output folder")
    parser.add_argument("--runs", nargs="*", default=[], help="also these runs (trained on fold 0) on fold 0's scans")
    args = parser.parse_args()
    cases = {case.name: case for case in discover_cases(args.out / "data" / "dataset.csv")}
    splits = json.loads((HERE / "splits.json").read_text())
    print("The folds, each on its held-out scans:\n")
    print("\n".join(HEADER))
    for fold, split in enumerate(splits):
        run = args.out / f"attention_unet_3d-fold{fold}"
        if (run / "evaluation").is_dir():
            print("\n".join(focus_rows(run / "final.safetensors", run / "evaluation", split["val"], cases)))
    for name in args.runs:
        print(f"\n{name} on fold 0's held-out scans:\n")
        print("\n".join(HEADER))
        run = args.out / name
        print("\n".join(focus_rows(run / "final.safetensors", run / "evaluation", splits[0]["val"], cases)))
    final = args.out / "final"
    exported = sorted(args.out.glob("attention-unet-abdomen-v*.safetensors"))  # run.sh's export, named after NAME
    if (final / "evaluation-training-scans").is_dir() and exported:
        print("\nThe final model on its own training scans:\n")
        print("\n".join(HEADER))
        print("\n".join(focus_rows(exported[-1], final / "evaluation-training-scans", cases, cases)))


if __name__ == "__main__":
    main()
