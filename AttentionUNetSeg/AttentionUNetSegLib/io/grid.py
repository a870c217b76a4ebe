"""`Grid`: where an image's voxels lie (size, origin, spacing, direction), without the voxels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Tuple

import numpy as np

if TYPE_CHECKING:  # a grid is plain numbers: the Slicer logic uses it without loading SimpleITK
    import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """A voxel grid in SimpleITK's terms: x, y, z order, physical units in mm, direction row-major."""

    size: Tuple[int, ...]
    origin: Tuple[float, ...]
    spacing: Tuple[float, ...]
    direction: Tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        return cls(image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection())

    @property
    def shape(self) -> Tuple[int, ...]:
        """The (z, y, x) shape of an array on this grid."""
        return tuple(reversed(self.size))

    def image(self, array: np.ndarray) -> sitk.Image:
        """`array` (z, y, x) as an image on this grid."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(array)
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image
