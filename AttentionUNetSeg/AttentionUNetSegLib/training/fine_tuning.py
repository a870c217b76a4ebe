"""Fine-tuning a model on a user's own corrected segmentations, and adding the new model to the user's models.

`fine_tune` writes the cases (a CT and its labels on the CT's grid, in the base model's class values, with
IGNORE_LABEL where a segment is not to be learnt from) into a working folder as a dataset `train` reads, each
case with a label map of the classes it labels: a class a case does not label is left out of its loss, and a
class no case labels is left out of softmax and loss, as in the paper's fine-tuning (AFT). `train` then runs from
the base model's weights, spacing, patch size and normalisation, with Adam at a low learning rate, for a number
of steps or a time budget. With a validation case, the base model and the new one are scored on it before and
after (Dice of each class it labels). The new model file stays in the working folder until `register_fine_tuned`
moves it into the user's model folder and registers it: a failed or cancelled run leaves neither.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..datasets.label_maps import IGNORE_LABEL
from ..errors import CancelledError, DatasetError, InvalidOptionError, OutputError
from ..evaluation.metrics import label_metrics
from ..io.atomic import atomic_file
from ..models.model_file import read_metadata, read_model, save_model
from ..models.registry import RegistryEntry, resolve_model_path
from ..models.user_folders import user_models_dir
from ..progress import CancelCheck, EventCallback, FineTuneStage, ProgressEvent, raise_if_cancelled

DEFAULT_STEPS = 100
DEFAULT_LEARNING_RATE = 3e-5
"""A tenth of the paper's training rate: enough to adapt in a hundred steps, little enough not to forget."""


@dataclass(frozen=True)
class FineTuneCase:
    """One training (or validation) case: a CT in HU and its labels (uint8 class values of the base model, and
    IGNORE_LABEL for voxels left out of the loss) on the CT's grid."""

    name: str
    image: sitk.Image
    labels: sitk.Image


@dataclass(frozen=True)
class FineTuneSettings:
    """What to fine-tune and how: the new model's `name`, the `base_model` (registry name or file; None: the
    default), a budget of `steps` optimizer steps and/or `max_seconds` of training, the device, the learning rate
    and the seed. Plain values, so they travel in a job file."""

    name: str
    base_model: Optional[str] = None
    steps: int = DEFAULT_STEPS
    max_seconds: Optional[float] = None
    device: str = "auto"
    learning_rate: float = DEFAULT_LEARNING_RATE
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, not {self.steps}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"the time budget must be > 0 seconds, not {self.max_seconds}")
        if not self.learning_rate > 0:
            problems.append(f"the learning rate must be > 0, not {self.learning_rate}")
        if problems:
            raise InvalidOptionError("; ".join(problems))


@dataclass
class FineTuneResult:
    """A finished fine-tuning: the new model file (in the working folder until registered) and its facts;
    Dice per class on the validation case before and after (None without one)."""

    name: str
    model_file: Path
    base_name: str
    base_sha256: str
    cases: int
    class_voxels: Dict[str, int]
    steps: int
    seconds: float
    device: str
    validation_before: Optional[Dict[str, float]] = None
    validation_after: Optional[Dict[str, float]] = None

    def to_dict(self) -> dict:
        return {**asdict(self), "model_file": str(self.model_file)}

    @classmethod
    def from_dict(cls, values: dict) -> "FineTuneResult":
        return cls(**{**values, "model_file": Path(values["model_file"])})


def new_model_file(name: str) -> Path:
    """Where the fine-tuned model `name` will be kept; raises if the name is invalid or taken, or if the user's
    model folder cannot be written (checked before any training)."""
    from ..models.user_registry import check_new_name

    check_new_name(name)
    folder = user_models_dir()
    target = folder / f"{name}.safetensors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / ".write-test") as probe:
            probe.write_bytes(b"")
        (folder / ".write-test").unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to the user's model folder {folder}: {exc.strerror or exc}; make it "
                          "writable (or set ATTENTION_UNET_SEG_HOME to a folder you can write to)") from exc
    if target.exists():
        raise OutputError(f"{target} exists already (a model file not in the registry); remove it or choose "
                          "another name")
    return target


def fine_tune(cases: Sequence[FineTuneCase], settings: FineTuneSettings, work_dir: Path,
              validation: Optional[FineTuneCase] = None, progress: Optional[EventCallback] = None,
              cancel: Optional[CancelCheck] = None) -> FineTuneResult:
    """Fine-tune `settings.base_model` on `cases` in `work_dir` (an empty folder of the caller's, which removes it);
    see the module docstring. `progress` gets ProgressEvents of FineTuneStage. Raises CancelledError when
    `cancel()` returns True, leaving nothing registered."""
    from . import TrainConfig, train

    report = progress or (lambda event: None)
    if not cases:
        raise DatasetError("no training cases: give at least one CT with its segmentation")
    new_model_file(settings.name)
    base_path = resolve_model_path(settings.base_model)
    base = read_model(base_path)
    class_names = {c.value: c.name for c in base.metadata.classes}
    report(ProgressEvent(FineTuneStage.PREPARING, 0.0))
    dataset, class_voxels = _write_dataset(cases, class_names, Path(work_dir) / "data")
    before = None
    if validation is not None:
        report(ProgressEvent(FineTuneStage.VALIDATING_BEFORE, 0.0))
        before = validation_dice(base, validation, settings.device, cancel)
    raise_if_cancelled(cancel)
    config = TrainConfig(
        data=str(dataset), output=str(Path(work_dir) / "run"), cache_dir=str(Path(work_dir) / "cache"),
        label_map=str(dataset.parent / "run_label_map.json"), init_model=str(base_path), name=settings.name,
        epochs=1, iterations_per_epoch=settings.steps, max_seconds=settings.max_seconds, lr=settings.learning_rate,
        device=settings.device, seed=settings.seed, fold="all", flips=False, snapshots=False, tensorboard=False)
    report(ProgressEvent(FineTuneStage.TRAINING, 0.0, 0, settings.steps))

    def on_step(step) -> None:
        report(ProgressEvent(FineTuneStage.TRAINING, step.step / max(step.total_steps, 1), step.step,
                             step.total_steps, step.loss, step.seconds_left))

    trained = train(config, should_stop=cancel or (lambda: False), on_step=on_step)
    if trained.stopped:
        raise CancelledError("Fine-tuning cancelled; no model was added.")
    model = trained.model.eval()
    model.metadata = metadata = read_metadata(trained.files["final"])
    after = None
    if validation is not None:
        report(ProgressEvent(FineTuneStage.VALIDATING_AFTER, 0.0))
        after = validation_dice(model, validation, settings.device, cancel)
    report(ProgressEvent(FineTuneStage.SAVING, 0.0))
    provenance = metadata.provenance
    result = FineTuneResult(settings.name, Path(work_dir) / f"{settings.name}.safetensors", base.metadata.name,
                            base.sha256, len(cases), class_voxels, trained.progress.global_step,
                            round(trained.progress.seconds, 1), provenance["device"], before, after)
    provenance["fine_tuning"] = {"cases": result.cases, "class_voxels": class_voxels,
                                 "validation_case": None if validation is None else validation.name}
    metrics = {} if validation is None else {"validation_dice_before": before, "validation_dice_after": after}
    metadata = replace(metadata, license=base.metadata.license, metrics=metrics, description=(
        f"{base.metadata.name} fine-tuned on {len(cases)} user case(s) for {result.steps} steps "
        f"({', '.join(f'{n}: {v} voxels' for n, v in class_voxels.items())})"))
    save_model(model.cpu(), metadata, result.model_file)
    report(ProgressEvent(FineTuneStage.SAVING, 1.0))
    return result


def register_fine_tuned(result: FineTuneResult) -> RegistryEntry:
    """Move the fine-tuned model file into the user's model folder and add it to the user's registry under its
    name; on failure neither the file nor the entry is left."""
    from ..models.user_registry import add_file

    target = new_model_file(result.name)
    with atomic_file(target) as tmp:
        shutil.copyfile(result.model_file, tmp)
    try:
        return add_file(result.name, target, read_metadata(target).description)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def validation_dice(model, case: FineTuneCase, device: str = "auto",
                    cancel: Optional[CancelCheck] = None) -> Dict[str, float]:
    """Dice of `model`'s segmentation of `case` for each class the case labels (voxels it ignores left out), with
    the PyTorch backend (a model being fine-tuned is not converted for OpenVINO)."""
    from ..inference.segmenter import segment

    result = segment(case.image, model, device=device, backend="torch", attention=False, cancel=cancel)
    prediction = sitk.GetArrayFromImage(result.labels)
    reference = sitk.GetArrayFromImage(case.labels)
    ignored = reference == IGNORE_LABEL
    prediction[ignored] = 0
    reference[ignored] = 0
    names = {c.value: c.name for c in result.classes if c.value}
    labelled = [int(v) for v in np.unique(reference) if int(v) in names]
    metrics = label_metrics(prediction, reference, case.image.GetSpacing()[::-1], labelled)
    return {names[v]: round(metrics[v].dice, 4) for v in labelled}


def _write_dataset(cases: Sequence[FineTuneCase], class_names: Dict[int, str], folder: Path):
    """Write the cases and their label maps as a CSV dataset; returns its path and the voxels of each class."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, totals = [], {name: 0 for value, name in class_names.items() if value}
    for index, case in enumerate(cases, start=1):
        counts = np.bincount(sitk.GetArrayViewFromImage(case.labels).ravel(), minlength=IGNORE_LABEL + 1)
        unknown = [v for v in np.flatnonzero(counts) if v and v != IGNORE_LABEL and v not in class_names]
        if unknown:
            raise DatasetError(f"case '{case.name}': label value(s) {unknown} are not classes of the base model "
                               f"({class_names})")
        labelled = {class_names[v]: [int(v)] for v in np.flatnonzero(counts[:IGNORE_LABEL]) if v}
        if not labelled:
            raise DatasetError(f"case '{case.name}' labels none of the base model's classes "
                               f"({', '.join(totals)}): nothing to learn from it")
        for name, (value,) in labelled.items():
            totals[name] += int(counts[value])
        stem = f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', case.name)}"
        paths = {"image": folder / f"{stem}_ct.nrrd", "label": folder / f"{stem}_labels.nrrd",
                 "label_map": folder / f"{stem}_label_map.json"}
        sitk.WriteImage(case.image, str(paths["image"]), False)
        sitk.WriteImage(case.labels, str(paths["label"]), False)
        ignore = [IGNORE_LABEL] if counts[IGNORE_LABEL] else []
        paths["label_map"].write_text(json.dumps({"name": f"{case.name} segments", "classes": labelled,
                                                  "ignore": ignore}), encoding="utf-8")
        rows.append({"case": stem, **{key: str(path) for key, path in paths.items()}})
    used = {name: [value] for value, name in class_names.items() if value and totals.get(name)}
    (folder / "run_label_map.json").write_text(json.dumps({"name": "user segments", "classes": used}),
                                               encoding="utf-8")
    dataset = folder / "dataset.csv"
    with open(dataset, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "image", "label", "label_map"])
        writer.writeheader()
        writer.writerows(rows)
    return dataset, {name: count for name, count in totals.items() if count}
