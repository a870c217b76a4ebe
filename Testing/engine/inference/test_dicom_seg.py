"""`segment --format dicom-seg`: a DICOM Segmentation of the real DICOM series, read back with highdicom and with
pydicom and compared frame by frame with the label volume; refusals; cohorts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from AttentionUNetSegLib.inference.case_outputs import NO_SEG_WARNING, ModelRecord, RunRecord, stage_case
from AttentionUNetSegLib.inference.segmenter import SegmentationResult
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.io.atomic import StagedOutputs
from AttentionUNetSegLib.inference.dicom_seg import read_seg_sources
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.models.model_file import read_metadata
from AttentionUNetSegLib.models.registry import default_model
from conftest import SAMPLE_CT, TOTALSEG, run_cli

pytestmark = pytest.mark.shared_data

DICOM = TOTALSEG / "example_ct_dicom"  # de-identified: its study and series UIDs are empty
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _with_uids(source: Path, target: Path) -> Path:
    """A copy of the DICOM series `source` at `target` with new study and series UIDs."""
    target.mkdir(parents=True)
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for file in sorted(source.iterdir()):
        dataset = pydicom.dcmread(file)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.save_as(target / file.name)
    return target


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_uids(DICOM, tmp_path_factory.mktemp("dicom") / "patient1")


@pytest.fixture(scope="module")
def segmented(series: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of `segment SERIES --format dicom-seg` with the default model."""
    out = tmp_path_factory.mktemp("out")
    completed = run_cli(["segment", series, "-o", out, "--format", "dicom-seg", "--no-attention"])
    assert completed.returncode == 0, completed.stderr
    assert "copy attributes of module" not in completed.stderr, "highdicom's chatter stays off the terminal"
    return out


def _headers(folder: Path) -> List["pydicom.Dataset"]:
    return [pydicom.dcmread(file, stop_before_pixels=True) for file in sorted(folder.iterdir())]


def test_the_seg_references_the_source_series_with_the_models_segments(series: Path, segmented: Path) -> None:
    assert sorted(p.name for p in segmented.iterdir()) == ["patient1_seg.dcm", "patient1_seg.nii.gz",
                                                           "patient1_summary.json"]
    summary = json.loads((segmented / "patient1_summary.json").read_text())
    assert summary["files"] == ["patient1_seg.nii.gz", "patient1_seg.dcm"]
    assert summary["settings"]["format"] == "dicom-seg"
    seg = pydicom.dcmread(segmented / "patient1_seg.dcm")
    sources = _headers(series)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE
    assert seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    referenced = seg.ReferencedSeriesSequence
    assert [item.SeriesInstanceUID for item in referenced] == [sources[0].SeriesInstanceUID]
    assert {item.ReferencedSOPInstanceUID for item in referenced[0].ReferencedInstanceSequence} == \
        {s.file_meta.MediaStorageSOPInstanceUID for s in sources}, "every slice, by its file meta UID"

    entry = default_model()
    classes = {c.name: c for c in read_metadata(entry.file).classes}
    found = [name for name, volume in summary["volumes_ml"].items() if volume > 0]
    assert [item.SegmentLabel for item in seg.SegmentSequence] == found, "one segment per organ found, in order"
    for number, item in enumerate(seg.SegmentSequence, start=1):
        expected = classes[item.SegmentLabel]
        assert item.SegmentNumber == number
        category, kind = item.SegmentedPropertyCategoryCodeSequence[0], item.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue, category.CodeMeaning) == \
            (expected.category.scheme, expected.category.code, expected.category.meaning)
        assert (kind.CodingSchemeDesignator, kind.CodeValue, kind.CodeMeaning) == \
            (expected.type.scheme, expected.type.code, expected.type.meaning)
        assert list(item.RecommendedDisplayCIELabValue) == \
            list(hd.color.CIELabColor.from_rgb(*expected.color).value)
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (entry.name, entry.sha256)


def test_every_frame_equals_the_label_volume_read_back_with_highdicom_and_pydicom(series: Path,
                                                                                  segmented: Path) -> None:
    labels_image = sitk.ReadImage(str(segmented / "patient1_seg.nii.gz"))
    labels = sitk.GetArrayFromImage(labels_image)
    classes = {c.name: c.value for c in read_metadata(default_model().file).classes}
    seg = hd.seg.segread(segmented / "patient1_seg.dcm")
    value_of = {n: classes[seg.get_segment_description(n).segment_label] for n in seg.segment_numbers}
    sources = _headers(series)
    uid_at: Dict[int, str] = {}
    for source in sources:  # the source slice at each label slice's position
        index = labels_image.TransformPhysicalPointToIndex([float(v) for v in source.ImagePositionPatient])
        uid_at[index[2]] = source.file_meta.MediaStorageSOPInstanceUID
    assert sorted(uid_at) == list(range(labels.shape[0]))

    # highdicom: the frames of every source slice, segments combined into their numbers
    numbers = seg.get_pixels_by_source_instance([uid_at[k] for k in range(labels.shape[0])], combine_segments=True,
                                                relabel=False)
    lookup = np.zeros(max(value_of) + 1, labels.dtype)
    for number, value in value_of.items():
        lookup[number] = value
    assert numbers.shape == labels.shape
    for k in range(labels.shape[0]):
        assert np.array_equal(lookup[numbers[k]], labels[k]), f"slice {k}"

    # pydicom alone: each stored frame is its segment's mask on the slice at its position, from that slice
    raw = pydicom.dcmread(segmented / "patient1_seg.dcm")
    frames = raw.pixel_array.reshape(-1, *labels.shape[1:])
    assert len(frames) == raw.NumberOfFrames == len(raw.PerFrameFunctionalGroupsSequence) > 0
    for frame, group in zip(frames, raw.PerFrameFunctionalGroupsSequence):
        number = group.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        k = labels_image.TransformPhysicalPointToIndex(position)[2]
        assert np.allclose(labels_image.TransformIndexToPhysicalPoint((0, 0, k)), position)
        assert group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == uid_at[k]
        assert np.array_equal(frame.astype(bool), labels[k] == value_of[number]), f"segment {number}, slice {k}"
    stored = {(g.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
               labels_image.TransformPhysicalPointToIndex([float(v) for v in
                                                           g.PlanePositionSequence[0].ImagePositionPatient])[2])
              for g in raw.PerFrameFunctionalGroupsSequence}
    expected = {(n, k) for n, v in value_of.items() for k in range(labels.shape[0]) if (labels[k] == v).any()}
    assert stored == expected, "a frame for every slice a segment is on, and only those"


def test_a_deidentified_series_is_refused_before_segmenting(tmp_path: Path) -> None:
    out = tmp_path / "out"
    completed = run_cli(["segment", DICOM, "-o", out, "--format", "dicom-seg"])
    assert completed.returncode == 1
    assert completed.stderr.startswith(f"error: the DICOM series in {DICOM} has no StudyInstanceUID or "
                                       "SeriesInstanceUID")
    assert "--format nii.gz" in completed.stderr
    assert "inference" not in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not out.exists()


def test_a_file_input_is_refused_before_any_work(tmp_path: Path, series: Path) -> None:
    out = tmp_path / "out"
    completed = run_cli(["segment", series, SAMPLE_CT, "-o", out, "--format", "dicom-seg"])
    assert completed.returncode == 1
    assert "--format dicom-seg needs DICOM series folders as inputs" in completed.stderr
    assert f"{SAMPLE_CT} is not a DICOM series" in completed.stderr
    assert "case 1/" not in completed.stderr
    assert not out.exists()


def test_a_cohort_of_dicom_folders_writes_a_seg_per_case_and_records_a_refused_one(tmp_path: Path,
                                                                                   series: Path) -> None:
    cohort = tmp_path / "cohort"
    _with_uids(DICOM, cohort / "patient2")
    _with_uids(DICOM, cohort / "patient3")
    for file in DICOM.iterdir():  # the de-identified original among them
        (cohort / "anonymous").mkdir(exist_ok=True)
        (cohort / "anonymous" / file.name).write_bytes(file.read_bytes())
    out = tmp_path / "out"
    completed = run_cli(["segment", cohort, "-o", out, "--format", "dicom-seg", "--no-attention", "--quiet"])
    assert completed.returncode == 1, completed.stderr
    assert "error: 1 case(s) failed: anonymous" in completed.stderr
    error = json.loads((out / "anonymous_error.json").read_text())
    assert "has no StudyInstanceUID or SeriesInstanceUID" in error["error"]
    for name in ("patient2", "patient3"):
        seg = pydicom.dcmread(out / f"{name}_seg.dcm", stop_before_pixels=True)
        assert seg.StudyInstanceUID == _headers(cohort / name)[0].StudyInstanceUID
    studies = {pydicom.dcmread(out / f"{n}_seg.dcm", stop_before_pixels=True).StudyInstanceUID
               for n in ("patient2", "patient3")}
    assert len(studies) == 2, "each SEG in its own CT's study"


def test_labels_without_any_organ_give_no_seg_and_say_so(tmp_path: Path, series: Path) -> None:
    image = read_image(series)
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    classes = read_metadata(default_model().file).classes
    result = SegmentationResult(empty, list(classes), {}, None, "cpu", "float32")
    with StagedOutputs(tmp_path / "out") as outputs:
        run = RunRecord(ModelRecord("m", "m.safetensors", "0" * 64, True), InferenceSettings(), "dicom-seg")
        summary = stage_case(result, outputs, "case", series, run, 0.0, read_seg_sources(series, image))
        outputs.commit()
    assert summary["files"] == ["case_seg.nii.gz"]
    assert NO_SEG_WARNING in summary["warnings"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_seg.nii.gz", "case_summary.json"]
