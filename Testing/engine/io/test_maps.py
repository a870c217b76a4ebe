"""Both sets of maps (resampled in process from the model grid, read back from the worker's files) are a MapSet
alike, with the same values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.inference.result import ResampledMaps
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP
from AttentionUNetSegLib.io.maps import MapSet
from AttentionUNetSegLib.worker.jobs import _read_maps, _write_maps

IDENTITY = tuple(np.eye(3).ravel())


def _check(maps: MapSet, grid: Grid, expected: dict) -> None:
    assert isinstance(maps, MapSet)
    assert list(maps) == list(expected)
    assert len(maps) == len(expected)
    assert maps.grid == grid
    for name, values in expected.items():
        image = maps[name]
        assert image.GetPixelID() == sitk.sitkFloat32
        assert Grid.of(image) == grid
        assert np.array_equal(sitk.GetArrayViewFromImage(image), values)
        assert np.array_equal(maps.array(name), values)
        into = np.full(grid.shape, -1.0, np.float32)
        maps.read_into(name, into)
        assert np.array_equal(into, values)


def _raw(grid: Grid) -> dict:
    rng = np.random.default_rng(0)
    return {"att2_gate1": rng.random(grid.shape, dtype=np.float32),
            "att2_gate2": (rng.random(grid.shape) * 1.5).astype(np.float32)}


def test_resampled_maps_and_the_workers_are_one_kind(tmp_path: Path) -> None:
    grid = Grid((6, 5, 4), (1.5, -2.0, 3.0), (2.0, 2.0, 3.0), IDENTITY)
    raw = _raw(grid)
    resampled = ResampledMaps(raw, grid, grid, ATTENTION_STEP)
    expected = {name: (np.round(np.clip(v, 0, 1) / ATTENTION_STEP) * ATTENTION_STEP).astype(np.float32)
                for name, v in raw.items()}
    _check(resampled, grid, expected)
    assert resampled.step == ATTENTION_STEP
    _check(_read_maps(tmp_path, _write_maps(tmp_path, "attention", resampled), grid), grid, expected)


def test_the_workers_maps_resample_as_in_process(tmp_path: Path) -> None:
    """Model-grid maps travel; the reader resamples them onto the input grid (flipped axes here) as `segment`
    does: the same values, multiples and probabilities."""
    source = Grid((5, 4, 3), (-4.0, -3.0, -2.0), (2.0, 2.0, 3.0), IDENTITY)
    grid = Grid((9, 7, 5), (4.0, 3.0, -2.0), (1.1, 1.2, 1.7), tuple(np.diag([-1.0, -1.0, 1.0]).ravel()))
    for step in (ATTENTION_STEP, None):
        in_process = ResampledMaps(_raw(source), source, grid, step)
        read_back = _read_maps(tmp_path, _write_maps(tmp_path, "map", in_process), grid)
        _check(read_back, grid, {name: in_process.array(name) for name in in_process})
        assert read_back.step == step
        if step is not None:
            assert all(np.array_equal(read_back.multiples(n), in_process.multiples(n)) for n in in_process)


def test_source_values_are_the_maps_read_onto_their_own_grid() -> None:
    """What the Slicer module shows (the maps on the model's grid) holds the values a reader would get there."""
    source = Grid((5, 4, 3), (-4.0, -3.0, -2.0), (2.0, 2.0, 3.0), IDENTITY)
    target = Grid((9, 7, 5), (4.0, 3.0, -2.0), (1.1, 1.2, 1.7), tuple(np.diag([-1.0, -1.0, 1.0]).ravel()))
    for step in (ATTENTION_STEP, None):
        maps = ResampledMaps(_raw(source), source, target, step)
        on_source = ResampledMaps(maps.source_maps, source, source, step)
        for name in maps:
            values = maps.source_values(name)
            assert values.dtype == np.float32
            assert values.shape == source.shape
            assert np.array_equal(values, on_source.array(name)), (name, step)
