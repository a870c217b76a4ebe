"""Write the training dataset of the default model v3 from ../shared/data into OUT (never into the repository).

    python models/abdomen-v3/make_dataset.py OUT [--shared ../shared/data]

OUT/dataset.csv lists the seven cases of v2 (models/abdomen-v2/make_dataset.py: patients A and B, A's pelvis
as a known-empty case, s0009, 3D-IRCADb 1.1 and 1.7) and NIH Pancreas-CT case 1 (`nih0001`, a whole
portal-venous abdomen with a manual pancreas only; label map nih-pancreas, so its liver, spleen and kidneys
are unlabelled, left out of its loss, not taught as background). Six real scans, each with its own label map.
The 3D-IRCADb scans are CC BY-NC-ND 4.0: what this writes from them is for non-commercial research only and
must never be committed.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent


def _v2_dataset():
    """models/abdomen-v2/make_dataset.py, the v2 recipe's own dataset writer, as a module."""
    spec = importlib.util.spec_from_file_location("abdomen_v2_dataset", HERE.parent / "abdomen-v2" / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(out: Path, shared: Path) -> List[dict]:
    nih = shared / "nih_pancreas_0001"
    return _v2_dataset().build(out, shared) + [
        {"case": "nih0001", "image": nih / "ct.nii.gz", "label": nih / "labels.nii.gz", "label_map": "nih-pancreas"},
    ]


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
