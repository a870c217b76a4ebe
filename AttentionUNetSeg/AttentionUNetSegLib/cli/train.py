"""`attention-unet train` (also `python -m AttentionUNetSegLib.training`, alone or under torchrun)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Dict, Optional, Sequence

from ..training.config import add_arguments, config_from_sources, explicit_options

log = logging.getLogger(__name__)

EPILOG = """\
outputs (in OUTPUT): final.safetensors and best.safetensors (model files with full metadata), train_config.yaml
(the options, for --config), splits.json, log.csv, tensorboard/, attention/epoch_NNNN.png, checkpoint.pt, cache/

examples:
  attention-unet train data/Task07_Pancreas -o runs/pancreas --label-map msd-pancreas --folds 5 --fold 0
  attention-unet train --config runs/pancreas/train_config.yaml --fold 1 -o runs/pancreas-fold1
  attention-unet train --resume -o runs/pancreas                       # continue after a stop or a crash
  attention-unet train pancreas.csv -o runs/aft --init-model multi.safetensors --label-map nih-pancreas
  attention-unet train ours.csv -o runs/ours --init-model attention-unet-abdomen-v5 --segment-names --lr 3e-5
                                          # fine-tune on labels saved from Slicer (.seg.nrrd), segments matched
  torchrun --nproc_per_node=4 -m AttentionUNetSegLib.training data/ -o runs/ddp --label-map totalsegmentator

SIGINT/SIGTERM stop after the current step with a checkpoint (exit status 130/143); --resume continues exactly.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (one GPU, or many under torchrun)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a 3D (Attention) U-Net as in Oktay et al. 2018 from CT image/label pairs. Options come "
        "from flags and/or a YAML/JSON --config file whose keys are the flag names with underscores; flags win.",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML or JSON file of options")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT from its checkpoint (its saved options, updated by any given)")
    add_arguments(parser)
    parser.set_defaults(handler=run)


class StopOnSignal:
    """While active, SIGINT and SIGTERM ask the run to stop after its current step instead of killing it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        log.warning("%s received: stopping after the current step and writing a checkpoint",
                    signal.Signals(signum).name)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run(args: argparse.Namespace) -> int:
    from ..training import train

    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)  # under torchrun only rank 0 reports progress
    config = config_from_sources(explicit_options(args), args.config, args.resume)
    with StopOnSignal() as stop:
        result = train(config, resume=args.resume, should_stop=stop)
    progress = result.progress
    if result.stopped:
        print(f"stopped in epoch {progress.epoch + 1} after step {progress.step}; checkpoint written. Continue with: "
              f"attention-unet train --resume -o {config.output}", file=sys.stderr)
        return 128 + (stop.signum or signal.SIGTERM)
    for path in result.files.values():
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`attention-unet train ARGS` for the module entry points."""
    from . import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
