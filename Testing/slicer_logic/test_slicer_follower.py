"""What the panel relies on, without Qt: a followed run ends shown or reported even when the panel's parameter
node is gone; errors in slots are contained; Reload reloads the packages."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from slicer_scene import MODULE_DIR, add_volume

import slicer
from AttentionUNetSegLib.errors import InputImageError
from AttentionUNetSegLib.inference.settings import InferenceSettings
from AttentionUNetSegLib.progress import SegmentationStage
from AttentionUNetSegLogic import AttentionUNetSegLogic, MapLook, RunFollower, RunUpdate
from AttentionUNetSegLogic.reloading import reloadPackages
from AttentionUNetSegLogic.reporting import reportedErrors

TIMEOUT_S = 300
WITH_ATTENTION = InferenceSettings(attention=True)


def follow(follower: RunFollower, until=lambda update: False) -> list:
    """Tick as the panel's timer does until the run ends or `until(update)`; return the updates."""
    updates = []
    deadline = time.monotonic() + TIMEOUT_S
    while not (updates and (updates[-1].ended or until(updates[-1]))):
        assert time.monotonic() < deadline, "the run did not end in time"
        updates.append(follower.tick())
        time.sleep(0.05)
    return updates


def slice_views(scene: slicer.vtkMRMLScene) -> list:
    views = []
    for name in ("Red", "Yellow", "Green"):
        view = slicer.vtkMRMLSliceCompositeNode()
        view.SetLayoutName(name)
        scene.AddNode(view)
        views.append(view)
    return views


def in_inference(update: RunUpdate) -> bool:
    return SegmentationStage.INFERENCE in update.stages


def test_run_ends_with_its_outputs_shown_after_the_parameter_node_is_gone(scene, small_ct: sitk.Image,
                                                                          tiny_model_path: Path) -> None:
    """As after leaving the module and closing its parameter node's scene part: nothing in the poll path needs it."""
    views = slice_views(scene)
    node = add_volume(scene, small_ct, "CT")
    logic = AttentionUNetSegLogic()
    parameterNode = logic.getParameterNode()
    looks = []

    def look() -> MapLook:  # asked only once the outputs are there
        looks.append(time.monotonic())
        return MapLook(opacity=0.7, threshold=0.35)

    follower = RunFollower(logic.startBackground(node, tiny_model_path, settings=WITH_ATTENTION), logic.showMap, look)
    updates = follow(follower, until=in_inference)
    scene.RemoveNode(parameterNode)
    assert scene.GetSingletonNode(logic.moduleName, "vtkMRMLScriptedModuleNode") is None
    assert not looks
    updates += follow(follower)

    end = updates[-1]
    assert end.ended
    assert end.error is None
    assert not end.cancelled
    assert end.shownGate is next(iter(end.outputs.attention.values()))
    assert len(looks) == 1
    for view in views:
        assert view.GetForegroundVolumeID() == end.shownGate.GetID()
        assert view.GetBackgroundVolumeID() == node.GetID()
        assert view.GetForegroundOpacity() == pytest.approx(0.7)
    assert end.shownGate.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.35)
    assert end.outputs.seconds > 0
    assert end.outputs.computedOn.startswith("cpu (")
    stages = [stage for update in updates for stage in update.stages]
    assert stages == [SegmentationStage.PREPARING, SegmentationStage.INFERENCE, SegmentationStage.RESAMPLING,
                      SegmentationStage.DONE, SegmentationStage.SAVING]  # the outputs are added as the run ends
    progress = [update.progress for update in updates if update.progress is not None]
    assert progress == sorted(progress)
    assert progress[-1] >= 0.9


def test_a_run_ending_while_the_panel_is_hidden_leaves_the_views_alone(scene, small_ct: sitk.Image,
                                                                        tiny_model_path: Path) -> None:
    """The user is in another module when the run ends: its outputs are in the scene, the slice views as they were."""
    views = slice_views(scene)
    node = add_volume(scene, small_ct, "CT")
    for view in views:
        view.SetBackgroundVolumeID(node.GetID())
    logic = AttentionUNetSegLogic()
    looks = []
    follower = RunFollower(logic.startBackground(node, tiny_model_path, settings=WITH_ATTENTION), logic.showMap,
                           lambda: looks.append(1) or MapLook(), shown=lambda: False)
    end = follow(follower)[-1]
    assert end.ended
    assert end.error is None
    assert len(end.outputs.attention) == 6
    assert end.shownGate is None
    assert looks == []
    for view in views:
        assert view.GetForegroundVolumeID() is None
        assert view.GetBackgroundVolumeID() == node.GetID()


def test_a_failed_run_ends_with_its_error(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "CT")
    logic = AttentionUNetSegLogic()
    follower = RunFollower(logic.startBackground(node, tiny_model_path), logic.showMap)
    follow(follower, until=in_inference)
    scene.RemoveNode(node)
    end = follow(follower)[-1]
    assert end.ended
    assert end.outputs is None
    assert end.shownGate is None
    assert not end.cancelled
    assert isinstance(end.error, InputImageError)
    assert "deleted while it was being segmented" in str(end.error)


def test_a_cancelled_run_ends_cancelled_at_the_next_tick(scene, patient_b: sitk.Image, tiny_model_path: Path) -> None:
    node = add_volume(scene, patient_b, "CT")
    logic = AttentionUNetSegLogic()
    follower = RunFollower(logic.startBackground(node, tiny_model_path), logic.showMap)
    follow(follower, until=in_inference)
    follower.run.cancel()
    end = follower.tick()
    assert end.ended
    assert end.cancelled
    assert end.outputs is None
    assert "nothing was added" in str(end.error)


def test_an_error_in_a_slot_is_reported_and_goes_no_further() -> None:
    reports = []
    reached = []
    with reportedErrors("Cannot read the model registry.", lambda message, error: reports.append((message, error))):
        raise ValueError("registry file is not JSON")
    reached.append("the rest of setup()")
    assert [(m, str(e)) for m, e in reports] == [("Cannot read the model registry.", "registry file is not JSON")]
    assert reached == ["the rest of setup()"]
    with pytest.raises(KeyboardInterrupt):  # only errors are contained, not an interrupt
        with reportedErrors("never", lambda message, error: reports.append(error)):
            raise KeyboardInterrupt
    assert len(reports) == 1


def test_reload_reads_every_module_of_the_packages_again(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "reloadprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "value.py").write_text("VALUE = 1\n")
    (package / "user.py").write_text("from .value import VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import reloadprobe.user

    assert reloadprobe.user.VALUE == 1
    (package / "value.py").write_text("VALUE = 2\n")
    assert reloadPackages(["reloadprobe"]) == ["reloadprobe", "reloadprobe.user", "reloadprobe.value"]
    import reloadprobe.user as again

    assert again.VALUE == 2
    assert again is not reloadprobe.user
    for name in [n for n in sys.modules if n.startswith("reloadprobe")]:
        del sys.modules[name]


def test_reload_of_the_module_packages_gives_new_modules() -> None:
    """In a fresh interpreter (this one keeps its classes): the engine and logic modules are read again."""
    check = ("import sys; sys.path.insert(0, sys.argv[1]); import AttentionUNetSegLogic.background as old; "
             "import AttentionUNetSegLib.errors as oldErrors; "
             "from AttentionUNetSegLogic.reloading import reloadPackages; "
             "forgotten = reloadPackages(['AttentionUNetSegLib', 'AttentionUNetSegLogic']); "
             "import AttentionUNetSegLogic.background as new; import AttentionUNetSegLib.errors as newErrors; "
             "print(new is not old, newErrors is not oldErrors, new.CancelledError is newErrors.CancelledError, "
             "'AttentionUNetSegLogic.background' in forgotten, 'AttentionUNetSegLib.errors' in forgotten)")
    output = subprocess.run([sys.executable, "-c", check, str(MODULE_DIR)], capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["True"] * 5
