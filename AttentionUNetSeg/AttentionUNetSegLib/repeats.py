"""Finding the entries of a list that must be unique but are not."""
from __future__ import annotations

from collections import Counter
from typing import Hashable, Iterable, List, TypeVar

T = TypeVar("T", bound=Hashable)


def repeated(items: Iterable[T]) -> List[T]:
    """The items that occur more than once, sorted, each named once."""
    return sorted(item for item, count in Counter(items).items() if count > 1)
