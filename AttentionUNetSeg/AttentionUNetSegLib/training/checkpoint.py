"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer and gradient-scaler states, the random states of torch (CPU and
CUDA), numpy and Python, and the position in the run (epoch, step within it, running loss, best score).
Data order and augmentation are derived from (seed, epoch, position), so nothing else is needed. It is read
with `torch.load(weights_only=True)`: plain tensors and containers, no pickled code.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..errors import TrainingError
from ..io.atomic import atomic_file
from ..io.disk_space import room_for

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1


@dataclass
class RunState:
    """Where a run stands: `epoch` is the current (0-based) epoch, `step` the optimizer steps done in it."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    best_score: float = float("-inf")
    best_epoch: int = 0
    seconds: float = 0.0


def random_states() -> Dict[str, Any]:
    """The random states of every generator a run may draw from."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": random.getstate(),
    }


def restore_random_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, progress: RunState, identity: Dict[str, Any],
                    settings: Dict[str, Any]) -> Path:
    """Write the run's state atomically; `identity` (architecture, classes, grid) must match on resume,
    `settings` (intensity normalisation, options) are restored or compared."""
    state = {
        "format": FORMAT, "identity": identity, "settings": settings, "progress": asdict(progress),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "random": random_states(),
    }
    path = Path(path)
    with room_for(path.parent, f"the checkpoint {path.name}", "free some space there and continue with "
                  f"attention-unet train --resume -o {path.parent} (the previous checkpoint is kept)",
                  _tensor_bytes(state)):
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            torch.save(state, handle)  # into a Python file, whose OSError (a full disk) torch's error keeps
    return path


def _tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in `value` (nested dicts, lists and tuples): most of a checkpoint's size."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` onto the CPU (loading the states moves them to the
    model's device; random states must stay on the CPU); errors say what is wrong with it."""
    if not Path(path).is_file():
        raise TrainingError(f"cannot resume: there is no checkpoint {path}; start without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several error types for corrupt or foreign files
        raise TrainingError(f"cannot read checkpoint {path} ({exc}); it is corrupt or not a training checkpoint") \
            from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainingError(f"{path} is not a checkpoint of this version of attention-unet train")
    return state


def check_identity(saved: Dict[str, Any], current: Dict[str, Any], path: Path) -> None:
    """Refuse to resume into a different network: architecture, classes and preprocessing must match."""
    differences = [f"{key}: checkpoint {saved.get(key)!r}, this run {value!r}"
                   for key, value in current.items() if saved.get(key) != value]
    if differences:
        raise TrainingError(f"checkpoint {path} belongs to a different network ({'; '.join(differences)}); "
                            "resume with the options it was made with, or start a new output folder")


def restore(state: Dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> RunState:
    """Load the states into `model`, `optimizer` and `scaler`, restore the random states, return the position."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    restore_random_states(state["random"])
    return RunState(**state["progress"])
