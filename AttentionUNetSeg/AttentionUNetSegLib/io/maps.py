"""`MapSet`: named maps on one grid (attention gates, class probabilities), produced one at a time, and writing
them, several at a time."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .grid import Grid
from .images import write_map

MAX_WRITERS = 4
"""Output images made at the same time at most (each holds a full-size map: 157 MB for a 512x512x300 CT)."""


class MapSet(Mapping[str, sitk.Image]):
    """Iterating gives the maps' names, `maps[name]` a map as a float32 image on `grid`, `array(name)` its
    values (z, y, x). With a `step`, every value is a multiple of it, and `multiples(name)` gives those
    multiples as int16 (writers may store them, with the step as the scale factor)."""

    grid: Grid
    step: Optional[float] = None

    @abstractmethod
    def array(self, name: str) -> np.ndarray:
        """The map's float32 values (z, y, x) on `grid`."""

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Write the map's float32 values into `out` (z, y, x on `grid`), e.g. a volume node's own voxels."""
        out[...] = self.array(name)

    def multiples(self, name: str) -> np.ndarray:
        """The map's values (z, y, x) divided by `step`, as int16 (exact: they are multiples of it)."""
        if self.step is None:
            raise ValueError("these maps have no step: their values are not multiples of one")
        return np.rint(self.array(name) / self.step).astype(np.int16)

    def __getitem__(self, name: str) -> sitk.Image:
        return self.grid.image(self.array(name))


def write_map_file(maps: MapSet, name: str, path: Path) -> None:
    """Write one map (resampled as it is read) to `path`: maps with a step as their int16 multiples."""
    values = maps.array(name) if maps.step is None else maps.multiples(name)
    write_map(values, maps.grid, path, maps.step)


def in_parallel(tasks: Sequence[Callable[[], None]]) -> None:
    """Run the tasks (each making one full-size map or image), up to `writers()` at a time in threads (NumPy,
    ISA-L and ITK let go of the GIL while they resample and compress), so memory holds at most that many of
    them in the making; the first failure is raised once all have ended."""
    with ThreadPoolExecutor(max_workers=writers()) as pool:
        for done in [pool.submit(task) for task in tasks]:
            done.result()


def writers() -> int:
    """How many output images are made at a time: one per core PyTorch uses, at most MAX_WRITERS."""
    import torch  # here, not above: the Slicer logic reads maps without PyTorch

    return max(1, min(torch.get_num_threads(), MAX_WRITERS))
