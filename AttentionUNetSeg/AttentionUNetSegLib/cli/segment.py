"""`attention-unet segment`: segment one CT, or a cohort of them, and write labels, attention maps and a summary
per CT (and cohort.csv for a cohort)."""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

from ..backends.choices import DEVICE_CHOICES, INFERENCE_PRECISION_CHOICES
from ..backends.selection import BACKEND_CHOICES
from ..cohort.inputs import CohortCase, resolve_inputs
from ..cohort.runner import CohortJob, check_output_folder, run_cohort
from ..cohort.shards import Shard, environment_shard, local_device, parse_shard
from ..cohort.table import TABLE_FILE, write_cohort_table
from ..errors import DiskFullError, InvalidOptionError
from ..inference.case_outputs import ERROR_SUFFIX, ModelRecord, RunRecord, read_case, refuse_other_models, stage_case
from ..inference.segmenter import Segmenter
from ..inference.settings import InferenceSettings
from ..io.atomic import StagedOutputs
from ..inference.dicom_seg import DICOM_SEG_FORMAT, require_dicom_seg
from ..io.images import OUTPUT_FORMATS
from ..models.model_file import read_model
from ..models.registry import resolve_model_path
from .case_report import report_case
from .option_types import fraction, whole_number
from .progress import ProgressPrinter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a CT volume or a cohort of them",
        description="Segment CTs (NIfTI, NRRD or MHA files, DICOM series folders, folders of them, or .txt/.csv "
        "lists of them) and write per CT <name>_seg.<ext>, one <name>_attention_<gate>.<ext> per attention gate, "
        "optional <name>_prob_<class>.<ext>, and <name>_summary.json; a CT's outputs appear only when all of them "
        "are written. Each CT's organ volumes, where it ran and its warnings are printed once it is written. A "
        "cohort (more than one CT) also gets cohort.csv; its complete CTs are skipped when run again, and a CT that fails is recorded as <name>_error.json while the others go on (a full disk stops the "
        "run: the others would fail too).",
    )
    parser.add_argument("input", type=Path, nargs="+",
                        help="CT image files, DICOM series folders, folders of them, or .txt/.csv lists")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--model", default=None,
                        help="registry name or .safetensors file (default: the registry's default model)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    parser.add_argument("--precision", choices=INFERENCE_PRECISION_CHOICES, default="auto",
                        help="numeric precision (default: auto = bf16/fp16 on CUDA, bf16 on CPUs with native "
                        "bf16, else fp32); int8: quantized, on the CPU through OpenVINO, faster there but with "
                        "labels that differ from fp32's (needs nncf; the first run quantizes the model, once)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="what runs the network: auto = OpenVINO on the CPU when installed (faster there), else "
                        "PyTorch (default: auto)")
    parser.add_argument("--no-attention", action="store_true", help="do not write attention maps")
    parser.add_argument("--probabilities", action="store_true", help="also write per-class probability maps")
    parser.add_argument("--overlap", type=fraction, default=0.25,
                        help="sliding-window overlap in [0, 1) (default: 0.25)")
    parser.add_argument("--batch-size", type=whole_number(1), default=None,
                        help="windows per forward pass (default: 4 on CUDA, 1 on CPU)")
    parser.add_argument("--window-voxels", type=whole_number(0), default=None, metavar="N",
                        help="sliding windows of up to N voxels, shaped like the scan (fewer windows; but a model "
                        "trained on small patches may segment differently with more context: check on your data); "
                        "0: the model's training patch (default: the model's own choice, in its file)")
    parser.add_argument("--format", choices=(*OUTPUT_FORMATS, DICOM_SEG_FORMAT), default="nii.gz",
                        help="output file format; dicom-seg (for DICOM series inputs; needs highdicom): also a DICOM "
                        "Segmentation <name>_seg.dcm that references the source series, beside NIfTI labels and maps "
                        "(default: nii.gz)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo the cases already complete in the output folder, also those made with another "
                        "model")
    parser.add_argument("--shard", type=parse_shard, default=None, metavar="K/N",
                        help="segment only shard K of N of the cohort (every N-th case from the K-th, e.g. a SLURM "
                        "array task); under torchrun each process takes its rank's shard by itself")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress, no list of the files written and no table of organ volumes; warnings "
                        "and errors are still printed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    shard = _shard(args)
    if environment_shard() is not None and args.device == "auto" and local_device() is not None:
        settings = replace(settings, device=local_device())  # torchrun: this process's own GPU
    cases = resolve_inputs(args.input)
    if args.format == DICOM_SEG_FORMAT:
        require_dicom_seg([case.path for case in cases])
    model_path = resolve_model_path(args.model)
    if shard is None and len(args.input) == 1 and [case.path for case in cases] == args.input:
        return _run_single(args, cases[0], settings, model_path)
    return _run_cohort(args, cases, shard or Shard(), settings, model_path)


def _settings(args: argparse.Namespace) -> InferenceSettings:
    return InferenceSettings(device=args.device, precision=args.precision, backend=args.backend, overlap=args.overlap,
                             batch_size=args.batch_size, window_voxels=args.window_voxels,
                             attention=not args.no_attention, probabilities=args.probabilities)


def _shard(args: argparse.Namespace) -> Optional[Shard]:
    """--shard, or under torchrun this process's rank; both is an error."""
    from_torchrun = environment_shard()
    if from_torchrun is not None and args.shard is not None:
        raise InvalidOptionError(f"--shard {args.shard} was given under torchrun, which shares the cohort by rank "
                                 f"(this process: {from_torchrun}); drop --shard, or run without torchrun")
    return from_torchrun or args.shard


def _run_single(args: argparse.Namespace, case: CohortCase, settings: InferenceSettings, model_path: Path) -> int:
    """One CT: its outputs appear whole or not at all, and their paths are printed."""
    started = time.perf_counter()
    with StagedOutputs(args.output) as outputs, ThreadPoolExecutor(1, "reader") as reader:
        reading = reader.submit(read_case, case.path, args.format)  # ITK reads while the model is made ready
        try:
            segmenter = Segmenter(read_model(model_path), settings)
        finally:
            case_input = reading.result()  # a bad CT is reported before a model's problems
        if not args.overwrite:
            refuse_other_models(args.output, [case.name], segmenter.model.sha256)
        with ProgressPrinter(enabled=not args.quiet) as progress:
            result = segmenter(case_input.image, progress=progress)
        case_input.image = None
        model = segmenter.model
        run = RunRecord(ModelRecord.of(model, model_path.name), settings, args.format)
        summary = stage_case(result, outputs, case.name, case.path, run, time.perf_counter() - started,
                             case_input.seg_sources)
        written = outputs.commit()
    in_cohort_folder = (args.output / TABLE_FILE).exists()
    table_kept = not in_cohort_folder or _rebuilt_table(args.output) is not None
    if not args.quiet:
        for path in written:
            print(path)
    report_case(case.name, summary, args.quiet)
    _warn_untrained(model)
    return 0 if table_kept else 1


def _run_cohort(args: argparse.Namespace, cohort: List[CohortCase], shard: Shard, settings: InferenceSettings,
                model_path: Path) -> int:
    """Many CTs (or a shard of them): complete cases are skipped, failed ones recorded, cohort.csv rebuilt."""
    model = read_model(model_path)
    cases = shard.select(cohort)
    job = CohortJob(cases, model, model_path.name, settings, args.output, args.format, args.overwrite)
    check_output_folder(job, cohort)
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if shard.count > 1:
        say(f"shard {shard}: {len(cases)} of the cohort's {len(cohort)} case(s)")
    try:
        outcome = run_cohort(job, say, lambda: ProgressPrinter(enabled=not args.quiet),
                             lambda case, summary: report_case(case.name, summary, args.quiet))
    except KeyboardInterrupt:
        print("interrupted: the cases finished so far are kept, the one in progress was not written; run the same "
              "command again to go on", file=sys.stderr)
        return 130
    finally:
        table = _rebuilt_table(args.output)
    if table is not None and not args.quiet:
        print(table)
    print(f"{len(outcome.done)} case(s) segmented, {len(outcome.skipped)} already complete, {len(outcome.failed)} "
          f"failed", file=sys.stderr)
    _warn_untrained(model)
    for name in outcome.unrecorded:
        print(f"error: no room in {args.output} to record the failure of {name} in {name}{ERROR_SUFFIX} either",
              file=sys.stderr)
    if outcome.stopped:
        print(f"error: the run stopped: {outcome.stopped}; the cases written are kept, run the same command again to "
              "go on", file=sys.stderr)
    elif outcome.failed:
        names = ", ".join(name for name, _ in outcome.failed)
        print(f"error: {len(outcome.failed)} case(s) failed: {names}; see their <name>_error.json in {args.output}, "
              "fix or remove those inputs and run again", file=sys.stderr)
    return 1 if outcome.stopped or outcome.failed or table is None else 0


def _rebuilt_table(folder: Path) -> Optional[Path]:
    """cohort.csv rebuilt; None, saying why, when the disk has no room for it."""
    try:
        return write_cohort_table(folder)
    except DiskFullError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _warn_untrained(model) -> None:
    if not model.metadata.trained:
        print(f"warning: model {model.metadata.name!r} is UNTRAINED: the output is not anatomical", file=sys.stderr)
