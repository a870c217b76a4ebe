"""`attention-unet bench` runs every side and reports consistent ratios (no timing is asserted)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import run_cli

from AttentionUNetSegLib.device import resolve_precision


def test_bench_reports_every_candidate_with_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = run_cli(["bench", "--device", "cpu", "--shape", "32", "32", "16", "--repeats", "1", "--warmup", "0",
                         "--train-batch", "1", "--json", out])
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.read_text())
    results = report["results"]
    forward = [r for r in results if r["task"] == "forward"]
    train = [r for r in results if r["task"].startswith("train step")]
    assert {r["name"].split(",")[0] for r in forward} == {"ours Attention U-Net", "ours U-Net", "MONAI AttentionUnet"}
    assert {r["ours"] for r in forward if "OpenVINO" in r["name"]} == {True, False}  # both sides, on the CPU
    assert any(not r["ours"] for r in train) and any(r["ours"] for r in train)
    for rows in (forward, train):
        best_peer = min(r["median_ms"] for r in rows if not r["ours"])
        for row in rows:
            assert row["median_ms"] > 0
            assert abs(row["speedup_vs_best_peer"] - best_peer / row["median_ms"]) < 1e-9
    assert "| MONAI AttentionUnet, fp32 |" in completed.stdout and "speed-up vs best peer" in completed.stdout
    # every fast configuration of ours is checked against the reference forward, within the tolerances of
    # test_optimize.py (bf16: 5 % of the logit range; float32: 1e-4); peers and the reference itself are not
    checked = {r["name"]: r["max_deviation"] for r in forward if r["max_deviation"] is not None}
    assert set(checked) == {r["name"] for r in forward if r["ours"] and r["name"] != "ours Attention U-Net, as defined"}
    for name, deviation in checked.items():
        assert 0 < deviation <= (1e-4 if "float32" in name else 0.05), (name, deviation)


def test_bench_adds_compiled_configurations(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = run_cli(["bench", "--device", "cpu", "--shape", "32", "32", "16", "--repeats", "1", "--warmup", "1",
                         "--compile", "--json", out])
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(out.read_text())["results"]
    compiled = {r["name"]: r for r in rows if "torch.compile" in r["name"]}
    fast = resolve_precision("auto", torch.device("cpu"))
    peer_best = f"channels-last {str(fast).removeprefix('torch.')}" if fast != torch.float32 else "fp32"
    assert set(compiled) == {"ours Attention U-Net, PyTorch fast path, torch.compile default",
                             f"MONAI AttentionUnet, {peer_best}, torch.compile default"}
    assert compiled["ours Attention U-Net, PyTorch fast path, torch.compile default"]["ours"]
    assert all(r["median_ms"] > 0 for r in compiled.values())
    refused = run_cli(["bench", "--device", "cpu", "--warmup", "0", "--compile"])
    assert refused.returncode == 1 and "warm-up" in refused.stderr
