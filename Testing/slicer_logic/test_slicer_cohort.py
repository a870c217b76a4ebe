"""AttentionUNetSegLogic.processMany on real CT nodes: per-volume outputs, the cohort table, failures, cancel."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import SimpleITK as sitk
from conftest import TOTALSEG
from slicer_scene import add_study, add_volume, scene_state

import slicer
from AttentionUNetSegLib.errors import InputImageError, ModelFileError
from AttentionUNetSegLib.inference import segmenter
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.progress import SegmentationStage
from AttentionUNetSegLogic import AttentionUNetSegLogic, CohortOutputs
from AttentionUNetSegLogic.outputs import (CANCELLED, COHORT, COHORT_INPUT_ROLE, COMPUTED_ON_COLUMN, DONE, FAILED,
                                           INPUT_ROLE, INPUT_VOLUME_COLUMN, NOT_RUN, OUTPUT_ATTRIBUTE,
                                           RUN_TIME_COLUMN, SEGMENTATION, STATUS_COLUMN, VOLUMES, cohortVolumeColumn)

pytestmark = pytest.mark.shared_data

LABELS_ONLY = InferenceSettings(attention=False)
"""No attention maps: the labels, faster."""
WITH_ATTENTION = InferenceSettings(attention=True)


@pytest.fixture(scope="module")
def small_ct_a() -> sitk.Image:
    """TotalSegmentator's small example CT (122x101x30, 3 mm)."""
    return sitk.ReadImage(str(TOTALSEG / "example_ct_sm.nii.gz"))


def add_pair(scene: slicer.vtkMRMLScene, image: sitk.Image, study: int) -> List[slicer.vtkMRMLScalarVolumeNode]:
    """The CT and a cropped copy of it (other organ volumes), both in `study`."""
    return [add_volume(scene, image, "CT", study), add_volume(scene, image[10:110, :, 4:], "CT crop", study)]


def table_rows(table: slicer.vtkMRMLTableNode) -> List[Dict[str, str]]:
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    return [{name: table.GetCellText(r, c) for c, name in enumerate(columns)} for r in range(table.GetNumberOfRows())]


def test_each_volume_gets_its_outputs_and_the_cohort_table_all(scene, small_ct_a: sitk.Image,
                                                              tiny_model_path: Path) -> None:
    study = add_study(scene)
    volumes = add_pair(scene, small_ct_a, study)
    reports: List[Tuple[SegmentationStage, float]] = []
    logic = AttentionUNetSegLogic()

    cohort = logic.processMany(volumes, tiny_model_path, settings=LABELS_ONLY,
                               progress=lambda stage, fraction: reports.append((stage, fraction)))

    assert isinstance(cohort, CohortOutputs)
    assert not cohort.cancelled
    assert cohort.failures == []
    assert [run.volume for run in cohort.runs] == volumes
    assert [run.status for run in cohort.runs] == [DONE, DONE]
    for volume, outputs in zip(volumes, cohort.outputs):
        assert logic.outputsOf(volume, SEGMENTATION) == [outputs.segmentation]
        assert logic.outputsOf(volume, VOLUMES) == [outputs.volumesTable]
        assert outputs.attention == {}
        assert outputs.segmentation.GetNodeReference(INPUT_ROLE) is volume
    first, second = (outputs.volumesMl for outputs in cohort.outputs)
    assert first != second  # the crop has less of each organ
    assert first["liver"] > 0

    table = cohort.table
    assert table.GetName() == "tiny cohort organ volumes"
    assert table.GetAttribute(OUTPUT_ATTRIBUTE) == COHORT
    organs = list(first)
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        INPUT_VOLUME_COLUMN, *map(cohortVolumeColumn, organs), RUN_TIME_COLUMN, COMPUTED_ON_COLUMN, STATUS_COLUMN]
    for row, volume, outputs in zip(table_rows(table), volumes, cohort.outputs):
        assert row[INPUT_VOLUME_COLUMN] == volume.GetName()
        assert row[STATUS_COLUMN] == DONE
        for own in table_rows(outputs.volumesTable):  # the same numbers as the volume's own table
            assert row[cohortVolumeColumn(own["Segment"])] == own["Volume [mL]"]
            assert (row[RUN_TIME_COLUMN], row[COMPUTED_ON_COLUMN]) == (own[RUN_TIME_COLUMN], own[COMPUTED_ON_COLUMN])
    assert table.GetNumberOfRows() == 2
    shNode = scene.GetSubjectHierarchyNode()
    assert shNode.GetItemParent(shNode.GetItemByDataNode(table)) == study  # beside the inputs
    assert [table.GetNthNodeReference(COHORT_INPUT_ROLE, i) for i in range(2)] == volumes

    fractions = [fraction for _, fraction in reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert (SegmentationStage.OUTPUTS, 0.5) in reports  # the first volume's outputs end its half

    later = logic.process(volumes[0], tiny_model_path, settings=LABELS_ONLY)  # a later run adds its own outputs
    assert later.segmentation is not cohort.outputs[0].segmentation
    assert scene.GetNodeByID(cohort.outputs[0].volumesTable.GetID()) is cohort.outputs[0].volumesTable
    assert scene.GetNodeByID(table.GetID()) is table


def test_a_cohort_makes_the_model_ready_once(scene, small_ct_a: sitk.Image, tiny_model_path: Path,
                                             monkeypatch) -> None:
    """One backend (BatchNorm folded, OpenVINO compiled...) for all the volumes, as the command line's cohort runner
    has: the real make_backend, counted."""
    built = []
    real = segmenter.make_backend

    def counted(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(segmenter, "make_backend", counted)
    study = add_study(scene)
    volumes = [*add_pair(scene, small_ct_a, study), add_volume(scene, small_ct_a[:, :, 8:], "CT slab", study)]
    cohort = AttentionUNetSegLogic().processMany(volumes, tiny_model_path, settings=LABELS_ONLY)
    assert [run.status for run in cohort.runs] == [DONE, DONE, DONE]
    assert len(built) == 1


def test_a_failing_volume_is_reported_and_the_others_done(scene, small_ct_a: sitk.Image,
                                                          tiny_model_path: Path) -> None:
    first, last = add_pair(scene, small_ct_a, add_study(scene))
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")  # e.g. a volume whose file failed

    cohort = AttentionUNetSegLogic().processMany([first, empty, last], tiny_model_path, settings=LABELS_ONLY)

    assert [run.status for run in cohort.runs] == [DONE, FAILED, DONE]
    assert not cohort.cancelled
    failure, = cohort.failures
    assert failure.volume is empty
    assert failure.volumeName == "no voxels"
    assert "has no voxels" in failure.message
    assert failure.outputs is None
    assert len(cohort.outputs) == 2
    assert AttentionUNetSegLogic.outputsOf(empty) == []
    for volume in (first, last):
        assert len(AttentionUNetSegLogic.outputsOf(volume, SEGMENTATION)) == 1
    rows = table_rows(cohort.table)
    assert [row[INPUT_VOLUME_COLUMN] for row in rows] == ["CT", "no voxels", "CT crop"]
    assert rows[1][STATUS_COLUMN] == f"{FAILED}: {failure.message}"
    assert math.isnan(float(rows[1][cohortVolumeColumn("liver")]))
    assert rows[1][COMPUTED_ON_COLUMN] == ""
    assert float(rows[2][cohortVolumeColumn("liver")]) == cohort.runs[2].outputs.volumesMl["liver"]


def test_cancel_keeps_the_finished_volumes_only(scene, small_ct_a: sitk.Image, tiny_model_path: Path) -> None:
    volumes = [*add_pair(scene, small_ct_a, add_study(scene)), add_volume(scene, small_ct_a, "CT again")]
    reports: List[Tuple[SegmentationStage, float]] = []

    def cancel() -> bool:  # once the second volume is under way
        return any(stage is SegmentationStage.PREPARING and fraction > 0.3 for stage, fraction in reports)

    logic = AttentionUNetSegLogic()
    cohort = logic.processMany(volumes, tiny_model_path, settings=WITH_ATTENTION, cancel=cancel,
                               progress=lambda stage, fraction: reports.append((stage, fraction)))

    assert cohort.cancelled
    assert [run.status for run in cohort.runs] == [DONE, CANCELLED, NOT_RUN]
    assert len(logic.outputsOf(volumes[0], SEGMENTATION)) == 1
    assert len(cohort.outputs[0].attention) == 6
    assert logic.outputsOf(volumes[1]) == []
    assert logic.outputsOf(volumes[2]) == []
    rows = table_rows(cohort.table)
    assert [row[STATUS_COLUMN].split(":")[0] for row in rows] == [DONE, CANCELLED, NOT_RUN]
    shNode = scene.GetSubjectHierarchyNode()  # inputs in different places: the table goes to the top
    assert shNode.GetItemParent(shNode.GetItemByDataNode(cohort.table)) == shNode.GetSceneItemID()


@pytest.mark.parametrize("case", ["no volumes", "a volume twice", "missing model"])
def test_a_bad_cohort_is_refused_before_any_work(scene, small_ct_a: sitk.Image, tiny_model_path: Path,
                                                 tmp_path: Path, case: str) -> None:
    volume = add_volume(scene, small_ct_a, "CT")
    other = add_volume(scene, small_ct_a, "other CT")
    volumes, model, error, message = {
        "no volumes": ([], tiny_model_path, InputImageError, "No input volumes were given: pass a list"),
        "a volume twice": ([volume, other, volume], tiny_model_path, InputImageError,
                           "'CT' is given more than once: list each input volume once"),
        "missing model": ([volume, other], tmp_path / "absent.safetensors", ModelFileError, "absent.safetensors"),
    }[case]
    before, count = scene_state(scene), scene.GetNumberOfNodes()
    with pytest.raises(error, match=message):
        AttentionUNetSegLogic().processMany(volumes, model, settings=LABELS_ONLY)
    assert scene_state(scene) == before
    assert scene.GetNumberOfNodes() == count
