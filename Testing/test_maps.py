"""Both sets of maps (resampled from the model grid, read from the worker's files) are a MapSet alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AttentionUNetSegLib.grid import Grid
from AttentionUNetSegLib.inference import ATTENTION_STEP, ResampledMaps
from AttentionUNetSegLib.maps import MapSet
from AttentionUNetSegLib.worker import MapFiles, _write_maps


def _check(maps: MapSet, grid: Grid, expected: dict) -> None:
    assert isinstance(maps, MapSet) and list(maps) == list(expected) and len(maps) == len(expected)
    assert maps.grid == grid
    for name, values in expected.items():
        image = maps[name]
        assert image.GetPixelID() == sitk.sitkFloat32 and Grid.of(image) == grid
        assert np.array_equal(sitk.GetArrayViewFromImage(image), values)
        assert np.array_equal(maps.array(name), values)


def test_resampled_maps_and_map_files_are_one_kind(tmp_path: Path) -> None:
    grid = Grid((6, 5, 4), (1.5, -2.0, 3.0), (2.0, 2.0, 3.0), tuple(np.eye(3).ravel()))
    rng = np.random.default_rng(0)
    raw = {"att2_gate1": rng.random(grid.shape, dtype=np.float32), "att2_gate2": rng.random(grid.shape) * 1.5}
    resampled = ResampledMaps(raw, grid, grid, ATTENTION_STEP)
    expected = {name: (np.round(np.clip(v, 0, 1) / ATTENTION_STEP) * ATTENTION_STEP).astype(np.float32)
                for name, v in raw.items()}
    _check(resampled, grid, expected)
    assert resampled.step == ATTENTION_STEP
    files = MapFiles(tmp_path, _write_maps(tmp_path, "attention", resampled), grid)
    _check(files, grid, expected)
