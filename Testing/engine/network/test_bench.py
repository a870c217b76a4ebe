"""`attention-unet bench` runs every side, says what it is doing, reports consistent ratios (no timing is
asserted) and refuses impossible options before any work."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
import torch
from conftest import run_cli

from AttentionUNetSegLib.cli import bench, main
from AttentionUNetSegLib.backends.device import resolve_precision


def test_bench_reports_every_candidate_with_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = run_cli(["bench", "--device", "cpu", "--shape", "32", "32", "16", "--repeats", "1", "--warmup", "1",
                         "--train-batch", "1", "--json", out])
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.read_text())
    results = report["results"]
    forward = [r for r in results if r["task"] == "forward"]
    train = [r for r in results if r["task"].startswith("train step")]
    assert {r["name"].split(",")[0] for r in forward} == {"ours Attention U-Net", "ours U-Net", "MONAI AttentionUnet"}
    assert {r["ours"] for r in forward if "OpenVINO" in r["name"]} == {True, False}  # both sides, on the CPU
    assert any(not r["ours"] for r in train)
    assert any(r["ours"] for r in train)
    for rows in (forward, train):
        best_peer = min(r["median_ms"] for r in rows if not r["ours"])
        for row in rows:
            assert row["median_ms"] > 0
            assert abs(row["speedup_vs_best_peer"] - best_peer / row["median_ms"]) < 1e-9
    assert "| MONAI AttentionUnet, fp32 |" in completed.stdout
    assert "speed-up vs best peer" in completed.stdout
    # every fast configuration of ours is checked against the reference forward, within the tolerances of
    # test_optimize.py (bf16: 5 % of the logit range; float32: 1e-4); peers and the reference itself are not
    checked = {r["name"]: r["max_deviation"] for r in forward if r["max_deviation"] is not None}
    assert set(checked) == {r["name"] for r in forward if r["ours"] and r["name"] != "ours Attention U-Net, as defined"}
    for name, deviation in checked.items():
        assert 0 < deviation <= (1e-4 if "float32" in name else 0.05), (name, deviation)
    # every slow step is announced: building and converting, then each configuration in each round
    progress = completed.stderr.splitlines()
    for line in ("forward: building MONAI AttentionUnet", "forward: converting ours Attention U-Net to OpenVINO "
                 "(float32)", "forward: converting MONAI AttentionUnet to OpenVINO", "train step: building our "
                 "Attention U-Net", "forward: checking our fast configurations against the reference forward"):
        assert any(p.startswith(line) for p in progress), (line, completed.stderr)
    for task, rows in (("forward", forward), ("train step (batch 1)", train)):
        for phase, round_ in (("warm-up", 1), ("timed", 2)):
            announced = {p.split(": ", 1)[1] for p in progress if p.startswith(f"{task}, {phase} round {round_}/2: ")}
            assert announced == {r["name"] for r in rows}, (task, phase, completed.stderr)


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
    for name in compiled:
        assert f"forward, warm-up round 1/2: {name} (compiling)" in completed.stderr.splitlines()
        assert f"forward, timed round 2/2: {name}" in completed.stderr.splitlines()


@pytest.mark.parametrize("options, message", [
    (["--warmup", "0"], "argument --warmup: 0 is not allowed; allowed: 1 or more untimed rounds"),
    (["--warmup", "0", "--compile"], "argument --warmup: 0 is not allowed; allowed: 1 or more"),
    (["--repeats", "0"], "argument --repeats: 0 is not allowed; allowed: 1 or more timed rounds"),
    (["--train-batch", "-1"], "argument --train-batch: -1 is not allowed; allowed: 0 (off) or a batch size of 1"),
    (["--shape", "0", "32", "16"], "argument --shape: 0 is not allowed; allowed: multiples of 16"),
    (["--shape", "32", "30", "16"], "argument --shape: 30 is not a multiple of 16; allowed: multiples of 16"),
    (["--classes", "1"], "argument --classes: 1 is not allowed; allowed: 2 or more"),
    (["--threads", "0"], "argument --threads: 0 is not allowed; allowed: 1 or more CPU threads"),
    (["--repeats", "two"], "argument --repeats: 'two' is not a whole number; allowed: 1 or more"),
])
def test_impossible_options_are_refused_by_the_parser(options: List[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--device", "cpu", *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_paths_are_refused_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench, "run_benchmark", lambda *args, **kwargs: pytest.fail("the benchmark started"))
    assert main(["bench", "--device", "cpu", "--json", str(tmp_path / "missing" / "bench.json")]) == 1
    assert f"--json {tmp_path / 'missing' / 'bench.json'}: the folder" in capsys.readouterr().err
    assert main(["bench", "--device", "cpu", "--authors-path", str(tmp_path)]) == 1
    assert f"--authors-path {tmp_path} has no models/networks/unet_CT_multi_att_dsv_3D.py" in capsys.readouterr().err
