"""How close the network's windows come to this CPU's arithmetic limit: the default model's multiply-adds per
sliding window (counted on its convolutions), the OpenVINO and PyTorch backends' time per window of a real CT
(float32; OpenVINO also in int8 with --int8: the same operations in int8), and this CPU's float32
matrix-multiply rate (PyTorch's sgemm on the same threads) as the peer, interleaved round by round in this one
process. What it prints says how long a CT's windows would take if the network ran at the sgemm rate: the floor
that no change outside the network's arithmetic can go below.

    python Testing/benchmarks/network_floor.py [--ct CT] [--rounds 5] [--int8]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

from AttentionUNetSegLib.backends.selection import make_backend
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.models.registry import load_model
from AttentionUNetSegLib.models.bundled_data import SAMPLE_CT
from AttentionUNetSegLib.inference.sliding_windows import network_windows

SGEMM_SIZE = 2048


def window_flops(model: nn.Module, window: torch.Tensor) -> float:
    """Floating-point operations (2 per multiply-add) of the model's convolutions on one window, attention
    gates included; the elementwise rest (activations, normalisation, resizing) is left out."""
    total = 0.0

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = math.prod(module.kernel_size) * module.in_channels // module.groups
        total += 2.0 * per_output * output.numel()

    hooks = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, nn.Conv3d)]
    with torch.no_grad():
        model(window, return_attention=True)
    for hook in hooks:
        hook.remove()
    return total


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, default=SAMPLE_CT, help="the CT whose windows run (default: the sample CT)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over every window (default: 5)")
    parser.add_argument("--int8", action="store_true", help="also the int8 backend (quantized once, then cached)")
    args = parser.parse_args()

    model = load_model(None)
    metadata = model.metadata
    windows = [torch.from_numpy(window) for window in network_windows(read_image(args.ct), metadata, 0.25)]
    flops = window_flops(model, windows[0])

    cpu = torch.device("cpu")
    backends = {"OpenVINO fp32": make_backend(model, cpu, torch.float32, "openvino"),
                "PyTorch fp32": make_backend(model, cpu, torch.float32, "torch")}
    if args.int8:
        backends["OpenVINO int8"] = make_backend(model, cpu, torch.int8, "openvino")
    a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
    runs: Dict[str, Callable[[], object]] = {name: (lambda w, backend=backend: backend(w, False))
                                             for name, backend in backends.items()}
    for run in runs.values():
        run(windows[0])  # untimed: the first inference allocates and tunes
    torch.mm(a, b)

    seconds: Dict[str, List[float]] = {name: [] for name in runs}
    sgemm: List[float] = []
    for _ in range(args.rounds):
        for window in windows:
            for name, run in runs.items():
                seconds[name].append(timed(lambda: run(window)))
            sgemm.append(timed(lambda: torch.mm(a, b)))

    sgemm_rate = 2.0 * SGEMM_SIZE ** 3 / statistics.median(sgemm)
    floor = len(windows) * flops / sgemm_rate
    print(f"CT {args.ct.name}: {len(windows)} windows of {tuple(windows[0].shape[2:])} (z, y, x); "
          f"{flops / 1e9:.1f} GFLOP a window (convolutions); {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; sgemm {SGEMM_SIZE}x{SGEMM_SIZE}: {sgemm_rate / 1e9:.0f} GFLOP/s (median); the CT's "
          f"windows at that rate: {floor:.2f} s\n")
    print("| backend | s a window (median) | G(FL)OP/s | of sgemm's float32 rate | the CT's windows, s |")
    print("|---|---|---|---|---|")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.3f} | {flops / median / 1e9:.0f} | {flops / median / sgemm_rate:.0%} | "
              f"{len(windows) * median:.2f} |")

if __name__ == "__main__":
    main()
