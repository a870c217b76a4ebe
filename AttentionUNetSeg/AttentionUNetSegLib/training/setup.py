"""What a run settles before its first step: the output folder, the network and its classes, the cached data."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..model_file import load_model
from ..preprocessing import IntensityNormalisation
from ..classes import SegmentClass, make_classes
from ..datasets.cases import Case
from ..datasets.label_maps import LabelMap
from ..errors import InvalidOptionError, OutputError
from ..model import AttentionUNet3D, ModelConfig
from .cache import CachedCase, CacheSettings, cached_case
from .checkpoint import CHECKPOINT_FILE
from .config import MODEL_DEFAULTS, TrainConfig
from .distributed import DistributedContext
from ..errors import TrainingError

log = logging.getLogger(__name__)

ARCHITECTURE_OPTIONS = ("architecture", "feature_scale", "deep_supervision", "passthrough_gate_init")


@dataclass
class ModelPlan:
    """The network to train: its configuration, classes, grid and (if fixed already) intensity normalisation."""

    config: ModelConfig
    classes: List[SegmentClass]
    spacing_mm: Tuple[float, float, float]
    patch_size: Tuple[int, int, int]
    intensity: Optional[IntensityNormalisation]
    base: Optional[AttentionUNet3D]

    def trained_classes(self, label_map: LabelMap) -> List[SegmentClass]:
        """Background and the classes the label map produces, in model order: the ones softmax and loss see."""
        names = {c.name for c in self.classes}
        unknown = [n for n in label_map.class_names if n not in names]
        if unknown:
            raise InvalidOptionError(f"label map {label_map.name!r} produces {unknown}, which are not outputs of the "
                                     f"model ({[c.name for c in self.classes]}); rename them in the label map or "
                                     "list them in --classes")
        return [c for c in self.classes if c.value == 0 or c.name in label_map.classes]

    def build(self) -> AttentionUNet3D:
        """A fresh network, or a copy of the fine-tuned model's weights, in training mode."""
        model = AttentionUNet3D(self.config)
        if self.base is not None:
            model.load_state_dict(self.base.state_dict())
        return model.train()


def plan_model(config: TrainConfig, label_map: LabelMap) -> ModelPlan:
    """The model from the options, or from the model file being fine-tuned (options may not contradict it)."""
    if config.init_model is None:
        values = {k: getattr(config, k) if getattr(config, k) is not None else MODEL_DEFAULTS[k]
                  for k in ARCHITECTURE_OPTIONS}
        names = config.classes or ["background"] + label_map.class_names
        try:
            classes = make_classes(names)
            model_config = ModelConfig(num_classes=len(classes), **values)
        except ValueError as exc:
            raise InvalidOptionError(str(exc)) from exc
        intensity = IntensityNormalisation(**config.intensity) if config.intensity else None
        return ModelPlan(model_config, classes, config.spacing_mm or MODEL_DEFAULTS["spacing_mm"],
                         config.patch_size or MODEL_DEFAULTS["patch_size"], intensity, None)
    base = load_model(Path(config.init_model))
    metadata = base.metadata
    inherited = {**{k: getattr(metadata.architecture, k) for k in ARCHITECTURE_OPTIONS},
                 "classes": metadata.class_names, "spacing_mm": metadata.spacing_mm,
                 "intensity": asdict(metadata.intensity)}
    conflicts = [f"{k} {getattr(config, k)!r} (the model has {v!r})" for k, v in inherited.items()
                 if getattr(config, k) is not None and getattr(config, k) != v]
    if conflicts:
        raise InvalidOptionError(f"options conflict with the model being fine-tuned, {config.init_model}: "
                                 f"{'; '.join(conflicts)}; leave them out to keep the model's")
    return ModelPlan(metadata.architecture, list(metadata.classes), metadata.spacing_mm,
                     config.patch_size or metadata.patch_size, metadata.intensity, base)


def prepare_output(output: Path, resume: bool) -> None:
    """Make sure `output` is a writable folder, and that a new run does not overwrite an earlier one."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {output}: {exc.strerror or exc}; "
                          "choose a folder you can write to with -o") from exc
    if not resume and (output / CHECKPOINT_FILE).exists():
        raise TrainingError(f"{output} already holds a training run ({CHECKPOINT_FILE}); continue it with --resume "
                            "or choose a new output folder")


def prepare_cases(cases: Sequence[Case], settings: CacheSettings, cache_dir: Path,
                  ctx: DistributedContext) -> Dict[str, CachedCase]:
    """Preprocess what is not cached yet (cases shared out over the ranks), then open every case."""
    for case in cases[ctx.rank::ctx.world_size]:
        cached_case(case, settings, cache_dir)
    ctx.barrier()
    return {case.name: cached_case(case, settings, cache_dir, create=False) for case in cases}
