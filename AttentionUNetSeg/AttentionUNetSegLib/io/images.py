"""Reading CT volumes (NIfTI, NRRD, MHA files or a DICOM series folder) and writing results.

Maps are written and read by hand (`write_map`, `read_map`: faster than through ITK, docs/benchmarks.md); that
they equal what SimpleITK writes and reads is a contract, Testing/engine/inference/test_contracts.py.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputImageError
from .atomic import atomic_file
from .grid import Grid
from .gzip_files import INFLATE_ERRORS, gzip_inflater, open_gzip

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
OUTPUT_FORMATS: Tuple[str, ...] = ("nii.gz", "nrrd", "mha")
MAX_AXIS_COSINE = 1e-2
"""Largest |cosine| between two NIfTI sform axes that is orthonormalised (axes within 0.57 degrees of
perpendicular): float32 headers and resampling leave far less (ITK itself refuses above about 1e-4); more is a
sheared grid that a rotation cannot describe."""
NIFTI_VOXEL_OFFSET = 352
"""Where the voxels of a single-file NIfTI-1 image start at the earliest (header and extension flag)."""
_PERMISSIVE_READ = threading.Lock()  # ITK_NIFTI_SFORM_PERMISSIVE is process-wide: one such read at a time
_UNIT_MM = {"meter": 1000.0, "micron": 1e-3}  # NIfTI spatial units; ITK converts them to mm, as here
Geometry = Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]
"""Origin, spacing and row-major direction in ITK's LPS convention."""


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
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if "orthonormal direction cosines" in _itk_reason(exc) and path.name.lower().endswith((".nii", ".nii.gz")):
            return _read_nonorthonormal_nifti(path)
        raise _read_error(path, exc) from exc
    if image.HasMetaDataKey("ITK_sform_corrected") and image.GetMetaData("ITK_sform_corrected") == "YES":
        _set_geometry(image, _orthonormal_sform_geometry(path))  # the user set ITK_NIFTI_SFORM_PERMISSIVE
    return image


def _read_error(path: Path, exc: RuntimeError) -> InputImageError:
    reason = _itk_reason(exc)
    if "spacing" in reason.lower():
        return InputImageError(f"{path} has zero or negative voxel spacing ({reason}); fix the spacing in its header")
    return InputImageError(f"cannot read {path} as an image ({reason}); is it a complete NIfTI, NRRD or MHA file?")


def _read_nonorthonormal_nifti(path: Path) -> sitk.Image:
    """Read a NIfTI file whose sform ITK refuses as not orthonormal: ITK's own voxels (its permissive mode), with
    the nearest orthonormal direction if the sform is close to one (a warning), else an InputImageError."""
    geometry = _orthonormal_sform_geometry(path)
    with _PERMISSIVE_READ:
        previous = os.environ.get("ITK_NIFTI_SFORM_PERMISSIVE")
        os.environ["ITK_NIFTI_SFORM_PERMISSIVE"] = "YES"
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise _read_error(path, exc) from exc
        finally:
            if previous is None:
                del os.environ["ITK_NIFTI_SFORM_PERMISSIVE"]
            else:
                os.environ["ITK_NIFTI_SFORM_PERMISSIVE"] = previous
    _set_geometry(image, geometry)
    return image


def _orthonormal_sform_geometry(path: Path) -> Geometry:
    """The geometry of a NIfTI file's sform (its qform without one) with the nearest orthonormal direction; a warning
    names the deviation, and a matrix further than MAX_AXIS_COSINE from orthonormal is refused."""
    import nibabel

    header = nibabel.load(str(path)).header
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ header.get_best_affine()  # NIfTI's RAS to ITK's LPS
    scale = _UNIT_MM.get(header.get_xyzt_units()[0], 1.0)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputImageError(f"{path} has a degenerate direction matrix (sform axis lengths {spacing}); "
                              "fix the sform in its header")
    direction = affine[:3, :3] / spacing
    cosine = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if cosine > MAX_AXIS_COSINE:
        raise InputImageError(
            f"{path} has a sheared direction matrix (sform): its axes are up to {_degrees(cosine):.2f} degrees off "
            f"perpendicular (max |R^T R - I| = {cosine:.3g}, more than {MAX_AXIS_COSINE:g}); resample it onto an "
            "orthogonal grid or fix the sform in its header")
    u, _, vt = np.linalg.svd(direction)
    nearest = u @ vt
    moved = np.degrees(np.arccos(np.clip(np.sum(direction * nearest, axis=0), -1.0, 1.0)))
    log.warning("%s: the NIfTI direction matrix (sform) is not orthonormal (max |R^T R - I| = %.3g, axes up to "
                "%.3f degrees off perpendicular); using the nearest orthonormal one, axes moved by up to %.3f degrees",
                path, cosine, _degrees(cosine), float(np.max(moved)))
    return (tuple(affine[:3, 3] * scale), tuple(spacing * scale), tuple(nearest.ravel()))


def _degrees(cosine: float) -> float:
    """How far from perpendicular two axes are whose cosine is `cosine`."""
    return math.degrees(math.asin(min(cosine, 1.0)))


def _set_geometry(image: sitk.Image, geometry: Geometry) -> None:
    """Give a 3-D image the geometry; other dimensions keep ITK's own correction."""
    if image.GetDimension() == 3:
        origin, spacing, direction = geometry
        image.SetOrigin(origin)
        image.SetSpacing(spacing)
        image.SetDirection(direction)


def _check_nifti_complete(path: Path) -> None:
    """ITK reads truncated NIfTI files without complaint (missing voxels become 0): check the length."""
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        offset = max(int(header.get_data_offset()), NIFTI_VOXEL_OFFSET)  # ITK may leave vox_offset 0
        expected = offset + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        actual = _gzip_data_size(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    except (OSError, EOFError, *INFLATE_ERRORS, nibabel.filebasedimages.ImageFileError) as exc:
        raise InputImageError(f"{path} is corrupt or truncated ({exc}); copy or export it again") from exc
    if actual < expected:
        raise InputImageError(f"{path} is truncated: {actual} of {expected} bytes; copy or export it again")


def _gzip_data_size(path: Path) -> int:
    """Decompressed length of a gzip file (every member), counted in large steps: the inflater runs without the
    GIL, so this runs beside ITK's own read and other threads (gzip.open's small steps would wait for it)."""
    size, inflater = 0, gzip_inflater()
    with open(path, "rb") as handle:
        for data in iter(lambda: handle.read(1 << 20), b""):
            while data:
                size += len(inflater.decompress(data, 1 << 26))  # bounded output, whatever the compression ratio
                if inflater.eof:  # the next member, if any
                    data, inflater = inflater.unused_data, gzip_inflater()
                else:
                    data = inflater.unconsumed_tail
    return size


def _itk_reason(exc: RuntimeError) -> str:
    """The informative last line of an ITK exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown reader error"


def dicom_series_files(folder: Path, warn: bool = True) -> List[str]:
    """The files of the largest DICOM series in `folder`, in the order ITK stacks them (by position along the
    slice normal); with `warn`, a warning when the folder holds other series too."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputImageError(f"folder {folder} holds no DICOM series; give a folder of DICOM slices or an image file")
    files_by_series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    series_id = max(files_by_series, key=lambda sid: len(files_by_series[sid]))
    if len(series_ids) > 1 and warn:
        log.warning("%s holds %d DICOM series; using %s (%d slices), the largest",
                    folder, len(series_ids), series_id, len(files_by_series[series_id]))
    return list(files_by_series[series_id])


def _read_dicom_folder(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(dicom_series_files(folder))
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
        if tmp.name.lower().endswith((".nii", ".nii.gz")):
            _check_nifti_written(tmp)
    return Path(path)


def _check_nifti_written(path: Path) -> None:
    """Raise OSError (ENOSPC) for a NIfTI file that ITK left incomplete: its writer only prints an error when the
    disk is full. The length is the header's offset and voxels; a gzip file's last 4 bytes give its length."""
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        offset = max(int(header.get_data_offset()), NIFTI_VOXEL_OFFSET)  # ITK may leave vox_offset 0
        expected = offset + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        with open(path, "rb") as handle:
            if path.name.lower().endswith(".gz"):
                handle.seek(-4, os.SEEK_END)
                complete = int.from_bytes(handle.read(4), "little") == expected % 2 ** 32
            else:
                complete = os.fstat(handle.fileno()).st_size == expected
    except (OSError, EOFError, *INFLATE_ERRORS, nibabel.filebasedimages.ImageFileError):
        complete = False
    if not complete:
        raise OSError(errno.ENOSPC, "ITK wrote the file incomplete (no room left on the disk?)", str(path))


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
    """Write a map (z, y, x) on `grid` atomically; every reader gets float32 values. Without `step`, `values` are
    those float32 values; with it, they are int16 multiples of `step` (value = multiple * step), which a NIfTI
    file stores as they are with `step` as the scale factor (scl_slope), which every NIfTI reader applies (ITK,
    Slicer and nibabel read the same float32 values): half the bytes to compress. NIfTI files hold what
    nibabel would write, compressed on every core by gzip_files; other formats are written by ITK, as float32."""
    path = Path(path)
    if step is not None and values.dtype != np.int16:
        raise TypeError(f"a map with a step is written from its int16 multiples, not from {values.dtype} values")
    if not path.name.lower().endswith((".nii.gz", ".nii")):
        return write_image(grid.image(values if step is None else values * np.float32(step)), path)
    header = _nifti_header(values, grid, step)
    with _atomic_image_file(path) as tmp:
        with (open_gzip(tmp) if path.name.lower().endswith(".gz") else open(tmp, "wb")) as stream:
            header.write_to(stream)  # with a single file's empty extension field: the voxels start at 352
            for plane in np.ascontiguousarray(values):  # (x, y, z) in Fortran order, as NIfTI stores voxels
                stream.write(plane.data)
    return path


def read_map(path: Path) -> np.ndarray:
    """The float32 values (z, y, x) of a map that `write_map` wrote as uncompressed NIfTI: those ITK's reader
    gives (multiple * scl_slope), computed in float32 from the stored voxels without ITK's conversion through
    double, which takes several times as long on a whole CT."""
    import nibabel

    stored = nibabel.load(str(path)).dataobj
    slope = np.float32(1.0 if stored.slope is None or np.isnan(stored.slope) else stored.slope)
    unscaled = np.asarray(stored.get_unscaled()).T  # (z, y, x) view of the file's (x, y, z) voxels
    return np.multiply(unscaled, slope, out=np.empty(unscaled.shape, np.float32), dtype=np.float32)


def _nifti_header(values: np.ndarray, grid: Grid, step: Optional[float]):
    """The header nibabel writes for `values` (z, y, x) on `grid`, scaled by `step` if given."""
    import nibabel

    affine = np.eye(4)
    affine[:3, :3] = np.array(grid.direction).reshape(3, 3) * np.array(grid.spacing)
    affine[:3, 3] = grid.origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS to NIfTI's RAS
    nifti = nibabel.Nifti1Image(values.transpose(2, 1, 0), affine)  # (x, y, z), no copy
    nifti.header.set_slope_inter(1.0 if step is None else step, 0.0)  # 1: nibabel's "unscaled"
    nifti.header.set_xyzt_units("mm")
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    nifti.update_header()
    return nifti.header
