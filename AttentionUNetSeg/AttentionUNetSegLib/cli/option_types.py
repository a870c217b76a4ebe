"""argparse types that refuse impossible values while the command line is parsed, before any work, with a
message that says which values the option takes (argparse adds the option's name)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

SIDES = "multiples of 16 from 16 up (the networks halve each size four times)"


def whole_number(minimum: int, maximum: Optional[int] = None, allowed: Optional[str] = None) -> Callable[[str], int]:
    """An int in [minimum, maximum] (no upper bound when `maximum` is None); `allowed` describes the values
    in the option's own terms (default: the range)."""
    allowed = allowed or (f"a whole number >= {minimum}" if maximum is None
                          else f"a whole number from {minimum} to {maximum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; allowed: {allowed}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is not allowed; allowed: {allowed}")
        return value

    return parse


def multiple_of_16(text: str) -> int:
    """A window, patch or input side of the network: a positive multiple of 16."""
    value = whole_number(16, allowed=SIDES)(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 16; allowed: {SIDES}")
    return value


def positive_number(text: str) -> float:
    """A finite float > 0."""
    return _number(text, lambda value: value > 0, "a positive number")


def fraction(text: str) -> float:
    """A float in [0, 1)."""
    return _number(text, lambda value: 0 <= value < 1, "a number in [0, 1)")


def _number(text: str, accept: Callable[[float], bool], allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed: {allowed}") from None
    if not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; allowed: {allowed}")
    return value
