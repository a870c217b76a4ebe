"""What a run settles before its first step: the output folder, the network and its classes, the cached data."""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from monai.utils import set_determinism

from ..datasets.cases import Case
from ..datasets.label_maps import LabelMap, bundled_label_maps, load_label_map
from ..errors import DatasetError, InvalidOptionError, OutputError, TrainingError
from ..inference.device import resolve_precision
from ..inference.normalisation import IntensityNormalisation
from ..models.registry import load_model
from ..models.segment_classes import SegmentClass, make_classes
from ..network.attention_unet import AttentionUNet3D, ModelConfig
from .cache import CachedCase, CacheSettings, cached_case
from .checkpoint import CHECKPOINT_FILE
from .config import MODEL_DEFAULTS, TrainConfig
from .distributed import DistributedContext

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


def plan_model(config: TrainConfig, label_map: Optional[LabelMap]) -> ModelPlan:
    """The model from the options (its classes from `label_map` unless --classes names them), or from the model
    file being fine-tuned (options may not contradict it; `label_map` is not needed)."""
    if config.init_model is None:
        values = {k: getattr(config, k) if getattr(config, k) is not None else MODEL_DEFAULTS[k]
                  for k in ARCHITECTURE_OPTIONS}
        names = config.classes or ["background"] + label_map.class_names
        _check_class_count(names[1:], config, label_map)
        try:
            classes = make_classes(names)
            model_config = ModelConfig(num_classes=len(classes), **values)
        except ValueError as exc:
            raise InvalidOptionError(str(exc)) from exc
        intensity = IntensityNormalisation(**config.intensity) if config.intensity else None
        return ModelPlan(model_config, classes, config.spacing_mm or MODEL_DEFAULTS["spacing_mm"],
                         config.patch_size or MODEL_DEFAULTS["patch_size"], intensity, None)
    base = load_model(config.init_model)
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


def _check_class_count(names: Sequence[str], config: TrainConfig, label_map: Optional[LabelMap]) -> None:
    """Say which classes a new model will have, and refuse more than --max-classes of them."""
    source = "--classes" if config.classes else f"label map {label_map.name!r}"
    if len(names) > config.max_classes:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        hint = ("" if config.label_map or config.classes else
                "; without --label-map every label the dataset.json names is a class")
        raise InvalidOptionError(
            f"the new model would have {len(names)} classes besides background ({shown}; from {source}), more than "
            f"--max-classes {config.max_classes}{hint}: give a --label-map that keeps or joins the structures to "
            f"learn (e.g. a bundled one: {', '.join(bundled_label_maps())}), or --max-classes {len(names)} to train "
            "them all")
    log.info("the new model's classes: background, %s (from %s)", ", ".join(names), source)


def training_dtype(precision: str, device: torch.device, patch_size_xyz: Sequence[int], levels: int) -> torch.dtype:
    """The autocast dtype of a run; "auto" is fp32 off the GPU, since the CPU's bf16 kernels are not
    bit-reproducible and exact resume needs that. bf16 on the CPU is refused where it is known to be wrong."""
    dtype = resolve_precision("fp32" if precision == "auto" and device.type != "cuda" else precision, device)
    if device.type == "cpu" and dtype == torch.bfloat16:
        refuse_broken_cpu_bfloat16(patch_size_xyz, levels)
    return dtype


def refuse_broken_cpu_bfloat16(patch_size_xyz: Sequence[int], levels: int) -> None:
    """Refuse bf16 training on the CPU where one of the `levels` encoder levels has feature maps exactly 2
    voxels deep: PyTorch's CPU bf16 weight gradient of a 3x3x3 convolution is wrong there (see
    docs/training.md). The depth of level l is the patch depth halved (rounded down) l times."""
    depth = patch_size_xyz[2]
    for level in range(levels):
        if depth == 2:
            raise InvalidOptionError(
                f"bf16 training on the CPU with a patch depth of {patch_size_xyz[2]} gives feature maps 2 voxels deep "
                f"at level {level}, where PyTorch's CPU bf16 convolution gradients are wrong; choose a patch depth "
                "that avoids it (e.g. 48 or 96) or --precision fp32")
        depth //= 2


def seed_run(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch (MONAI's `set_determinism`); with `deterministic`, deterministic
    algorithms where PyTorch has them (warning, not failing, where it has none); otherwise cuDNN autotuning."""
    set_determinism(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


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


def case_settings(cases: Sequence[Case], run_map: LabelMap, trained: Sequence[SegmentClass], num_classes: int,
                  spacing_mm: Tuple[float, float, float],
                  case_maps: Optional[Mapping[str, LabelMap]] = None) -> Dict[str, CacheSettings]:
    """Each case's cache settings: its label map (from `case_maps`, its own spec, or the run's), mapping onto the
    trained classes it produces."""
    values = {c.name: c.value for c in trained[1:]}
    maps: Dict[str, LabelMap] = {}
    settings = {}
    for case in cases:
        given = (case_maps or {}).get(case.name)
        if given is None and case.label_map and case.label_map not in maps:
            maps[case.label_map] = load_label_map(case.label_map)
        label_map = given or (maps[case.label_map] if case.label_map else run_map)
        unknown = [n for n in label_map.class_names if n not in values]
        if unknown:
            raise DatasetError(f"case {case.name}: its label map {label_map.name!r} produces {unknown}, which are not "
                               f"among the trained classes {list(values)}; rename them in that label map or give "
                               "the run a label map that produces them")
        settings[case.name] = CacheSettings(label_map, {n: values[n] for n in label_map.class_names}, num_classes,
                                            spacing_mm)
    return settings


def prepare_cases(cases: Sequence[Case], settings: Mapping[str, CacheSettings], cache_dir: Path,
                  ctx: DistributedContext) -> Dict[str, CachedCase]:
    """Preprocess what is not cached yet (cases shared out over the ranks), then open every case."""
    for case in cases[ctx.rank::ctx.world_size]:
        cached_case(case, settings[case.name], cache_dir)
    ctx.barrier()
    return {case.name: cached_case(case, settings[case.name], cache_dir, create=False) for case in cases}
