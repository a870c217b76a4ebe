"""Metric values on shapes computed by hand, empty-mask conventions, a brute-force cross-check and memory use."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from AttentionUNetSegLib.evaluation.metrics import BOTH_EMPTY, binary_metrics, dice, label_metrics, surface_distances

SPACING = (3.0, 2.0, 0.5)  # array axes (z, y, x), deliberately anisotropic


def cube(shape=(8, 8, 8), start=(2, 2, 2), side=4) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + side) for s in start)] = True
    return mask


@pytest.mark.parametrize("axis, far, msd, hd95", [
    # A 4-voxel cube shifted by one voxel along `axis`: of its 56 surface voxels, the 16 on the trailing face
    # lie one step (spacing[axis]) from the other surface, the 4 inner voxels of the leading face lie 0.5 mm
    # (one x step) from it, the other 36 lie on it. Same both ways: 112 distances.
    (2, 0.5, (32 * 0.5 + 8 * 0.5) / 112, 0.5),
    (1, 2.0, (32 * 2.0 + 8 * 0.5) / 112, 2.0),
    (0, 3.0, (32 * 3.0 + 8 * 0.5) / 112, 3.0),
])
def test_shifted_cube_with_anisotropic_spacing(axis, far, msd, hd95):
    pred = cube()
    ref = np.roll(pred, 1, axis=axis)
    pred_to_ref, ref_to_pred = surface_distances(pred, ref, SPACING)
    expected = np.sort([0.0] * 36 + [0.5] * 4 + [far] * 16)
    np.testing.assert_allclose(np.sort(pred_to_ref), expected)
    np.testing.assert_allclose(np.sort(ref_to_pred), expected)

    m = binary_metrics(pred, ref, SPACING)
    assert (m.dice, m.precision, m.recall) == (0.75, 0.75, 0.75)
    assert dice(pred, ref) == 0.75
    assert m.msd_mm == pytest.approx(msd, rel=1e-12)
    assert m.hd95_mm == pytest.approx(hd95, rel=1e-12)
    assert (m.pred_voxels, m.ref_voxels) == (64, 64)


def test_single_voxels_are_an_exact_euclidean_distance_apart():
    pred, ref = np.zeros((4, 8, 20), bool), np.zeros((4, 8, 20), bool)
    pred[1, 1, 1], ref[1, 4, 17] = True, True  # 3 rows * 2 mm = 6 mm, 16 columns * 0.5 mm = 8 mm
    m = binary_metrics(pred, ref, SPACING)
    assert (m.dice, m.precision, m.recall, m.msd_mm, m.hd95_mm) == (0.0, 0.0, 0.0, 10.0, 10.0)


def test_identical_masks_score_perfectly():
    mask = cube(side=5)
    m = binary_metrics(mask, mask.copy(), SPACING)
    assert (m.dice, m.precision, m.recall, m.msd_mm, m.hd95_mm) == (1.0, 1.0, 1.0, 0.0, 0.0)


def test_empty_masks_give_nan_exactly_where_a_metric_is_undefined():
    empty, full = np.zeros((6, 6, 6), bool), cube((6, 6, 6), (1, 1, 1), 3)

    both = binary_metrics(empty, empty, SPACING)
    assert all(math.isnan(v) for v in (both.dice, both.precision, both.recall, both.msd_mm, both.hd95_mm))
    assert (both.pred_voxels, both.ref_voxels) == (0, 0)
    assert math.isnan(dice(empty, empty)) and dice(empty, full) == 0.0

    missed = binary_metrics(empty, full, SPACING)  # organ present, nothing predicted
    assert (missed.dice, missed.recall) == (0.0, 0.0)
    assert math.isnan(missed.precision)
    assert math.isnan(missed.msd_mm)
    assert math.isnan(missed.hd95_mm)

    invented = binary_metrics(full, empty, SPACING)  # organ absent, something predicted
    assert (invented.dice, invented.precision) == (0.0, 0.0)
    assert math.isnan(invented.recall)
    assert math.isnan(invented.msd_mm)
    assert math.isnan(invented.hd95_mm)


def test_label_metrics_of_an_absent_label_is_all_nan_and_counts_no_voxels():
    labels = cube().astype(np.uint8)
    result = label_metrics(labels, labels, SPACING, [1, 9])
    assert result[1].dice == 1.0
    assert result[9] is BOTH_EMPTY
    assert all(math.isnan(v) for k, v in BOTH_EMPTY.as_dict().items() if k not in ("pred_voxels", "ref_voxels"))
    assert (BOTH_EMPTY.pred_voxels, BOTH_EMPTY.ref_voxels) == (0, 0)


def _brute_force(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple:
    """All-pairs surface distances on the full volume, without any cropping."""
    def points(mask):
        surface = mask & ~ndimage.binary_erosion(mask, border_value=0)
        return np.argwhere(surface) * np.asarray(spacing)
    d = cdist(points(pred), points(ref))
    directed = d.min(axis=1), d.min(axis=0)
    return np.concatenate(directed).mean(), max(np.percentile(side, 95) for side in directed)


def test_label_metrics_match_a_brute_force_computation_on_random_blobs_touching_the_border():
    rng = np.random.default_rng(3)
    shape, spacing = (18, 22, 26), (2.5, 0.7, 1.1)
    smooth = [ndimage.gaussian_filter(rng.standard_normal(shape), 2.5) for _ in range(2)]
    pred = np.where(smooth[0] > 0.05, 1, 0) + np.where(smooth[1] > 0.08, 2, 0)
    ref = np.where(np.roll(smooth[0], 2, axis=2) > 0.0, 1, 0) + np.where(smooth[1] > 0.1, 2, 0)
    pred, ref = np.where(pred == 3, 2, pred).astype(np.uint8), np.where(ref == 3, 2, ref).astype(np.uint8)
    # the masks reach the volume's border
    assert pred[0].any()
    assert ref[:, :, -1].any()

    result = label_metrics(pred, ref, spacing, [1, 2])
    for label in (1, 2):
        p, r = pred == label, ref == label
        msd, hd95 = _brute_force(p, r, spacing)
        assert result[label].msd_mm == pytest.approx(msd, rel=1e-9)
        assert result[label].hd95_mm == pytest.approx(hd95, rel=1e-9)
        assert result[label].dice == pytest.approx(2 * np.sum(p & r) / (p.sum() + r.sum()), rel=1e-12)
        assert result[label].precision == pytest.approx(np.sum(p & r) / p.sum(), rel=1e-12)
        assert result[label].recall == pytest.approx(np.sum(p & r) / r.sum(), rel=1e-12)


def anisotropic_shapes():
    """Three prediction/reference pairs whose two directed distance distributions differ."""
    z, y, x = np.mgrid[:20, :40, :64]
    spacing = (2.5, 0.8, 0.7)
    across = ((z - 10) * 2.5) ** 2 + ((y - 20) * 0.8) ** 2
    ball = across + ((x - 24) * 0.7) ** 2 < 12.0 ** 2
    lobed = ball | ((across < 3.0 ** 2) & (x > 24) & (x < 67))  # a 3 mm thick, 30 mm long lobe
    satellite = ball | (across + ((x - 52) * 0.7) ** 2 < 5.0 ** 2)  # a second, separate component
    smooth = ndimage.gaussian_filter(np.random.default_rng(7).standard_normal(z.shape), 3.0)
    return [("lobed ball vs ball", lobed, ball, spacing), ("ball and satellite vs ball", satellite, ball, spacing),
            ("random blobs", smooth > 0.04, ndimage.binary_erosion(smooth > 0.0), (3.0, 1.5, 0.6))]


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # inside MONAI 1.6
@pytest.mark.parametrize("name, pred, ref, spacing", anisotropic_shapes(), ids=lambda v: v if isinstance(v, str) else "")
def test_surface_distances_agree_with_monai(name, pred, ref, spacing):
    """HD95 and the mean surface distance as MONAI computes them, in mm, with anisotropic spacing."""
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def tensor(mask):
        return torch.from_numpy(mask[None, None].astype(np.float32))

    m = binary_metrics(pred, ref, spacing)
    monai_hd95 = float(compute_hausdorff_distance(tensor(pred), tensor(ref), include_background=True,
                                                  percentile=95, spacing=list(spacing))[0, 0])
    monai_msd = float(compute_average_surface_distance(tensor(pred), tensor(ref), include_background=True,
                                                       symmetric=True, spacing=list(spacing))[0, 0])
    pooled = np.percentile(np.concatenate(surface_distances(pred, ref, spacing)), 95)
    assert monai_hd95 > pooled + 0.5, f"{name}: the shapes must tell the two HD95 definitions apart"
    assert m.hd95_mm == pytest.approx(monai_hd95, rel=1e-5)
    assert m.msd_mm == pytest.approx(monai_msd, rel=1e-5)


def test_a_small_organ_in_a_512x512x300_volume_needs_little_extra_memory():
    shape = (300, 512, 512)
    pred, ref = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    pred[100:110, 200:220, 300:330] = 7
    ref[101:111, 200:220, 300:330] = 7
    tracemalloc.start()
    try:
        result = label_metrics(pred, ref, (2.0, 0.8, 0.8), [7, 8])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result[7].dice == pytest.approx(0.9)
    assert result[7].hd95_mm == pytest.approx(2.0)
    assert math.isnan(result[8].dice)
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB: a full-size temporary was allocated"


@pytest.mark.parametrize("pred, ref, spacing, message", [
    (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), (1, 1, 1), "shape"),
    (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), (1, 1), "spacing"),
    (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), (1, 0, 1), "spacing"),
    (np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), (1, 1, 1), "integer"),
])
def test_bad_inputs_are_refused_with_a_reason(pred, ref, spacing, message):
    with pytest.raises(ValueError, match=message):
        label_metrics(pred, ref, spacing, [1])
