"""The tables of the v3 model card from run.sh's outputs: per held-out scan and organ, the Attention U-Net and the
U-Net of the three folds side by side (Dice, precision, recall, S2S, HD95); the mean per organ against the issue's
goals; the ablations (fold 0: the recipe without the contrast-phase augmentation, and on v2's 2 mm grid; folds 0
and 2: the unlabelled organs of a case merged into background, the marginal loss); and what each labels in the
known-empty pelvis; with --baseline, a later recipe's Attention U-Net folds beside an earlier one's (v4 against v3).
Runs not finished yet are named as such, so the tables can be drawn midway.

    python models/abdomen-v3/tables.py OUT [--baseline EARLIER_OUT]      (OUT: run.sh's output folder)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
NETWORKS = {"attention_unet_3d": "Attention U-Net", "unet_3d": "U-Net"}
ABLATIONS = {  # fold -> (what it holds out, {run: what it changed})
    0: ("patient A, non-contrast, with its pelvis; NIH case 1, a whole abdomen",
        {"attention_unet_3d-fold0": "recipe (3 mm, contrast phases)",
         "ablation-no-phases-fold0": "without contrast phases", "ablation-2mm-fold0": "2 mm grid (v2's windows)",
         "ablation-marginal-fold0": "unlabelled organs merged into background (marginal loss)"}),
    2: ("3D-IRCADb 1.1 and patient B, contrast-enhanced",
        {"attention_unet_3d-fold2": "recipe (unlabelled organs excluded)",
         "ablation-marginal-fold2": "unlabelled organs merged into background (marginal loss)"}),
}
METRICS = ("dice", "precision", "recall", "msd_mm", "hd95_mm")
GOALS = {"liver": 0.90, "spleen": 0.80, "kidney": 0.80, "pancreas": 0.50}
Rows = Dict[Tuple[str, str], Dict[str, str]]


def evaluation_rows(run: Path) -> Optional[Rows]:
    """(scan, organ) -> the run's evaluation row; None while the run has no evaluation."""
    path = run / "evaluation" / "evaluation.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        return {(row["case"], row["class"]): row for row in csv.DictReader(handle)}


def folds(out: Path, network: str) -> Tuple[Rows, List[int]]:
    """Every fold's rows of one network, and the folds not evaluated yet."""
    rows: Rows = {}
    missing = []
    for fold in range(len(json.loads((HERE / "splits.json").read_text()))):
        found = evaluation_rows(out / f"{network}-fold{fold}")
        if found is None:
            missing.append(fold)
        else:
            rows.update(found)
    return rows, missing


def number(text: Optional[str], digits: int) -> str:
    value = float(text) if text not in ("", "nan", None) else math.nan
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def mean_dice(rows: Rows, organ: str) -> Tuple[float, int]:
    values = [float(r["dice"]) for (scan, name), r in rows.items()
              if name == organ and not scan.endswith("_pelvis") and r["dice"] not in ("", "nan")]
    return (sum(values) / len(values) if values else math.nan), len(values)


def labelled_keys(runs: Sequence[Rows]) -> List[Tuple[str, str]]:
    """The (scan, organ) pairs with a Dice in some run: the organs each held-out scan labels, not its pelvis."""
    return sorted({key for rows in runs for key, row in rows.items()
                   if not key[0].endswith("_pelvis") and row["dice"] not in ("", "nan")})


def organ_table(out: Path, results: Dict[str, Rows]) -> List[str]:
    lines = ["| held-out scan | organ | network | Dice | precision | recall | S2S mm | HD95 mm | voxels predicted / "
             "reference |", "|---|---|---|---|---|---|---|---|---|"]
    keys = labelled_keys(results.values())
    for scan, organ in keys:
        for network, title in NETWORKS.items():
            row = results[network].get((scan, organ))
            if row is None:
                continue
            values = [number(row[m], 3 if m in ("dice", "precision", "recall") else 1) for m in METRICS]
            lines.append(f"| {scan} | {organ} | {title} | " + " | ".join(values)
                         + f" | {row['pred_voxels']} / {row['ref_voxels']} |")
    return lines


def means_table(results: Dict[str, Rows]) -> List[str]:
    lines = ["| organ | goal | " + " | ".join(f"{t} mean Dice (scans)" for t in NETWORKS.values()) + " |",
             "|---|---|" + "---|" * len(NETWORKS)]
    for organ, goal in GOALS.items():
        cells = []
        for network in NETWORKS:
            value, n = mean_dice(results[network], organ)
            cells.append(f"{number(str(value), 3)} ({n})")
        lines.append(f"| {organ} | {goal:.2f} | " + " | ".join(cells) + " |")
    return lines


def dice_recall_table(runs: Dict[str, Optional[Rows]]) -> List[str]:
    """Dice (recall) per held-out scan and organ for runs side by side ({title: rows, None while unfinished}), and
    the mean Dice per organ."""
    done = {title: rows for title, rows in runs.items() if rows is not None}
    lines = ["| held-out scan | organ | " + " | ".join(done) + " |", "|---|---|" + "---|" * len(done)]
    keys = labelled_keys(done.values())
    for scan, organ in keys:
        lines.append(f"| {scan} | {organ} | "
                     + " | ".join(f"{number(rows.get((scan, organ), {}).get('dice'), 3)} "
                                  f"({number(rows.get((scan, organ), {}).get('recall'), 2)})" for rows in done.values())
                     + " |")
    for organ in GOALS:
        lines.append(f"| mean | {organ} | " + " | ".join(number(str(mean_dice(rows, organ)[0]), 3)
                                                       for rows in done.values()) + " |")
    missing = [title for title, rows in runs.items() if rows is None]
    return lines + ([f"\nNot finished yet: {', '.join(missing)}."] if missing else [])


def pelvis_table(runs: Sequence[Tuple[Path, str]]) -> List[str]:
    """Organ volumes labelled in the held-out pelvis (voxels counted on the CT's own 3 mm grid, 27 mm³ each)."""
    lines = ["| run | " + " | ".join(GOALS) + " |", "|---|" + "---|" * len(GOALS)]
    for run, title in runs:
        rows = evaluation_rows(run)
        if rows is None:
            continue
        volumes = [f"{int(rows[('patientA_pelvis', organ)]['pred_voxels']) * 27 / 1000:.1f} mL"
                   if ("patientA_pelvis", organ) in rows else "n/a" for organ in GOALS]
        lines.append(f"| {title} | " + " | ".join(volumes) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run.sh's output folder")
    parser.add_argument("--baseline", type=Path, help="an earlier recipe's output folder (e.g. v3's, beside v4's): its "
                        "Attention U-Net folds side by side with OUT's")
    args = parser.parse_args()
    results, missing = {}, {}
    for network in NETWORKS:
        results[network], missing[network] = folds(args.out, network)
    print("## Three folds: every scan held out once\n")
    print("\n".join(organ_table(args.out, results)))
    for network, folds_left in missing.items():
        if folds_left:
            print(f"\n{NETWORKS[network]}: folds {folds_left} not finished yet.")
    print("\n## Mean Dice per organ over the held-out scans, against the issue's goals\n")
    print("\n".join(means_table(results)))
    pelvis = [(args.out / run, title) for run, title in ABLATIONS[0][1].items()] + [
        (args.out / "unet_3d-fold0", "U-Net, recipe")]
    if args.baseline:
        network = "attention_unet_3d"
        print(f"\n## The Attention U-Net's folds: {args.baseline.name} against {args.out.name}, Dice (recall)\n")
        runs = {}
        for out in (args.baseline, args.out):
            rows, folds_left = folds(out, network)
            runs[out.name] = None if folds_left else rows
        print("\n".join(dice_recall_table(runs)))
        pelvis = [(out / f"{network}-fold0", out.name) for out in (args.baseline, args.out)] + [
            (args.out / "unet_3d-fold0", f"{args.out.name}, U-Net")]
    for fold, (held_out, ablations) in ABLATIONS.items():
        if not any((args.out / run).exists() for run in ablations if run.startswith("ablation")):
            continue  # a later recipe's folder (v4's) has no ablations of its own
        print(f"\n## Ablations on fold {fold} (held out: {held_out}): Dice (recall)\n")
        print("\n".join(dice_recall_table({title: evaluation_rows(args.out / run) for run, title in ablations.items()})))
    print("\n## The known-empty pelvis (patient A's lowest 36 slices, held out in fold 0): organ volumes labelled\n")
    print("\n".join(pelvis_table(pelvis)))


if __name__ == "__main__":
    main()
