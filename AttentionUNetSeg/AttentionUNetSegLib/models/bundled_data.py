"""The package's bundled data folder (`data/`: models, their registry, label maps, the sample CT) and the bundled
sample CT (data/sample/README.md): the input of the README's first command and of the Slicer Sample Data entry,
and the calibration scan of int8 quantization (backends/quantization.py). It ships with the package, so a wheel
has it too."""
from pathlib import Path

BUNDLED_DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE_CT = BUNDLED_DATA / "sample" / "example_ct.nii.gz"
