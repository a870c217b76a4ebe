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
    values (z, y, x). With a `step`, every value is a multiple of it (writers may store the multiples)."""

    grid: Grid
    step: Optional[float] = None

    @abstractmethod
    def array(self, name: str) -> np.ndarray:
        """The map's float32 values (z, y, x) on `grid`."""

    def __getitem__(self, name: str) -> sitk.Image:
        return self.grid.image(self.array(name))
