"""Matching a user's segments to a model's classes, by terminology code or else by name.

A segment matches a class when the type code of its terminology (Slicer stores the serialized entry
`context~category~type~modifier~...`, each code `scheme^value^meaning`) is the class's type code or a
side-specific code of the same organ (left or right kidney for kidney); else when its name matches: case,
punctuation and "left" and "right" (also glued on, as in "LeftKidney") do not count, and a plural matches
("Left Kidney", "kidney_right", "leftkidney" and "Kidneys" all match "kidney"). Segments listed as ignored are left out of training; any other segment that
matches no class is background.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..models.segment_classes import SegmentClass

TERMINOLOGY = "terminology"
NAME = "name"
BACKGROUND = "background"
IGNORED = "ignored"

SIDE_CODES: Dict[Tuple[str, str], Tuple[Tuple[str, str], ...]] = {
    ("SCT", "64033007"): (("SCT", "18639004"), ("SCT", "9846003")),  # kidney: left kidney, right kidney
}
"""Organ type codes (scheme, value) and the codes of their left and right counterparts."""
SIDE_WORDS = ("left", "right")
GLUED_SIDE = re.compile(r"^(?:left|right)(?=[a-z])|(?<=[a-z])(?:left|right)$")


@dataclass(frozen=True)
class Segment:
    """A user's segment: its name and Slicer's serialized terminology entry ("" when it has none)."""

    name: str
    terminology: str = ""


@dataclass(frozen=True)
class SegmentMatch:
    """What a segment becomes: a class (`class_name`, matched by TERMINOLOGY or NAME), BACKGROUND or IGNORED."""

    segment: str
    how: str
    class_name: Optional[str] = None

    def __str__(self) -> str:
        if self.class_name is None:
            return f"{self.segment} -> {self.how}"
        return f"{self.segment} -> {self.class_name} (by {self.how})"


def match_segments(segments: Sequence[Segment], classes: Sequence[SegmentClass],
                   ignored: Iterable[str] = ()) -> List[SegmentMatch]:
    """Each segment's match among the foreground `classes`, in the segments' order (see the module docstring).
    `ignored`: names of segments to leave out of training (case-insensitive)."""
    ignored_names = {name.casefold() for name in ignored}
    foreground = [c for c in classes if c.value != 0]
    matches = []
    for segment in segments:
        if segment.name.casefold() in ignored_names:
            matches.append(SegmentMatch(segment.name, IGNORED))
            continue
        by_code = _match_by_code(segment.terminology, foreground)
        by_name = None if by_code else _match_by_name(segment.name, foreground)
        if by_code or by_name:
            matches.append(SegmentMatch(segment.name, TERMINOLOGY if by_code else NAME, (by_code or by_name).name))
        else:
            matches.append(SegmentMatch(segment.name, BACKGROUND))
    return matches


def type_code(terminology: str) -> Optional[Tuple[str, str]]:
    """(scheme, value) of the type in Slicer's serialized terminology entry, or None without one."""
    fields = terminology.split("~")
    if len(fields) < 3:
        return None
    parts = fields[2].split("^")
    return (parts[0], parts[1]) if len(parts) >= 2 and parts[0] and parts[1] else None


def normalised_name(name: str) -> str:
    """Lower case, words only, without "left"/"right" (so "Kidney (left)" and "right_kidney" are "kidney")."""
    words = re.split(r"[^0-9a-z]+", name.casefold())
    return " ".join(w for w in words if w and w not in SIDE_WORDS)


def _match_by_code(terminology: str, classes: Sequence[SegmentClass]) -> Optional[SegmentClass]:
    code = type_code(terminology)
    if code is None:
        return None
    for segment_class in classes:
        if segment_class.type is None:
            continue
        own = (segment_class.type.scheme, segment_class.type.code)
        if code == own or code in SIDE_CODES.get(own, ()):
            return segment_class
    return None


def _match_by_name(name: str, classes: Sequence[SegmentClass]) -> Optional[SegmentClass]:
    wanted = normalised_name(name)
    unglued = GLUED_SIDE.sub("", wanted) if " " not in wanted else wanted  # "leftkidney", "kidneyright"
    for segment_class in classes:
        own = normalised_name(segment_class.name)
        if wanted in (own, own + "s") or unglued in (own, own + "s"):
            return segment_class
    return None
