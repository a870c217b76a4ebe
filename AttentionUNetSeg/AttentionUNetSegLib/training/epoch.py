"""One epoch of training: the optimizer steps over the epoch's batches (gradient accumulation, mixed precision, the
learning-rate schedule), each step checked on every rank for a diverged loss, a stop asked for and the time
budget."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..backends.device import autocast
from .checkpoint import RunState
from .config import TrainConfig
from .data import EpochSampler
from .distributed import DistributedContext
from .logs import TrainingLog
from .losses import SegmentationLoss
from .time_left import steps_at_end

POLY_EXPONENT = 0.9
EPOCH_DONE, STOPPED, OUT_OF_TIME = "epoch done", "stopped", "out of time"
"""How an epoch of training ended."""


@dataclass(frozen=True)
class StepReport:
    """What `train`'s `on_step` callback gets after every optimizer step."""

    step: int
    total_steps: int
    loss: float
    seconds_left: float


StepCallback = Callable[[StepReport], None]


class Diverged(Exception):
    """The loss of a step was not finite (on some rank): the step was not taken."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"the training loss became {loss}")
        self.loss = loss


@dataclass
class EpochLoop:
    """What trains the network epoch by epoch: `network` as forward passes see it (the DistributedDataParallel
    wrapper under torchrun), its optimizer, gradient scaler and loss, the batches (`loader`, ordered by `sampler`)
    and how they go in (`dtype`, channels-last, per-scale deep supervision); `steps` optimizer steps an epoch."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss: SegmentationLoss
    loader: torch.utils.data.DataLoader
    sampler: EpochSampler
    config: TrainConfig
    steps: int
    ctx: DistributedContext
    dtype: torch.dtype
    per_scale: bool

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def run(self, progress: RunState, started: float, should_stop: Callable[[], bool],
            on_step: Optional[StepCallback], logs: TrainingLog, bar: tqdm) -> str:
        """Train from where `progress` stands until the epoch ends (EPOCH_DONE), a stop is asked for on any rank
        (STOPPED) or the time budget is used up (OUT_OF_TIME); `started`: when this epoch began (perf_counter).
        Raises Diverged before a step with a non-finite loss."""
        config, device = self.config, self.ctx.device
        self.sampler.set_epoch(progress.epoch, skip=progress.step * config.accumulate * config.batch_size)
        self.network.train()
        step_loss = torch.zeros((), device=device)
        for micro_step, batch in enumerate(self.loader, start=1):
            image = batch["image"].to(device, non_blocking=True)
            if config.channels_last:
                image = image.contiguous(memory_format=torch.channels_last_3d)
            labels = batch["label"].to(device, non_blocking=True)
            labelled = batch["labelled"].to(device, non_blocking=True)
            last = micro_step % config.accumulate == 0
            with self.ctx.no_sync(self.network, skip=not last):
                with autocast(device, self.dtype):
                    outputs = self.network(image, return_scale_logits=self.per_scale)
                    loss = self.loss(outputs, labels, labelled) / config.accumulate
                self.scaler.scale(loss).backward()
            step_loss += loss.detach()
            if not last:
                continue
            value = float(step_loss)
            used = progress.seconds + time.perf_counter() - started
            budget_spent = config.max_seconds is not None and used >= config.max_seconds
            diverged, stop, out_of_time = self.ctx.any(not math.isfinite(value), should_stop(), budget_spent)
            if diverged:
                raise Diverged(value)
            self._schedule_lr(progress)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            step_loss.zero_()
            progress.step += 1
            progress.global_step += 1
            progress.loss_sum += value
            logs.step(progress.global_step, value, self.lr)
            bar.update(1)
            bar.set_postfix(epoch=progress.epoch + 1, loss=f"{value:.4f}")
            if on_step is not None:
                total = steps_at_end(progress.global_step, config.epochs * self.steps, used, config.max_seconds)
                on_step(StepReport(progress.global_step, total, value,
                                   (total - progress.global_step) * used / progress.global_step))
            if stop:
                return STOPPED
            if out_of_time:
                return OUT_OF_TIME
        return EPOCH_DONE

    def _schedule_lr(self, progress: RunState) -> None:
        """The learning rate of the coming step: constant, or nnU-Net's poly decay over the run's epochs."""
        if self.config.lr_schedule != "poly":
            return
        done = progress.global_step / (self.config.epochs * self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * max(1.0 - done, 0.0) ** POLY_EXPONENT
