"""The cases of a cohort: CT files, DICOM series folders, folders of them (one level; label volumes there are
skipped, with a warning naming each) and list files (.txt: one path per line; .csv: a `path` column and an optional
`name` column), each with a unique name.

A case's name is its output file stem: the input's name without its image suffix (a DICOM folder's own
name), or the `name` a CSV gives. Where several inputs share a name (`s0009/ct.nii.gz`, `s0010/ct.nii.gz`),
each takes its folders' names in front (`s0009_ct`, `s0010_ct`), as many as it takes to tell them apart.
Everything wrong with the inputs is reported at once, before any work.
"""
from __future__ import annotations

import csv
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import SimpleITK as sitk

from ..errors import InvalidOptionError
from ..io.images import IMAGE_SUFFIXES, image_stem
from ..io.label_volumes import is_label_volume
from ..repeats import repeated

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".csv", ".txt")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class CohortCase:
    """One CT of a cohort: `name` is unique in the cohort and names its outputs; `path` is a CT file or a
    DICOM series folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class _Found:
    path: Path
    name: Optional[str]  # given by a CSV list


def resolve_inputs(inputs: Sequence[Union[str, Path]]) -> List[CohortCase]:
    """The cases of `inputs`, sorted by name; raises InvalidOptionError naming every missing, repeated or
    unusable input."""
    if not inputs:
        raise InvalidOptionError("no input given; give CT files, DICOM folders, folders of them or a .csv/.txt list")
    found: List[_Found] = []
    problems: List[str] = []
    for given in map(Path, inputs):
        found += _expand(given, problems)
    if not found and not problems:
        problems.append(f"the inputs {', '.join(map(str, inputs))} hold no CT image (files ending in "
                        f"{', '.join(IMAGE_SUFFIXES)}, or DICOM series folders)")
    given_as = {str(f.path.resolve()): str(f.path) for f in reversed(found)}  # as the user wrote it first
    same = [given_as[path] for path in repeated([str(f.path.resolve()) for f in found])]
    if same:
        problems.append(f"input(s) given more than once: {', '.join(same[:10])}; give each CT once")
    if problems:
        raise InvalidOptionError("; ".join(problems))
    cases = _named(found)
    return sorted(cases, key=lambda case: case.name)


def _expand(given: Path, problems: List[str]) -> List[_Found]:
    """The CTs one input stands for; what is wrong with it goes to `problems`."""
    if not given.exists():
        problems.append(f"input {given} does not exist")
        return []
    if given.is_file() and given.suffix.lower() in LIST_SUFFIXES:
        return _listed(given, problems)
    if given.is_file():
        if not given.name.lower().endswith(IMAGE_SUFFIXES):
            problems.append(f"input {given} is neither a CT image ({', '.join(IMAGE_SUFFIXES)}) nor a .csv/.txt list")
            return []
        return [_Found(given, None)]
    if _is_dicom_series(given):
        return [_Found(given, None)]
    members = [p for p in sorted(given.iterdir()) if not p.name.startswith(".")
               and ((p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)) or (p.is_dir() and _is_dicom_series(p)))]
    labels = [p for p in members if p.is_file() and is_label_volume(p)]
    for path in labels:
        log.warning("skipped %s: it holds labels (integers >= 0, few values), not a CT", path)
    members = [p for p in members if p not in labels]
    if not members:
        skipped = f" (only label volumes: {len(labels)} skipped)" if labels else ""
        problems.append(f"folder {given} holds no CT image files and no DICOM series (one level deep){skipped}")
    return [_Found(p, None) for p in members]


def _listed(list_file: Path, problems: List[str]) -> List[_Found]:
    """The CTs a .txt (one path per line; # comments) or .csv (`path`, optional `name`) list names; relative
    paths are relative to the list's folder."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"cannot read the list {list_file}: {exc}")
        return []
    if not text.strip():
        problems.append(f"the list {list_file} is empty: it names no CT")
        return []
    if list_file.suffix.lower() == ".txt":
        rows = [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            problems.append(f"the list {list_file} has no `path` column (its header: {reader.fieldnames}); give a "
                            "CSV whose header has path and, optionally, name")
            return []
        rows = [row for row in reader if (row.get("path") or "").strip()]
    if not rows:
        problems.append(f"the list {list_file} names no CT")
    found = []
    missing = []
    for row in rows:
        path = Path(row["path"].strip())
        path = path if path.is_absolute() else list_file.parent / path
        if not path.exists():
            missing.append(str(path))
            continue
        name = (row.get("name") or "").strip() or None
        if name is not None and not _SAFE_NAME.match(name):
            problems.append(f"the list {list_file} gives the name {name!r}, which cannot name files; use letters, "
                            "digits, '.', '_' and '-'")
        found.append(_Found(path, name))
    if missing:
        problems.append(f"the list {list_file} names {len(missing)} missing file(s): {', '.join(missing[:10])}"
                        + (" ..." if len(missing) > 10 else ""))
    return found


def _is_dicom_series(folder: Path) -> bool:
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _named(found: Sequence[_Found]) -> List[CohortCase]:
    """Give every CT a unique name: its own, or with as many of its folders' names in front as it takes."""
    given = [f.name for f in found if f.name is not None]
    clash = repeated(given)
    if clash:
        raise InvalidOptionError(f"the lists give the name(s) {clash} to more than one CT; give unique names")
    names: Dict[int, str] = {i: f.name for i, f in enumerate(found) if f.name is not None}
    pending = [i for i in range(len(found)) if i not in names]
    depth = 0
    while pending:
        candidates = {i: _name_with_folders(found[i].path.resolve(), depth) for i in pending}
        counts: Dict[str, int] = defaultdict(int)
        for name in list(names.values()) + list(candidates.values()):
            counts[name] += 1
        settled = [i for i in pending if counts[candidates[i]] == 1]
        if not settled and all(candidates[i] == _name_with_folders(found[i].path.resolve(), depth + 1)
                               for i in pending):
            clashing = sorted(str(found[i].path) for i in pending)
            raise InvalidOptionError(f"cannot give unique names to {', '.join(clashing[:10])}; list them in a CSV "
                                     "with a name column")
        for i in settled:
            names[i] = candidates[i]
        pending = [i for i in pending if i not in names]
        depth += 1
    return [CohortCase(names[i], found[i].path) for i in range(len(found))]


def _name_with_folders(path: Path, depth: int) -> str:
    """The image stem with the names of its `depth` nearest folders in front, joined by '_'."""
    folders = [p.name for p in path.parents][:depth]
    return "_".join([*reversed([f for f in folders if f]), image_stem(path)])
