"""Whole-CT benchmark: `attention-unet segment` (CLI start to files written) against a MONAI pipeline.

A synthetic 512x512x300 abdominal CT at 0.8x0.8x1.0 mm (our phantom generator) is segmented at 2 mm by
(a) our CLI with the bundled model's weights (the paper-size Attention U-Net, feature_scale 4) run with the
peer's 160x160x96 windows, so that the labels and attention maps have realistic structure and the work per
window matches, and (b) MONAI's AttentionUnet (channels 16-256) with MONAI's sliding-window inference
(160x160x96, overlap 0.25, Gaussian blending), resampled back to the input grid, in bf16 channels-last
where the CPU supports it. Each runs in its own subprocess; wall time and peak RSS of that process are
reported. The peer's weights are random: this measures speed, not accuracy. Our model's OpenVINO
conversion is cached before timing.

Usage: python Testing/benchmarks/whole_volume.py [--workdir DIR] [--no-attention]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, SPACING, MODEL_SPACING, PATCH = (512, 512, 300), (0.8, 0.8, 1.0), (2.0, 2.0, 2.0), (160, 160, 96)


def make_inputs(workdir: Path) -> tuple:
    """The phantom CT and the bundled model with 160x160x96 windows, in `workdir`."""
    from dataclasses import replace

    import SimpleITK as sitk

    from AttentionUNetSegLib.model_file import read_model, save_model
    from AttentionUNetSegLib.phantom import generate_phantom
    from AttentionUNetSegLib.registry import resolve_model_path

    ct_path, model_path = workdir / "phantom_512.nii.gz", workdir / "bundled_160.safetensors"
    if not ct_path.exists():
        image, _ = generate_phantom(seed=7, size=SIZE, spacing=SPACING)
        sitk.WriteImage(image, str(ct_path))
    if not model_path.exists():
        model = read_model(resolve_model_path(None))
        save_model(model, replace(model.metadata, patch_size=PATCH, name="bundled-160x160x96"), model_path)
    _convert_once(model_path)
    return ct_path, model_path


def _convert_once(model_path: Path) -> None:
    """Fill the OpenVINO cache before timing (a new model's first run pays the conversion once)."""
    import torch

    from AttentionUNetSegLib.backends import openvino_installed
    from AttentionUNetSegLib.model_file import read_model

    if openvino_installed():
        from AttentionUNetSegLib.openvino_backend import OpenVINOBackend

        OpenVINOBackend(read_model(model_path), torch.float32)


def monai_pipeline(ct_path: Path, out_path: Path) -> None:
    """The peer: SimpleITK resampling, MONAI AttentionUnet + sliding_window_inference, back to the input grid."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    from AttentionUNetSegLib.benchmark import monai_attention_unet
    from AttentionUNetSegLib.device import autocast, resolve_precision
    from AttentionUNetSegLib.preprocessing import model_grid, resample

    image = sitk.ReadImage(str(ct_path))
    grid = model_grid(image, MODEL_SPACING)
    resampled = resample(image, grid, sitk.sitkLinear, -1024)
    array = np.clip(sitk.GetArrayFromImage(resampled), -1000, 1000) / 1000
    model = monai_attention_unet(5).eval().to(memory_format=torch.channels_last_3d)  # 5 classes, as ours
    dtype = resolve_precision("auto", torch.device("cpu"))
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        x = torch.from_numpy(array)[None, None].contiguous(memory_format=torch.channels_last_3d)
        logits = sliding_window_inference(x, tuple(reversed(PATCH)), 1, lambda w: model(w).float(), overlap=0.25,
                                          mode="gaussian")[0].numpy()
    best = labels = None
    for value, channel in enumerate(logits):
        back = sitk.GetArrayFromImage(sitk.Resample(grid.image(channel), image, sitk.Transform(), sitk.sitkLinear,
                                                    -1e4, sitk.sitkFloat32))
        if best is None:
            best, labels = back, np.zeros(back.shape, np.uint8)
        else:
            labels[back > best] = value
            np.maximum(best, back, out=best)
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(image)
    sitk.WriteImage(result, str(out_path))


def timed_subprocess(command: list) -> dict:
    """Wall time and peak RSS of one child process (os.wait4 reports that child's own usage)."""
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed")
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "attention-unet-bench")
    parser.add_argument("--no-attention", action="store_true", help="our run without attention maps")
    parser.add_argument("--peer-only-run", type=Path, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_only_run:
        monai_pipeline(*args.peer_only_run)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    ct_path, model_path = make_inputs(args.workdir)
    ours_command = [sys.executable, "-m", "AttentionUNetSegLib", "segment", str(ct_path), "-o",
                    str(args.workdir / "ours"), "--model", str(model_path), "--quiet"]
    if args.no_attention:
        ours_command.append("--no-attention")
    peer = timed_subprocess([sys.executable, __file__, "--peer-only-run", str(ct_path),
                             str(args.workdir / "monai.nii.gz")])
    ours = timed_subprocess(ours_command)
    summary = json.loads((args.workdir / "ours" / "phantom_512_summary.json").read_text())
    print(json.dumps({"input": f"{SIZE} at {SPACING} mm", "ours": ours | {"timings_s": summary["timings_s"]},
                      "monai_pipeline": peer, "speedup": round(peer["wall_s"] / ours["wall_s"], 2)}, indent=2))


if __name__ == "__main__":
    main()
