"""Segment classes: names, display colours and standard (SNOMED CT) terminology codes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")


@dataclass(frozen=True)
class Terminology:
    """A coded concept: DICOM coding scheme designator, code value and meaning."""

    scheme: str
    code: str
    meaning: str


@dataclass(frozen=True)
class SegmentClass:
    """One output channel of a model: label value, name, colour (RGB 0-255) and terminology."""

    value: int
    name: str
    color: Tuple[int, int, int] = (128, 128, 128)
    category: Optional[Terminology] = None
    type: Optional[Terminology] = None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["color"] = list(self.color)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "SegmentClass":
        return cls(
            value=int(values["value"]),
            name=str(values["name"]),
            color=tuple(int(c) for c in values.get("color", (128, 128, 128))),
            category=Terminology(**values["category"]) if values.get("category") else None,
            type=Terminology(**values["type"]) if values.get("type") else None,
        )


def _organ(color: Tuple[int, int, int], code: str, meaning: str) -> Dict:
    return {"color": color, "category": Terminology(*ANATOMICAL_STRUCTURE), "type": Terminology("SCT", code, meaning)}


# Colours follow 3D Slicer's GenericAnatomyColors; codes are SNOMED CT.
KNOWN_ORGANS: Dict[str, Dict] = {
    "pancreas": _organ((249, 180, 111), "15776009", "Pancreas"),
    "spleen": _organ((157, 108, 162), "78961009", "Spleen"),
    "kidney": _organ((185, 102, 83), "64033007", "Kidney"),
    "liver": _organ((221, 130, 101), "10200004", "Liver"),
}


def make_classes(names: List[str]) -> List[SegmentClass]:
    """Classes for `names` (background first), with colours and codes for the organs we know."""
    if not names or names[0] != "background":
        raise ValueError(f"the first class must be 'background', got {names[:1]}")
    classes = [SegmentClass(0, "background", (0, 0, 0))]
    for value, name in enumerate(names[1:], start=1):
        classes.append(SegmentClass(value, name, **KNOWN_ORGANS.get(name, {})))
    return classes


DEFAULT_CLASS_NAMES: List[str] = ["background", "pancreas", "spleen", "kidney", "liver"]
