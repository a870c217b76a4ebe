"""`evaluate` and `compare` through the real CLI, on synthetic cubes and on real TotalSegmentator labels."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import TOTALSEG, run_cli

from AttentionUNetSegLib.evaluation.comparison import compare_reports, wilcoxon_p
from AttentionUNetSegLib.datasets.label_maps import parse_label_map
from AttentionUNetSegLib.errors import DatasetError, InvalidOptionError
from AttentionUNetSegLib.evaluation.file_pairing import match_cases
from AttentionUNetSegLib.evaluation.report import load_report
from AttentionUNetSegLib.evaluation.scoring import evaluate_predictions

SPACING_XYZ = (0.8, 0.8, 2.0)


def write_labels(path: Path, array: np.ndarray, spacing: Sequence[float] = SPACING_XYZ,
                 origin: Sequence[float] = (-10.0, 5.0, 30.0)) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(tuple(origin))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def cubes(shape=(12, 16, 16), pancreas_start=2, spleen: bool = True) -> np.ndarray:
    """Label 1: a 6-voxel cube starting at x = pancreas_start; label 2: a fixed 3-voxel cube."""
    labels = np.zeros(shape, np.uint8)
    labels[3:9, 4:10, pancreas_start:pancreas_start + 6] = 1
    if spleen:
        labels[1:4, 12:15, 12:15] = 2
    return labels


@pytest.fixture()
def three_cases(tmp_path: Path) -> Dict[str, Path]:
    """case1: pancreas shifted 1 voxel, spleen exact; case2: spleen missed; case3: no spleen anywhere.
    Different formats and the optional _seg suffix on predictions."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    write_labels(ref / "case1.nii.gz", cubes())
    write_labels(pred / "case1_seg.nii.gz", cubes(pancreas_start=3))
    write_labels(ref / "case2.nrrd", cubes())
    write_labels(pred / "case2.nrrd", cubes(spleen=False))
    write_labels(ref / "case3.mha", cubes(spleen=False))
    write_labels(pred / "case3_seg.mha", cubes(spleen=False))
    return {"ref": ref, "pred": pred, "out": tmp_path / "out"}


def test_evaluate_cli_writes_tables_with_exact_values_and_counted_undefined_cases(three_cases):
    result = run_cli(["evaluate", "--pred", three_cases["pred"], "--ref", three_cases["ref"],
                      "--classes", "1=pancreas,2=spleen", "-o", three_cases["out"]])
    assert result.returncode == 0, result.stderr
    assert "| pancreas |" in result.stdout
    assert "| spleen |" in result.stdout

    report = json.loads((three_cases["out"] / "evaluation.json").read_text())
    cases = {c["case"]: c["classes"] for c in report["cases"]}
    assert sorted(cases) == ["case1", "case2", "case3"]
    pancreas = cases["case1"]["1"]  # 6-voxel cube shifted by one 0.8 mm voxel along x
    assert pancreas["dice"] == pytest.approx(5 / 6)
    assert pancreas["precision"] == pytest.approx(5 / 6)
    assert 0 < pancreas["msd_mm"] < 0.8
    assert pancreas["hd95_mm"] == pytest.approx(0.8)
    assert cases["case1"]["2"]["dice"] == 1.0
    assert cases["case1"]["2"]["hd95_mm"] == 0.0
    assert cases["case2"]["2"] == {"dice": 0.0, "precision": None, "recall": 0.0, "msd_mm": None, "hd95_mm": None,
                                   "pred_voxels": 0, "ref_voxels": 27}
    assert cases["case3"]["2"]["dice"] is None
    assert cases["case3"]["1"]["dice"] == 1.0

    spleen = report["summary"]["2"]
    assert spleen["name"] == "spleen"
    assert spleen["dice"] == {"mean": 0.5, "std": pytest.approx(math.sqrt(0.5)), "n": 2, "undefined": 1}
    assert spleen["hd95_mm"]["n"] == 1
    assert spleen["hd95_mm"]["undefined"] == 2
    assert report["summary"]["1"]["dice"]["mean"] == pytest.approx((5 / 6 + 1 + 1) / 3)

    rows = list(csv.DictReader((three_cases["out"] / "evaluation.csv").open()))
    assert len(rows) == 6
    assert {r["class"] for r in rows} == {"pancreas", "spleen"}
    assert [r["dice"] for r in rows if r["case"] == "case3" and r["class"] == "spleen"] == ["nan"]
    markdown = (three_cases["out"] / "evaluation.md").read_text()
    assert "0.500 ± 0.707 (n=2)" in markdown
    assert sorted(p.name for p in three_cases["out"].iterdir()) == ["evaluation.csv", "evaluation.json",
                                                                    "evaluation.md"]


def test_evaluate_cli_names_the_case_whose_grid_differs_and_writes_nothing(three_cases):
    write_labels(three_cases["pred"] / "case2.nrrd", cubes(), spacing=(0.8, 0.8, 2.5))
    result = run_cli(["evaluate", "--pred", three_cases["pred"], "--ref", three_cases["ref"],
                      "--classes", "1=pancreas", "--ignore-other-labels", "-o", three_cases["out"]])
    assert result.returncode == 1
    assert "case 'case2'" in result.stderr
    assert "spacing (mm): prediction (0.8, 0.8, 2.5), reference (0.8, 0.8, 2)" in result.stderr
    assert "resample" in result.stderr
    assert not three_cases["out"].exists()


@pytest.mark.shared_data
def test_real_labels_against_themselves_and_a_copy_shifted_by_one_voxel(tmp_path):
    seg = sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz"))
    labels = sitk.GetArrayFromImage(seg)
    # precondition: x borders are background
    assert not labels[:, :, 0].any()
    assert not labels[:, :, -1].any()
    shifted = sitk.GetImageFromArray(np.roll(labels, 1, axis=2))  # one 3 mm step along x
    shifted.CopyInformation(seg)
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for case in ("same", "shifted"):
        sitk.WriteImage(seg, str(tmp_path / "ref" / f"{case}.nii.gz"))
    sitk.WriteImage(seg, str(tmp_path / "pred" / "same_seg.nii.gz"))
    sitk.WriteImage(shifted, str(tmp_path / "pred" / "shifted_seg.nii.gz"))

    result = run_cli(["evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref",
                      "--classes", TOTALSEG / "labels_total_v2.json", "-o", tmp_path / "out"])
    assert result.returncode == 0, result.stderr
    cases = {c["case"]: c["classes"] for c in json.loads((tmp_path / "out" / "evaluation.json").read_text())["cases"]}
    present = [int(v) for v in np.unique(labels) if v]
    assert len(present) == 41
    assert len(cases["same"]) == 117

    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(shifted, seg)
    for label in present:
        same, moved = cases["same"][str(label)], cases["shifted"][str(label)]
        assert (same["dice"], same["msd_mm"], same["hd95_mm"]) == (1.0, 0.0, 0.0)
        assert moved["dice"] == pytest.approx(overlap.GetDiceCoefficient(label), abs=1e-12)
        assert moved["dice"] < 1
        assert 0 < moved["msd_mm"] <= 3.0
        assert 0 < moved["hd95_mm"] <= 3.0
    absent = next(label for label in range(1, 118) if label not in present)
    assert cases["same"][str(absent)]["dice"] is None
    assert cases["same"][str(absent)]["ref_voxels"] == 0


def test_compare_cli_finds_the_better_method_with_the_exact_wilcoxon_p_value(tmp_path):
    ref = tmp_path / "ref"
    for side in range(6, 12):  # six cubes of distinct sizes: paired Dice differences 1/side, all distinct
        labels = np.zeros((14, 14, 16), np.uint8)
        labels[1:1 + side, 1:1 + side, 1:1 + side] = 1
        write_labels(ref / f"c{side}.nii.gz", labels)
        for method, shift in (("a", 1), ("b", 2)):
            write_labels(tmp_path / method / f"c{side}_seg.nii.gz", np.roll(labels, shift, axis=2))
    for method in ("a", "b"):
        evaluate_predictions(tmp_path / method, ref, {1: "pancreas"}).write(tmp_path / f"eval_{method}")

    result = run_cli(["compare", tmp_path / "eval_a" / "evaluation.json", tmp_path / "eval_b" / "evaluation.json",
                      "-o", tmp_path / "cmp"])
    assert result.returncode == 0, result.stderr
    assert "| pancreas | Dice | 6 |" in result.stdout
    results = {r["metric"]: r for r in json.loads((tmp_path / "cmp" / "comparison.json").read_text())["results"]}
    assert results["dice"]["mean_a"] > results["dice"]["mean_b"]
    assert results["dice"]["p_value"] == pytest.approx(2 / 2 ** 6)  # all six differences favour A
    assert results["hd95_mm"]["mean_a"] < results["hd95_mm"]["mean_b"]
    assert results["dice"]["n"] == 6
    assert (tmp_path / "cmp" / "comparison.md").is_file()


def test_compare_pairs_only_common_cases_and_classes(three_cases, tmp_path):
    full = evaluate_predictions(three_cases["pred"], three_cases["ref"], {1: "pancreas", 2: "spleen"})
    (three_cases["pred"] / "case3_seg.mha").unlink()
    partial = evaluate_predictions(three_cases["pred"], three_cases["ref"], {5: "pancreas"}, allow_missing=True,
                               ignore_other_labels=True)
    comparison = compare_reports(full, partial)
    assert comparison.cases == ["case1", "case2"]
    assert {r.class_name for r in comparison.results} == {"pancreas"}
    with pytest.raises(DatasetError, match="share no class name"):
        compare_reports(full, evaluate_predictions(three_cases["pred"], three_cases["ref"], {1: "liver", 2: "spleen2"},
                                               allow_missing=True))


def test_wilcoxon_conventions():
    assert math.isnan(wilcoxon_p([], []))
    assert wilcoxon_p([0.5, 0.7], [0.5, 0.7]) == 1.0
    assert wilcoxon_p([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(2 / 2 ** 5)


def test_missing_predictions_are_an_error_unless_allowed(three_cases):
    (three_cases["pred"] / "case2.nrrd").unlink()
    with pytest.raises(DatasetError, match=r"case2.*--allow-missing"):
        evaluate_predictions(three_cases["pred"], three_cases["ref"], {1: "pancreas", 2: "spleen"})
    report = evaluate_predictions(three_cases["pred"], three_cases["ref"], {1: "pancreas", 2: "spleen"},
                              allow_missing=True)
    assert [c.case for c in report.cases] == ["case1", "case3"]
    assert report.missing_predictions == ["case2"]
    assert "case2" in report.to_markdown()


def test_two_predictions_for_one_case_are_refused(three_cases):
    write_labels(three_cases["pred"] / "case1.nii.gz", cubes())
    with pytest.raises(DatasetError, match="case 'case1' has two predictions"):
        match_cases(three_cases["pred"], three_cases["ref"])


def test_report_json_round_trip_keeps_values_and_nans(three_cases, tmp_path):
    report = evaluate_predictions(three_cases["pred"], three_cases["ref"], {1: "pancreas", 2: "spleen"})
    report.write(tmp_path / "r")
    loaded = load_report(tmp_path / "r" / "evaluation.json")
    assert loaded.classes == report.classes
    for metric in ("dice", "hd95_mm"):
        np.testing.assert_array_equal(loaded.values(2, metric), report.values(2, metric))  # NaN == NaN here
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(DatasetError, match="not an `attention-unet evaluate` JSON"):
        load_report(tmp_path / "bad.json")


@pytest.mark.shared_data
def test_label_maps_from_inline_specs_and_json_files(tmp_path):
    assert parse_label_map(" 1=pancreas, 2 = spleen ") == {1: "pancreas", 2: "spleen"}
    assert parse_label_map(str(TOTALSEG / "labels_total_v2.json"))[7] == "pancreas"
    msd = tmp_path / "msd.json"
    msd.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "tumour"}}))
    assert parse_label_map(str(msd)) == {1: "liver", 2: "tumour"}
    nnunet = tmp_path / "nnunet.json"
    nnunet.write_text(json.dumps({"labels": {"background": 0, "pancreas": 1}}))
    assert parse_label_map(str(nnunet)) == {1: "pancreas"}
    for bad, reason in (("1=pancreas,2", "no '='"), ("one=pancreas", "not an integer"), ("1=a,2=a", "more than one"),
                        ("0=background", "no foreground"), ("1=a,1=b", "twice"), (str(tmp_path / "none.json"),
                                                                                    "does not exist")):
        with pytest.raises(InvalidOptionError, match=reason):
            parse_label_map(bad)


def _one_case(tmp_path: Path, reference: sitk.Image, prediction: sitk.Image) -> Dict[str, Path]:
    for folder, image in (("ref", reference), ("pred", prediction)):
        (tmp_path / folder).mkdir()
        sitk.WriteImage(image, str(tmp_path / folder / "patient.nii.gz"))
    return {"ref": tmp_path / "ref", "pred": tmp_path / "pred", "out": tmp_path / "out"}


@pytest.mark.shared_data
def test_a_ct_given_as_reference_is_refused_not_scored(tmp_path):
    # the file named like the prediction is the CT itself (HU): scoring it would print a tiny Dice silently
    ct = sitk.ReadImage(str(TOTALSEG / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz"))
    seg.CopyInformation(ct)
    case = _one_case(tmp_path, ct, seg)
    result = run_cli(["evaluate", "--pred", case["pred"], "--ref", case["ref"], "--classes", "1=spleen",
                      "--ignore-other-labels", "-o", case["out"]])
    assert result.returncode == 1
    assert "case 'patient': the reference holds negative values" in result.stderr
    assert "a CT in its place?" in result.stderr
    assert not case["out"].exists()


@pytest.mark.shared_data
def test_a_reference_numbered_otherwise_is_refused_unless_mapped_or_ignored(tmp_path):
    seg = sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz"))  # TotalSegmentator numbering: 7 = pancreas
    labels = sitk.GetArrayFromImage(seg)
    ours = np.select([labels == 7, labels == 1, np.isin(labels, (2, 3)), labels == 5], [1, 2, 3, 4], 0)
    prediction = sitk.GetImageFromArray(ours.astype(np.uint8))
    prediction.CopyInformation(seg)
    case = _one_case(tmp_path, seg, prediction)
    classes = ["--classes", "1=pancreas,2=spleen,3=kidney,4=liver"]
    base = ["evaluate", "--pred", case["pred"], "--ref", case["ref"], *classes, "-o", case["out"]]

    refused = run_cli(base)
    assert refused.returncode == 1
    assert not case["out"].exists()
    assert "the reference holds label value(s) 5, 6, 7," in refused.stderr  # 1-4 are in --classes' range
    assert "--label-map" in refused.stderr
    assert "--ignore-other-labels" in refused.stderr

    mapped = run_cli([*base, "--label-map", "totalsegmentator"])
    assert mapped.returncode == 0, mapped.stderr
    scores = json.loads((case["out"] / "evaluation.json").read_text())["cases"][0]["classes"]
    assert {scores[v]["dice"] for v in ("1", "2", "3", "4")} == {1.0}

    ignored = run_cli([*base[:-1], tmp_path / "ignored", "--ignore-other-labels"])
    assert ignored.returncode == 0, ignored.stderr
    scores = json.loads((tmp_path / "ignored" / "evaluation.json").read_text())["cases"][0]["classes"]
    assert scores["1"]["dice"] == 0.0, "value 1 is the spleen in the reference's own numbering"


def test_a_prediction_with_a_value_outside_the_classes_is_refused(three_cases):
    write_labels(three_cases["pred"] / "case2.nrrd", cubes() * 3)  # values 3 and 6
    result = run_cli(["evaluate", "--pred", three_cases["pred"], "--ref", three_cases["ref"],
                      "--classes", "1=pancreas,2=spleen", "-o", three_cases["out"]])
    assert result.returncode == 1
    assert not three_cases["out"].exists()
    assert "case 'case2': the prediction holds label value(s) 3, 6 that are not among the classes " \
           "(1=pancreas,2=spleen)" in result.stderr


def test_a_label_map_producing_classes_not_given_is_refused(three_cases):
    result = run_cli(["evaluate", "--pred", three_cases["pred"], "--ref", three_cases["ref"],
                      "--classes", "1=pancreas", "--label-map", "1=pancreas,2=spleen"])
    assert result.returncode == 1
    assert "produces class(es) ['spleen'] that --classes does not name (1=pancreas)" in result.stderr


def test_a_prediction_file_is_scored_against_a_reference_file_of_another_name_with_values_joined(tmp_path):
    """A reference labelling the liver as 1 and its tumours as 2 and 3, scored as one class (liver) against a
    prediction named as `segment` names it: no renaming, no label-map file."""
    reference = np.zeros((12, 16, 16), np.uint8)
    reference[2:10, 2:12, 2:12] = 1
    reference[4:6, 4:6, 4:6] = 2
    reference[7:9, 8:10, 8:10] = 3
    prediction = np.where(reference > 0, 4, 0)  # the model's liver value
    prediction[2, 2:12, 2:12] = 0  # one slice of the liver missed: 100 of 800 voxels
    ref = write_labels(tmp_path / "truth" / "patient7_liver_and_tumours.nii.gz", reference)
    pred = write_labels(tmp_path / "out" / "ct_seg.nii.gz", prediction)
    result = run_cli(["evaluate", "--pred", pred, "--ref", ref, "--classes", "4=liver",
                      "--label-map", "1=liver,2=liver,3=liver", "-o", tmp_path / "scores"])
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "scores" / "evaluation.json").read_text())
    assert [case["case"] for case in report["cases"]] == ["patient7_liver_and_tumours"]
    liver = report["cases"][0]["classes"]["4"]
    assert liver["ref_voxels"] == 800, "tumour voxels count as liver"
    assert liver["pred_voxels"] == 700
    assert liver["dice"] == pytest.approx(2 * 700 / 1500)


def test_a_prediction_file_with_a_reference_folder_is_refused(three_cases):
    result = run_cli(["evaluate", "--pred", three_cases["pred"] / "case1_seg.nii.gz", "--ref", three_cases["ref"],
                      "--classes", "1=pancreas,2=spleen"])
    assert result.returncode == 1
    assert "reference " + str(three_cases["ref"]) + " is a folder, while the other side is a file" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_maps_and_records_segment_writes_are_neither_paired_nor_reported(three_cases):
    """`segment`'s output folder as --pred: its maps beside `<case>_seg` are not predictions without a
    reference; a label file without a reference still is."""
    pred = three_cases["pred"]
    for name in ["case1_attention_att2_gate1.nii.gz", "case1_prob_pancreas.nii.gz", "case3_attention_att4_gate2.mha"]:
        write_labels(pred / name, cubes())
    (pred / "case1_summary.json").write_text("{}")
    (pred / "case4_error.json").write_text("{}")
    (pred / "cohort.csv").write_text("name\n")
    write_labels(pred / "stray_seg.nii.gz", cubes())
    result = run_cli(["evaluate", "--pred", pred, "--ref", three_cases["ref"], "--classes", "1=pancreas,2=spleen",
                      "-o", three_cases["out"]])
    assert result.returncode == 0, result.stderr
    report = json.loads((three_cases["out"] / "evaluation.json").read_text())
    assert [case["case"] for case in report["cases"]] == ["case1", "case2", "case3"]
    assert report["extra_predictions"] == ["stray_seg.nii.gz"]
    assert "ignoring 1 prediction(s) without a reference: stray_seg.nii.gz" in result.stderr
    assert "_attention_" not in result.stderr
    assert "_prob_" not in result.stderr
