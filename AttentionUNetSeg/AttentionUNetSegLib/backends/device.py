"""Choosing the compute device and the numeric precision for inference."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from ..errors import InvalidOptionError
from .choices import DEVICE_CHOICES, INFERENCE_PRECISION_CHOICES


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, else Apple MPS where 3D convolutions work, else the CPU."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise InvalidOptionError(f"device must be one of {DEVICE_CHOICES} (or cuda:N), not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_runs_conv3d():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidOptionError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not _mps_runs_conv3d():
        raise InvalidOptionError("--device mps was asked for but MPS is unavailable or cannot run 3D convolutions; "
                                 "use cpu")
    return torch.device(name)


def _mps_runs_conv3d() -> bool:
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return False
    try:
        torch.nn.functional.conv3d(torch.zeros(1, 1, 4, 4, 4, device="mps"), torch.zeros(1, 1, 3, 3, 3, device="mps"))
        return True
    except (RuntimeError, NotImplementedError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on CUDA (float16 where bf16 is unsupported) and on CPUs with native bf16
    instructions (AVX-512 BF16, AMX); float32 elsewhere. 'int8' (torch.int8): quantized, on the CPU only
    (OpenVINO; quantization.py)."""
    if precision not in INFERENCE_PRECISION_CHOICES:
        raise InvalidOptionError(f"precision must be one of {INFERENCE_PRECISION_CHOICES}, not {precision!r}")
    if precision == "int8":
        if device.type != "cpu":
            raise InvalidOptionError(f"int8 inference runs on the CPU (OpenVINO), not on {device.type}; use --device "
                                     "cpu, or another precision")
        return torch.int8
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (else bf16 would be emulated, slowly)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager:
    """Mixed precision for `dtype` below float32, nothing otherwise."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
