"""`train`: one training run from a TrainConfig, in a single process or as one rank under torchrun.

The paper's recipe: Adam, Sørensen-Dice loss over all classes, batch plus gradient accumulation, patches
with affine and flip augmentation; channels-last, and mixed precision on CUDA. Validation runs on whole
volumes every `validate_every` epochs and after the last, each case logged as it starts, and the time
left counts the validations to come at their measured pace; the best one is kept as best.safetensors,
the last as final.safetensors, both with full metadata. A time budget (`max_seconds`) ends the run early
after a step, as if its epochs were done. Checkpoints are written atomically and a run
resumes exactly; a non-finite loss stops the run and leaves the last checkpoint as it was.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..datasets.cases import Case, dataset_json, discover_cases
from ..datasets.label_maps import LabelMap, load_label_map
from ..datasets.segment_names import segment_label_maps
from ..datasets.splits import fold_cases
from ..errors import TrainingError
from ..inference.settings import InferenceSettings
from ..models.intensity import IntensityNormalisation
from ..models.model_file import ModelMetadata, save_model
from ..network.attention_unet import AttentionUNet3D
from .augment import training_transform
from .cache import auto_intensity
from .checkpoint import CHECKPOINT_FILE, RunState, check_identity, load_checkpoint, restore, save_checkpoint
from .config import CONFIG_FILE, TrainConfig
from .data import EpochSampler, PatchDataset, default_workers, make_loader, steps_per_epoch
from .distributed import DistributedContext, init_distributed
from .epoch import OUT_OF_TIME, STOPPED, Diverged, EpochLoop, StepCallback
from .logs import LOG_FILE, TrainingLog
from .losses import SegmentationLoss
from .provenance import run_metadata
from .setup import case_settings, plan_model, prepare_cases, prepare_output, seed_run, training_dtype
from .snapshots import matplotlib_available, write_snapshot
from .time_left import seconds_per_step, time_left
from .validation import ValidationResult, Validator

log = logging.getLogger(__name__)

SAFE_TO_CHANGE = ("output", "cache_dir", "workers", "tensorboard", "snapshots", "epochs", "max_seconds", "max_classes")
"""Options that may change on resume without making the run differ from an uninterrupted one."""
FINAL_MODEL = "final.safetensors"
BEST_MODEL = "best.safetensors"

@dataclass
class TrainResult:
    """The trained network (on every rank), where the run stands, and the files rank 0 wrote."""

    model: AttentionUNet3D
    progress: RunState
    stopped: bool
    validation: Optional[ValidationResult] = None
    files: Dict[str, Path] = field(default_factory=dict)


def train(config: TrainConfig, resume: bool = False, should_stop: Optional[Callable[[], bool]] = None,
          on_step: Optional[StepCallback] = None) -> TrainResult:
    """Run (or with `resume`, continue) the training `config` describes.

    `should_stop()` is polled after every optimizer step; when it returns True on any rank, the run writes
    a checkpoint and returns with `stopped` set, and `resume=True` continues it exactly. `on_step(report)` is
    called on rank 0 after every optimizer step (step, total steps, loss, estimated seconds left).
    """
    ctx = init_distributed(config.device)
    try:
        with logging_redirect_tqdm():  # log lines go above the progress bar, not through it
            return Trainer(config, ctx, resume).run(should_stop or (lambda: False), on_step)
    finally:
        ctx.close()


class Trainer:
    """Everything of one run: data, network, optimizer, logs; `run` trains it."""

    def __init__(self, config: TrainConfig, ctx: DistributedContext, resume: bool) -> None:
        config = config.with_absolute_paths()
        self.config, self.ctx, self.device = config, ctx, ctx.device
        self.output = Path(config.output)
        self.name = config.name or self.output.name
        self.started = datetime.now(timezone.utc)
        seed_run(config.seed, config.deterministic)
        # everything that can be refused from the options and the dataset's listing, before anything is written
        cases = discover_cases(Path(config.data))
        case_maps: Dict[str, LabelMap] = {}
        if config.segment_names is not None:
            self.plan = plan_model(config, None)
            self.label_map, case_maps = segment_label_maps(cases, config.segment_names, self.plan.classes,
                                                           config.ignore_segments or ())
            for name, case_map in case_maps.items() if ctx.is_main else ():
                log.info("case %s: %s", name, case_map.description)
        else:
            self.label_map = load_label_map(config.label_map, dataset_json(Path(config.data)))
            if ctx.is_main and self.label_map.description:
                log.info("label map %s: %s", self.label_map.name, self.label_map.description)
            self.plan = plan_model(config, self.label_map)
        self.dtype = training_dtype(config.precision, self.device, self.plan.patch_size, len(self.plan.config.channels))
        self.trained_classes = self.plan.trained_classes(self.label_map)
        excluded = [c.name for c in self.plan.classes if c not in self.trained_classes]
        if excluded and ctx.is_main:
            log.info("classes %s are left out of softmax and loss: the label map does not produce them", excluded)
        self.case_settings = case_settings(cases, self.label_map, self.trained_classes, self.plan.config.num_classes,
                                           self.plan.spacing_mm, case_maps)
        if ctx.is_main:
            prepare_output(self.output, resume)
        self.checkpoint_path = self.output / CHECKPOINT_FILE
        checkpoint = load_checkpoint(self.checkpoint_path) if resume else None
        if checkpoint is not None:
            check_identity(checkpoint["identity"], self._identity(), self.checkpoint_path)
            done = checkpoint["progress"]["epoch"]
            if done >= config.epochs:
                raise TrainingError(f"the run in {self.output} has already trained its {done} epochs; give a larger "
                                    "--epochs to train on")
        self._prepare_data(cases)
        self.validator = Validator(self.val_cases, self.trained_classes, ctx, self.dtype,
                                   InferenceSettings(overlap=config.overlap))
        self.intensity = self._intensity(checkpoint)
        self.loop = self._build_loop(checkpoint)
        self.validation_seconds: List[float] = []  # this process's validations, for the time left
        if ctx.is_main:
            config.save(self.output / CONFIG_FILE)
            log.info("training %s on %d case(s), validating on %d; %d step(s) per epoch of %d patch(es) (%d x %d "
                     "accumulated x %d process(es)) on %s, %s", self.plan.config.architecture, len(self.train_cases),
                     len(self.val_cases), self.steps, self.global_batch, config.batch_size, config.accumulate,
                     ctx.world_size, self.device, str(self.dtype).replace("torch.", ""))

    def _prepare_data(self, cases: List[Case]) -> None:
        """Split the cases, cache their preprocessing and warn about cases without organs."""
        config = self.config
        self.splits_path = Path(config.splits) if config.splits else self.output / "splits.json"
        train_names, val_names = fold_cases([c.name for c in cases], config.fold, config.folds, config.seed,
                                            self.splits_path, write=self.ctx.is_main)
        used = [c for c in cases if c.name in set(train_names) | set(val_names)]
        cached = prepare_cases(used, self.case_settings, Path(config.cache_dir or self.output / "cache"), self.ctx)
        self.train_cases = [cached[n] for n in train_names]
        self.val_cases = [cached[n] for n in val_names]
        organs = ", ".join(c.name for c in self.trained_classes[1:])
        trained_values = {c.value: c.name for c in self.trained_classes}
        for case in cached.values():
            if not case.has_foreground and self.ctx.is_main:
                log.warning("case %s has no foreground (%s) after label mapping and resampling; it is kept and "
                            "teaches background only", case.name, organs)
            unlabelled = [name for value, name in trained_values.items() if value not in case.labelled]
            if unlabelled and self.ctx.is_main:
                in_loss = ("merged into background in its loss" if self.config.partial_labels == "marginal"
                           else "left out of its loss")
                log.info("case %s does not label %s (its label map does not produce them): they are %s and left "
                         "out of its validation scores", case.name, unlabelled, in_loss)

    def _build_loop(self, checkpoint: Optional[dict]) -> EpochLoop:
        """The network (DDP-wrapped under torchrun), optimizer, scaler and loss, restored from `checkpoint` if given,
        and the augmented-patch loader with its resumable sampler."""
        config, ctx = self.config, self.ctx
        model = self.plan.build().to(self.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        # the model itself, or its DistributedDataParallel wrapper under torchrun: forward passes go through it
        network = ctx.wrap(model, config.sync_batchnorm)
        self.model: AttentionUNet3D = network.module if ctx.is_distributed else network
        optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        loss = SegmentationLoss(self.plan.config.num_classes, [c.value for c in self.trained_classes],
                                config.loss, config.partial_labels).to(self.device)
        self.progress = RunState()
        self.checkpoint_epoch: Optional[int] = None
        if checkpoint is not None:
            self.progress = restore(checkpoint, self.model, optimizer, scaler)
            self.checkpoint_epoch = self.progress.epoch
            self._apply_changed_options(checkpoint["settings"]["config"], optimizer)
        self.started_at = (self.progress.global_step, self.progress.seconds)  # this process's pace is timed from here
        self.global_batch = config.batch_size * config.accumulate * ctx.world_size
        self.steps = steps_per_epoch(len(self.train_cases), self.global_batch, config.iterations_per_epoch)
        transform = training_transform(config, tuple(reversed(self.plan.patch_size)), self.plan.config.num_classes,
                                       {c.name: c.value for c in self.trained_classes}, self.intensity,
                                       self.plan.spacing_mm)
        sampler = EpochSampler(self.steps * self.global_batch, config.seed, ctx.rank, ctx.world_size)
        workers = config.workers if config.workers is not None else default_workers(self.device, ctx.world_size)
        dataset = PatchDataset(self.train_cases, transform, self.plan.config.num_classes)
        loader = make_loader(dataset, sampler, config.batch_size, workers, self.device)
        return EpochLoop(network, optimizer, scaler, loss, loader, sampler, config, self.steps, ctx, self.dtype,
                         self.plan.config.deep_supervision == "per_scale")

    def _apply_changed_options(self, saved: Dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
        """Options changed on resume take effect (a new --lr, say), with a warning that the run now differs."""
        changed = sorted(k for k, v in self.config.to_dict().items() if k not in SAFE_TO_CHANGE and saved.get(k) != v)
        if changed and self.ctx.is_main:
            log.warning("resuming with changed options %s: the run will differ from an uninterrupted one",
                        {k: (saved.get(k), getattr(self.config, k)) for k in changed})
        for group in optimizer.param_groups:
            group["lr"], group["weight_decay"] = self.config.lr, self.config.weight_decay

    def _identity(self) -> dict:
        """What a checkpoint must share with this run to be resumed by it."""
        return {"architecture": self.plan.config.to_dict(), "classes": [c.name for c in self.plan.classes],
                "trained_classes": [c.name for c in self.trained_classes], "spacing_mm": list(self.plan.spacing_mm)}

    def _intensity(self, checkpoint: Optional[dict]) -> IntensityNormalisation:
        """The checkpoint's normalisation on resume, else the model's or the options', else the training data's."""
        if checkpoint is not None:
            saved = IntensityNormalisation(**checkpoint["settings"]["intensity"])
            if self.config.intensity is not None and IntensityNormalisation(**self.config.intensity) != saved:
                raise TrainingError(f"--intensity {self.config.intensity} differs from the run's {asdict(saved)}; "
                                    "leave it out to resume")
            return saved
        if self.plan.intensity is not None:
            return self.plan.intensity
        intensity = auto_intensity(self.train_cases)
        if self.ctx.is_main:
            log.info("intensity normalisation from the training foreground: clip %.1f..%.1f HU, mean %.1f, "
                     "std %.1f", intensity.clip_min, intensity.clip_max, intensity.mean, intensity.std)
        return intensity

    def run(self, should_stop: Callable[[], bool], on_step: Optional[StepCallback] = None) -> TrainResult:
        config, ctx, progress = self.config, self.ctx, self.progress
        on_step = on_step if ctx.is_main else None
        logs = TrainingLog(self.output, [c.name for c in self.trained_classes[1:]], progress.epoch,
                           progress.global_step, config.tensorboard, ctx.is_main)
        snapshots = config.snapshots and ctx.is_main and bool(self.val_cases) and matplotlib_available()
        bar = tqdm(total=config.epochs * self.steps, initial=progress.global_step, unit="step", dynamic_ncols=True,
                   disable=None if ctx.is_main else True)
        validation: Optional[ValidationResult] = None
        try:
            out_of_time = False
            while progress.epoch < config.epochs and not out_of_time:
                clock, first_step = time.perf_counter(), progress.step
                try:
                    ended = self.loop.run(progress, clock, should_stop, on_step, logs, bar)
                except Diverged as exc:
                    raise TrainingError(self._divergence_message(exc.loss)) from None
                if ended == STOPPED:
                    progress.seconds += time.perf_counter() - clock
                    self._checkpoint()
                    return TrainResult(self.model, progress, stopped=True, files=self._files())
                out_of_time = ended == OUT_OF_TIME
                if out_of_time and ctx.is_main:
                    log.info("time budget of %g s used up after step %d: ending the run", config.max_seconds,
                             progress.global_step)
                seconds = time.perf_counter() - clock
                progress.seconds += seconds
                row = {"epoch": progress.epoch + 1, "step": progress.global_step,
                       "loss": ctx.mean(progress.loss_sum / max(progress.step, 1)), "lr": self.loop.lr,
                       "samples_per_s": (progress.step - first_step) * self.global_batch / max(seconds, 1e-9),
                       "seconds": seconds}
                progress.epoch, progress.step, progress.loss_sum = progress.epoch + 1, 0, 0.0
                due = self._validates_after(progress.epoch) or (out_of_time and bool(self.val_cases))
                current = self._validate(snapshots) if due else None
                validation = current or validation
                logs.epoch(row, current.summary() if current else None)
                self._report(row, current)
                if progress.epoch % config.checkpoint_every == 0 or progress.epoch == config.epochs or out_of_time:
                    self._checkpoint()
        finally:
            bar.close()
            logs.close()
        self.ctx.sync_buffers(self.model)
        if ctx.is_main:
            save_model(self.model, self._metadata(validation), self.output / FINAL_MODEL)
        return TrainResult(self.model, progress, stopped=False, validation=validation, files=self._files())

    def _divergence_message(self, value: float) -> str:
        where = f"epoch {self.progress.epoch + 1}, step {self.progress.step + 1}"
        if self.checkpoint_epoch is None:
            saved = "No checkpoint had been written yet."
        else:
            saved = (f"The last good checkpoint, {self.checkpoint_path} (after epoch {self.checkpoint_epoch}), is "
                     "intact: continue from it with --resume after fixing the cause.")
        fp16 = ", use --precision bf16 or fp32 instead of fp16" if self.dtype == torch.float16 else ""
        return (f"the training loss became {value} at {where}: training diverged and was stopped. {saved} "
                f"Lower the learning rate (--lr, now {self.loop.lr:g}){fp16}, or check the data")

    def _validates_after(self, epoch: int) -> bool:
        """Whether validation runs after (1-based) `epoch`: every `validate_every` epochs and after the last."""
        due = epoch % self.config.validate_every == 0 or epoch == self.config.epochs
        return bool(self.val_cases) and due

    def _validate(self, snapshots: bool) -> ValidationResult:
        self.ctx.sync_buffers(self.model)
        clock = time.perf_counter()
        result, picture = self.validator(self.model, self._metadata(None), self.progress.epoch, snapshots)
        self.validation_seconds.append(time.perf_counter() - clock)
        self.loop.network.train()
        progress = self.progress
        if picture is not None:
            write_snapshot(picture, self.trained_classes, f"{self.name}, epoch {progress.epoch}",
                           self.output / "attention" / f"epoch_{progress.epoch:04d}.png",
                           aspect=self.plan.spacing_mm[1] / self.plan.spacing_mm[0])
        if result.mean_dice > progress.best_score:
            progress.best_score, progress.best_epoch = result.mean_dice, progress.epoch
            if self.ctx.is_main:
                save_model(self.model, self._metadata(result), self.output / BEST_MODEL)
        return result

    def _checkpoint(self) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.checkpoint_path, model=self.model, optimizer=self.loop.optimizer,
                            scaler=self.loop.scaler, progress=self.progress, identity=self._identity(),
                            settings={"intensity": asdict(self.intensity), "config": self.config.to_dict()})
        self.checkpoint_epoch = self.progress.epoch

    def _report(self, row: dict, validation: Optional[ValidationResult]) -> None:
        if not self.ctx.is_main:
            return
        scores = ""
        if validation is not None:
            per_class = ", ".join(f"{n} {v:.3f}" for n, v in validation.class_means("dice").items())
            scores = (f", validation mean Dice {validation.mean_dice:.4f} ({per_class}) in "
                      f"{self.validation_seconds[-1]:.1f} s")
        log.info("epoch %d/%d: loss %.4f%s; %.1f s, %.2f patches/s, %s", row["epoch"], self.config.epochs,
                 row["loss"], scores, row["seconds"], row["samples_per_s"], self._time_left())

    def _time_left(self) -> str:
        """`time_left` for the steps and validations still to come, at this run's measured pace."""
        progress, epochs = self.progress, self.config.epochs
        validations = sum(self._validates_after(e) for e in range(progress.epoch + 1, epochs + 1))
        timed = self.validation_seconds
        per_validation = sum(timed) / len(timed) if timed else None
        return time_left((epochs - progress.epoch) * self.steps,
                         seconds_per_step(progress.global_step, progress.seconds, self.started_at), validations,
                         per_validation)

    def _metadata(self, validation: Optional[ValidationResult]) -> ModelMetadata:
        return run_metadata(self, validation)

    def _files(self) -> Dict[str, Path]:
        names = {"final": FINAL_MODEL, "best": BEST_MODEL, "checkpoint": CHECKPOINT_FILE, "config": CONFIG_FILE,
                 "log": LOG_FILE}
        files = {key: self.output / name for key, name in names.items()}
        files["splits"] = self.splits_path
        return {key: path for key, path in files.items() if self.ctx.is_main and path.is_file()}
