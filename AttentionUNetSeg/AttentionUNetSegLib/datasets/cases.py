"""Finding a dataset's cases: image/label pairs from an MSD folder, a folder of pairs, or a CSV file.

- Medical Segmentation Decathlon: DATA/dataset.json whose "training" list holds {"image", "label"} paths.
- A folder with images/ and labels/ (or imagesTr/ and labelsTr/): pairs matched by name; nnU-Net's
  channel suffix _0000 on image names is ignored. An image may be a DICOM series folder.
- A CSV file with columns image and label (optional: case, label_map), paths relative to the CSV file.
  A case's label_map (a bundled map's name or a label-map file) overrides the run's: a dataset that
  joins sources with different label numberings, or whose sources label different organs, gives each
  case its own map; model classes that a case's map does not produce are unlabelled in that case.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import DatasetError
from ..io.images import IMAGE_SUFFIXES, image_stem
from ..repeats import repeated

FOLDER_PAIRS: Tuple[Tuple[str, str], ...] = (("imagesTr", "labelsTr"), ("images", "labels"))
CHANNEL_SUFFIX = "_0000"


@dataclass(frozen=True)
class Case:
    """One training case: a CT (file or DICOM folder), its label volume and, optionally, its own label map."""

    name: str
    image: Path
    label: Path
    label_map: Optional[str] = None


def dataset_json(data: Path) -> Optional[Path]:
    """DATA/dataset.json if DATA is a folder that has one."""
    candidate = Path(data) / "dataset.json"
    return candidate if candidate.is_file() else None


def discover_cases(data: Path) -> List[Case]:
    """Every case of the dataset at `data`, sorted by name; errors name what is missing and how to fix it."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        cases = _from_csv(data)
    elif data.is_dir() and dataset_json(data):
        cases = _from_dataset_json(data / "dataset.json")
    elif data.is_dir():
        cases = _from_folder_pairs(data)
    else:
        raise DatasetError(f"dataset {data} does not exist; give an MSD folder, a folder with images/ and labels/, "
                           "or a CSV file of image,label pairs")
    if not cases:
        raise DatasetError(f"dataset {data} holds no cases")
    duplicates = repeated(c.name for c in cases)
    if duplicates:
        raise DatasetError(f"dataset {data}: case names {duplicates} occur more than once; give every case its "
                           "own name (CSV: a case column)")
    missing = [f"{c.name}: {p}" for c in cases for p in (c.image, c.label) if not p.exists()]
    if missing:
        raise DatasetError(f"dataset {data}: missing files: {'; '.join(missing[:10])}")
    return sorted(cases, key=lambda c: c.name)


def _from_csv(path: Path) -> List[Case]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "label"} <= set(reader.fieldnames or ()):
            raise DatasetError(f"{path} needs the columns image and label (optional: case, label_map), "
                               f"found {reader.fieldnames}")
        rows = list(reader)
    base = path.parent
    return [Case(row.get("case") or image_stem(Path(row["image"])), base / row["image"], base / row["label"],
                 _label_map_spec(row.get("label_map"), base))
            for row in rows]


def _label_map_spec(spec: Optional[str], base: Path) -> Optional[str]:
    """A CSV row's label map: empty is none, a file path is relative to the CSV, anything else a bundled name."""
    if not spec:
        return None
    return str(base / spec) if (base / spec).is_file() else spec


def _from_dataset_json(path: Path) -> List[Case]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["training"]
        return [Case(image_stem(Path(e["image"])), path.parent / e["image"], path.parent / e["label"])
                for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not a Decathlon dataset.json with a \"training\" list of "
                           f"{{\"image\", \"label\"}} entries: {exc}") from exc


def _from_folder_pairs(folder: Path) -> List[Case]:
    for images_name, labels_name in FOLDER_PAIRS:
        if (folder / images_name).is_dir() and (folder / labels_name).is_dir():
            images = _by_name(folder / images_name, images=True)
            labels = _by_name(folder / labels_name, images=False)
            unmatched = sorted(set(images) ^ set(labels))
            if unmatched:
                raise DatasetError(f"{folder}: {len(unmatched)} case(s) have an image or a label but not both: "
                                   f"{unmatched[:10]}; image and label files must share their names")
            return [Case(name, images[name], labels[name]) for name in images]
    layouts = ", ".join(f"{a}/ + {b}/" for a, b in FOLDER_PAIRS)
    raise DatasetError(f"{folder} has neither dataset.json nor image/label subfolders ({layouts})")


def _by_name(folder: Path, images: bool) -> Dict[str, Path]:
    """Image files (and, for images, DICOM folders) by case name; nnU-Net's _0000 image suffix dropped."""
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        is_image_file = any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES) and path.is_file()
        if path.name.startswith(".") or not (is_image_file or (images and path.is_dir())):
            continue
        name = image_stem(path)
        if images and name.endswith(CHANNEL_SUFFIX):
            name = name[: -len(CHANNEL_SUFFIX)]
        found[name] = path
    return found
