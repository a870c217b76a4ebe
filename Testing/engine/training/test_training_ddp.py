"""Distributed training: two processes under torchrun on the CPU (Gloo) end with identical weights on both ranks,
and rank 0 alone writes the outputs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_support import assert_same_tensors, real_ct_csv, shared_cache

from AttentionUNetSegLib.models.model_file import read_model

pytestmark = pytest.mark.shared_data

SCRIPT = """
import logging, os, sys, torch
from AttentionUNetSegLib.training import TrainConfig, train

logging.basicConfig(level=logging.INFO)

data, output, cache = sys.argv[1:]
result = train(TrainConfig(data=data, output=output, cache_dir=cache, label_map="totalsegmentator", feature_scale=16,
                           patch_size=(48, 48, 32), spacing_mm=(4, 4, 4), folds=2, epochs=2, iterations_per_epoch=2,
                           batch_size=1, validate_every=1, lr=1e-3, tensorboard=False, snapshots=False))
torch.save(result.model.state_dict(), os.path.join(output, f"rank{os.environ['RANK']}.pt"))
"""


def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path, tmp_path_factory) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
         real_ct_csv(tmp_path), out, shared_cache(tmp_path_factory)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert_same_tensors(*ranks)
    final = read_model(out / "final.safetensors")
    assert final.metadata.provenance["world_size"] == 2
    assert final.metadata.provenance["steps"] == 4
    assert_same_tensors(final.state_dict(), ranks[0])
    assert completed.stderr.count("epoch 2/2") == 1  # rank 0 alone reports
