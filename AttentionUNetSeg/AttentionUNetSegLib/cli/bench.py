"""`attention-unet bench`: our networks against MONAI's AttentionUnet (and the authors'), side by side.

Impossible option values are refused before any work, naming the option and the values it takes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..backends.benchmark import COMPILE_MODES, as_dicts, run_benchmark, to_markdown
from ..backends.device import resolve_device
from ..errors import InvalidOptionError
from ..io.atomic import atomic_file
from .option_types import multiple_of_16, whole_number

AUTHORS_NETWORK = Path("models") / "networks" / "unet_CT_multi_att_dsv_3D.py"
"""The file of their network that --authors-path must hold."""
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark forward and training speed against MONAI's AttentionUnet",
        description="Runs, in one process and interleaved, our Attention U-Net and U-Net (as defined and in the "
        "fastest correct inference configuration) and MONAI's AttentionUnet with the same channels (and the "
        "authors' network if --authors-path is given); prints median times, speed-ups and peak GPU memory.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--shape", type=multiple_of_16, nargs=3, default=(160, 160, 96), metavar=("D", "H", "W"),
                        help="input size, multiples of 16 (default: 160 160 96)")
    parser.add_argument("--classes", type=whole_number(2, allowed="2 or more (background and at least one organ)"),
                        default=4, help="output classes, 2 or more (default: 4)")
    parser.add_argument("--repeats", type=whole_number(1, allowed="1 or more timed rounds"), default=5,
                        help="timed rounds, 1 or more (default: 5)")
    parser.add_argument("--warmup", type=whole_number(1, allowed="1 or more untimed rounds (the first runs "
                                                             "compile, allocate and tune, so they are never timed)"),
                        default=1, help="untimed rounds first, 1 or more (default: 1)")
    parser.add_argument("--train-batch", type=whole_number(0, allowed="0 (off) or a batch size of 1 or more"),
                        default=0,
                        help="also time a training step at this batch size (default: 0 = off)")
    parser.add_argument("--authors-path", type=Path, default=None,
                        help="a local clone of ozan-oktay/Attention-Gated-Networks to include their network")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        choices=COMPILE_MODES,
                        help="also time each network's best configuration under torch.compile in MODE (default: "
                        "default; reduce-overhead adds CUDA graphs); compiling takes 1-2 minutes a network")
    parser.add_argument("--threads", type=whole_number(1, allowed="1 or more CPU threads"), default=None,
                        help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.set_defaults(handler=run)


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an --authors-path without the authors' network and a --json with no folder."""
    if args.authors_path is not None and not (args.authors_path / AUTHORS_NETWORK).is_file():
        raise InvalidOptionError(f"--authors-path {args.authors_path} has no {AUTHORS_NETWORK}: give a local clone of "
                                 "ozan-oktay/Attention-Gated-Networks, or leave the option out")
    if args.json is not None and not args.json.parent.is_dir():
        raise InvalidOptionError(f"--json {args.json}: the folder {args.json.parent} does not exist; allowed: a file "
                                 "in an existing folder")


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = (1, 1, *args.shape)
    description = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    results = run_benchmark(device, shape, args.classes, args.repeats, args.warmup, args.train_batch,
                            args.authors_path, args.compile,
                            progress=lambda message: print(message, file=sys.stderr))
    print(to_markdown(results, description, shape))
    if args.json:
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps({"device": description, "shape": shape, "results": as_dicts(results)},
                                      indent=2))
    return 0
