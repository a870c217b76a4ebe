"""Whole-CT benchmark: `attention-unet segment` (CLI start to files written) against a MONAI pipeline.

Two inputs, each a 512x512x300 CT at 0.8x0.8x1.0 mm, segmented on the default model's grid (3 mm for v3 and v4, 2 mm
for v2), ours and the peer alike:
- real: 3D-IRCADb-01 patient 1.1 (512x512x129 at 0.57x0.57x1.6 mm, HU) resampled at run time (SimpleITK,
  linear) onto that grid, centred on the scan, -1024 HU outside it. Its licence (CC BY-NC-ND) forbids
  redistributing it or anything derived from it: the resampled CT is written only to `--workdir` (a temp
  folder by default, never inside the repository);
- phantom: a synthetic abdominal CT from our phantom generator.

Rows per input, run interleaved round by round (every row, then the next round): (a) our CLI with
`--no-attention` (labels only), (b) our CLI with its default outputs (labels and the six attention maps), both
with the default model's weights (the paper-size Attention U-Net, feature_scale 4) run with the peer's 160x160x96
windows, so that the labels and attention maps have realistic structure and the work per window matches,
(c) the plain command `attention-unet segment CT -o OUT` (the default model with its own windows, what a user
runs), labels only and default outputs, (d) the same with `--precision int8` (quantization.py; labels differ
from float32's: Testing/benchmarks/int8_agreement.py), and (e) MONAI's AttentionUnet (channels 16-256) with
MONAI's sliding-window inference (160x160x96, overlap 0.25, Gaussian blending), resampled back to the input grid
(labels only), in bf16 channels-last where the CPU supports it. Each run is its own subprocess; its wall time and
peak RSS (by /usr/bin/time -v) are reported. The peer's weights are random: this measures speed, not accuracy.
Our model's OpenVINO conversion (and int8 quantization) is cached before timing.

Prints a Markdown table (per row: every run's wall seconds, min, median, peak RSS, MONAI/ours ratios) and,
for our rows, the summary's "timings_s" of the fastest run.

Usage: python Testing/benchmarks/whole_volume.py [--input real|phantom|both] [--rounds 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from AttentionUNetSegLib.models.model_file import read_metadata
from AttentionUNetSegLib.models.registry import resolve_model_path

SIZE, SPACING, PATCH = (512, 512, 300), (0.8, 0.8, 1.0), (160, 160, 96)
MODEL_SPACING = read_metadata(resolve_model_path(None)).spacing_mm
"""The peer resamples to the default model's spacing, so that both segment the same grid with the same windows."""
REPO = Path(__file__).resolve().parents[2]
REAL_CT = REPO.parent / "shared" / "data" / "ircad" / "3Dircadb1.1" / "ct.nii.gz"
INPUT_NAMES = {"real": "ircad1_512", "phantom": "phantom_512"}
INPUT_TITLES = {"real": "3D-IRCADb-01 patient 1.1, resampled", "phantom": "phantom"}
ROWS = ("ours-labels", "ours-default", "shipped-labels", "shipped", "shipped-int8-labels", "shipped-int8", "monai")
ROW_TITLES = {"ours-labels": "ours, labels only (`--no-attention`), 160x160x96 windows",
              "ours-default": "ours, default (labels + six attention maps), 160x160x96 windows",
              "shipped-labels": "`attention-unet segment CT -o OUT --no-attention` (the default model as shipped)",
              "shipped": "`attention-unet segment CT -o OUT` (labels + six maps, the default model as shipped)",
              "shipped-int8-labels": "the same, `--precision int8 --no-attention`",
              "shipped-int8": "the same, `--precision int8`",
              "monai": "MONAI pipeline, labels only"}
OURS = ROWS[:-1]


def resample_centred(source, size=SIZE, spacing=SPACING):
    """`source` resampled (linear, HU, int16) onto a `size` grid at `spacing` mm with its direction, centred on
    the scan's centre; -1024 HU outside the scan."""
    import SimpleITK as sitk

    centre = source.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in source.GetSize()])
    reference = sitk.Image(list(size), sitk.sitkInt16)
    reference.SetSpacing(spacing)
    reference.SetDirection(source.GetDirection())
    offset = reference.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in size])
    reference.SetOrigin([c - o for c, o in zip(centre, offset)])
    return sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)


def make_input(kind: str, workdir: Path, real_ct: Path) -> Path:
    """The 512x512x300 CT of `kind` ("real" or "phantom") in `workdir`, built once."""
    import SimpleITK as sitk

    ct_path = workdir / f"{INPUT_NAMES[kind]}.nii.gz"
    if not ct_path.exists():
        if kind == "real":
            image = resample_centred(sitk.ReadImage(str(real_ct)))
        else:
            from AttentionUNetSegLib.phantom import generate_phantom

            image, _ = generate_phantom(seed=7, size=SIZE, spacing=SPACING)
        sitk.WriteImage(image, str(ct_path))
    return ct_path


def make_model(workdir: Path) -> Path:
    """The default model with 160x160x96 windows in `workdir`; its and the shipped file's OpenVINO conversions
    cached."""
    from dataclasses import replace

    from AttentionUNetSegLib.models.model_file import file_sha256, read_model, save_model
    from AttentionUNetSegLib.models.registry import resolve_model_path

    shipped = resolve_model_path(None)
    model_path = workdir / f"default_{file_sha256(shipped)[:12]}_160.safetensors"
    if not model_path.exists():
        model = read_model(shipped)
        save_model(model, replace(model.metadata, patch_size=PATCH, name="default-160x160x96"), model_path)
    _convert_once(model_path)
    _convert_once(shipped, int8=True)
    return model_path


def _convert_once(model_path: Path, int8: bool = False) -> None:
    """Fill the OpenVINO cache before timing (a new model's first run pays the conversion, and its first int8 run
    the quantization, once)."""
    import torch

    from AttentionUNetSegLib.backends.selection import openvino_installed
    from AttentionUNetSegLib.models.model_file import read_model

    if openvino_installed():
        from AttentionUNetSegLib.backends.openvino import OpenVINOBackend

        OpenVINOBackend(read_model(model_path), torch.float32)
        if int8:
            OpenVINOBackend(read_model(model_path), torch.int8)


def monai_pipeline(ct_path: Path, out_path: Path) -> None:
    """The peer: SimpleITK resampling, MONAI AttentionUnet + sliding_window_inference, back to the input grid."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    from AttentionUNetSegLib.backends.benchmark import monai_attention_unet
    from AttentionUNetSegLib.backends.device import autocast, resolve_precision
    from AttentionUNetSegLib.inference.preprocessing import model_grid, resample

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
    """Wall time and peak RSS of one child process. The peak comes from /usr/bin/time -v where it exists: Linux
    carries the spawning process's RSS high-water mark into a child across fork/vfork and exec, so os.wait4 on a
    child of this (large) process reports at least this process's own peak; GNU time's grandchild starts clean."""
    gnu_time = Path("/usr/bin/time")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        prefix = [str(gnu_time), "-v", "-o", report.name] if gnu_time.exists() else []
        start = time.perf_counter()
        child = subprocess.Popen(prefix + command)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command[:4]} failed")
        peak_kib = usage.ru_maxrss
        for line in report.read().splitlines():
            if "Maximum resident set size (kbytes)" in line:
                peak_kib = int(line.rsplit(":", 1)[1])
    return {"wall_s": wall, "peak_rss_gib": peak_kib / 2**20}


def run_row(row: str, ct_path: Path, model_path: Path, out_dir: Path) -> dict:
    """One timed run of `row` on `ct_path`; for our rows, with the summary's timings."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if row == "monai":
        out_dir.mkdir(parents=True)
        return timed_subprocess([sys.executable, __file__, "--peer-only-run", str(ct_path),
                                 str(out_dir / "monai.nii.gz")])
    command = [sys.executable, "-m", "AttentionUNetSegLib", "segment", str(ct_path), "-o", str(out_dir), "--quiet"]
    if not row.startswith("shipped"):
        command += ["--model", str(model_path)]
    if row.endswith("labels"):
        command.append("--no-attention")
    if "int8" in row:
        command += ["--precision", "int8"]
    result = timed_subprocess(command)
    summary = json.loads(next(out_dir.glob("*_summary.json")).read_text())
    return result | {"timings_s": summary["timings_s"]}


def to_markdown(results: dict, rounds: int) -> str:
    """The table: per input and row, every run's wall time, min, median, peak RSS, MONAI/ours ratios."""
    lines = [f"| input | run | wall s ({rounds} rounds, in order) | min s | median s | peak RSS GiB | "
             "MONAI/ours, min | MONAI/ours, median |", "|---|---|---|---|---|---|---|---|"]
    for kind, rows in results.items():
        monai = [r["wall_s"] for r in rows["monai"]]
        for row in ROWS:
            walls = [r["wall_s"] for r in rows[row]]
            rss = max(r["peak_rss_gib"] for r in rows[row])
            ratios = ("", "") if row == "monai" else (f"{min(monai) / min(walls):.2f}x",
                                                      f"{statistics.median(monai) / statistics.median(walls):.2f}x")
            lines.append(f"| {INPUT_TITLES[kind]} | {ROW_TITLES[row]} | {', '.join(f'{w:.1f}' for w in walls)} | "
                         f"{min(walls):.1f} | {statistics.median(walls):.1f} | {rss:.2f} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", choices=("real", "phantom", "both"), default="both",
                        help="which CT (default: both, the real one first)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three runs (default: 3)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "attention-unet-bench",
                        help="inputs, model and outputs (never inside the repository: the real CT's licence)")
    parser.add_argument("--real-ct", type=Path, default=REAL_CT, help=f"the real scan (default: {REAL_CT})")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--peer-only-run", type=Path, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_only_run:
        monai_pipeline(*args.peer_only_run)
        return
    workdir = args.workdir.resolve()
    kinds = ("real", "phantom") if args.input == "both" else (args.input,)
    if "real" in kinds and (workdir == REPO or REPO in workdir.parents):
        raise SystemExit(f"--workdir {workdir} is inside the repository; the real CT may not be written there")
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = {kind: make_input(kind, workdir, args.real_ct) for kind in kinds}
    model_path = make_model(workdir)
    results = {kind: {row: [] for row in ROWS} for kind in kinds}
    for round_ in range(args.rounds):
        for kind, ct_path in inputs.items():
            for row in ROWS:
                run = run_row(row, ct_path, model_path, workdir / "runs" / f"{kind}_{row}")
                results[kind][row].append(run)
                print(f"round {round_ + 1}, {kind}, {row}: {run['wall_s']:.1f} s, {run['peak_rss_gib']:.2f} GiB",
                      file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\n{SIZE[0]}x{SIZE[1]}x{SIZE[2]} at {SPACING[0]}x{SPACING[1]}x{SPACING[2]} mm, segmented at "
          f"{MODEL_SPACING[0]:g} mm with {PATCH[0]}x{PATCH[1]}x{PATCH[2]} windows\n")
    print(to_markdown(results, args.rounds))
    print("\nOur timings_s, fastest run of each row:")
    for kind, rows in results.items():
        for row in OURS:
            fastest = min(rows[row], key=lambda r: r["wall_s"])
            print(f"- {INPUT_TITLES[kind]}, {ROW_TITLES[row]} ({fastest['wall_s']:.1f} s): "
                  f"{json.dumps(fastest['timings_s'])}")


if __name__ == "__main__":
    main()
