"""The devices and precisions a run may ask for, by name: without PyTorch, so that settings, option parsers and the
Slicer panel can offer them (device.py resolves them)."""

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
"""What `device` may be besides cuda:N ('auto': CUDA, else Apple MPS where 3D convolutions work, else the CPU)."""
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
INFERENCE_PRECISION_CHOICES = PRECISION_CHOICES + ("int8",)
"""int8 is for inference only (quantization.py)."""
