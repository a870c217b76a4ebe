"""Training options: `TrainConfig`, built from flags and/or a YAML/JSON file and saved beside the outputs.

Precedence, lowest first: the defaults below, the run's saved `train_config.yaml` (with --resume),
`--config FILE`, then flags given on the command line. Options left at None take their value from the
model being fine-tuned (`init_model`) or, without one, the paper's setting noted in their help.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from ..backends.choices import DEVICE_CHOICES, PRECISION_CHOICES
from ..errors import InvalidOptionError
from ..io.atomic import atomic_file
from ..models.intensity import IntensityNormalisation
from ..network.config import ARCHITECTURES, DEEP_SUPERVISION_MODES

CONFIG_FILE = "train_config.yaml"
LOSSES = ("dice", "dice_ce")
PARTIAL_LABELS = ("exclude", "marginal")
LR_SCHEDULES = ("constant", "poly")
INTENSITY_KEYS = ("clip_min", "clip_max", "mean", "std")
PATH_FIELDS = ("data", "output", "label_map", "cache_dir", "init_model", "splits")
WRITTEN_PATHS = ("output", "cache_dir", "splits")
MODEL_DEFAULTS: Dict[str, Any] = {
    "architecture": "attention_unet_3d", "feature_scale": 4, "deep_supervision": "final",
    "passthrough_gate_init": True, "spacing_mm": (2.0, 2.0, 2.0), "patch_size": (160, 160, 96),
}
"""What the options that default to None mean when no model is fine-tuned."""


def _fold(text: str) -> Union[int, str]:
    return text if text == "all" else int(text)


def _intensity(text: str) -> Dict[str, float]:
    usage = f"give {','.join(INTENSITY_KEYS).upper()} (four numbers, clip_min < clip_max, std > 0), e.g. -1000,1000,0,1000"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not four numbers; {usage}") from None
    if len(values) != len(INTENSITY_KEYS):
        raise argparse.ArgumentTypeError(f"{text!r} has {len(values)} value(s); {usage}")
    return dict(zip(INTENSITY_KEYS, values))


def _names(text: str) -> List[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A config field with its command-line help and argparse settings."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass
class TrainConfig:
    """Every option of a training run; field names are the config-file keys, flags are --field-name."""

    data: Optional[str] = option(None, "dataset: a Medical Segmentation Decathlon folder (dataset.json, "
                                 "imagesTr/, labelsTr/), a folder with images/ and labels/ (or imagesTr/ and "
                                 "labelsTr/), or a CSV file with image,label columns; images may be DICOM folders",
                                 positional=True)
    output: Optional[str] = option(None, "output folder for models, logs and checkpoints", flags=("-o",))
    label_map: Optional[str] = option(None, "source label values -> model classes: a bundled map (totalsegmentator, "
                                      "amos, btcv, nih-pancreas, msd-pancreas), a JSON/YAML file, or VALUE=NAME "
                                      "pairs; default: the labels of the dataset's dataset.json")
    classes: Optional[List[str]] = option(None, "model output classes, background first, comma-separated "
                                          "(default: background + the label map's classes)", type=_names,
                                          metavar="NAMES")
    max_classes: int = option(16, "the most classes (besides background) a new model may have; a run with more is "
                              "refused, since each class slows training and needs labelled data (e.g. a dataset.json "
                              "naming every structure): give --label-map to choose or join them, or raise this",
                              type=int)
    segment_names: Optional[str] = option(None, "name the label values as segments and match them to the classes of "
                                          "--init-model by terminology or name, as the Slicer module does: "
                                          "VALUE=NAME pairs (or a value->name JSON file) for every case, or without "
                                          "a value each label file's own segments (Slicer .seg.nrrd); unmatched "
                                          "segments are background", nargs="?", const="from-label-files",
                                          metavar="VALUE=NAME,...")
    ignore_segments: Optional[List[str]] = option(None, "with --segment-names: segment names to leave out of the "
                                                  "loss (comma-separated), e.g. a tumour inside an organ",
                                                  type=_names, metavar="NAMES")
    cache_dir: Optional[str] = option(None, "folder for the preprocessed cache (default: OUTPUT/cache)")
    name: Optional[str] = option(None, "model name written into the model files (default: the output folder's name)")
    init_model: Optional[str] = option(None, "fine-tune this model (a model file or registry name); its classes that the label map does not "
                                       "produce are left out of softmax and loss (the paper's AFT)")
    architecture: Optional[str] = option(None, "network (default: attention_unet_3d)", choices=ARCHITECTURES)
    feature_scale: Optional[int] = option(None, "channel divisor: 64*(1,2,4,8,16)/feature_scale (default: 4)",
                                          type=int)
    deep_supervision: Optional[str] = option(None, "loss on the final output only (authors' code) or also on "
                                             "each scale (default: final)", choices=DEEP_SUPERVISION_MODES)
    passthrough_gate_init: Optional[bool] = option(None, "start attention gates at alpha ~ 1 (paper; default: on)",
                                                   action=argparse.BooleanOptionalAction)
    spacing_mm: Optional[Tuple[float, float, float]] = option(None, "voxel spacing x y z in mm the network works "
                                                              "at (default: 2 2 2)", type=float, nargs=3,
                                                              metavar=("X", "Y", "Z"))
    patch_size: Optional[Tuple[int, int, int]] = option(None, "training patch x y z in voxels, multiples of 16 "
                                                        "(default: 160 160 96)", type=int, nargs=3,
                                                        metavar=("X", "Y", "Z"))
    intensity: Optional[Dict[str, float]] = option(None, "CLIP_MIN,CLIP_MAX,MEAN,STD in HU (default: from the "
                                                   "training foreground: 0.5-99.5 percentile clip, then N(0,1))",
                                                   type=_intensity, metavar="CLIP_MIN,CLIP_MAX,MEAN,STD")
    rotation_deg: float = option(15.0, "random in-plane rotation range +-degrees", type=float)
    scale_range: Tuple[float, float] = option((0.7, 1.3), "random scaling range", type=float, nargs=2,
                                               metavar=("LOW", "HIGH"))
    shift: float = option(0.1, "random shift as a fraction of the patch size", type=float)
    flips: bool = option(True, "random left-right and anterior-posterior flips", action=argparse.BooleanOptionalAction)
    intensity_shift_hu: float = option(0.0, "random intensity offset of up to +-HU per patch, before the window "
                                       "clip: robustness to contrast phase and scanner (not in the paper)",
                                       type=float)
    intensity_scale: float = option(0.0, "random contrast scaling of HU around water by up to +-this fraction "
                                    "per patch (not in the paper)", type=float)
    contrast_phase_probability: float = option(0.0, "share of patches whose organs and bright vessels get the "
                                               "intensities of a random contrast phase (non-contrast, arterial, "
                                               "portal-venous), organ by organ (not in the paper)", type=float)
    slab_probability: float = option(0.0, "share of patches cut to a thin slab (40-120 mm, half of them with 5 mm "
                                     "slices) with air around it, as thick-slice scans are (not in the paper)",
                                     type=float)
    foreground_probability: float = option(0.5, "share of patches centred on an organ voxel (organs equally "
                                           "often, so small organs are seen)", type=float)
    epochs: int = option(200, "epochs to train", type=int)
    max_seconds: Optional[float] = option(None, "time budget: end the run after the step that uses up this many "
                                          "seconds of training, as if its epochs were done (validation, final "
                                          "model); default: no limit", type=float, metavar="SECONDS")
    iterations_per_epoch: Optional[int] = option(None, "optimizer steps per epoch (default: one patch per "
                                                 "training case)", type=int)
    batch_size: int = option(2, "patches per forward pass and process", type=int)
    accumulate: int = option(1, "forward passes per optimizer step (gradient accumulation)", type=int)
    lr: float = option(1e-4, "Adam learning rate", type=float)
    weight_decay: float = option(1e-6, "Adam weight decay", type=float)
    lr_schedule: str = option("constant", "learning rate over the run: constant (paper) or poly (lr x (1 - "
                              "step/steps)^0.9, nnU-Net's)", choices=LR_SCHEDULES)
    loss: str = option("dice", "Sørensen-Dice over all classes (paper) or Dice + cross-entropy", choices=LOSSES)
    partial_labels: str = option("exclude", "a class a case does not label: left out of that case's softmax "
                                 "(exclude), or its probability merged into background (marginal: the marginal "
                                 "loss of Shi et al. 2021, since background there may be that organ)",
                                 choices=PARTIAL_LABELS)
    precision: str = option("auto", "auto = bf16 (fp16 without bf16 support) on CUDA, fp32 elsewhere",
                            choices=PRECISION_CHOICES)
    device: str = option("auto", "compute device (torchrun: each process uses its LOCAL_RANK GPU)",
                         choices=DEVICE_CHOICES)
    channels_last: bool = option(True, "channels-last memory format (faster with cuDNN and with oneDNN on the "
                                       "CPU: 1.4x for a CPU training step)", action=argparse.BooleanOptionalAction)
    workers: Optional[int] = option(None, "data loading processes per training process (default: up to 8 on "
                                    "CUDA, 0 elsewhere)", type=int)
    sync_batchnorm: bool = option(True, "synchronise BatchNorm across GPUs under torchrun (CUDA only)",
                                  action=argparse.BooleanOptionalAction)
    seed: int = option(0, "random seed (data order, augmentation, initial weights, splits)", type=int)
    deterministic: bool = option(False, "use only deterministic GPU kernels (slower)",
                                 action=argparse.BooleanOptionalAction)
    folds: int = option(5, "k of k-fold cross-validation (1: the one train/val split of a --splits file)", type=int)
    fold: Union[int, str] = option(0, "fold to train, 0..folds-1, or 'all' for every case without validation",
                                   type=_fold)
    splits: Optional[str] = option(None, "splits file to reuse or write (nnU-Net splits_final.json format; "
                                   "default: OUTPUT/splits.json)")
    validate_every: int = option(5, "validate every N epochs (and after the last)", type=int)
    checkpoint_every: int = option(1, "write the checkpoint every N epochs (and after the last)", type=int)
    snapshots: bool = option(True, "attention-map PNG of the first validation case at every validation",
                             action=argparse.BooleanOptionalAction)
    overlap: float = option(0.25, "sliding-window overlap for validation", type=float)
    tensorboard: bool = option(True, "write TensorBoard logs (needs the tensorboard package)",
                               action=argparse.BooleanOptionalAction)

    def __post_init__(self) -> None:
        for name in ("spacing_mm", "patch_size", "scale_range"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))
        if self.intensity is not None:
            missing = set(INTENSITY_KEYS) - set(self.intensity)
            if missing or set(self.intensity) - set(INTENSITY_KEYS):
                raise InvalidOptionError(f"intensity must have exactly the keys {INTENSITY_KEYS}, "
                                         f"not {sorted(self.intensity)}")
        for name in ("classes", "ignore_segments"):
            if getattr(self, name) is not None:
                setattr(self, name, list(getattr(self, name)))
        self._check()

    def _check(self) -> None:
        problems = []
        if self.data is None:
            problems.append("no dataset: give DATA or set data: in the config file")
        if self.output is None:
            problems.append("no output folder: give -o OUTPUT or set output: in the config file")
        positive = ("epochs", "batch_size", "accumulate", "validate_every", "checkpoint_every", "feature_scale",
                    "iterations_per_epoch", "max_classes")
        problems += [f"{n} must be >= 1, not {getattr(self, n)}" for n in positive
                     if getattr(self, n) is not None and getattr(self, n) < 1]
        patch = self.patch_size
        if patch is not None and (len(patch) != 3 or any(p < 16 or p % 16 for p in patch)):
            problems.append(f"patch_size must be three multiples of 16, not {self.patch_size}")
        if self.spacing_mm is not None and (len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0):
            problems.append(f"spacing_mm must be three positive numbers, not {self.spacing_mm}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            problems.append("lr must be > 0 and weight_decay >= 0")
        if self.segment_names is not None and self.init_model is None:
            problems.append("--segment-names matches segments to the classes of the model being fine-tuned: give "
                            "--init-model")
        if self.segment_names is not None and self.label_map is not None:
            problems.append("give --segment-names or --label-map, not both")
        if self.ignore_segments and self.segment_names is None:
            problems.append("--ignore-segments needs --segment-names")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds must be > 0, not {self.max_seconds}")
        if not 0 < self.foreground_probability <= 1:
            problems.append(f"foreground_probability must be in (0, 1], not {self.foreground_probability}")
        if self.intensity_shift_hu < 0 or not 0 <= self.intensity_scale < 1:
            problems.append("intensity_shift_hu must be >= 0 and intensity_scale in [0, 1)")
        for name in ("contrast_phase_probability", "slab_probability"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if not 0 <= self.overlap < 1 or not 0 <= self.shift < 0.5 or not 0 <= self.rotation_deg <= 180:
            problems.append("overlap must be in [0, 1), shift in [0, 0.5) and rotation_deg in [0, 180]")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            problems.append(f"scale_range must be two numbers 0 < low <= high, not {self.scale_range}")
        if self.folds < 2 and self.fold != "all" and not (self.folds == 1 and self.splits):
            problems.append(f"folds must be >= 2 for cross-validation, or 1 with a --splits file giving one "
                            f"train/val split (or use fold: all), not {self.folds}")
        if self.fold != "all" and not (isinstance(self.fold, int) and 0 <= self.fold < self.folds):
            problems.append(f"fold must be 0..{self.folds - 1} or 'all', not {self.fold!r}")
        if self.intensity is not None:
            try:
                IntensityNormalisation(**self.intensity)
            except InvalidOptionError as exc:
                problems.append(f"intensity (CLIP_MIN,CLIP_MAX,MEAN,STD): {exc}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"workers must be >= 0, not {self.workers}")
        choices = {"loss": LOSSES, "partial_labels": PARTIAL_LABELS, "lr_schedule": LR_SCHEDULES,
                   "precision": PRECISION_CHOICES, "device": DEVICE_CHOICES,
                   "architecture": ARCHITECTURES, "deep_supervision": DEEP_SUPERVISION_MODES}
        problems += [f"{n} must be one of {c}, not {getattr(self, n)!r}" for n, c in choices.items()
                     if getattr(self, n) is not None and getattr(self, n) not in c]
        if problems:
            raise InvalidOptionError("invalid training options: " + "; ".join(problems))

    def to_dict(self) -> Dict[str, Any]:
        """Plain values (lists, not tuples) as written to the config file."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "the options") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidOptionError(f"{source}: unknown option(s) {unknown}; known options: {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidOptionError(f"{source}: {exc}") from exc

    def with_absolute_paths(self) -> "TrainConfig":
        """A copy whose paths are absolute, so the saved options work from any folder (paths to read only if
        they exist: a label map may be a bundled name or VALUE=NAME pairs)."""
        values = {name: str(Path(getattr(self, name)).resolve()) for name in PATH_FIELDS
                  if getattr(self, name) is not None
                  and (name in WRITTEN_PATHS or Path(getattr(self, name)).exists())}
        return replace(self, **values)

    def save(self, path: Path) -> Path:
        """Write as YAML, atomically."""
        values = self.to_dict()
        with atomic_file(path) as tmp:
            tmp.write_text("# attention-unet train configuration (`--config` this file to repeat the run)\n"
                           + yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path


def read_config_file(path: Path) -> Dict[str, Any]:
    """Options from a YAML or JSON file (a mapping of option names to values)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise InvalidOptionError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise InvalidOptionError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise InvalidOptionError(f"config file {path} must hold a mapping of option names to values")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; a flag not given leaves no attribute, so it does not override files."""
    for item in fields(TrainConfig):
        settings = dict(item.metadata)
        flags = tuple(settings.pop("flags", ()))
        positional = settings.pop("positional", False)
        default = "" if item.default is None else f" (default: {_shown(item.default)})"
        settings["help"] = settings["help"].replace("%", "%%") + (default if "default:" not in settings["help"] else "")
        if positional:
            parser.add_argument(item.name, nargs="?", default=argparse.SUPPRESS, **settings)
        else:
            parser.add_argument(*flags, f"--{item.name.replace('_', '-')}", dest=item.name,
                                default=argparse.SUPPRESS, **settings)


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def explicit_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The TrainConfig fields given as flags."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}


def config_from_sources(flags: Dict[str, Any], config_file: Optional[Path] = None,
                        resume: bool = False) -> TrainConfig:
    """Merge defaults < the run's saved config (resume) < config file < flags."""
    from_file = read_config_file(config_file) if config_file else {}
    values: Dict[str, Any] = {}
    if resume:
        output = flags.get("output", from_file.get("output"))
        if output is None:
            raise InvalidOptionError("--resume needs the run's output folder: give -o OUTPUT")
        saved = Path(output) / CONFIG_FILE
        if not saved.is_file():
            raise InvalidOptionError(f"cannot resume: {saved} does not exist; is {output} the output folder of a "
                                     "training run? Start without --resume to begin a new one")
        values.update(read_config_file(saved))
    values.update(from_file)
    values.update(flags)
    return TrainConfig.from_dict(values, str(config_file) if config_file else "the options")
