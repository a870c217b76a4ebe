"""CPU inference through OpenVINO: the folded model, converted once per model file and cached.

Conversion traces the folded PyTorch model (BatchNorm inside the convolutions) on a small window with
dynamic batch and spatial sizes, so one converted model serves every window size. It is kept in the
per-user cache under the model file's sha256 and the OpenVINO version; it is written to a temporary
folder that is then renamed, so a half-written entry is never read, and an unreadable entry is converted
again. The precision is OpenVINO's inference hint: bf16 where PyTorch would use bf16 (CPUs with native
bf16), f32 otherwise.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .optimize import fold_batchnorm
from .user_folders import user_cache_dir
from .window_backend import WindowOutputs

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1
"""Bump when the conversion below changes, so models converted the old way are not used."""
EXAMPLE_SIZE = 32
PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
IR_FILE = "network.xml"


class _AllOutputs(nn.Module):
    """The model with logits and every gate's map as a flat tuple of outputs (what OpenVINO converts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if not self.model.gate_names:
            return (self.model(x),)
        logits, gates = self.model(x, return_attention=True)
        return (logits, *(gates[name] for name in self.model.gate_names))


class OpenVINOBackend:
    """A compiled OpenVINO model as a WindowBackend (window_backend.py)."""

    name = "openvino"
    device = torch.device("cpu")

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        import openvino as ov

        self.gate_names = list(model.gate_names)
        self.dtype = dtype
        self.core = ov.Core()
        self.request = compile_request(self._cached_or_converted(model), dtype, self.core)

    def __call__(self, windows: torch.Tensor, attention: bool) -> WindowOutputs:
        results = self.request.infer({0: np.ascontiguousarray(windows.numpy(), dtype=np.float32)})
        # the request reuses its output buffers on the next call: copy what is kept
        outputs = [torch.from_numpy(np.array(results[i])) for i in range(1 + (len(self.gate_names) if attention else 0))]
        return outputs[0], outputs[1:]

    def _cached_or_converted(self, model: nn.Module):
        import openvino as ov

        folder = self._cache_folder(model)
        if folder is not None and (folder / IR_FILE).is_file():
            try:
                return self.core.read_model(str(folder / IR_FILE))
            except RuntimeError as exc:
                log.warning("the cached OpenVINO model in %s is unreadable (%s); converting again", folder, exc)
                shutil.rmtree(folder, ignore_errors=True)
        log.info("converting the model for OpenVINO (once per model file%s)",
                 f"; kept in {folder}" if folder is not None else "")
        ov_model = convert(_AllOutputs(fold_batchnorm(model)), model.config.in_channels)
        if folder is not None:
            _store(ov_model, folder, ov)
        return ov_model

    @staticmethod
    def _cache_folder(model: nn.Module) -> Optional[Path]:
        """Where this model file's converted model lives; None for a model not loaded from a file."""
        import openvino as ov

        sha256 = getattr(model, "sha256", None)
        if sha256 is None:
            return None
        return user_cache_dir() / "openvino" / f"{sha256}-openvino{ov.__version__.split('-')[0]}-v{CONVERSION_VERSION}"


def convert(module: nn.Module, in_channels: int):
    """`module` (eval mode; one (N, C, z, y, x) input) as an OpenVINO model with dynamic batch and sizes."""
    import openvino as ov

    example = torch.zeros(1, in_channels, EXAMPLE_SIZE, EXAMPLE_SIZE, EXAMPLE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: the sizes stay dynamic
        return ov.convert_model(module, example_input=example,
                                input=[ov.PartialShape([-1, in_channels, -1, -1, -1])])


def compile_request(ov_model, dtype: torch.dtype, core=None):
    """An inference request of `ov_model` on the CPU at `dtype`'s precision, on PyTorch's number of threads."""
    import openvino as ov

    settings = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[dtype], "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    return (core or ov.Core()).compile_model(ov_model, "CPU", settings).create_infer_request()


def _store(ov_model, folder: Path, ov) -> None:
    """Save atomically: into a temporary folder beside `folder`, then rename it (a racing writer may win)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    try:
        ov.save_model(ov_model, str(staging / IR_FILE), compress_to_fp16=False)
        os.replace(staging, folder)
    except OSError as exc:
        log.warning("could not keep the converted OpenVINO model in %s (%s); it is converted again next time",
                    folder, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
