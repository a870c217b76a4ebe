"""Label maps (label value -> class name) from inline specs like `1=pancreas,2=spleen` or JSON files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Mapping

from .errors import InvalidOptionError

_HELP = ("give `VALUE=NAME` pairs separated by commas (e.g. `1=pancreas,2=spleen`) or a JSON file mapping "
         "values to names ({\"1\": \"pancreas\"}) or a dataset.json with a \"labels\" entry")


def parse_label_map(spec: str) -> Dict[int, str]:
    """Label value -> class name from an inline spec or a JSON file; background (value 0) is left out.

    JSON files may map values to names (`{"1": "spleen"}`, TotalSegmentator style), or be a dataset.json
    whose "labels" maps values to names (Medical Segmentation Decathlon) or names to values (nnU-Net v2).
    """
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        return _from_json_file(path)
    pairs = [item.strip() for item in spec.split(",") if item.strip()]
    mapping: Dict[object, object] = {}
    for pair in pairs:
        value, sep, name = pair.partition("=")
        if not sep:
            raise InvalidOptionError(f"label map entry {pair!r} has no '='; {_HELP}")
        if value.strip() in mapping:
            raise InvalidOptionError(f"label value {value.strip()} appears twice in {spec!r}; give each value once")
        mapping[value.strip()] = name.strip()
    return _validated(mapping, f"label map {spec!r}")


def _from_json_file(path: Path) -> Dict[int, str]:
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
    return _validated(content, f"label map file {path}")


def _validated(mapping: Mapping[object, object], source: str) -> Dict[int, str]:
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
    names = list(result.values())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidOptionError(f"{source}: class names {duplicates} are used for more than one value; "
                                 "give every class its own name")
    if not result:
        raise InvalidOptionError(f"{source} names no foreground class (value > 0); {_HELP}")
    return dict(sorted(result.items()))
