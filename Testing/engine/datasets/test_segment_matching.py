"""A user's segments matched to a model's classes: terminology codes first (side-specific kidney codes too), then
names without case, punctuation or side, ignored segments, and everything else background."""
from __future__ import annotations

from slicer_scene import serialized

from AttentionUNetSegLib.models.segment_classes import DEFAULT_CLASS_NAMES, make_classes
from AttentionUNetSegLib.datasets.segment_matching import (BACKGROUND, IGNORED, NAME, TERMINOLOGY, Segment,
                                                           match_segments, normalised_name, type_code)

CLASSES = make_classes(DEFAULT_CLASS_NAMES)


def test_terminology_wins_over_a_misleading_name() -> None:
    segments = [Segment("Segment_1", serialized("10200004", "Liver")),
                Segment("pancreas?", serialized("78961009", "Spleen")),  # the code says spleen
                Segment("Segment_3", serialized("64033007", "Kidney", "Left")),
                Segment("Segment_4", serialized("9846003", "Right kidney")),  # pre-coordinated right kidney
                Segment("Segment_5", serialized("71854001", "Colon"))]
    matches = match_segments(segments, CLASSES)
    assert [(m.how, m.class_name) for m in matches] == [
        (TERMINOLOGY, "liver"), (TERMINOLOGY, "spleen"), (TERMINOLOGY, "kidney"), (TERMINOLOGY, "kidney"),
        (BACKGROUND, None)]
    assert str(matches[0]) == "Segment_1 -> liver (by terminology)"
    assert str(matches[4]) == "Segment_5 -> background"


def test_names_match_without_case_punctuation_side_or_plural() -> None:
    names = ["Left Kidney", "kidney_right", "KIDNEYS", "Kidney (left)", "leftkidney", "KidneyRight", "liver",
             "Pancreas ", "right-spleen", "Liver tumour", "kidney cyst", "panc", "leftover", "bright"]
    matches = match_segments([Segment(n) for n in names], CLASSES)
    assert [m.class_name for m in matches] == ["kidney"] * 6 + ["liver", "pancreas", "spleen"] + [None] * 5
    assert {m.how for m in matches[:9]} == {NAME}
    assert {m.how for m in matches[9:]} == {BACKGROUND}
    assert normalised_name("Right_Kidney-2") == "kidney 2"


def test_ignored_segments_match_nothing_whatever_their_name_or_code() -> None:
    segments = [Segment("Liver tumour"), Segment("liver", serialized("10200004", "Liver")), Segment("Spleen")]
    matches = match_segments(segments, CLASSES, ignored=["LIVER TUMOUR", "spleen"])
    assert [(m.how, m.class_name) for m in matches] == [(IGNORED, None), (TERMINOLOGY, "liver"), (IGNORED, None)]
    assert str(matches[0]) == "Liver tumour -> ignored"


def test_type_code_of_entries_without_a_type_is_none() -> None:
    assert type_code("") is None
    assert type_code("context~SCT^123037004^Anatomical Structure") is None
    assert type_code(serialized("15776009", "Pancreas")) == ("SCT", "15776009")
    assert match_segments([Segment("Segment_1", "garbage")], CLASSES)[0].how == BACKGROUND
