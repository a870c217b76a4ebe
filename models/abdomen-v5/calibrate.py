"""Choose the background offset of the default model v5 on the held-out scans of v4's three folds.

    python models/abdomen-v5/calibrate.py V4_OUT -o OUT      (V4_OUT: models/abdomen-v4/run.sh's output folder)

v4's fold models find little of what they miss: on their held-out scans precision is 0.8-1.0 and recall 0.2-0.9.
For each fold and each offset of OFFSETS, the fold's final model with its background logit lowered by the offset
(models/background_offset.py) segments the fold's held-out scans (as `attention-unet segment` does, labels only,
PyTorch backend); each labelled organ's Dice against the reference that `attention-unet evaluate` wrote for v4,
and the mL of each organ in a held-out scan without organs (patient A's pelvis), go to OUT/calibration.json and a
table in OUT/calibration.md. The rule: the smallest offset whose mean Dice over the held-out (scan, organ) pairs is
within TOLERANCE of the best offset's. On all three folds it gives the final model's offset ("final"); on two
folds, the offset for the third ("nested"), whose scores then measure the rule on scans it did not choose on.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from AttentionUNetSegLib.evaluation.metrics import dice
from AttentionUNetSegLib.inference.segmenter import Segmenter
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.models.background_offset import lower_background_logit
from AttentionUNetSegLib.models.model_file import read_model

SPLITS = Path(__file__).resolve().parents[1] / "abdomen-v3" / "splits.json"
OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0)
TOLERANCE = 0.01
NETWORK = "attention_unet_3d"
Scores = Dict[str, Dict[str, Dict[str, Dict[str, float]]]]  # fold -> scan -> offset -> organ -> Dice (or mL)


def sweep(v4: Path) -> Scores:
    """Every fold's held-out scans segmented at every offset."""
    images = {row["case"]: Path(row["image"]) for row in csv.DictReader(open(v4 / "data" / "dataset.csv"))}
    scores: Scores = {}
    for fold, split in enumerate(json.loads(SPLITS.read_text())):
        run = v4 / f"{NETWORK}-fold{fold}"
        held_out = {case: (read_image(images[case]), sitk.GetArrayFromImage(sitk.ReadImage(
            str(run / "evaluation" / "references" / f"{case}.nii.gz")))) for case in split["val"]}
        model = read_model(run / "final.safetensors")
        lowered = 0.0
        for offset in OFFSETS:  # ascending: each step lowers the background by the difference
            lower_background_logit(model, offset - lowered)
            lowered = offset
            segment = Segmenter(model, InferenceSettings(backend="torch", attention=False))  # folds a copy
            for case, (image, reference) in held_out.items():
                labels = sitk.GetArrayFromImage(segment(image).labels)
                found = organ_scores(labels, reference, model.metadata.class_names, image)
                scores.setdefault(str(fold), {}).setdefault(case, {})[str(offset)] = found
                print(f"fold {fold} {case} offset {offset}: {found}", flush=True)
    return scores


def organ_scores(labels: np.ndarray, reference: np.ndarray, names: List[str], image: sitk.Image) -> Dict[str, float]:
    """Dice of each organ the reference labels; in a reference without organs, the mL of each organ found."""
    if not reference.any():
        voxel_ml = float(np.prod(image.GetSpacing())) / 1000
        return {f"{name} mL": round(float(np.count_nonzero(labels == value)) * voxel_ml, 1)
                for value, name in enumerate(names) if value}
    return {name: round(dice(labels == value, reference == value), 4)
            for value, name in enumerate(names) if value and (reference == value).any()}


def mean_dice(scores: Scores, folds: List[str], offset: str, organ: Optional[str] = None) -> float:
    """The mean Dice over the (scan, organ) pairs of `folds` at `offset`; of one organ's if `organ` is given."""
    return float(np.mean([value for fold in folds for case in scores[fold].values()
                          for name, value in case[offset].items()
                          if not name.endswith(" mL") and organ in (None, name)]))


def chosen(scores: Scores, folds: List[str], organ: Optional[str] = None) -> float:
    """The smallest offset within TOLERANCE of the best mean Dice on `folds` (of one organ's if given)."""
    means = {offset: mean_dice(scores, folds, str(offset), organ) for offset in OFFSETS}
    return min(offset for offset in OFFSETS if means[offset] >= max(means.values()) - TOLERANCE)


def per_organ_table(scores: Scores, nested: Dict[str, float]) -> List[str]:
    """The alternative of one offset per organ, chosen by the same rule on each organ's Dice alone: each organ's
    held-out Dice with its own nested offsets against the shared ones. The shared sweep stands in for each organ's
    own offset (an organ's Dice at a shared offset is its Dice at that offset of its own, but for what it loses
    to or wins from its neighbours)."""
    folds = sorted(scores)
    lines = ["| organ | its own offsets, nested (folds " + ", ".join(folds) + ") | held-out mean Dice with them | "
             "with the shared nested offsets |", "|---|---|---|---|"]
    for organ in organs(scores):
        own = {fold: chosen(scores, [other for other in folds if other != fold], organ) for fold in folds}
        values = {name: [case[str(offsets[fold])][organ] for fold in folds for case in scores[fold].values()
                         if organ in case["0.0"]] for name, offsets in (("own", own), ("shared", nested))}
        lines.append(f"| {organ} | {' / '.join(str(own[fold]) for fold in folds)} | "
                     f"{np.mean(values['own']):.3f} | {np.mean(values['shared']):.3f} |")
    return lines


def organs(scores: Scores) -> List[str]:
    """The organs some held-out scan labels."""
    return sorted({organ for fold in scores.values() for case in fold.values() for organ in case["0.0"]
                   if not organ.endswith(" mL")})


def table(scores: Scores, final: float, nested: Dict[str, float]) -> str:
    """The sweep's means per organ and the choices, as markdown."""
    folds, labelled = sorted(scores), organs(scores)
    empty = [(fold, case) for fold in folds for case, by_offset in scores[fold].items()
             if any(organ.endswith(" mL") for organ in by_offset["0.0"])]
    lines = ["| offset | " + " | ".join(f"{organ} Dice" for organ in labelled) + " | mean Dice | "
             + " | ".join(f"{case} (fold {fold}) mL" for fold, case in empty) + " |",
             "|---" * (len(labelled) + 2 + len(empty)) + "|"]
    for offset in map(str, OFFSETS):
        per_organ = [mean_dice(scores, folds, offset, organ) for organ in labelled]
        volumes = [sum(scores[fold][case][offset].values()) for fold, case in empty]
        cells = [f"{value:.3f}" for value in per_organ] + [f"{mean_dice(scores, folds, offset):.3f}"] + [
            f"{ml:.0f}" for ml in volumes]
        lines.append(f"| {offset} | " + " | ".join(cells) + " |")
    lines += ["", f"Rule: the smallest offset within {TOLERANCE} of the best mean Dice. On all folds: **{final}** "
              "(the final model's). Nested, chosen on the other two folds:", "",
              "| fold | offset | its held-out mean Dice at 0 | at the offset |", "|---|---|---|---|"]
    lines += [f"| {fold} | {offset} | {mean_dice(scores, [fold], '0.0'):.3f} | "
              f"{mean_dice(scores, [fold], str(offset)):.3f} |" for fold, offset in nested.items()]
    lines += ["", "One offset per organ instead, by the same rule on each organ's Dice (not used):", ""]
    lines += per_organ_table(scores, nested)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("v4", type=Path, help="models/abdomen-v4/run.sh's output folder (its folds evaluated)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for calibration.json and .md")
    args = parser.parse_args()
    scores = sweep(args.v4)
    folds = sorted(scores)
    final = chosen(scores, folds)
    nested = {fold: chosen(scores, [other for other in folds if other != fold]) for fold in folds}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "calibration.json").write_text(json.dumps(
        {"offsets": OFFSETS, "tolerance": TOLERANCE, "final": final, "nested": nested, "scores": scores}, indent=1))
    (args.output / "calibration.md").write_text(table(scores, final, nested))
    print((args.output / "calibration.md").read_text())


if __name__ == "__main__":
    main()
