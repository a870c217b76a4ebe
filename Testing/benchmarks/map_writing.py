"""The default command's output step (labels + six attention maps on the input grid), a baseline commit's code
against this checkout's, in one process, interleaved: ratios that hold on a busy machine.

The real CT of whole_volume.py (3D-IRCADb-01 1.1 resampled at run time to 512x512x300 at 0.8x0.8x1.0 mm, in
--workdir, never in the repository: its licence forbids redistribution) is segmented once with the bundled
model's weights and 160x160x96 windows, as there. Then, for --rounds rounds, alternating which goes first:
- write: `stage_case` of the baseline (its ResampledMaps and writers) and of this checkout, all outputs into a
  fresh staging folder, as `attention-unet segment` writes them;
- resample: one map (the largest file) onto the input grid as the writer takes it (baseline: float32 values
  rounded to the step; now: their int16 multiples);
- compress: writing that map's file from what the writer takes.
Each as wall and CPU seconds (this process, every thread); the table gives the minimum over rounds and the
baseline/now ratio of the minima. Then it checks the outputs agree: the label images voxel for voxel, each
attention map's values as read by nibabel and SimpleITK (largest difference, in steps), and the file sizes.

Usage: python Testing/benchmarks/map_writing.py [--rounds 5] [--baseline REV] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whole_volume  # noqa: E402  (the real CT and the 160x160x96 model, built the same way)

BASELINE = "6558de7"
"""The last commit before issue 15's output-path changes."""
STEPS = ("write", "resample", "compress")


def baseline_package(rev: str, workdir: Path):
    """AttentionUNetSegLib as it was at `rev`, importable beside this checkout's as AttentionUNetSegLib_<rev>
    (its imports are relative)."""
    name = f"AttentionUNetSegLib_{rev}"
    target = workdir / "baselines"
    if not (target / name).is_dir():
        archive = subprocess.run(["git", "-C", str(whole_volume.REPO), "archive", rev,
                                  "AttentionUNetSeg/AttentionUNetSegLib"], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(target / rev)
        (target / rev / "AttentionUNetSeg" / "AttentionUNetSegLib").rename(target / name)
    sys.path.insert(0, str(target))
    return importlib.import_module(name)


def timed(work: Callable[[], object]) -> Tuple[float, float]:
    """Wall and CPU seconds (every thread of this process) of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--baseline", default=BASELINE, help=f"the commit to compare with (default: {BASELINE})")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "attention-unet-bench",
                        help="the CT, the model, the baseline's code, outputs (never inside the repository)")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if workdir == whole_volume.REPO or whole_volume.REPO in workdir.parents:
        raise SystemExit(f"--workdir {workdir} is inside the repository; the real CT may not be written there")
    workdir.mkdir(parents=True, exist_ok=True)

    from AttentionUNetSegLib.io.atomic import StagedOutputs
    from AttentionUNetSegLib.inference import case_outputs
    from AttentionUNetSegLib.io.images import read_image, write_map
    from AttentionUNetSegLib.inference.segmenter import segment
    from AttentionUNetSegLib.inference.settings import InferenceSettings
    from AttentionUNetSegLib.models.model_file import read_model

    base = baseline_package(args.baseline, workdir)
    base_outputs = importlib.import_module(base.__name__ + ".cohort.case_outputs")
    base_inference = importlib.import_module(base.__name__ + ".inference")
    base_imageio = importlib.import_module(base.__name__ + ".imageio")

    ct_path = whole_volume.make_input("real", workdir, whole_volume.REAL_CT)
    model_path = whole_volume.make_model(workdir)
    model = read_model(model_path)
    print("segmenting the real CT once ...", file=sys.stderr, flush=True)
    result = segment(read_image(ct_path), model)
    maps = result.attention
    base_maps = base_inference.ResampledMaps(maps.source_maps, maps.source, maps.grid, maps.step)
    results = {"baseline": dataclasses.replace(result, attention=base_maps), "now": result}
    writers = {"baseline": base_outputs.stage_case, "now": case_outputs.stage_case}
    records = {"baseline": (base_outputs.model_record(model, model_path.name),
                            base_outputs.settings_record(InferenceSettings(), "nii.gz")),
               "now": (case_outputs.RunRecord(case_outputs.ModelRecord.of(model, model_path.name), InferenceSettings(),
                                              "nii.gz"),)}
    gate = list(maps)[3]  # att3_gate2, the largest file
    taken = {"baseline": lambda: base_maps.array(gate), "now": lambda: maps.multiples(gate)}
    file_writers = {"baseline": base_imageio.write_map, "now": write_map}
    out = workdir / "map_writing"
    times: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
    kept: Dict[str, List[Path]] = {}
    for round_ in range(args.rounds):
        for version in (("baseline", "now") if round_ % 2 == 0 else ("now", "baseline")):
            staged = StagedOutputs(out / f"{version}-{round_}")
            times.setdefault(("write", version), []).append(timed(lambda: writers[version](
                results[version], staged, "ircad1_512", ct_path, *records[version], 0.0)))
            if round_ == 0:
                kept[version] = staged.commit()
            else:
                staged.discard()
            values: List[np.ndarray] = []
            times.setdefault(("resample", version), []).append(timed(lambda: values.append(taken[version]())))
            target = out / f"{version}-map.nii.gz"
            times.setdefault(("compress", version), []).append(timed(lambda: file_writers[version](
                values[0], maps.grid, target, maps.step)))
            del values
        print(f"round {round_ + 1}: " + ", ".join(f"{step} {version} {times[step, version][-1][0]:.2f} s"
                                                 for step in STEPS for version in ("baseline", "now")),
              file=sys.stderr, flush=True)

    now = subprocess.run(["git", "-C", str(whole_volume.REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    print(f"\n{args.rounds} rounds, minimum over rounds; baseline {args.baseline}, now {now}\n")
    print("| step | baseline wall s | now wall s | wall ratio | baseline CPU s | now CPU s | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for step in STEPS:
        (bw, bc), (nw, nc) = ([min(t[i] for t in times[step, v]) for i in (0, 1)] for v in ("baseline", "now"))
        print(f"| {step} | {bw:.2f} | {nw:.2f} | {bw / nw:.1f}x | {bc:.2f} | {nc:.2f} | {bc / nc:.1f}x |")
    compare(kept, maps.step)


def compare(kept: Dict[str, List[Path]], step: float) -> None:
    """Print how the two versions' files agree: labels voxel for voxel, maps in steps, sizes."""
    import nibabel
    import SimpleITK as sitk

    sizes = {version: sum(p.stat().st_size for p in paths) for version, paths in kept.items()}
    print(f"\nfiles: baseline {sizes['baseline'] / 1e6:.1f} MB, now {sizes['now'] / 1e6:.1f} MB "
          f"({100 * (sizes['now'] / sizes['baseline'] - 1):+.1f} %)")
    for old, new in zip(*(sorted(p for p in kept[v] if p.name.endswith(".nii.gz")) for v in ("baseline", "now"))):
        assert old.name == new.name
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (old, new))
        if "_seg." in old.name:
            print(f"{old.name}: labels {'identical' if np.array_equal(a, b) else 'DIFFER'}")
            continue
        x, y = (nibabel.load(str(p)).get_fdata(dtype=np.float32) for p in (old, new))
        steps = max(float(np.abs(a - b).max()), float(np.abs(x - y).max())) / step
        print(f"{old.name}: largest difference {steps:g} steps ({int(np.count_nonzero(a != b))} voxels differ), "
              f"nibabel and SimpleITK {'agree' if np.array_equal(y.T, b) else 'DISAGREE'}")


if __name__ == "__main__":
    main()
