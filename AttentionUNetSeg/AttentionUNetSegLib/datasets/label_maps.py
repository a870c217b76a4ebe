"""Label maps: which label values mean which class.

Two forms of one concept:
- value -> name (`parse_label_map`): inline `VALUE=NAME,...` specs, value->name JSON files and a
  dataset.json's "labels"; used where label values are named as they are (evaluation, phantoms), so each
  name once;
- class name -> the source values that form it (`LabelMap`, `load_label_map`): how training and model
  evaluation turn a dataset's labels into model classes. A label-map file is JSON or YAML:
    {"name": "...", "description": "...",
     "classes": {"pancreas": [7], "spleen": [1], "kidney": [2, 3], "liver": [5]},
     "unlisted": "background"}
  Class order is the model's output order after background (value 0, always background). A "background"
  entry lists further values that become background. "unlisted" says what happens to any other value
  found in a label volume: "error" (default: such a case stops the run, naming it) or "background".
  An "ignore" entry lists values whose voxels are neither a class nor background: they become IGNORE_LABEL
  and are left out of the loss (a segment a user marked as not to be learnt from, say a tumour in an organ).
  Ready maps ship in data/label_maps (see its README); the value->name forms allow no other values, and
  as a label map they may give one name to several values (`1=liver,2=liver,3=liver`: the liver and its
  tumours as one class).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import yaml

from ..errors import DatasetError, InvalidOptionError
from ..models.bundled_data import BUNDLED_DATA
from ..repeats import repeated

BUNDLED_DIR = BUNDLED_DATA / "label_maps"
UNLISTED_CHOICES = ("error", "background")
IGNORE_LABEL = 255
"""The model label of voxels that training leaves out of the loss (a label map's "ignore" values)."""
_HELP = ("give `VALUE=NAME` pairs separated by commas (e.g. `1=pancreas,2=spleen`) or a JSON file mapping "
         "values to names ({\"1\": \"pancreas\"}) or a dataset.json with a \"labels\" entry")


@dataclass(frozen=True)
class LabelMap:
    """Model class name -> the source label values that form it, in output order."""

    classes: Dict[str, Tuple[int, ...]]
    unlisted: str = "error"
    background: Tuple[int, ...] = ()
    name: str = ""
    description: str = field(default="", compare=False)
    ignore: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        where = f"label map {self.name!r}"
        if self.unlisted not in UNLISTED_CHOICES:
            raise InvalidOptionError(f"{where}: unlisted must be one of {UNLISTED_CHOICES}, not {self.unlisted!r}")
        if not self.classes or "background" in self.classes:
            raise InvalidOptionError(f"{where} must name at least one class, and list background values under "
                                     "\"background\", not as a class")
        sources = [v for values in self.classes.values() for v in values] + list(self.background) + list(self.ignore)
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in sources):
            raise InvalidOptionError(f"{where}: source values must be integers >= 1 (0 is always background), "
                                     f"not {sources}")
        shared = repeated(sources)
        if shared:
            raise InvalidOptionError(f"{where}: source value(s) {shared} are given to more than one class")

    @property
    def class_names(self) -> List[str]:
        return list(self.classes)

    def to_dict(self) -> dict:
        values = {"name": self.name, "classes": {k: list(v) for k, v in self.classes.items()},
                  "background": list(self.background), "unlisted": self.unlisted}
        if self.ignore:  # only where used, so that the caches of maps without it keep their keys
            values["ignore"] = list(self.ignore)
        return values

    def remap(self, labels: np.ndarray, class_values: Mapping[str, int], case: str) -> np.ndarray:
        """Source labels -> model class values (uint8), "ignore" values -> IGNORE_LABEL; unlisted values raise
        DatasetError naming `case`."""
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.array_equal(labels, np.round(labels)):
                raise DatasetError(f"case {case}: the label volume holds non-integer values; give a label map image")
            labels = labels.astype(np.int64)
        if labels.size and labels.min() < 0:
            raise DatasetError(f"case {case}: the label volume holds negative values; label values must be >= 0")
        present = np.flatnonzero(np.bincount(labels.ravel()))
        table = np.zeros(max(int(present.max(initial=0)), *(max(v) for v in self.classes.values()), *self.ignore) + 1,
                         np.uint8)
        for name, values in self.classes.items():
            table[list(values)] = class_values[name]
        table[list(self.ignore)] = IGNORE_LABEL
        known = {0, *self.background, *self.ignore, *(v for values in self.classes.values() for v in values)}
        unknown = [int(v) for v in present if int(v) not in known]
        if unknown and self.unlisted == "error":
            raise DatasetError(
                f"case {case}: {len(unknown)} label value(s) {unknown[:20]}{' ...' if len(unknown) > 20 else ''} "
                f"are not in label map {self.name!r} (which maps "
                f"{self.to_dict()['classes']}); add them to a class or to \"background\", or set "
                "\"unlisted\": \"background\" in the label-map file"
            )
        return table[labels]


def bundled_label_maps() -> List[str]:
    """Names of the label maps shipped with the package."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.json"))


def load_label_map(spec: Optional[str], dataset_json: Optional[Path] = None) -> LabelMap:
    """A bundled name, a label-map file, an inline VALUE=NAME spec, or (spec None) the dataset.json labels."""
    if spec is None:
        if dataset_json is None:
            raise InvalidOptionError("no label map: give --label-map (bundled: "
                                     f"{', '.join(bundled_label_maps())}; a file; or VALUE=NAME pairs)")
        return _from_value_names(parse_label_map(str(dataset_json), shared_names=True), str(dataset_json))
    if spec in bundled_label_maps():
        return _from_file(BUNDLED_DIR / f"{spec}.json")
    path = Path(spec)
    if path.is_file():
        return _from_file(path)
    if "=" not in spec:
        raise InvalidOptionError(f"label map {spec!r} is neither a bundled map ({', '.join(bundled_label_maps())}), "
                                 "nor an existing file, nor VALUE=NAME pairs")
    return _from_value_names(parse_label_map(spec, shared_names=True), spec)


def _from_file(path: Path) -> LabelMap:
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise InvalidOptionError(f"cannot read label map file {path}: {exc}") from exc
    if not (isinstance(content, dict) and isinstance(content.get("classes"), dict)):
        return _from_value_names(parse_label_map(str(path), shared_names=True), str(path))
    unknown = set(content) - {"name", "description", "classes", "background", "unlisted", "ignore"}
    if unknown:
        raise InvalidOptionError(f"label map file {path}: unknown key(s) {sorted(unknown)}")
    try:
        return LabelMap(
            classes={str(k): tuple(_as_list(v)) for k, v in content["classes"].items()},
            unlisted=content.get("unlisted", "error"),
            background=tuple(_as_list(content.get("background", []))),
            name=str(content.get("name", path.stem)),
            description=str(content.get("description", "")),
            ignore=tuple(_as_list(content.get("ignore", []))),
        )
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"label map file {path}: {exc}") from exc


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _from_value_names(mapping: Dict[int, str], source: str) -> LabelMap:
    """The label map whose classes are the names of `mapping`, each formed by every value given that name."""
    classes: Dict[str, Tuple[int, ...]] = {}
    for value, name in mapping.items():
        classes[name] = classes.get(name, ()) + (value,)
    return LabelMap(classes=classes, name=source)


def parse_label_map(spec: str, shared_names: bool = False) -> Dict[int, str]:
    """Label value -> class name from an inline spec or a JSON file; background (value 0) is left out.

    JSON files may map values to names (`{"1": "spleen"}`, TotalSegmentator style), or be a dataset.json
    whose "labels" maps values to names (Medical Segmentation Decathlon) or names to values (nnU-Net v2).
    A name given to several values is refused unless `shared_names` (a label map's many-to-one classes).
    """
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        return _from_json_file(path, shared_names)
    pairs = [item.strip() for item in spec.split(",") if item.strip()]
    mapping: Dict[object, object] = {}
    for pair in pairs:
        value, sep, name = pair.partition("=")
        if not sep:
            raise InvalidOptionError(f"label map entry {pair!r} has no '='; {_HELP}")
        if value.strip() in mapping:
            raise InvalidOptionError(f"label value {value.strip()} appears twice in {spec!r}; give each value once")
        mapping[value.strip()] = name.strip()
    return _validated(mapping, f"label map {spec!r}", shared_names)


def _from_json_file(path: Path, shared_names: bool) -> Dict[int, str]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidOptionError(f"label map file {path} does not exist; {_HELP}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidOptionError(f"cannot read label map file {path} ({exc}); {_HELP}") from exc
    if isinstance(content, dict) and isinstance(content.get("labels"), dict):
        content = content["labels"]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in content.values()):  # nnU-Net v2: name -> value
            content = {value: name for name, value in content.items()}
    if not isinstance(content, dict):
        raise InvalidOptionError(f"label map file {path} holds a {type(content).__name__}, not an object; {_HELP}")
    return _validated(content, f"label map file {path}", shared_names)


def _validated(mapping: Mapping[object, object], source: str, shared_names: bool) -> Dict[int, str]:
    result: Dict[int, str] = {}
    for raw_value, raw_name in mapping.items():
        try:
            value = int(str(raw_value))
        except ValueError:
            raise InvalidOptionError(f"{source}: label value {raw_value!r} is not an integer; {_HELP}") from None
        name = str(raw_name).strip() if isinstance(raw_name, (str, int)) else ""
        if value < 0 or not name:
            raise InvalidOptionError(f"{source}: entry {raw_value!r}: {raw_name!r} needs a value >= 0 and a name; "
                                     f"{_HELP}")
        if value != 0:
            result[value] = name
    duplicates = repeated(result.values())
    if duplicates and not shared_names:
        raise InvalidOptionError(f"{source}: class names {duplicates} are used for more than one value; "
                                 "give every class its own name (only a --label-map may join values into one class)")
    if not result:
        raise InvalidOptionError(f"{source} names no foreground class (value > 0); {_HELP}")
    return dict(sorted(result.items()))
