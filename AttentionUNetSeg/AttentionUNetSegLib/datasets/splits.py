"""k-fold cross-validation splits: made once (seeded), written to a splits file and reused from then on.

The file is nnU-Net's splits_final.json format: a list with one {"train": [...], "val": [...]} per fold,
so splits can be shared between runs (e.g. U-Net and Attention U-Net on the same folds) and tools.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Sequence, Tuple, Union

from monai.data import partition_dataset

from ..errors import DatasetError
from ..io.atomic import atomic_file

log = logging.getLogger(__name__)

Split = Tuple[List[str], List[str]]


def make_splits(names: Sequence[str], folds: int, seed: int) -> List[dict]:
    """`folds` disjoint validation sets covering every case once, shuffled with `seed`."""
    if folds < 2:
        raise DatasetError(f"cannot make {folds} fold(s) of cross-validation; a single train/val split must be "
                           "given as a --splits file that exists, else use --folds 2 or more")
    if len(names) < folds:
        raise DatasetError(f"{folds}-fold cross-validation needs at least {folds} cases, the dataset has "
                           f"{len(names)}; lower --folds or train on every case with --fold all")
    parts = partition_dataset(sorted(names), num_partitions=folds, shuffle=True, seed=seed)
    return [{"train": sorted(set(names) - set(val)), "val": sorted(val)} for val in parts]


def read_splits(path: Path, names: Sequence[str]) -> List[dict]:
    """A splits file, checked against the dataset's case names."""
    try:
        splits = json.loads(Path(path).read_text())
        valid = isinstance(splits, list) and all(set(s) >= {"train", "val"} for s in splits)
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"cannot read splits file {path}: {exc}") from exc
    if not valid or not splits:
        raise DatasetError(f"splits file {path} must be a list of {{\"train\": [...], \"val\": [...]}}, one per fold")
    unknown = sorted({n for s in splits for n in s["train"] + s["val"]} - set(names))
    if unknown:
        raise DatasetError(f"splits file {path} names cases the dataset does not have: {unknown[:10]}; "
                           "use the dataset it was made for, or delete the file to make new splits")
    return splits


def fold_cases(names: Sequence[str], fold: Union[int, str], folds: int, seed: int, path: Path,
               write: bool) -> Split:
    """Training and validation case names of `fold` ('all': every case, no validation).

    An existing splits file is reused; otherwise splits are made and, if `write`, saved to `path`.
    """
    if fold == "all":
        return sorted(names), []
    if Path(path).is_file():
        splits = read_splits(path, names)
        if len(splits) != folds:
            raise DatasetError(f"splits file {path} has {len(splits)} folds but {folds} were asked for; "
                               f"use --folds {len(splits)} or another --splits file")
    else:
        splits = make_splits(names, folds, seed)
        if write:
            with atomic_file(Path(path)) as tmp:
                tmp.write_text(json.dumps(splits, indent=1))
    train, val = list(splits[fold]["train"]), list(splits[fold]["val"])
    unused = sorted(set(names) - set(train) - set(val))
    if unused:
        log.warning("%d case(s) are in neither the training nor the validation set of fold %s in %s and are not "
                    "used: %s", len(unused), fold, path, unused[:10])
    return train, val
