"""Headless training of the (Attention) U-Net: `train(TrainConfig(...))`, or `attention-unet train` on a terminal.

Modules, one job each: config (options), cache (preprocessing on disk), augment, data (batches and their
order), losses, distributed (torchrun/DDP), checkpoint, validation, snapshots, logs, time_left (the estimate),
provenance (the model files' metadata), setup (what is settled before the first step), epoch (the optimizer
steps of one epoch), trainer (the run: epochs, validations, checkpoints, model files).
Cases, label maps and splits come from `..datasets`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainConfig", "TrainResult", "train"]

if TYPE_CHECKING:
    from .config import TrainConfig
    from .trainer import TrainResult, train


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("train", "TrainResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
