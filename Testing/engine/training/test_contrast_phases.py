"""The contrast-phase augmentation: each labelled organ and the vessels move into the phase's HU range on their
own, everything else stays; and the slab augmentation keeps a slab of the patch with air around it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from AttentionUNetSegLib.training.contrast_phases import PHASES, RandContrastPhased, VESSELS, apply_phase, vessel_mask

PANCREAS, KIDNEY, LIVER = 1, 3, 4


def _abdomen() -> tuple:
    """A (z, y, x) HU volume at 2 mm: fat, a liver (110 HU), a kidney (180 HU), a vertebra (cortex 700 HU around
    200 HU trabecular bone), an aorta (200 HU) and an unlabelled spleen (120 HU); and its labels."""
    hu = np.full((20, 64, 64), -100.0, np.float32)
    label = np.zeros(hu.shape, np.uint8)
    hu[:, 5:30, 5:30], label[:, 5:30, 5:30] = 110.0, LIVER
    hu[:, 40:52, 40:52], label[:, 40:52, 40:52] = 180.0, KIDNEY
    hu[:, 44:60, 20:36] = 700.0
    hu[:, 46:58, 22:34] = 200.0
    hu[:, 36:42, 24:30] = 200.0
    hu[:, 5:20, 40:55] = 120.0
    return hu, label


def test_each_organ_and_the_vessels_move_into_the_phase_range_and_the_rest_stays() -> None:
    hu, label = _abdomen()
    organs = {"liver": LIVER, "kidney": KIDNEY}
    vessels = vessel_mask(hu, label > 0)
    assert vessels[:, 36:42, 24:30].all()  # the aorta
    assert not vessels[:, 46:58, 22:34].any()  # trabecular bone inside a cortex is bone
    assert not vessels[:, 40:52, 40:52].any()  # a labelled organ is not a vessel
    for seed, phase in enumerate(PHASES):
        out = apply_phase(hu, label, organs, phase, np.random.RandomState(seed), (2.0, 2.0, 2.0))
        liver_low, liver_high = phase.levels["liver"]
        assert liver_low <= np.median(out[label == LIVER]) <= liver_high
        vessel_low, vessel_high = phase.levels[VESSELS]
        assert vessel_low <= np.median(out[:, 37:41, 25:29]) <= vessel_high
        untouched = (slice(None), slice(5, 20), slice(45, 50))
        assert np.array_equal(out[untouched], hu[untouched]), "an unlabelled organ keeps its intensities"
        assert np.array_equal(out[:, 46:58, 22:34], hu[:, 46:58, 22:34]), "bone stays"
        assert np.array_equal(out[:, 60:, 60:], hu[:, 60:, 60:]), "fat far from organs stays"
        kidney = out[label == KIDNEY]
        if phase.medulla_below_cortex is not None:  # arterial: a bright cortex around a darker medulla
            cortex, medulla = out[:, 40, 46], out[:, 46, 46]
            assert np.median(cortex) - np.median(medulla) >= phase.medulla_below_cortex[0] - 1e-3
            low, high = phase.levels["kidney"]
            assert low - 5 <= np.median(cortex) <= high, "the medulla's soft edge darkens the thin cortex a little"
        else:
            assert phase.levels["kidney"][0] <= np.median(kidney) <= phase.levels["kidney"][1]


def test_the_transform_moves_only_the_organs_the_case_labels_and_is_seeded() -> None:
    hu, label = _abdomen()
    transform = RandContrastPhased({"pancreas": PANCREAS, "kidney": KIDNEY, "liver": LIVER}, (2.0, 2.0, 2.0), prob=1.0)
    data = {"image": hu[None].copy(), "label": label[None].copy(), "labelled": (0, KIDNEY)}  # liver unlabelled here
    transform.set_random_state(seed=4)
    first = transform(data)["image"]
    transform.set_random_state(seed=4)
    assert np.array_equal(transform(data)["image"], first)
    assert np.array_equal(first[0][label == LIVER], hu[label == LIVER])
    assert not np.array_equal(first[0][label == KIDNEY], hu[label == KIDNEY])
    off = RandContrastPhased({"kidney": KIDNEY}, (2.0, 2.0, 2.0), prob=0.0)
    assert np.array_equal(off(data)["image"], data["image"])


def test_slab_augmentation_keeps_a_slab_with_air_and_background_around_it(tmp_path: Path) -> None:
    from AttentionUNetSegLib.training.augment import RandSlabd, SLAB_MM

    image = torch.full((1, 48, 8, 8), 0.5)
    label = torch.ones((1, 48, 8, 8), dtype=torch.uint8)
    transform = RandSlabd(spacing_z_mm=3.0, fill=0.0, prob=1.0)
    kept = set()
    for seed in range(20):
        transform.set_random_state(seed=seed)
        out = transform({"image": image, "label": label})
        inside = (out["label"][0] > 0).any(dim=2).any(dim=1).numpy()
        rows = np.flatnonzero(inside)
        assert rows.size, "one contiguous slab"
        assert np.all(np.diff(rows) == 1), "one contiguous slab"
        assert SLAB_MM[0] / 3.0 - 1 <= rows.size <= SLAB_MM[1] / 3.0 + 1
        assert torch.all(out["image"][0][~torch.from_numpy(inside)] == 0.0)
        kept.add(rows.size)
    assert len(kept) > 3
    assert torch.all(image == 0.5), "the input is not modified"
    assert torch.all(label == 1), "the input is not modified"


@pytest.mark.parametrize("name", [p.name for p in PHASES])
def test_phase_ranges_are_ordered(name: str) -> None:
    phase = next(p for p in PHASES if p.name == name)
    assert all(low < high for low, high in phase.levels.values())
