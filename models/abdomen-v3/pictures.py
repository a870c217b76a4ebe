"""Pictures of a model's segmentation of one CT for its model card, in radiological orientation (the patient's right
on the viewer's left): an axial slice at the heart and the liver's dome, an axial slice through the kidneys and a
coronal slice through the right kidney, with the reference's outlines where one is given; with --attention, a second
picture of every attention gate's map on the kidney slice.

    python models/abdomen-v3/pictures.py MODEL CT OUT.png [--reference LABELS] [--attention ATTENTION.png]

LABELS holds the model's class values on the CT's grid (an `attention-unet evaluate` output's references/ file).
The heart's slice is found in the CT alone: 15 mm above the lowest axial slice whose lungs (air inside the body) fill
a quarter of the body's cross-section, the level where the heart sits on the diaphragm beside the liver's dome.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from AttentionUNetSegLib.inference.segmenter import segment  # noqa: E402
from AttentionUNetSegLib.io.images import read_image  # noqa: E402
from AttentionUNetSegLib.models.registry import load_model  # noqa: E402

CHEST_LUNG_SHARE = 0.25
HEART_ABOVE_CHEST_MM = 15.0


def heart_slice(ct: np.ndarray, spacing_z: float) -> Optional[int]:
    """The axial slice (index in an LPS-oriented array, z growing to the head) of the heart beside the dome."""
    shares = []
    for plane in ct:
        body = ndimage.binary_fill_holes(plane > -500)
        shares.append(np.count_nonzero(body & (plane < -500)) / max(np.count_nonzero(body), 1))
    chest = np.flatnonzero(np.asarray(shares) >= CHEST_LUNG_SHARE)
    return None if chest.size == 0 else min(int(chest[0] + HEART_ABOVE_CHEST_MM / spacing_z), len(shares) - 1)


def overlay(ax, ct: np.ndarray, labels: np.ndarray, colours: np.ndarray, aspect: float, title: str,
            reference: Optional[np.ndarray]) -> None:
    ax.imshow(np.clip(ct, -200, 300), cmap="gray", aspect=aspect, interpolation="nearest")
    ax.imshow(colours[labels], aspect=aspect, interpolation="nearest")
    if reference is not None:
        for value in np.unique(reference[reference > 0]):
            ax.contour(reference == value, levels=[0.5], colors=[colours[value][:3]], linewidths=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model file or registry name")
    parser.add_argument("ct", type=Path, help="the CT (any format attention-unet reads)")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--reference", type=Path, help="reference labels (model class values) to outline")
    parser.add_argument("--attention", type=Path, help="also draw the attention maps into this PNG")
    args = parser.parse_args()
    model = load_model(args.model)
    image = read_image(args.ct)
    result = segment(image, model, attention=args.attention is not None)
    print("volumes (mL):", result.volumes_ml())
    print("warnings:", result.warnings)
    oriented = sitk.DICOMOrient(image, "LPS")  # the patient's left, posterior, superior along increasing index
    ct = sitk.GetArrayFromImage(oriented)
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(result.labels, "LPS"))
    reference = None
    if args.reference is not None:
        reference_image = sitk.Resample(read_image(args.reference), image, sitk.Transform(),
                                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        reference = sitk.GetArrayFromImage(sitk.DICOMOrient(reference_image, "LPS"))
    colours = np.zeros((max(c.value for c in result.classes) + 1, 4))
    for c in result.classes:
        if c.value:
            colours[c.value] = [*(v / 255 for v in c.color), 0.45]
    spacing = oriented.GetSpacing()
    kidney = next((c.value for c in result.classes if c.name == "kidney"), None)
    per_slice = [(lab[k] == kidney).sum() if kidney else 0 for k in range(lab.shape[0])]
    z_kidney = int(np.argmax(per_slice)) if max(per_slice) else lab.shape[0] // 2
    z_heart = heart_slice(ct, spacing[2])
    right = lab[..., : lab.shape[2] // 2] == kidney if kidney else None  # the patient's right half (low x in LPS)
    y = int(np.nonzero(right)[1].mean()) if right is not None and right.any() else lab.shape[1] // 2
    views = [(ct[z_kidney], lab[z_kidney], spacing[1] / spacing[0], f"axial {z_kidney}: kidneys",
              None if reference is None else reference[z_kidney]),
             (ct[::-1, y], lab[::-1, y], spacing[2] / spacing[0], "coronal through the right kidney",
              None if reference is None else reference[::-1, y])]
    if z_heart is not None:
        views.insert(0, (ct[z_heart], lab[z_heart], spacing[1] / spacing[0], f"axial {z_heart}: heart and liver dome",
                         None if reference is None else reference[z_heart]))
    fig, axes = plt.subplots(1, len(views), figsize=(5 * len(views), 5.2))
    for ax, (ct_view, lab_view, aspect, title, ref_view) in zip(axes, views):
        overlay(ax, ct_view, lab_view, colours, aspect, title, ref_view)
        for x, text in ((0.02, "R"), (0.95, "L")):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize=12, weight="bold")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c.value][:3]) for c in result.classes if c.value]
    fig.legend(handles, [c.name for c in result.classes if c.value], loc="lower center", ncol=4, fontsize=9)
    outlined = "; lines: the reference" if reference is not None else ""
    fig.suptitle(f"{model.metadata.name} on {args.ct.name} (filled: the model{outlined}; radiological view)",
                 fontsize=10)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=80, bbox_inches="tight")
    print(args.output)
    if args.attention:
        draw_attention(result, ct[z_kidney], z_kidney, spacing[1] / spacing[0], model.metadata.name, args.attention)


def draw_attention(result, ct_slice: np.ndarray, z: int, aspect: float, name: str, output: Path) -> None:
    """Every gate's map (alpha from 0 to 1) over the axial slice `z` of the LPS-oriented CT."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.4))
    for ax, gate in zip(axes.ravel(), result.attention):
        alpha = sitk.GetArrayFromImage(sitk.DICOMOrient(result.attention[gate], "LPS"))[z]
        ax.imshow(np.clip(ct_slice, -200, 300), cmap="gray", aspect=aspect, interpolation="nearest")
        shown = ax.imshow(alpha, cmap="jet", vmin=0, vmax=1, alpha=0.45, aspect=aspect, interpolation="nearest")
        ax.set_title(gate, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.6, label="attention coefficient α")
    fig.suptitle(f"{name}: attention maps, axial slice {z} (patient's right on the left)", fontsize=10)
    fig.savefig(output, dpi=80, bbox_inches="tight")
    print(output)


if __name__ == "__main__":
    main()
