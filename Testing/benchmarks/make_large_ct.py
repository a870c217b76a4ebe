"""Write a 512x512x300 abdominal CT at 0.8x0.8x1.0 mm (patient A resampled) for whole-volume benchmarks.

Usage: python Testing/benchmarks/make_large_ct.py OUT.nii.gz [SHARED_DATA_DIR]
"""
import sys
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
shared = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO.parent / "shared" / "data" / "totalseg_example"
source = sitk.ReadImage(str(shared / "example_ct.nii.gz"))
size, spacing = (512, 512, 300), (0.8, 0.8, 1.0)
centre = source.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in source.GetSize()])
direction = source.GetDirection()
reference = sitk.Image(size, sitk.sitkInt16)
reference.SetSpacing(spacing)
reference.SetDirection(direction)
offset = reference.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in size])
reference.SetOrigin([c - o for c, o in zip(centre, offset)])
large = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)
sitk.WriteImage(large, sys.argv[1], True)
print(f"wrote {sys.argv[1]}: {large.GetSize()} at {large.GetSpacing()} mm")
