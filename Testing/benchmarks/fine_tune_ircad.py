"""Fine-tuning from Slicer's logic on real CT: a model fine-tuned on one 3D-IRCADb-01 scan (its manual masks as
a user's segmentation, named as IRCAD names its mask files) and validated on the other, with the Dice before and
after, the time and the device.

    python Testing/benchmarks/fine_tune_ircad.py [--train 1.1] [--validate 1.7] [--steps 50] [--minutes M]
        [--model attention-unet-abdomen-v1]

The default model v2 was trained on both 3D-IRCADb-01 scans, so its validation here is no unseen scan; the
first model, attention-unet-abdomen-v1, never saw them: `--model attention-unet-abdomen-v1` shows what a user's
fine-tuning does for a hospital's scans that the base model never met.

Runs on a headless MRML scene (slicer-core), through AttentionUNetSegLogic.fineTune as the panel's background
run does it; the user's registry and the new model live in a temporary folder that is removed at the end (the
scans are CC BY-NC-ND 4.0: nothing trained on them is kept).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))
MASKS = ("liver", "spleen", "leftkidney", "rightkidney")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="1.1", help="3D-IRCADb-01 patient to fine-tune on (default 1.1)")
    parser.add_argument("--validate", default="1.7", help="patient to validate on (default 1.7)")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps (default 50)")
    parser.add_argument("--minutes", type=float, default=None, help="time budget in minutes (default: none)")
    parser.add_argument("--model", default=None, help="base model (default: the registry's default)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="fine-tune-ircad-")
    os.environ["ATTENTION_UNET_SEG_HOME"] = home

    from conftest import SHARED
    from slicer_scene import add_segment, add_volume, new_scene

    from AttentionUNetSegLib.progress import FineTuneStage
    from AttentionUNetSegLib.training.fine_tuning import FineTuneSettings
    from AttentionUNetSegLogic import AttentionUNetSegLogic
    from AttentionUNetSegLogic.fine_tuning import validationSummary

    scene = new_scene(Path(home) / "scene")

    def pair(patient: str):
        folder = SHARED / "data" / "ircad" / f"3Dircadb{patient}"
        volume = add_volume(scene, sitk.ReadImage(str(folder / "ct.nii.gz")), f"3Dircadb{patient}")
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"3Dircadb{patient} masks")
        for mask in MASKS:
            add_segment(segmentation, mask, sitk.ReadImage(str(folder / "masks" / f"{mask}.nii.gz"), sitk.sitkUInt8))
        return volume, segmentation

    logic = AttentionUNetSegLogic()
    training, validation = pair(args.train), pair(args.validate)
    plan = logic.fineTunePlan([training], args.model, validation)
    print("\n".join(plan.describe()))
    started = time.perf_counter()
    last = [0.0]

    def progress(event) -> None:
        if event.stage is FineTuneStage.TRAINING and event.step and time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  step {event.step}/{event.total_steps}, loss {event.loss:.4f}, "
                  f"about {event.seconds_left / 60:.1f} min left", flush=True)

    settings = FineTuneSettings(f"ircad{args.train}-tuned", args.model, steps=args.steps,
                                max_seconds=None if args.minutes is None else 60 * args.minutes)
    name = logic.fineTune([training], settings, validation=validation, progress=progress)
    seconds = time.perf_counter() - started
    metadata = logic.modelMetadata(name)
    provenance = metadata.provenance
    print(f"\n{name}: {provenance['steps']} steps, {provenance['training_seconds']:.0f} s of training, "
          f"{seconds:.0f} s in all (with both validations), on {provenance['device']}")
    print(f"validation on 3D-IRCADb-01 {args.validate}, Dice before -> after:")
    print("\n".join(f"  {line}" for line in validationSummary(metadata.metrics)))


if __name__ == "__main__":
    main()
