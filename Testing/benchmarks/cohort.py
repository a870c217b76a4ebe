"""A cohort in one command against one command per CT: `attention-unet segment CT1 CT2 ... -o DIR` (model
loaded and converted once; read, segment and write overlapped) versus `attention-unet segment CTi -o DIRi`
for each CT in turn. Both with the default outputs (labels and attention maps) and a warm OpenVINO cache;
the two ways alternate for `--rounds` rounds. Prints wall times and the throughput ratio.

Usage: python Testing/benchmarks/cohort.py CT [CT ...] [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

COMMAND = [sys.executable, "-m", "AttentionUNetSegLib", "segment", "--quiet"]


def timed(commands: List[List[str]]) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cts", nargs="+", type=Path, help="CT files or DICOM folders (distinct names)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each way (default: 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        timed([[*COMMAND, str(args.cts[0]), "-o", str(work_dir / "warm-up")]])  # OpenVINO cache, file cache
        one, separate = [], []
        for round_ in range(args.rounds):
            one.append(timed([[*COMMAND, *map(str, args.cts), "-o", str(work_dir / f"cohort{round_}")]]))
            separate.append(timed([[*COMMAND, str(ct), "-o", str(work_dir / f"single{round_}_{i}")]
                                   for i, ct in enumerate(args.cts)]))
            print(f"round {round_ + 1}: one command {one[-1]:.1f} s, {len(args.cts)} commands {separate[-1]:.1f} s",
                  file=sys.stderr)
    best_one, best_separate = min(one), min(separate)
    print("| CTs | one command (s) | one command per CT (s) | throughput ratio |")
    print("|---|---|---|---|")
    print(f"| {len(args.cts)} | {', '.join(f'{t:.1f}' for t in one)} | {', '.join(f'{t:.1f}' for t in separate)} "
          f"| {best_separate / best_one:.2f} (median {statistics.median(separate) / statistics.median(one):.2f}) |")


if __name__ == "__main__":
    main()
