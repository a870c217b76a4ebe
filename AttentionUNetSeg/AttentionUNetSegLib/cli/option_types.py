"""argparse types that refuse impossible values while the command line is parsed, before any work, with a
message that names the allowed values (argparse adds the option's name)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def whole_number(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    """An int in [minimum, maximum] (no upper bound when `maximum` is None)."""
    allowed = f"a whole number >= {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is not allowed; give {allowed}")
        return value

    parse.__name__ = "whole number"
    return parse


def positive_number(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a positive number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a positive number")
    return value


def fraction(text: str) -> float:
    """A float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number in [0, 1)") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a number in [0, 1)")
    return value


def multiple_of_16(text: str) -> int:
    """A positive multiple of 16: a window or patch side of the network (four 2x poolings)."""
    value = whole_number(16)(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 16; give 16, 32, 48, ...")
    return value
