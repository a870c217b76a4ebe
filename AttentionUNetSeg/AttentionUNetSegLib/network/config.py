"""`ModelConfig`: the network's hyperparameters as a model file stores them. Plain values (no PyTorch), so that a
model file's metadata is read without loading the network (models/header.py, the Slicer panel)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional

ARCHITECTURES = ("attention_unet_3d", "unet_3d")
DEEP_SUPERVISION_MODES = ("final", "per_scale")
BASE_CHANNELS = (64, 128, 256, 512, 1024)


@dataclass
class ModelConfig:
    """Hyperparameters of the network; stored verbatim in every model file."""

    architecture: str = "attention_unet_3d"
    in_channels: int = 1
    num_classes: int = 4
    feature_scale: int = 4
    channels: Optional[List[int]] = None
    gates_per_level: int = 2
    gate_sub_sample: List[int] = field(default_factory=lambda: [2, 2, 2])
    deep_supervision: str = "final"
    passthrough_gate_init: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {self.architecture!r}")
        if self.deep_supervision not in DEEP_SUPERVISION_MODES:
            raise ValueError(f"deep_supervision must be one of {DEEP_SUPERVISION_MODES}, not {self.deep_supervision!r}")
        if self.channels is None:
            self.channels = [c // self.feature_scale for c in BASE_CHANNELS]
        self.channels = [int(c) for c in self.channels]
        self.gate_sub_sample = [int(s) for s in self.gate_sub_sample]
        if len(self.channels) != 5 or min(self.channels) < 1:
            raise ValueError(f"channels must be five positive numbers, one per level, not {self.channels}")
        if self.in_channels < 1 or self.num_classes < 2 or self.gates_per_level < 1:
            raise ValueError("in_channels >= 1, num_classes >= 2 and gates_per_level >= 1 are required")
        if len(self.gate_sub_sample) != 3 or min(self.gate_sub_sample) < 1:
            raise ValueError(f"gate_sub_sample must be three positive factors, not {self.gate_sub_sample}")

    @property
    def has_attention(self) -> bool:
        return self.architecture == "attention_unet_3d"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model hyperparameters {sorted(unknown)}")
        return cls(**values)
