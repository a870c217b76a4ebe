"""Training logs: one CSV row per epoch (log.csv) and TensorBoard scalars, written by rank 0 only.

On resume, CSV rows and TensorBoard events after the checkpoint are dropped, so a resumed run's logs read
like an uninterrupted one's. TensorBoard is optional: without the package a warning says so once.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..io.atomic import atomic_file

log = logging.getLogger(__name__)

LOG_FILE = "log.csv"


class TrainingLog:
    """CSV and TensorBoard logging of a run; does nothing when not `enabled` (ranks other than 0)."""

    def __init__(self, output: Path, class_names: List[str], epochs_done: int, global_step: int,
                 tensorboard: bool, enabled: bool) -> None:
        self.enabled = enabled
        self.path = Path(output) / LOG_FILE
        self.columns = (["epoch", "step", "loss", "lr", "samples_per_s", "seconds", "val_mean_dice"]
                        + [f"val_dice_{n}" for n in class_names] + [f"val_hd95_mm_{n}" for n in class_names])
        self.writer = None
        if not enabled:
            return
        self._keep_rows_until(epochs_done)
        if tensorboard:
            self.writer = _summary_writer(Path(output) / "tensorboard", global_step)

    def _keep_rows_until(self, epochs_done: int) -> None:
        """Start log.csv anew, keeping the rows of epochs up to `epochs_done` from an earlier part of the run."""
        rows: List[Dict[str, str]] = []
        if epochs_done and self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= epochs_done]
        with atomic_file(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def step(self, global_step: int, loss: float, lr: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss_step", loss, global_step)
            self.writer.add_scalar("train/lr", lr, global_step)

    def epoch(self, row: Dict[str, Any], validation: Optional[Dict[str, Any]]) -> None:
        """Append the epoch's row; `validation` is a ValidationResult.summary() or None."""
        if not self.enabled:
            return
        values = dict(row)
        if validation is not None:
            values["val_mean_dice"] = validation["mean_dice"]
            values.update({f"val_dice_{n}": v for n, v in validation["dice"].items()})
            values.update({f"val_hd95_mm_{n}": v for n, v in validation["hd95_mm"].items()})
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow({k: _cell(values.get(k)) for k in self.columns})
        if self.writer is not None:
            step = row["step"]
            for key in ("loss", "samples_per_s"):
                self.writer.add_scalar(f"train/{key}", row[key], step)
            for key in self.columns[6:]:
                if values.get(key) is not None:
                    self.writer.add_scalar(f"validation/{key[4:]}", values[key], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _summary_writer(folder: Path, global_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: TensorBoard logs are skipped (pip install 'AttentionUNetSeg[train]' "
                    "or use --no-tensorboard); log.csv is written all the same")
        return None
    return SummaryWriter(str(folder), purge_step=global_step + 1 if global_step else None)  # drop events after it
