"""`attention-unet evaluate --model --data` on the two real CT patients, and `--merge` of held-out folds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
from conftest import TOTALSEG, make_model_file, run_cli

from AttentionUNetSegLib.errors import DatasetError
from AttentionUNetSegLib.evaluation.report import load_report
from AttentionUNetSegLib.evaluation.model_scoring import CaseSelection, evaluate_model, merge_reports

pytestmark = pytest.mark.shared_data

TOTALSEG_IDS = {"pancreas": [7], "spleen": [1], "kidney": [2, 3], "liver": [5]}


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV dataset of patient A (NIfTI) and patient B (DICOM series, labels in another index order)."""
    folder = tmp_path_factory.mktemp("patients")
    (folder / "dataset.csv").write_text(
        "case,image,label\n"
        f"patientA,{TOTALSEG / 'example_ct_sm.nii.gz'},{TOTALSEG / 'example_seg.nii.gz'}\n"
        f"patientB,{TOTALSEG / 'example_ct_dicom'},{TOTALSEG / 'example_seg_dicom.nii.gz'}\n")
    (folder / "splits.json").write_text(json.dumps([{"train": ["patientA"], "val": ["patientB"]},
                                                    {"train": ["patientB"], "val": ["patientA"]}]))
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_a_folds_held_out_patient_is_segmented_mapped_and_scored(patients: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "fold0"
    result = run_cli(["evaluate", "--model", model, "--data", patients / "dataset.csv", "--label-map",
                      "totalsegmentator", "--splits", patients / "splits.json", "--fold", 0, "-o", out])
    assert result.returncode == 0, result.stderr
    assert "patientB segmented in" in result.stderr
    assert "| pancreas |" in result.stdout
    report = load_report(out / "evaluation.json")
    assert [c.case for c in report.cases] == ["patientB"]
    assert report.classes == {1: "pancreas", 2: "spleen", 3: "kidney", 4: "liver"}

    # the mapped reference lies on the DICOM grid and holds the TotalSegmentator organs as model classes
    ct = sitk.ReadImage(sorted((TOTALSEG / "example_ct_dicom").iterdir())[0].as_posix())
    reference = sitk.ReadImage(str(out / "references" / "patientB.nii.gz"))
    prediction = sitk.ReadImage(str(out / "predictions" / "patientB_seg.nii.gz"))
    assert reference.GetSize() == prediction.GetSize() == (512, 512, 20)
    assert reference.GetSpacing()[:2] == pytest.approx(ct.GetSpacing()[:2])
    source = sitk.ReadImage(str(TOTALSEG / "example_seg_dicom.nii.gz"))
    counts = {name: int((sitk.GetArrayViewFromImage(source) == ids[0]).sum()) for name, ids in TOTALSEG_IDS.items()}
    mapped = sitk.GetArrayViewFromImage(reference)
    for value, name in report.classes.items():
        assert int((mapped == value).sum()) == counts[name]  # B: pancreas, spleen, liver; no kidney
    assert report.cases[0].metrics[3].ref_voxels == 0

    # the written folders give the same scores through the folder mode
    again = run_cli(["evaluate", "--pred", out / "predictions", "--ref", out / "references", "--classes",
                     "1=pancreas,2=spleen,3=kidney,4=liver", "-o", tmp_path / "again"])
    assert again.returncode == 0, again.stderr
    first, second = (json.loads((d / "evaluation.json").read_text())["summary"] for d in (out, tmp_path / "again"))
    assert first == second


def test_held_out_folds_merge_into_one_cross_validation(patients: Path, model: Path, tmp_path: Path) -> None:
    reports = []
    for fold in (0, 1):
        reports.append(evaluate_model(str(model), patients / "dataset.csv", tmp_path / f"fold{fold}",
                                      "totalsegmentator", CaseSelection(patients / "splits.json", fold)))
    merged = run_cli(["evaluate", "--merge", tmp_path / "fold0" / "evaluation.json",
                      tmp_path / "fold1" / "evaluation.json", "-o", tmp_path / "lopo"])
    assert merged.returncode == 0, merged.stderr
    report = load_report(tmp_path / "lopo" / "evaluation.json")
    assert [c.case for c in report.cases] == ["patientB", "patientA"]
    assert report.cases[1].metrics == reports[1].cases[0].metrics
    assert "Cases: 2" in merged.stdout

    twice = run_cli(["evaluate", "--merge", tmp_path / "fold0" / "evaluation.json",
                     tmp_path / "fold0" / "evaluation.json"])
    assert twice.returncode == 1
    assert "occur in more than one" in twice.stderr
    fewer = reports[0]
    fewer.classes = {1: "pancreas"}
    with pytest.raises(DatasetError, match="same classes"):
        merge_reports([fewer, reports[1]], ["a.json", "b.json"])


def test_bad_choices_are_named_and_nothing_is_left_behind(patients: Path, model: Path, tmp_path: Path) -> None:
    data = patients / "dataset.csv"
    cases = [
        (["--model", model, "--data", data, "--label-map", "totalsegmentator", "--splits", patients / "splits.json"],
         "--splits with --fold"),
        (["--model", model, "--data", data, "--label-map", "totalsegmentator", "--cases", "patientC"],
         "no case(s) ['patientC']"),
        (["--model", model, "--data", data, "--label-map", "7=pancreas,1=gallbladder"], "gallbladder"),
        (["--model", model, "--data", data, "--pred", tmp_path], "exactly one of"),
        (["--model", model, "--data", data, "--label-map", "7=pancreas"], "not in label map"),
    ]
    for arguments, message in cases:
        out = tmp_path / "out"
        result = run_cli(["evaluate", *arguments, "-o", out])
        assert result.returncode != 0, (arguments, result.stderr)
        assert message in result.stderr, (arguments, result.stderr)
        assert not out.exists(), arguments
