"""`MapSet`: named maps on one grid (attention gates, class probabilities), produced one at a time."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .grid import Grid


class MapSet(Mapping[str, sitk.Image]):
    """Iterating gives the maps' names, `maps[name]` a map as a float32 image on `grid`, `array(name)` its
    values (z, y, x). With a `step`, every value is a multiple of it, and `multiples(name)` gives those
    multiples as int16 (writers may store them, with the step as the scale factor)."""

    grid: Grid
    step: Optional[float] = None

    @abstractmethod
    def array(self, name: str) -> np.ndarray:
        """The map's float32 values (z, y, x) on `grid`."""

    def multiples(self, name: str) -> np.ndarray:
        """The map's values (z, y, x) divided by `step`, as int16 (exact: they are multiples of it)."""
        if self.step is None:
            raise ValueError("these maps have no step: their values are not multiples of one")
        return np.rint(self.array(name) / self.step).astype(np.int16)

    def __getitem__(self, name: str) -> sitk.Image:
        return self.grid.image(self.array(name))
