"""`attention-unet` command line: one sub-module per command group, each with `register(subparsers)`."""
from __future__ import annotations

import argparse
import gc
import importlib
import logging
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .. import package_version
from ..backends.telemetry_off import keep_telemetry_off
from ..errors import AttentionUNetSegError
from ..io.disk_space import is_no_room, no_room_error

# Command modules, each with `register(subparsers)`, in the order `--help` lists them.
_COMMAND_MODULES: List[str] = ["segment", "models", "evaluate", "phantom", "train", "bench"]


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command module registered."""
    parser = argparse.ArgumentParser(
        prog="attention-unet",
        description="3D Attention U-Net (Oktay et al. 2018) for abdominal CT: segment, inspect attention maps, "
        "train and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    for command in _command_parsers(subparsers):
        command.set_defaults(command_parser=command)
    return parser


def _command_parsers(subparsers: argparse._SubParsersAction) -> List[argparse.ArgumentParser]:
    """Every (sub)command's parser: `models list` as well as `segment`."""
    found = []
    for command in dict.fromkeys(subparsers.choices.values()):
        found.append(command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += _command_parsers(action)
    return found


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse `argv`; an unknown option is reported with the usage of the command it was given to."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit code (0 only on success). Ctrl-C while the command's modules are
    imported (PyTorch's take a second) ends it as quietly as later; a full disk anywhere is a one-line error."""
    try:
        keep_telemetry_off()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's reader chatter; our own messages say what matters
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # a line per DICOM module it copies into a SEG
        args = parse_args(build_parser(), argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except AttentionUNetSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        if not is_no_room(exc):
            raise
        folder = Path(exc.filename).parent if getattr(exc, "filename", None) else Path.cwd()
        print(f"error: {no_room_error(folder, 'what was being written', 'free some space there and run again')}",
              file=sys.stderr)
        return 1


def console_main() -> int:
    """`attention-unet` and `python -m AttentionUNetSegLib`: `main`, then a fast exit.

    When a command returns, what it wrote is complete and closed; the interpreter's teardown (tearing down the
    modules and libraries of PyTorch, MONAI and OpenVINO) would only delay the end (docs/benchmarks.md). So the
    process ends at once, after flushing the log and the standard streams, unless a thread or child process is
    still running, which an orderly exit waits for; then the garbage collector's objects are frozen, so that
    the exit at least does not traverse the millions of them."""
    status = main()
    if not _still_running():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
                pass
        os._exit(status)
    gc.freeze()
    return status


def _still_running() -> bool:
    """Whether a thread other than this one (and daemon threads, which no exit waits for) or a child process
    started by multiprocessing is still running."""
    threads = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    return bool(threads or multiprocessing.active_children())


if __name__ == "__main__":
    sys.exit(console_main())
