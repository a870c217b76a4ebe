"""Sharing a cohort between processes: `--shard K/N` takes every N-th case from the K-th (1-based, in the
cohort's sorted order), as a SLURM job array or any batch system runs it; under torchrun (RANK and
WORLD_SIZE set) each process takes its rank's shard on its own GPU."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int = 1
    count: int = 1

    def select(self, cases: Sequence[T]) -> List[T]:
        """Every `count`-th case, starting at the `index`-th."""
        return list(cases[self.index - 1::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N (an argparse type)."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard.index <= shard.count:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: K/N with 1 <= K <= N (shard K of N, "
                                         "e.g. 1/4 ... 4/4)")
    return shard


def environment_shard(environ: Mapping[str, str] = os.environ) -> Optional[Shard]:
    """The shard of this process under torchrun (RANK of WORLD_SIZE), or None outside it."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    return Shard(int(environ["RANK"]) + 1, int(environ["WORLD_SIZE"]))


def local_device(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The GPU of this process under torchrun (`cuda:LOCAL_RANK`), or None outside it."""
    return f"cuda:{environ['LOCAL_RANK']}" if "LOCAL_RANK" in environ else None
