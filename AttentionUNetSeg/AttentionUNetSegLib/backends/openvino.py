"""CPU inference through OpenVINO: the folded model, converted once per model file and cached.

Conversion traces the folded PyTorch model (BatchNorm inside the convolutions) on a small window with
dynamic batch and spatial sizes, so one converted model serves every window size. It is kept in the
per-user cache under the model file's sha256 and the OpenVINO version; it is written to a temporary
folder that is then renamed, so a half-written entry is never read, and an unreadable entry is converted
again. The precision is OpenVINO's inference hint: bf16 where PyTorch would use bf16 (CPUs with native
bf16), f32 otherwise; for int8 the converted model is quantized (quantization.py) and cached beside it, in an
entry of its own (INT8_SUFFIX). Inside each entry OpenVINO keeps the network as compiled for this CPU and
these settings (its CACHE_DIR, COMPILED_FOLDER), so later runs compile in a fraction of the time
(docs/benchmarks.md); OpenVINO checks that network itself and compiles again over a damaged one. This module
owns the cache's layout: `cache_entries` lists it, `remove_cache_entries` empties it (all of it, or one model
file's entries) by renaming each entry away before deleting it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import torch
from torch import nn

from ..io.atomic import remove_stale_staging, staging_folder
from ..models.user_folders import user_cache_dir
from ..network.batchnorm_folding import fold_batchnorm
from .protocol import WindowOutputs

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1
"""Bump when the conversion below changes, so models converted the old way are not used."""
EXAMPLE_SIZE = 32
PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16", torch.int8: "f32"}
"""int8: the quantized layers run in int8 whatever the hint; f32 is the precision of the rest."""
IR_FILE = "network.xml"
COMPILED_FOLDER = "compiled"
INT8_SUFFIX = "-int8"
ENTRY_NAME = re.compile(r"(?P<sha256>[0-9a-f]{64})-openvino.+")
CONVERTING_PREFIX = ".converting-"
REMOVING_PREFIX = ".removing-"


@dataclass(frozen=True)
class CacheEntry:
    """One converted model in the cache: its folder, the model file's sha256, its size in bytes, and whether
    this OpenVINO and conversion version would use it (False: made by another version, never read again)."""

    path: Path
    sha256: str
    size: int
    current: bool

    @property
    def int8(self) -> bool:
        """Whether this is the model quantized to int8 (--precision int8), not the float one."""
        return self.path.name.endswith(INT8_SUFFIX)


class _AllOutputs(nn.Module):
    """The model with logits and every gate's map as a flat tuple of outputs (what OpenVINO converts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if not self.model.gate_names:
            return (self.model(x),)
        logits, gates = self.model(x, return_attention=True)
        return (logits, *(gates[name] for name in self.model.gate_names))


class OpenVINOBackend:
    """A compiled OpenVINO model as a WindowBackend (protocol.py)."""

    name = "openvino"
    device = torch.device("cpu")

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.gate_names = list(model.gate_names)
        self.dtype = dtype
        int8 = dtype == torch.int8
        with ctrl_c_after():  # the import too: a Ctrl-C inside an extension's initialisation becomes an ImportError
            import openvino as ov

            self.core = ov.Core()
            ov_model = self._cached_or_quantized(model) if int8 else self._cached_or_converted(model)
            entry = self._cache_folder(model, INT8_SUFFIX if int8 else "")
            if entry is not None and (entry / IR_FILE).is_file():  # from the file: OpenVINO keys its compiled one by it
                self.request = compile_request(str(entry / IR_FILE), dtype, self.core, entry / COMPILED_FOLDER)
            else:
                self.request = compile_request(ov_model, dtype, self.core)

    def __call__(self, windows: torch.Tensor, attention: bool) -> WindowOutputs:
        results = self.request.infer({0: np.ascontiguousarray(windows.numpy(), dtype=np.float32)})
        # the request reuses its output buffers on the next call: copy what is kept
        outputs = [torch.from_numpy(np.array(results[i])) for i in range(1 + (len(self.gate_names) if attention else 0))]
        return outputs[0], outputs[1:]

    def _cached_or_converted(self, model: nn.Module):
        folder = self._cache_folder(model)
        cached = self._cached(folder)
        if cached is not None:
            return cached
        log.info("converting the model for OpenVINO (once per model file%s)", _kept_in(folder))
        return _stored(convert(_AllOutputs(fold_batchnorm(model)), model.config.in_channels), folder)

    def _cached_or_quantized(self, model: nn.Module):
        from .quantization import quantize

        folder = self._cache_folder(model, INT8_SUFFIX)
        cached = self._cached(folder)
        if cached is not None:
            return cached
        log.info("quantizing the model to int8 (once per model file%s)", _kept_in(folder))
        return _stored(quantize(self._cached_or_converted(model), model.metadata), folder)

    def _cached(self, folder: Optional[Path]):
        """The model cached in `folder`, or None (an unreadable one is removed, to be made again)."""
        if folder is None or not (folder / IR_FILE).is_file():
            return None
        try:
            return self.core.read_model(str(folder / IR_FILE))
        except RuntimeError as exc:
            log.warning("the cached OpenVINO model in %s is unreadable (%s); making it again", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    @staticmethod
    def _cache_folder(model: nn.Module, variant: str = "") -> Optional[Path]:
        """Where this model file's converted (or, with INT8_SUFFIX, quantized) model lives; None for a model not
        loaded from a file."""
        import openvino as ov

        sha256 = getattr(model, "sha256", None)
        return None if sha256 is None else cache_root() / f"{sha256}{_version_suffix(ov.__version__)}{variant}"


def cache_root() -> Path:
    """The folder holding every converted model."""
    return user_cache_dir() / "openvino"


def _version_suffix(openvino_version: str) -> str:
    return f"-openvino{openvino_version.split('-')[0]}-v{CONVERSION_VERSION}"


def _installed_version_suffix() -> Optional[str]:
    """The entry-name suffix this installation uses; None without OpenVINO (no entry is used then)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return _version_suffix(ov.__version__)


def cache_entries(sha256: Optional[str] = None) -> List[CacheEntry]:
    """The cache's entries (only those of the model file with `sha256` if given), by sha256 and name."""
    root, suffix = cache_root(), _installed_version_suffix()
    entries = []
    for folder in sorted(root.iterdir() if root.is_dir() else ()):
        match = ENTRY_NAME.fullmatch(folder.name)
        if match and (sha256 is None or match["sha256"] == sha256) and folder.is_dir() and not folder.is_symlink():
            entries.append(CacheEntry(folder, match["sha256"], _folder_size(folder), suffix is not None and
                                      folder.name in (match["sha256"] + suffix, match["sha256"] + suffix + INT8_SUFFIX)))
    return entries


def _folder_size(folder: Path) -> int:
    """Bytes in the files below `folder`; files removed meanwhile count nothing."""
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            pass
    return total


def remove_cache_entries(sha256: Optional[str] = None) -> List[CacheEntry]:
    """Remove the cache's entries (only those of the model file with `sha256` if given) and return them.

    Clearing everything also removes what killed conversions and removals left behind (never a running
    conversion's folder). An entry removed meanwhile by another process is skipped.
    """
    entries = cache_entries(sha256)
    removed = [entry for entry in entries if _remove_entry(entry.path)]
    if sha256 is None and cache_root().is_dir():
        remove_stale_staging(cache_root(), CONVERTING_PREFIX)
        for leftover in cache_root().glob(f"{REMOVING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return removed


def _remove_entry(folder: Path) -> bool:
    """Rename `folder` (an entry directly in the cache root) out of the way, then delete it; False if it was
    already gone. A reader that opened it before keeps its open files (POSIX); a new one converts again."""
    if folder.parent.resolve() != cache_root().resolve():
        raise ValueError(f"{folder} is not an entry of the OpenVINO cache {cache_root()}")
    doomed = folder.with_name(f"{REMOVING_PREFIX}{uuid.uuid4().hex}")
    try:
        os.replace(folder, doomed)
    except FileNotFoundError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


@contextlib.contextmanager
def ctrl_c_after() -> Iterator[None]:
    """Ctrl-C during the block takes effect when the block ends. Interrupted inside its calls (reading, converting,
    quantizing or compiling a model), OpenVINO aborts the process ("terminate called after throwing
    pybind11::error_already_set") or reports an ordinary error ("initialization failed"), after which the run would
    go on with PyTorch, or a good cache entry be thrown away, and the Ctrl-C be lost. Only where Ctrl-C raises
    KeyboardInterrupt (Python's own handler, in the main thread)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    asked: List[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if asked:
            raise KeyboardInterrupt


def convert(module: nn.Module, in_channels: int):
    """`module` (eval mode; one (N, C, z, y, x) input) as an OpenVINO model with dynamic batch and sizes."""
    import openvino as ov

    example = torch.zeros(1, in_channels, EXAMPLE_SIZE, EXAMPLE_SIZE, EXAMPLE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: the sizes stay dynamic
        return ov.convert_model(module, example_input=example,
                                input=[ov.PartialShape([-1, in_channels, -1, -1, -1])])


def compile_request(ov_model, dtype: torch.dtype, core=None, cache: Optional[Path] = None):
    """An inference request of `ov_model` (a model or its file) on the CPU at `dtype`'s precision, on PyTorch's
    number of threads; with `cache`, OpenVINO compiles from the network it compiled there before, or keeps it
    there (without, if the folder cannot be used)."""
    import openvino as ov

    core = core or ov.Core()
    settings = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[dtype], "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    if cache is not None:
        try:
            return core.compile_model(ov_model, "CPU", {**settings, "CACHE_DIR": str(cache)}).create_infer_request()
        except RuntimeError as exc:
            log.warning("OpenVINO could not use %s for its compiled network (%s); compiling without it", cache, exc)
    return core.compile_model(ov_model, "CPU", settings).create_infer_request()


def _kept_in(folder: Optional[Path]) -> str:
    return f"; kept in {folder}" if folder is not None else ""


def _stored(ov_model, folder: Optional[Path]):
    """`ov_model`, after saving it in `folder` (unless that is None) atomically: into a temporary folder beside
    it, then renamed (a racing writer may win)."""
    import openvino as ov

    if folder is None:
        return ov_model
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder.parent, CONVERTING_PREFIX)
    try:
        ov.save_model(ov_model, str(staging / IR_FILE), compress_to_fp16=False)
        os.replace(staging, folder)
    except OSError as exc:
        log.warning("could not keep the OpenVINO model in %s (%s); it is made again next time", folder, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ov_model
