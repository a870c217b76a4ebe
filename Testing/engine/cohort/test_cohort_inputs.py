"""The cases of a cohort from files, DICOM folders, folders and lists, with unique names; and shards."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from conftest import TOTALSEG, run_cli

from AttentionUNetSegLib.cohort.inputs import CohortCase, resolve_inputs
from AttentionUNetSegLib.cohort.shards import Shard, environment_shard, local_device, parse_shard
from AttentionUNetSegLib.errors import InvalidOptionError

CT = TOTALSEG / "example_ct_sm.nii.gz"
DICOM = TOTALSEG / "example_ct_dicom"


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    """TotalSegmentator's layout (s0001/ct.nii.gz, s0002/ct.nii.gz) and a flat folder of CT files."""
    for subject in ("s0001", "s0002"):
        (tmp_path / subject).mkdir()
        shutil.copy(CT, tmp_path / subject / "ct.nii.gz")
    (tmp_path / "flat").mkdir()
    for name in ("a.nii.gz", "b.nrrd"):
        shutil.copy(CT, tmp_path / "flat" / name)
    (tmp_path / "flat" / "notes.md").write_text("not a CT")
    return tmp_path


@pytest.mark.shared_data
def test_one_ct_keeps_its_own_name() -> None:
    assert resolve_inputs([CT]) == [CohortCase("example_ct_sm", CT)]
    assert resolve_inputs([DICOM]) == [CohortCase("example_ct_dicom", DICOM)]


@pytest.mark.shared_data
def test_files_of_the_same_name_take_their_folders_names(study: Path) -> None:
    cases = resolve_inputs([study / "s0002" / "ct.nii.gz", study / "s0001" / "ct.nii.gz", study / "flat", DICOM])
    assert [c.name for c in cases] == ["a", "b", "example_ct_dicom", "s0001_ct", "s0002_ct"]
    assert {c.name: c.path for c in cases}["s0001_ct"] == study / "s0001" / "ct.nii.gz"


@pytest.mark.shared_data
def test_lists_name_their_cts_relative_to_the_list(study: Path) -> None:
    (study / "cases.txt").write_text("# the two subjects\ns0001/ct.nii.gz\n\ns0002/ct.nii.gz\n")
    assert [c.name for c in resolve_inputs([study / "cases.txt"])] == ["s0001_ct", "s0002_ct"]
    (study / "cases.csv").write_text(f"path,name\ns0001/ct.nii.gz,first\n{DICOM},dicom\ns0002/ct.nii.gz,\n")
    cases = resolve_inputs([study / "cases.csv"])
    assert [(c.name, c.path) for c in cases] == [("ct", study / "s0002" / "ct.nii.gz"), ("dicom", DICOM),
                                                 ("first", study / "s0001" / "ct.nii.gz")]


@pytest.mark.shared_data
def test_everything_wrong_is_named_at_once(study: Path) -> None:
    (study / "list.csv").write_text("path\nnope1.nii.gz\nnope2.nii.gz\n")
    with pytest.raises(InvalidOptionError) as error:
        resolve_inputs([study / "missing.nii.gz", study / "list.csv", study / "flat" / "notes.md", CT, CT])
    message = str(error.value)
    assert "input " + str(study / "missing.nii.gz") + " does not exist" in message
    assert "names 2 missing file(s): " + str(study / "nope1.nii.gz") in message
    assert "notes.md is neither a CT image" in message
    assert "given more than once: " + str(CT) in message


@pytest.mark.shared_data
@pytest.mark.parametrize("content, message", [
    ("", "names no CT"),
    ("file,label\nx,y\n", "has no `path` column"),
    ("path,name\nA,same\nB,same\n", r"give the name\(s\) \['same'\] to more than one CT"),
    ("path,name\nA,../up\n", "cannot name files"),
])
def test_bad_lists_are_refused(study: Path, content: str, message: str) -> None:
    content = content.replace("A", str(study / "s0001" / "ct.nii.gz")).replace("B", str(study / "s0002" / "ct.nii.gz"))
    (study / "list.csv").write_text(content)
    with pytest.raises(InvalidOptionError, match=message):
        resolve_inputs([study / "list.csv"])


def test_no_input_and_an_empty_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="no input given"):
        resolve_inputs([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidOptionError, match="holds no CT image files and no DICOM series"):
        resolve_inputs([tmp_path / "empty"])


def test_shards_split_the_sorted_cases_without_overlap() -> None:
    cases = list(range(10))
    shares = [Shard(k, 3).select(cases) for k in (1, 2, 3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert parse_shard("2/3") == Shard(2, 3)
    assert str(Shard(2, 3)) == "2/3"
    for bad in ("3/2", "0/2", "1/0", "1", "a/b", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError, match="allowed: K/N with 1 <= K <= N"):
            parse_shard(bad)


def test_torchrun_gives_each_process_its_shard_and_gpu() -> None:
    assert environment_shard({}) is None
    assert local_device({}) is None
    environ = {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}
    assert environment_shard(environ) == Shard(3, 4)
    assert local_device(environ) == "cuda:0"


@pytest.mark.shared_data
def test_label_volumes_in_a_folder_are_skipped_naming_each(tmp_path: Path, tiny_model_path: Path) -> None:
    """A dataset folder holds labels beside its CTs: NIfTI and NRRD label files are skipped with a warning naming
    each, not segmented as CTs; labels given by name, or a folder of labels only, are the user's to decide."""
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(CT, folder / "patient.nii.gz")
    shutil.copy(TOTALSEG / "example_seg.nii.gz", folder / "patient_labels.nii.gz")
    labels = sitk.ReadImage(str(TOTALSEG / "example_seg_dicom.nii.gz"))
    sitk.WriteImage(sitk.Cast(labels, sitk.sitkInt16), str(folder / "other_labels.nrrd"))
    out = tmp_path / "out"
    completed = run_cli(["segment", folder, "-o", out, "--model", tiny_model_path, "--no-attention", "--quiet"])
    assert completed.returncode == 0, completed.stderr
    for name in ("patient_labels.nii.gz", "other_labels.nrrd"):
        assert f"skipped {folder / name}: it holds labels" in completed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cohort.csv", "patient_seg.nii.gz", "patient_summary.json"]
    assert resolve_inputs([folder / "patient_labels.nii.gz"]) == \
        [CohortCase("patient_labels", folder / "patient_labels.nii.gz")]
    (folder / "patient.nii.gz").unlink()
    with pytest.raises(InvalidOptionError, match=r"holds no CT image files .* \(only label volumes: 2 skipped\)"):
        resolve_inputs([folder])
