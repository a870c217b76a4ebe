"""How the worker is started: its command line, and what a segmentation job asks for (job.json's model and
settings).

`python -m AttentionUNetSegLib.worker JOB_DIR` runs the job in JOB_DIR. `... --standby [--prebuild-on-gpu] [JOB]`
loads the engine and waits for a job folder's path on stdin; given JOB (the job.json it expects) it also makes
that job's Segmenter ready, on the CPU only unless `--prebuild-on-gpu` (a GPU's backend would hold GPU memory
for a job that may never come). Plain values only (no PyTorch, no SimpleITK): the Slicer logic starts workers
without loading them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..inference.settings import InferenceSettings

STANDBY = "--standby"
PREBUILD_ON_GPU = "--prebuild-on-gpu"
USAGE = f"usage: python -m AttentionUNetSegLib.worker JOB_DIR | {STANDBY} [{PREBUILD_ON_GPU}] [JOB]"


def segmentation_job(model: Union[str, Path, None], settings: InferenceSettings) -> dict:
    """job.json's content for a segmentation with `model` (None: the registry's default) and `settings`."""
    return {"model": None if model is None else str(model), "settings": asdict(settings)}


def standby_arguments(model: Union[str, Path, None] = None, settings: Optional[InferenceSettings] = None,
                      prebuild_on_gpu: bool = False) -> List[str]:
    """The worker's arguments for a standby worker; with `settings`, one that makes ready the Segmenter of a
    segmentation with `model` and `settings` (as write_job would write it), on a GPU too if `prebuild_on_gpu`."""
    arguments = [STANDBY] + ([PREBUILD_ON_GPU] if prebuild_on_gpu else [])
    return arguments if settings is None else arguments + [json.dumps(segmentation_job(model, settings))]


@dataclass(frozen=True)
class WorkerArguments:
    """A parsed command line: a job folder, or a standby worker (the job it expects, if any, as job.json's text)."""

    job_dir: Optional[Path] = None
    expected_job: Optional[str] = None
    prebuild_on_gpu: bool = False

    @property
    def standby(self) -> bool:
        return self.job_dir is None


def parse_arguments(arguments: Sequence[str]) -> WorkerArguments:
    """The worker's command line parsed; ValueError (with USAGE) for one that is neither form."""
    arguments = list(arguments)
    if len(arguments) == 1 and arguments[0] != STANDBY and not arguments[0].startswith("--"):
        return WorkerArguments(job_dir=Path(arguments[0]))
    if not arguments or arguments[0] != STANDBY:
        raise ValueError(USAGE)
    rest = arguments[1:]
    prebuild = bool(rest) and rest[0] == PREBUILD_ON_GPU
    rest = rest[1:] if prebuild else rest
    if len(rest) > 1 or (rest and rest[0].startswith("--")):
        raise ValueError(USAGE)
    return WorkerArguments(expected_job=rest[0] if rest else None, prebuild_on_gpu=prebuild)
