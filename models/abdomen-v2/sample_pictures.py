"""Pictures of a model's segmentation of the bundled sample CT (patient A's full 112 slices) for its model
card: one axial and one coronal slice in radiological orientation (the patient's right on the viewer's
left), and the organ volumes it labels in the pelvis (make_dataset.PELVIS_SLICES); with --attention, a second
picture of every attention gate's map on the same axial slice.

    python models/abdomen-v2/sample_pictures.py MODEL OUT.png [--attention ATTENTION.png]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from AttentionUNetSegLib.io.images import read_image  # noqa: E402
from AttentionUNetSegLib.inference.segmenter import segment  # noqa: E402
from AttentionUNetSegLib.models.registry import load_model  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_dataset import PELVIS_SLICES  # noqa: E402

SAMPLE = HERE.parents[1] / "AttentionUNetSeg" / "AttentionUNetSegLib" / "data" / "sample" / "example_ct.nii.gz"


def overlay(ax, ct: np.ndarray, labels: np.ndarray, colours: np.ndarray, aspect: float, title: str) -> None:
    ax.imshow(np.clip(ct, -200, 300), cmap="gray", aspect=aspect, interpolation="nearest")
    rgba = colours[labels]
    ax.imshow(rgba, aspect=aspect, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model file or registry name")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--attention", type=Path, help="also draw the attention maps into this PNG")
    args = parser.parse_args()
    model = load_model(args.model)
    image = read_image(SAMPLE)
    result = segment(image, model, attention=args.attention is not None)
    labels = sitk.GetArrayFromImage(result.labels)
    voxel_ml = math.prod(image.GetSpacing()) / 1000.0
    pelvis = labels[PELVIS_SLICES]
    print("pelvis (slices %d-%d): %s" % (PELVIS_SLICES.start, PELVIS_SLICES.stop - 1, {
        c.name: round(float(np.count_nonzero(pelvis == c.value)) * voxel_ml, 1) for c in result.classes if c.value}))
    print("whole scan:", result.volumes_ml())

    # the patient's left, posterior and superior along increasing index: radiological display
    ct = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(result.labels, "LPS"))
    colours = np.zeros((max(c.value for c in result.classes) + 1, 4))
    for c in result.classes:
        if c.value:
            colours[c.value] = [*(v / 255 for v in c.color), 0.45]
    spacing = sitk.DICOMOrient(image, "LPS").GetSpacing()
    z = int(np.argmax([(lab[k] > 0).sum() for k in range(lab.shape[0])]))
    y = lab.shape[1] // 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    overlay(axes[0], ct[z], lab[z], colours, spacing[1] / spacing[0], f"axial, slice {z} (most organ voxels)")
    overlay(axes[1], ct[::-1, y], lab[::-1, y], colours, spacing[2] / spacing[0], "coronal, through the middle")
    for ax, (left, right, top) in zip(axes, (("R", "L", "A"), ("R", "L", "S"))):
        for x, text in ((0.02, left), (0.95, right)):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize=12, weight="bold")
        ax.text(0.48, 0.94, top, transform=ax.transAxes, color="yellow", fontsize=12, weight="bold")
    height = ct.shape[0]
    axes[1].axhline(height - PELVIS_SLICES.stop, color="cyan", linewidth=0.8, linestyle="--")
    axes[1].text(0.02, PELVIS_SLICES.stop / height - 0.01, "pelvis below", transform=axes[1].transAxes,
                 color="cyan", fontsize=8, va="top")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c.value][:3]) for c in result.classes if c.value]
    fig.legend(handles, [c.name for c in result.classes if c.value], loc="lower center", ncol=4, fontsize=9)
    fig.suptitle(f"{model.metadata.name} on the sample CT (radiological view: patient's right on the left)",
                 fontsize=10)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90, bbox_inches="tight")
    print(args.output)
    if args.attention:
        draw_attention(result, ct[z], z, spacing[1] / spacing[0], model.metadata.name, args.attention)


def draw_attention(result, ct_slice: np.ndarray, z: int, aspect: float, name: str, output: Path) -> None:
    """The six gates' maps (alpha from 0 to 1) over the axial slice `z` of the LPS-oriented CT."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.4))
    for ax, gate in zip(axes.ravel(), result.attention):
        alpha = sitk.GetArrayFromImage(sitk.DICOMOrient(result.attention[gate], "LPS"))[z]
        ax.imshow(np.clip(ct_slice, -200, 300), cmap="gray", aspect=aspect, interpolation="nearest")
        shown = ax.imshow(alpha, cmap="jet", vmin=0, vmax=1, alpha=0.45, aspect=aspect, interpolation="nearest")
        ax.set_title(gate, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.6, label="attention coefficient α")
    fig.suptitle(f"{name}: attention maps on the sample CT, axial slice {z} (patient's right on the left)", fontsize=10)
    fig.savefig(output, dpi=80, bbox_inches="tight")
    print(output)


if __name__ == "__main__":
    main()
