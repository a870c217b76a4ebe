"""The bundled sample CT (package data, data/sample/README.md): the input of the README's first command and of
the Slicer Sample Data entry, and the calibration scan of int8 quantization (quantization.py)."""
from pathlib import Path

SAMPLE_CT = Path(__file__).resolve().parent / "data" / "sample" / "example_ct.nii.gz"
