"""`attention-unet segment` on a cohort through real subprocesses: names, resume, failures, shards, cohort.csv."""
from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path
from typing import Dict, List

import pytest
import SimpleITK as sitk
from conftest import TOTALSEG, make_model_file, run_cli, start_cli

from AttentionUNetSegLib.models.registry import default_model

pytestmark = pytest.mark.shared_data

SMALL_CT = TOTALSEG / "example_ct_sm.nii.gz"
DICOM = TOTALSEG / "example_ct_dicom"
ORGAN_COLUMNS = ["pancreas_ml", "spleen_ml", "kidney_ml", "liver_ml"]


def _copies(folder: Path, names: List[str]) -> List[Path]:
    """Copies of the small CT at `folder`/NAME (NAME may hold a sub-folder)."""
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(Path(shutil.copyfile(SMALL_CT, path)))
    return paths


def _table(out: Path) -> Dict[str, dict]:
    with (out / "cohort.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["name"] for row in rows}) == len(rows), "one row per case"
    return {row["name"]: row for row in rows}


def _summary(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}_summary.json").read_text())


def _assert_reported(stderr: str, name: str, summary: dict, quiet: bool) -> None:
    """`stderr` shows the case's warnings, and its organ-volume table unless `quiet`, as a single run does."""
    lines = stderr.splitlines()
    for warning in summary["warnings"]:
        assert f"warning: {warning}" in lines
    heading = f"{name}: done in {summary['timings_s']['total']:.1f} s on cpu"
    liver = f"  liver     {summary['volumes_ml']['liver']:9.1f} mL"
    assert (heading in stderr) is not quiet, heading
    assert (liver in lines) is not quiet, liver


def _files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_files_in_folders_and_a_dicom_series_resume_and_overwrite(tmp_path: Path) -> None:
    first, second = _copies(tmp_path, ["s0009/ct.nii.gz", "s0010/ct.nii.gz"])
    out = tmp_path / "out"
    command = ["segment", first, second, DICOM, "-o", out, "--no-attention"]
    completed = run_cli(command)
    assert completed.returncode == 0, completed.stderr
    names = ["example_ct_dicom", "s0009_ct", "s0010_ct"]
    assert [line for line in completed.stderr.splitlines() if line.startswith("case ")] == \
        [f"case {k}/3: {name}" for k, name in enumerate(names, 1)]
    assert "about" in completed.stderr, "an ETA after a case"
    assert "left" in completed.stderr, "an ETA after a case"
    assert completed.stdout.splitlines() == [str(out / "cohort.csv")]
    assert _files(out) == sorted(["cohort.csv", *(f"{n}_seg.nii.gz" for n in names),
                                  *(f"{n}_summary.json" for n in names)])
    table = _table(out)
    assert sorted(table) == names
    assert {row["status"] for row in table.values()} == {"done"}
    header = list(next(iter(table.values())))
    assert header[3:7] == ORGAN_COLUMNS, "organs in class order"
    summary = _summary(out, "s0009_ct")
    assert summary["files"] == ["s0009_ct_seg.nii.gz"]
    assert summary["input"] == str(first)
    assert summary["settings"]["attention"] is False
    assert summary["settings"]["format"] == "nii.gz"
    assert summary["model"]["sha256"] == default_model().sha256 == table["s0009_ct"]["model_sha256"]
    for name in names:
        assert float(table[name]["liver_ml"]) == _summary(out, name)["volumes_ml"]["liver"] > 500
        _assert_reported(completed.stderr, name, _summary(out, name), quiet=False)
    assert table["s0009_ct"]["liver_ml"] == table["s0010_ct"]["liver_ml"], "copies of one CT"

    before = {name: (out / f"{name}_summary.json").read_bytes() for name in names}
    again = run_cli(command)
    assert again.returncode == 0, again.stderr
    assert all(f"{name}: already complete, skipped" in again.stderr for name in names)
    assert "0 case(s) segmented, 3 already complete" in again.stderr
    assert "preparing" not in again.stderr
    assert {name: (out / f"{name}_summary.json").read_bytes() for name in names} == before

    redone = run_cli(command + ["--overwrite", "--quiet"])
    assert redone.returncode == 0, redone.stderr
    assert "3 case(s) segmented, 0 already complete" in redone.stderr
    assert redone.stdout == ""
    for name in names:
        _assert_reported(redone.stderr, name, _summary(out, name), quiet=True)
    assert sorted(_table(out)) == names


def test_a_failing_case_is_recorded_and_the_others_complete(tmp_path: Path) -> None:
    first, last = _copies(tmp_path, ["a_first.nii.gz", "c_last.nii.gz"])
    middle = tmp_path / "b_middle.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkInt16), str(middle))  # 2D: not a CT volume
    out = tmp_path / "out"
    command = ["segment", first, middle, last, "-o", out, "--no-attention"]
    completed = run_cli(command)
    assert completed.returncode == 1
    assert "b_middle failed" in completed.stderr
    assert "2D" in completed.stderr
    assert "error: 1 case(s) failed: b_middle" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "2 case(s) segmented" in completed.stderr
    error = json.loads((out / "b_middle_error.json").read_text())
    assert error["input"] == str(middle)
    assert "2D" in error["error"]
    assert error["error_type"] == "InputImageError"
    table = _table(out)
    assert {name: row["status"] for name, row in table.items()} == \
        {"a_first": "done", "b_middle": "failed", "c_last": "done"}
    assert "2D" in table["b_middle"]["error"]
    assert table["b_middle"]["liver_ml"] == ""
    assert float(table["c_last"]["liver_ml"]) > 500

    shutil.copyfile(SMALL_CT, middle)  # fixed: the next run does only this case
    fixed = run_cli(command)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 case(s) segmented, 2 already complete, 0 failed" in fixed.stderr
    assert not (out / "b_middle_error.json").exists()
    assert {row["status"] for row in _table(out).values()} == {"done"}


def test_shards_of_one_folder_merge_into_one_table(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    _copies(cohort, ["p1.nii.gz", "p2.nii.gz", "p3.nii.gz"])
    out = tmp_path / "out"
    for shard, names in (("1/2", ["p1", "p3"]), ("2/2", ["p2"])):
        completed = run_cli(["segment", cohort, "-o", out, "--no-attention", "--shard", shard])
        assert completed.returncode == 0, completed.stderr
        assert f"shard {shard}: {len(names)} of the cohort's 3 case(s)" in completed.stderr
        assert [line.split(": ")[1] for line in completed.stderr.splitlines() if line.startswith("case ")] == names
    table = _table(out)
    assert sorted(table) == ["p1", "p2", "p3"]
    assert {row["status"] for row in table.values()} == {"done"}


def _empty_list(folder: Path) -> List[Path]:
    (folder / "cases.txt").write_text("\n")
    return [folder / "cases.txt"]


BAD_COMMANDS = {
    "empty list": (lambda d: [*_empty_list(d)], [], "is empty"),
    "missing files": (lambda d: [*_copies(d, ["here.nii.gz"]), d / "gone1.nii.gz", d / "gone2.nii.gz"], [],
                      "gone2.nii.gz does not exist"),
    "duplicate": (lambda d: _copies(d, ["twice.nii.gz"]) * 2, [], "more than once"),
    "shard 3/2": (lambda d: _copies(d, ["a.nii.gz"]), ["--shard", "3/2"], "'3/2' is not allowed"),
    "shard 0/2": (lambda d: _copies(d, ["a.nii.gz"]), ["--shard", "0/2"], "'0/2' is not allowed"),
    "shard 1/0": (lambda d: _copies(d, ["a.nii.gz"]), ["--shard", "1/0"], "'1/0' is not allowed"),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_inputs_fail_before_any_work(tmp_path: Path, case: str) -> None:
    make, options, message = BAD_COMMANDS[case]
    inputs = make(tmp_path)
    out = tmp_path / "out"
    completed = run_cli(["segment", *inputs, "-o", out, *options])
    assert completed.returncode in (1, 2), completed.stderr
    assert message in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr
    assert not out.exists()
    if case == "missing files":
        assert "gone1.nii.gz does not exist" in completed.stderr, "every problem at once"


def test_results_of_another_model_are_kept_unless_overwrite(tmp_path: Path) -> None:
    inputs = _copies(tmp_path, ["x.nii.gz", "y.nii.gz"])
    other = make_model_file(tmp_path / "other.safetensors")
    out = tmp_path / "out"
    made = run_cli(["segment", *inputs, "-o", out, "--no-attention", "--quiet", "--model", other])
    assert made.returncode == 0, made.stderr
    before = {name: (out / name).read_bytes() for name in _files(out)}
    refused = run_cli(["segment", *inputs, "-o", out, "--no-attention"])
    assert refused.returncode == 1
    assert "made with another model (other" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert "x, y" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    replaced = run_cli(["segment", *inputs, "-o", out, "--no-attention", "--quiet", "--overwrite"])
    assert replaced.returncode == 0, replaced.stderr
    assert {row["model_sha256"] for row in _table(out).values()} == {default_model().sha256}


def test_one_ct_into_a_cohort_folder_made_with_another_model_is_refused_unless_overwrite(tmp_path: Path) -> None:
    inputs = _copies(tmp_path, ["x.nii.gz", "y.nii.gz"])
    first, second = (make_model_file(tmp_path / f"{name}.safetensors", seed=seed)
                     for name, seed in (("first", 21), ("second", 22)))
    out = tmp_path / "out"
    made = run_cli(["segment", *inputs, "-o", out, "--no-attention", "--quiet", "--model", first])
    assert made.returncode == 0, made.stderr
    before = {name: (out / name).read_bytes() for name in _files(out)}
    refused = run_cli(["segment", inputs[0], "-o", out, "--no-attention", "--model", second])
    assert refused.returncode == 1
    assert "holds 1 case(s) of this run (x) made with another model (first" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert "inference" not in refused.stderr
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    replaced = run_cli(["segment", inputs[0], "-o", out, "--no-attention", "--quiet", "--model", second, "--overwrite"])
    assert replaced.returncode == 0, replaced.stderr
    table = _table(out)
    assert table["x"]["model"] == "second", "cohort.csv rebuilt after a single CT"
    assert table["y"]["model"] == "first"


def test_interrupt_keeps_finished_cases_and_no_half_case(tmp_path: Path) -> None:
    inputs = _copies(tmp_path, ["i1.nii.gz", "i2.nii.gz", "i3.nii.gz"])
    out = tmp_path / "out"
    process = start_cli(["segment", *inputs, "-o", out, "--no-attention"])
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("inference") and any(s.startswith("case 2/3") for s in seen):
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "the cases finished so far are kept" in rest
    assert _files(out) == ["cohort.csv", "i1_seg.nii.gz", "i1_summary.json"], "no staging folder, no half case"
    assert list(_table(out)) == ["i1"]
    rerun = run_cli(["segment", *inputs, "-o", out, "--no-attention", "--quiet"])
    assert rerun.returncode == 0
    assert "2 case(s) segmented, 1 already complete" in rerun.stderr
