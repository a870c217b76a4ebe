"""Inference backends (protocol.WindowBackend) and the choice between them.

- `torch`: the model with BatchNorm folded into its convolutions, channels-last, autocast to the chosen
  precision; any device.
- `openvino`: the same folded model converted once to OpenVINO and cached (openvino.py); CPU
  only, faster than PyTorch there (docs/benchmarks.md).
`auto` picks OpenVINO on the CPU when it is installed, PyTorch otherwise. Both return the same outputs
within the tolerances tested in Testing/engine/backends/test_backends.py. int8 (quantization.py) runs only on OpenVINO.
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from ..errors import InvalidOptionError
from ..network.batchnorm_folding import prepare_for_inference
from .device import autocast
from .protocol import WindowBackend, WindowOutputs
from .quantization import require_int8

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "torch", "openvino")


class TorchBackend:
    """The folded, channels-last model under autocast."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.model = prepare_for_inference(model, device)
        self.device, self.dtype = device, dtype
        self.gate_names = list(self.model.gate_names)

    def __call__(self, windows: torch.Tensor, attention: bool) -> WindowOutputs:
        windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            if not attention:
                return self.model(windows).float(), []
            logits, gates = self.model(windows, return_attention=True)
        return logits.float(), [gates[name].float() for name in self.gate_names]


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """'auto' -> 'openvino' on the CPU when it is installed, else 'torch'; impossible choices are refused."""
    if backend not in BACKEND_CHOICES:
        raise InvalidOptionError(f"backend must be one of {BACKEND_CHOICES}, not {backend!r}")
    if dtype == torch.int8:
        if backend == "torch":
            raise InvalidOptionError("int8 inference runs on the OpenVINO backend; use --backend openvino or auto, "
                                     "or another precision")
        if not openvino_installed():
            raise InvalidOptionError("int8 inference needs the openvino package: pip install openvino nncf")
        require_int8()
        return "openvino"
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_installed() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise InvalidOptionError(f"the OpenVINO backend runs on the CPU; use --device cpu or --backend torch "
                                     f"for {device.type}")
        if not openvino_installed():
            raise InvalidOptionError("the OpenVINO backend needs the openvino package: pip install openvino "
                                     "(or use --backend torch)")
    return backend


def make_backend(model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 backend: str = "auto") -> WindowBackend:
    """The backend named `backend` running `model`; if OpenVINO cannot take the model, PyTorch, with a warning
    (not for int8, which only OpenVINO runs)."""
    chosen = resolve_backend(backend, device, dtype)
    if chosen == "openvino":
        from .openvino import OpenVINOBackend

        try:
            return OpenVINOBackend(model, dtype)
        except Exception as exc:  # a conversion or compile failure must not stop a segmentation
            if backend == "openvino" or dtype == torch.int8:
                raise
            if caused_by_ctrl_c(exc):
                raise KeyboardInterrupt from exc
            log.warning("OpenVINO could not run this model (%s); using PyTorch instead", exc)
    return TorchBackend(model, device, dtype)


def caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` comes from a Ctrl-C: Python bindings report a KeyboardInterrupt raised inside them as an
    ordinary error with the interrupt as its cause or context (pybind11's "initialization failed" ImportError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
