"""Synthetic abdominal CT phantoms with organ labels: seeded, reproducible, in physical LPS space.

The anatomy is laid out in millimetres around the first lumbar vertebra (L1) with patient-to-patient
variation (body size, fat, organ sizes, positions and the pancreas's course), a smooth random
deformation, CT-like Hounsfield units, blur and noise. Images use DICOM/LPS geometry with an identity
direction: +x (index i) is patient left, +y (j) posterior, +z (k) superior, so the liver sits at low i
and the spleen at high i. Label values follow TotalSegmentator v2 by default, so the same class map
serves phantoms and real data; any structure can be given another value or left unlabelled.
"""
from .anatomy import DEFAULT_LABELS, STRUCTURES, VERTEBRAE
from .generate import DEFAULT_SIZE, DEFAULT_SPACING, generate_phantom, write_phantom_dataset

__all__ = ["DEFAULT_LABELS", "DEFAULT_SIZE", "DEFAULT_SPACING", "STRUCTURES", "VERTEBRAE", "generate_phantom",
           "write_phantom_dataset"]
