"""Training batches: the epoch's sample order, per-sample augmentation seeds, and the DataLoader.

Each epoch has `steps x batch x accumulate x world` samples; sample i is an augmented patch of case
i mod n. DistributedSampler shuffles the samples with (seed, epoch) and deals them to the ranks; each
sample's augmentation seed depends only on (seed, epoch, its place in the epoch). So a run resumed in the
middle of an epoch, with any number of loader workers, sees exactly the patches an uninterrupted run sees.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .cache import CachedCase

Item = Tuple[int, int]  # (sample index, augmentation seed)


class PatchDataset(Dataset):
    """Sample (index, seed) -> {"image", "label", "labelled"} patch of case index mod n, augmented with that seed;
    "labelled" (num_classes booleans) marks the classes the case's labels hold."""

    def __init__(self, cases: Sequence[CachedCase], transform: Compose, num_classes: int) -> None:
        self.cases = list(cases)
        self.transform = transform
        self.num_classes = num_classes

    def __getitem__(self, item: Item) -> Dict[str, torch.Tensor]:
        index, seed = item
        case = self.cases[index % len(self.cases)]
        self.transform.set_random_state(seed=seed)
        patch = self.transform({"image": case.image()[None], "label": case.label()[None], "labelled": case.labelled})[0]
        patch["labelled"] = torch.zeros(self.num_classes, dtype=torch.bool)
        patch["labelled"][list(case.labelled)] = True
        return patch


class EpochSampler(Sampler):
    """This rank's (index, seed) pairs for the epoch set by `set_epoch`, less the first `skip` of them."""

    def __init__(self, samples_per_epoch: int, seed: int, rank: int, world_size: int) -> None:
        self.order = DistributedSampler(range(samples_per_epoch), num_replicas=world_size, rank=rank, shuffle=True,
                                        seed=seed)
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.order.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[Item]:
        world, rank = self.order.num_replicas, self.order.rank
        for position, index in enumerate(self.order):
            if position >= self.skip:
                yield index, sample_seed(self.seed, self.epoch, position * world + rank)

    def __len__(self) -> int:
        return len(self.order) - self.skip


def sample_seed(seed: int, epoch: int, slot: int) -> int:
    """A 32-bit augmentation seed for one sample of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, slot]).generate_state(1)[0])


def steps_per_epoch(num_cases: int, global_batch: int, iterations: Optional[int]) -> int:
    """Optimizer steps per epoch: as asked, or enough for one patch of every case."""
    return iterations or math.ceil(num_cases / global_batch)


def default_workers(device: torch.device, world_size: int) -> int:
    """Loader processes: up to 8 per GPU process on CUDA (the CPU's share), none on the CPU."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // world_size - 1))


def make_loader(dataset: PatchDataset, sampler: EpochSampler, batch_size: int, workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0, drop_last=False)

