"""Reading CT volumes (NIfTI, NRRD, MHA files or a DICOM series folder) and writing results."""
from __future__ import annotations

import logging
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_file
from .errors import InputImageError
from .grid import Grid

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
OUTPUT_FORMATS: Tuple[str, ...] = ("nii.gz", "nrrd", "mha")


def read_image(path: Path) -> sitk.Image:
    """Read an image file or the largest DICOM series in a folder; errors name the path and the fix."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"input {path} does not exist; give a NIfTI, NRRD or MHA file or a DICOM folder")
    if path.is_dir():
        return _read_dicom_folder(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return _read_file(path)
    with ThreadPoolExecutor(max_workers=1) as pool:  # both decompress without holding the GIL
        complete = pool.submit(_check_nifti_complete, path)
        try:
            image = _read_file(path)
        finally:
            complete.result()  # a truncated file is the better explanation of a failed read
    return image


def _read_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = _itk_reason(exc)
        if "spacing" in reason.lower():
            raise InputImageError(f"{path} has zero or negative voxel spacing ({reason}); "
                                  "fix the spacing in its header") from exc
        raise InputImageError(
            f"cannot read {path} as an image ({reason}); is it a complete NIfTI, NRRD or MHA file?"
        ) from exc


def _check_nifti_complete(path: Path) -> None:
    """ITK reads truncated NIfTI files without complaint (missing voxels become 0): check the length."""
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        expected = int(header.get_data_offset()) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        actual = _gzip_data_size(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    except (OSError, EOFError, zlib.error, nibabel.filebasedimages.ImageFileError) as exc:
        raise InputImageError(f"{path} is corrupt or truncated ({exc}); copy or export it again") from exc
    if actual < expected:
        raise InputImageError(f"{path} is truncated: {actual} of {expected} bytes; copy or export it again")


def _gzip_data_size(path: Path) -> int:
    """Decompressed length of a gzip file (every member), counted in large steps: zlib inflates without the
    GIL, so this runs beside ITK's own read and other threads (gzip.open's small steps would wait for it)."""
    size, inflater = 0, zlib.decompressobj(wbits=31)
    with open(path, "rb") as handle:
        for data in iter(lambda: handle.read(1 << 20), b""):
            while data:
                size += len(inflater.decompress(data, 1 << 26))  # bounded output, whatever the compression ratio
                if inflater.eof:  # the next member, if any
                    data, inflater = inflater.unused_data, zlib.decompressobj(wbits=31)
                else:
                    data = inflater.unconsumed_tail
    return size


def _itk_reason(exc: RuntimeError) -> str:
    """The informative last line of an ITK exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown reader error"


def _read_dicom_folder(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputImageError(f"folder {folder} holds no DICOM series; give a folder of DICOM slices or an image file")
    files_by_series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    series_id = max(files_by_series, key=lambda sid: len(files_by_series[sid]))
    if len(series_ids) > 1:
        log.warning("%s holds %d DICOM series; using %s (%d slices), the largest",
                    folder, len(series_ids), series_id, len(files_by_series[series_id]))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files_by_series[series_id])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputImageError(f"cannot read the DICOM series in {folder}: {_itk_reason(exc)}") from exc


def image_stem(path: Path) -> str:
    """The input's name without its image suffix (a DICOM folder's own name)."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_image(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    """Write atomically (temp file + rename); the format follows the suffix."""
    with _atomic_image_file(Path(path)) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return Path(path)


@contextmanager
def _atomic_image_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` with its image suffix (writers choose the format from it); it replaces
    `path` only if the block succeeds."""
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    with atomic_file(path) as tmp:
        tmp_with_suffix = tmp.with_name(tmp.name + suffix)
        try:
            yield tmp_with_suffix
            tmp_with_suffix.replace(tmp)
        finally:
            tmp_with_suffix.unlink(missing_ok=True)


def write_map(values: np.ndarray, grid: Grid, path: Path, step: Optional[float] = None) -> Path:
    """Write a map's float32 values (z, y, x) on `grid` atomically, as a float32 image. Values that are multiples
    of `step` go into a NIfTI file as int16 multiples with `step` as the scale factor (scl_slope), which every
    NIfTI reader applies (ITK, Slicer and nibabel read the same float32 values): half the bytes to compress."""
    path = Path(path)
    if step is None or not path.name.lower().endswith((".nii.gz", ".nii")):
        return write_image(grid.image(values), path)
    import nibabel

    multiples = np.empty(values.shape, dtype=np.int16)
    np.multiply(values, 1.0 / step, out=multiples, casting="unsafe")  # exact: the values are multiples of step
    affine = np.eye(4)
    affine[:3, :3] = np.array(grid.direction).reshape(3, 3) * np.array(grid.spacing)
    affine[:3, 3] = grid.origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS to NIfTI's RAS
    nifti = nibabel.Nifti1Image(multiples.transpose(2, 1, 0), affine)  # (x, y, z), no copy
    nifti.header.set_slope_inter(step, 0.0)
    nifti.header.set_xyzt_units("mm")
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    with _atomic_image_file(path) as tmp:
        nibabel.save(nifti, str(tmp))
    return path
