"""Click to result in the Slicer module's logic: a CT segmented in the background process.

A headless scene (slicer-core, as the tests build it) gets the CT (the bundled sample CT, or `--ct`, e.g. the
512x512x300 real CT that whole_volume.py leaves in its work folder); the logic's background run (what the
Segment button starts) is polled as the panel's timer does, until the segmentation node and the attention
volumes are in the scene. Prints the wall time from the start of the run to that moment, per round, with the
engine's own timings in the worker (the rest is the worker's start, the transfer of the CT and of the outputs,
and the nodes' creation).

With --timeline, also the time of each stage the worker reports (start, preparing, inference, resampling,
saving, done) and of the outputs in the scene. With --standby, a worker is started as the panel starts one when
the input volume is chosen (logic.prepareWorker), STANDBY_LEAD_S before the click, and the click hands it the
job; its resident memory then is printed.

Usage: python Testing/benchmarks/slicer_click.py [--ct FILE] [--no-attention] [--rounds N] [--timeline] [--standby]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

import SimpleITK as sitk  # noqa: E402
from conftest import SAMPLE_CT  # noqa: E402
from slicer_scene import add_volume, new_scene  # noqa: E402

from AttentionUNetSegLib.inference.settings import InferenceSettings  # noqa: E402
from AttentionUNetSegLib.progress import ProgressEvent  # noqa: E402
from AttentionUNetSegLogic import AttentionUNetSegLogic  # noqa: E402
from AttentionUNetSegLogic.background import SUCCEEDED  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-attention", action="store_true", help="labels only")
    parser.add_argument("--ct", type=Path, default=SAMPLE_CT, help="the CT (default: the bundled sample CT)")
    parser.add_argument("--rounds", type=int, default=1, help="runs, one after the other (default 1)")
    parser.add_argument("--timeline", action="store_true", help="print when each stage of the run began")
    parser.add_argument("--standby", action="store_true",
                        help=f"start a standby worker {STANDBY_LEAD_S:.0f} s before the click, as the panel does")
    args = parser.parse_args()
    for _ in range(args.rounds):
        click(args.ct, not args.no_attention, args.timeline, args.standby)


STANDBY_LEAD_S = 5.0
"""How long before the click the standby worker starts: less than a user takes to open the panel and pick a CT."""


def click(ct: Path, attention: bool, timeline: bool = False, standby: bool = False) -> None:
    with tempfile.TemporaryDirectory() as cache:
        scene = new_scene(Path(cache))
        node = add_volume(scene, sitk.ReadImage(str(ct)), "CT")
        logic = AttentionUNetSegLogic()
        if standby:
            logic.prepareWorker(None, InferenceSettings(attention=attention))
            time.sleep(STANDBY_LEAD_S)
            print(f"standby worker: {resident_mib(logic._standby.process.pid)} MiB resident before the click")
        started = time.perf_counter()
        run = logic.startBackground(node, None, InferenceSettings(attention=attention))
        stages = {"started": time.perf_counter() - started}
        while not run.done:
            polled = time.perf_counter() - started  # the poll that gets "done" also adds the outputs
            for event in run.poll():
                stages.setdefault(event.stage.value if isinstance(event, ProgressEvent) else
                                  f"worker {type(event).__name__}", polled)
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if timeline:
            print("; ".join(f"{stage} {seconds:.2f} s" for stage, seconds in stages.items())
                  + f"; outputs in the scene {elapsed:.2f} s")
        if run.state != SUCCEEDED:
            raise SystemExit(f"the background run ended {run.state}: {run.result()}")
        outputs = run.result()
        print(f"click to result: {elapsed:.1f} s; {len(outputs.attention)} attention volumes, segments "
              f"{outputs.segmentation.GetSegmentation().GetNumberOfSegments()}; the engine's timings_s in the "
              f"worker: {dict((k, round(v, 2)) for k, v in outputs.timings.items())}")


def resident_mib(pid: int) -> str:
    """A process's resident memory (VmRSS) in MiB, where /proc tells it."""
    try:
        line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return "?"
    return str(round(int(line.split()[1]) / 1024))


if __name__ == "__main__":
    main()
