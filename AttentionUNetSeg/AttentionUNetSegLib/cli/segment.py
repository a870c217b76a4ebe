"""`attention-unet segment`: segment one CT and write labels, attention maps and a summary."""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from ..atomic import StagedOutputs
from ..backends import BACKEND_CHOICES
from ..device import DEVICE_CHOICES, PRECISION_CHOICES
from ..imageio import OUTPUT_FORMATS, image_stem, read_image, write_image, write_map
from ..inference import SegmentationResult, segment
from ..inference_settings import InferenceSettings
from ..model_file import read_model
from ..registry import resolve_model_path
from ..sliding_windows import preload_sliding_window
from .option_types import fraction, whole_number
from .progress import ProgressPrinter


WRITERS = 2
"""Output images compressed and written at the same time."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a CT volume",
        description="Segment a CT (NIfTI, NRRD or MHA file, or a DICOM series folder) and write "
        "<name>_seg.<ext>, one <name>_attention_<gate>.<ext> per attention gate, optional "
        "<name>_prob_<class>.<ext>, and <name>_summary.json. Outputs appear only when the whole run succeeds.",
    )
    parser.add_argument("input", type=Path, help="CT image file or DICOM series folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--model", default=None,
                        help="registry name or .safetensors file (default: the registry's default model)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="numeric precision (default: auto = bf16/fp16 on CUDA, bf16 on CPUs with native "
                        "bf16, else fp32)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="what runs the network: auto = OpenVINO on the CPU when installed (faster there), else "
                        "PyTorch (default: auto)")
    parser.add_argument("--no-attention", action="store_true", help="do not write attention maps")
    parser.add_argument("--probabilities", action="store_true", help="also write per-class probability maps")
    parser.add_argument("--overlap", type=fraction, default=0.25,
                        help="sliding-window overlap in [0, 1) (default: 0.25)")
    parser.add_argument("--batch-size", type=whole_number(1), default=None,
                        help="windows per forward pass (default: 4 on CUDA, 1 on CPU)")
    parser.add_argument("--window-voxels", type=whole_number(0), default=0, metavar="N",
                        help="enlarge sliding windows up to N voxels (fewer windows; but a model trained on small "
                        "patches segments differently with more context: check on your data) (default: 0 = the "
                        "model's training patch)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="nii.gz", help="output file format")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    settings = _settings(args)
    preload_sliding_window()
    model_path = resolve_model_path(args.model)
    image = read_image(args.input)
    with StagedOutputs(args.output) as outputs:  # fails early on an unwritable folder
        model = read_model(model_path)
        with ProgressPrinter(enabled=not args.quiet) as progress:
            result = segment(image, model, settings, progress=progress)
        stem = image_stem(args.input)
        write_started = time.perf_counter()
        _write_result(result, outputs, stem, args.format)
        result.timings["write_s"] = time.perf_counter() - write_started
        result.timings["total_s"] = time.perf_counter() - started
        summary = _summary(result, args.input, model_path.name, model)
        outputs.path(f"{stem}_summary.json").write_text(json.dumps(summary, indent=2))
        written = outputs.commit()
    if not args.quiet:
        for path in written:
            print(path)
    if not model.metadata.trained:
        print(f"warning: model {model.metadata.name!r} is UNTRAINED: the output is not anatomical", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace) -> InferenceSettings:
    return InferenceSettings(device=args.device, precision=args.precision, backend=args.backend, overlap=args.overlap,
                             batch_size=args.batch_size, window_voxels=args.window_voxels,
                             attention=not args.no_attention, probabilities=args.probabilities)


def _write_result(result: SegmentationResult, outputs: StagedOutputs, stem: str, extension: str) -> None:
    """Write every output image. Maps are resampled onto the input grid here, one at a time (PyTorch uses
    every core for that), while up to WRITERS earlier ones are compressed and written in threads (ITK and
    zlib release the GIL), so memory holds at most WRITERS + 1 full-size maps."""
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        pending = [pool.submit(write_image, result.labels, outputs.path(f"{stem}_seg.{extension}"))]
        for group, maps in (("attention", result.attention), ("prob", result.probabilities or {})):
            for name in maps:
                values = maps.array(name)
                while sum(not job.done() for job in pending) >= WRITERS:
                    wait(pending, return_when=FIRST_COMPLETED)
                pending.append(pool.submit(write_map, values, maps.grid,
                                           outputs.path(f"{stem}_{group}_{name}.{extension}"), maps.step))
        for job in pending:
            job.result()  # re-raises a failed write


def _summary(result: SegmentationResult, input_path: Path, model_file: str, model) -> dict:
    metadata = model.metadata
    return {
        "input": str(input_path),
        "labels": {str(c.value): c.name for c in result.classes if c.value > 0},
        "volumes_ml": result.volumes_ml(),
        "attention_gates": list(result.attention),
        "model": {"name": metadata.name, "file": model_file, "sha256": model.sha256, "trained": metadata.trained},
        "device": result.device,
        "precision": result.precision,
        "backend": result.backend,
        "timings_s": {k.removesuffix("_s"): round(v, 3) for k, v in result.timings.items()},
        "warnings": result.warnings,
    }
