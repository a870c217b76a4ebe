"""`WindowBackend`: what every inference backend offers, so that the sliding windows need not know which runs."""
from __future__ import annotations

from typing import List, Protocol, Tuple

import torch

WindowOutputs = Tuple[torch.Tensor, List[torch.Tensor]]
"""Float32 logits (N, classes, z, y, x) and every gate's map (gate_names order; empty unless asked for)."""


class WindowBackend(Protocol):
    """Runs the model on batches of windows (N, C, z, y, x) on `device` at precision `dtype`."""

    name: str
    device: torch.device
    dtype: torch.dtype
    gate_names: List[str]

    def __call__(self, windows: torch.Tensor, attention: bool) -> WindowOutputs: ...
