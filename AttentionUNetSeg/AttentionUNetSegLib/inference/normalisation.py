"""How a model file says CT intensities reach the network: clipped to a HU window, then standardised. NumPy only, so
that a model file's metadata is read without the engine (models/header.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InvalidOptionError

AIR_HU = -1024.0


@dataclass
class IntensityNormalisation:
    """CT intensities are clipped to [clip_min, clip_max] HU, then mapped to (x - mean) / std."""

    clip_min: float = -1000.0
    clip_max: float = 1000.0
    mean: float = 0.0
    std: float = 1000.0

    @property
    def air(self) -> float:
        """Air (AIR_HU) as the network sees it: what padding outside the CT holds."""
        return float(normalise(np.array([AIR_HU]), self)[0])

    def __post_init__(self) -> None:
        if not self.clip_min < self.clip_max or not self.std > 0:
            raise InvalidOptionError(f"invalid intensity normalisation {asdict(self)}: need clip_min < clip_max and "
                                     "std > 0")


def normalise(array: np.ndarray, intensity: IntensityNormalisation) -> np.ndarray:
    """Clip to the model's HU window and standardise, on a float32 copy."""
    out = array.astype(np.float32)
    np.clip(out, intensity.clip_min, intensity.clip_max, out=out)
    out -= intensity.mean
    out /= intensity.std
    return out
