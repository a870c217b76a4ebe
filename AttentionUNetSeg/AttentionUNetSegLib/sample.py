"""The bundled sample CT (Resources/SampleData/README.md, beside this package in the repository and in the
Slicer extension): the input of the README's first command and of the Slicer Sample Data entry, and the
calibration scan of int8 quantization (quantization.py)."""
from pathlib import Path

SAMPLE_CT = Path(__file__).resolve().parents[1] / "Resources" / "SampleData" / "example_ct.nii.gz"
