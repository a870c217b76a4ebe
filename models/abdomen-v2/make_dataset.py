"""Write the training dataset of the default model v2 from ../shared/data into OUT (never into the repository).

    python models/abdomen-v2/make_dataset.py OUT [--shared ../shared/data]

OUT/dataset.csv lists seven cases from five real CT scans, each with its own label map (the CSV's
label_map column), all label volumes on their CT's grid:
- patientA, patientB: TotalSegmentator's example scans and labels as they are (label map totalsegmentator);
- patientA_pelvis: the lowest 36 slices (108 mm, the pelvis) of patient A's full CT,
  labelled empty: a known-empty region (see PELVIS_SLICES), so that the model sees a pelvis without organs;
- s0009: TotalSegmentator subject s0009, its five organ masks merged into TotalSegmentator ids
  (1 spleen, 2 right kidney, 3 left kidney, 5 liver, 7 pancreas; label map totalsegmentator);
- ircad1.1, ircad1.7: 3D-IRCADb-01 patients 1.1 and 1.7, their four organ masks merged (label map
  label_maps/ircad-masks.json: no pancreas masks, so the pancreas is unlabelled there, not background).
The 3D-IRCADb scans are CC BY-NC-ND 4.0: what this writes from them is for non-commercial research
only and must never be committed.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
# Patient A's full CT (112 axial slices of 3 mm, index 0 lowest): its labelled top 30 slices (82-111) reach
# down to the second lumbar vertebra (TotalSegmentator's vertebrae_L2 at slices 82-91), where kidneys, liver
# and spleen are still present, and the liver's right lobe reaches down to about slice 47, at the iliac
# crest. Slices 0-35 (108 mm) lie below that, in the pelvis (iliac wings, bladder): no kidney, liver, spleen
# or pancreas reaches there (the coronal view of docs/images/abdomen-v2/sample-ct.png, drawn by
# sample_pictures.py, marks the cut).
PELVIS_SLICES = slice(0, 36)
S0009_MASKS: Dict[str, int] = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5, "pancreas": 7}
IRCAD_MASKS: Dict[str, int] = {"liver": 1, "spleen": 2, "leftkidney": 3, "rightkidney": 4}


def merged_masks(folder: Path, values: Dict[str, int]) -> sitk.Image:
    """One label volume from binary masks `folder/<name>.nii.gz`, each mask's voxels set to its value."""
    first = sitk.ReadImage(str(folder / f"{next(iter(values))}.nii.gz"))
    merged = np.zeros(sitk.GetArrayViewFromImage(first).shape, np.uint8)
    for name, value in values.items():
        mask = sitk.ReadImage(str(folder / f"{name}.nii.gz"))
        if mask.GetSize() != first.GetSize():
            raise SystemExit(f"{folder / name}: grid differs from the other masks")
        merged[sitk.GetArrayViewFromImage(mask) > 0] = value
    image = sitk.GetImageFromArray(merged)
    image.CopyInformation(first)
    return image


def write(image: sitk.Image, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return str(path)


def build(out: Path, shared: Path) -> List[dict]:
    example = shared / "totalseg_example"
    rows = [
        {"case": "patientA", "image": example / "example_ct_sm.nii.gz", "label": example / "example_seg.nii.gz",
         "label_map": "totalsegmentator"},
        {"case": "patientB", "image": example / "example_ct_dicom", "label": example / "example_seg_dicom.nii.gz",
         "label_map": "totalsegmentator"},
    ]
    full = sitk.ReadImage(str(example / "example_ct.nii.gz"))
    pelvis = full[:, :, PELVIS_SLICES]
    empty = sitk.Image(pelvis.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(pelvis)
    rows.append({"case": "patientA_pelvis", "image": write(pelvis, out / "images" / "patientA_pelvis.nii.gz"),
                 "label": write(empty, out / "labels" / "patientA_pelvis.nii.gz"), "label_map": "totalsegmentator"})
    s0009 = shared / "totalsegmentator_s0009"
    rows.append({"case": "s0009", "image": s0009 / "ct.nii.gz",
                 "label": write(merged_masks(s0009 / "segmentations", S0009_MASKS), out / "labels" / "s0009.nii.gz"),
                 "label_map": "totalsegmentator"})
    for patient in ("1.1", "1.7"):
        folder = shared / "ircad" / f"3Dircadb{patient}"
        rows.append({"case": f"ircad{patient}", "image": folder / "ct.nii.gz",
                     "label": write(merged_masks(folder / "masks", IRCAD_MASKS), out / "labels" / f"ircad{patient}.nii.gz"),
                     "label_map": HERE / "label_maps" / "ircad-masks.json"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (outside the repository)")
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = parser.parse_args()
    out = args.out.resolve()
    rows = build(out, args.shared.resolve())
    with open(out / "dataset.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "image", "label", "label_map"])
        writer.writeheader()
        writer.writerows({k: str(v) for k, v in row.items()} for row in rows)
    print(out / "dataset.csv")


if __name__ == "__main__":
    main()
