"""One case's outputs: the images (and with --format dicom-seg the DICOM SEG) and `<name>_summary.json` of a
segmented CT, `<name>_error.json` of a failed one, and whether a case in a folder is already complete for a model
and its settings; and what of its input they need. Used by the single-input `segment` and by the cohort runner
alike."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import SimpleITK as sitk
import torch

from ..errors import InvalidOptionError
from ..io.atomic import StagedOutputs, atomic_file
from .dicom_seg import DICOM_SEG_FORMAT, SEG_SUFFIX, read_seg_sources, write_dicom_seg
from ..io.disk_space import room_for
from ..io.images import read_image, write_image
from ..io.maps import in_parallel, write_map_file
from .segmenter import SegmentationResult
from .settings import InferenceSettings

if TYPE_CHECKING:
    from pydicom import Dataset

SUMMARY_SUFFIX = "_summary.json"
ERROR_SUFFIX = "_error.json"
NO_SEG_WARNING = "No DICOM SEG was written: no organ was found, and a DICOM Segmentation needs at least one segment."


@dataclass(frozen=True)
class ModelRecord:
    """What a summary or an error record gives of the model: its name, file name, sha256 and whether it was
    trained."""

    name: str
    file: str
    sha256: str
    trained: bool

    @classmethod
    def of(cls, model: torch.nn.Module, model_file: str) -> "ModelRecord":
        """The record of a loaded `model` read from the file `model_file`."""
        return cls(model.metadata.name, model_file, model.sha256, model.metadata.trained)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """What a summary records of how its outputs were made: the model, the inference settings and the output
    format (an image extension such as "nii.gz", or DICOM_SEG_FORMAT)."""

    model: ModelRecord
    settings: InferenceSettings
    output_format: str

    def settings_dict(self) -> dict:
        """The summary's "settings": the inference settings and the format."""
        return {**asdict(self.settings), "format": self.output_format}


@dataclass
class CaseInput:
    """A case's CT and, for a DICOM SEG, the headers of its DICOM series' slices in slice order."""

    image: Optional[sitk.Image]
    seg_sources: Optional[List["Dataset"]] = None


def read_case(path: Path, output_format: str) -> CaseInput:
    """The CT at `path` and what its outputs in `output_format` need of it; errors name the path and the fix."""
    image = read_image(path)
    return CaseInput(image, read_seg_sources(path, image) if output_format == DICOM_SEG_FORMAT else None)


def image_extension(output_format: str) -> str:
    """The file extension of the label and map images of `output_format` (a DICOM SEG's are NIfTI)."""
    return "nii.gz" if output_format == DICOM_SEG_FORMAT else output_format


def stage_case(result: SegmentationResult, outputs: StagedOutputs, name: str, input_path: Path, run: RunRecord,
               elapsed_s: float, seg_sources: Optional[Sequence["Dataset"]] = None) -> dict:
    """Write every output image of `result` (and, with --format dicom-seg, its DICOM SEG made from the
    `seg_sources` of `read_case`) and then its summary (naming the `run`'s model and settings, and the timings with
    `elapsed_s` spent on the case before writing) into `outputs`; return the summary.

    The summary is staged last, so it is committed last: a case whose summary exists is whole."""
    clock = time.perf_counter()
    with room_for(outputs.directory, f"the outputs of {name}", "free some space there, or choose another folder "
                  "with -o", output_bytes_bound(result, run.output_format)):
        files = _write_files(result, outputs, name, run, seg_sources)
        result.timings["write_s"] = time.perf_counter() - clock
        result.timings["total_s"] = elapsed_s + result.timings["write_s"]
        summary = _summary(result, input_path, run, files)
        outputs.path(name + SUMMARY_SUFFIX).write_text(json.dumps(summary, indent=2))
    return summary


def output_bytes_bound(result: SegmentationResult, output_format: str) -> int:
    """The most bytes a case's outputs take: their voxels uncompressed (compressed they take far less)."""
    voxels = math.prod(result.labels.GetSize())
    map_bytes = 2 if image_extension(output_format).startswith("nii") else 4  # attention maps as int16 in NIfTI
    seg = voxels * len(result.classes) // 8 if output_format == DICOM_SEG_FORMAT else 0  # one bit per segment
    return voxels * (1 + map_bytes * len(result.attention) + 4 * len(result.probabilities or {})) + seg


def _write_files(result: SegmentationResult, outputs: StagedOutputs, name: str, run: RunRecord,
                 seg_sources: Optional[Sequence["Dataset"]]) -> List[str]:
    """Write every output file, several at a time; each map is resampled onto the input grid as it is written."""
    extension = image_extension(run.output_format)
    jobs = [(f"{name}_seg.{extension}", lambda path: write_image(result.labels, path))]
    if run.output_format == DICOM_SEG_FORMAT:
        if sitk.GetArrayViewFromImage(result.labels).any():
            jobs.append((name + SEG_SUFFIX, partial(write_dicom_seg, result.labels, seg_sources, result.classes,
                                                   model=run.model.to_dict())))
        else:
            result.warnings.append(NO_SEG_WARNING)
    for group, maps in (("attention", result.attention), ("prob", result.probabilities or {})):
        jobs += [(f"{name}_{group}_{map_name}.{extension}", partial(write_map_file, maps, map_name))
                 for map_name in maps]
    in_parallel([partial(write, outputs.path(file)) for file, write in jobs])
    return [file for file, _ in jobs]


def _summary(result: SegmentationResult, input_path: Path, run: RunRecord, files: List[str]) -> dict:
    return {
        "input": str(input_path),
        "labels": {str(c.value): c.name for c in result.classes if c.value > 0},
        "volumes_ml": result.volumes_ml(),
        "attention_gates": list(result.attention),
        "model": run.model.to_dict(),
        "settings": run.settings_dict(),
        "files": files,
        "device": result.device,
        "precision": result.precision,
        "backend": result.backend,
        "timings_s": {k.removesuffix("_s"): round(v, 3) for k, v in result.timings.items()},
        "warnings": result.warnings,
    }


def read_record(path: Path) -> Optional[dict]:
    """A summary or error record, or None when it is missing or not a readable JSON object."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(folder: Path, name: str, run: RunRecord) -> bool:
    """Whether `folder` holds case `name` whole, made by the `run`'s model (its sha256) with its settings."""
    summary = read_record(folder / (name + SUMMARY_SUFFIX))
    if summary is None or not isinstance(summary.get("files"), list):
        return False
    return ((summary.get("model") or {}).get("sha256") == run.model.sha256
            and summary.get("settings") == run.settings_dict()
            and all((folder / file).is_file() for file in summary["files"]))


def write_error(folder: Path, name: str, input_path: Path, model: ModelRecord, error: Exception) -> Path:
    """Record atomically why case `name` failed, as `<name>_error.json`."""
    record = {"input": str(input_path), "error": str(error), "error_type": type(error).__name__,
              "model": model.to_dict()}
    path = folder / (name + ERROR_SUFFIX)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


def remove_error(folder: Path, name: str) -> None:
    """Remove the failure record of case `name` (it has now succeeded)."""
    (folder / (name + ERROR_SUFFIX)).unlink(missing_ok=True)


def refuse_other_models(folder: Path, names: List[str], sha256: str) -> None:
    """Refuse (InvalidOptionError) to write cases `names` into `folder` where it holds any of them made by a model
    other than `sha256` (--overwrite redoes them)."""
    found: Dict[str, dict] = {}
    for name in names:
        summary = read_record(folder / (name + SUMMARY_SUFFIX))
        model = (summary or {}).get("model")
        if isinstance(model, dict) and model.get("sha256") != sha256:
            found[name] = model
    if found:
        listed = sorted(found)
        other = found[listed[0]]
        raise InvalidOptionError(
            f"{folder} holds {len(listed)} case(s) of this run ({', '.join(listed[:10])}"
            f"{' ...' if len(listed) > 10 else ''}) made with another model ({other.get('name')}, sha256 "
            f"{str(other.get('sha256'))[:12]}...); give --overwrite to redo them with this model, or another -o")
