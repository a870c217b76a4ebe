"""The metadata a training run writes into its model files: what the network is (classes, grid, normalisation),
how it was trained (data, label maps, cases, steps, device, time) and, with a validation, its scores."""
from __future__ import annotations

import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Protocol

import torch

from ..datasets.label_maps import LabelMap
from ..inference.normalisation import IntensityNormalisation
from ..models.model_file import ModelMetadata
from ..models.segment_classes import SegmentClass
from ..network.attention_unet import AttentionUNet3D
from .cache import CachedCase, CacheSettings
from .checkpoint import RunState
from .config import TrainConfig
from .distributed import DistributedContext
from .setup import ModelPlan
from .validation import ValidationResult


class TrainingRun(Protocol):
    """What a run's metadata is made of (the trainer's state)."""

    config: TrainConfig
    name: str
    plan: ModelPlan
    label_map: LabelMap
    case_settings: Dict[str, CacheSettings]
    trained_classes: List[SegmentClass]
    train_cases: List[CachedCase]
    val_cases: List[CachedCase]
    splits_path: Path
    intensity: IntensityNormalisation
    ctx: DistributedContext
    device: torch.device
    dtype: torch.dtype
    started: datetime
    model: AttentionUNet3D
    progress: RunState


def run_metadata(run: TrainingRun, validation: Optional[ValidationResult]) -> ModelMetadata:
    """The metadata of `run`'s network as it stands, with `validation`'s scores and the best so far."""
    config, progress = run.config, run.progress
    metrics = {}
    if validation is not None:
        metrics = {"validation": validation.summary(),
                   "best": {"epoch": progress.best_epoch,
                            "mean_dice": progress.best_score if math.isfinite(progress.best_score) else None}}
    base = run.plan.base
    return ModelMetadata(
        name=run.name,
        architecture=run.model.config,
        classes=run.plan.classes,
        spacing_mm=run.plan.spacing_mm,
        patch_size=run.plan.patch_size,
        intensity=run.intensity,
        description=(f"{run.model.config.architecture} trained with attention-unet train on {config.data} "
                     f"({len(run.train_cases)} training cases, fold {config.fold}), {progress.epoch} epochs"),
        trained=True,
        provenance={
            "data": config.data, "label_map": run.label_map.to_dict(),
            "case_label_maps": {name: settings.label_map.to_dict() for name, settings in run.case_settings.items()
                                if settings.label_map != run.label_map},
            "trained_classes": [c.name for c in run.trained_classes],
            "fine_tuned_from": None if base is None else {"file": str(config.init_model),
                                                          "name": base.metadata.name, "sha256": base.sha256},
            "cases": {"train": len(run.train_cases), "validation": len(run.val_cases)},
            "training_voxels": {c.name: sum(int(case.class_voxels[c.value]) for case in run.train_cases)
                                for c in run.trained_classes},  # on the model grid
            "fold": config.fold, "folds": config.folds, "splits": str(run.splits_path),
            "epochs": progress.epoch, "steps": progress.global_step, "seed": config.seed,
            "world_size": run.ctx.world_size, "device": _device_name(run.device),
            "precision": str(run.dtype).replace("torch.", ""), "torch": torch.__version__,
            "started": run.started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training_seconds": round(progress.seconds, 1), "config": config.to_dict(),
        },
        metrics=metrics,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
