"""The self-test Slicer's CI runs (ctest) and "Reload and Test" runs.

`test_PanelSmoke` always runs, with real assertions: the module loads, its panel builds, the parameter node and
the panel agree both ways, the gate layouts are registered. `test_SegmentSampleCTOnCPU` segments the sample CT
once on the CPU through the panel, checked as the pytest suite checks the logic (which covers the rest
headless); it needs the engine's Python packages, and a test never installs them unless
ATTENTIONUNETSEG_TEST_INSTALL=1 asks for it: without them it is skipped, saying so. slicer.testing.runUnitTest
counts a skipped test as passed, so on a build machine without them the smoke test is what ctest checks.
"""
import os
import time
import unittest

import numpy as np
import vtk

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from AttentionUNetSegLogic import AttentionUNetSegLogic
from AttentionUNetSegLogic.display import GATES_LAYOUT_ID
from AttentionUNetSegLogic.outputs import SEGMENTATION
from AttentionUNetSegLogic.segments import segmentTerminology

from .sampledata import loadSampleCT

RUN_TIMEOUT_S = 900
INSTALL_VARIABLE = "ATTENTIONUNETSEG_TEST_INSTALL"
"""Set to 1 to let the segmentation test install the engine's packages (hundreds of MB) when they are missing."""


class AttentionUNetSegTest(ScriptedLoadableModuleTest):
    """Each test starts from an empty scene."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Reload and Test: both tests; a skipped one says why."""
        for test in (self.test_PanelSmoke, self.test_SegmentSampleCTOnCPU):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"{test.__name__} skipped: {skipped}")

    def test_PanelSmoke(self) -> None:
        self.delayDisplay("The module loads and its panel builds")
        self.assertIn("AttentionUNetSeg", slicer.util.moduleNames())
        slicer.util.selectModule("AttentionUNetSeg")
        widget = slicer.util.getModuleWidget("AttentionUNetSeg")
        self.assertIsNotNone(widget)
        parameters = widget._parameterNode
        self.assertIsNotNone(parameters)
        self.assertIs(parameters.parameterNode, widget.logic.getParameterNode())
        self.assertFalse(widget.ui.segmentButton.enabled, "no input volume in an empty scene")

        self.delayDisplay("Parameter node and panel agree both ways")
        parameters.attentionOpacity = 0.35
        self.assertAlmostEqual(widget.ui.attentionOpacitySlider.value, 0.35)
        widget.ui.computeProbabilitiesCheckBox.checked = True
        self.assertTrue(parameters.computeProbabilities)
        self.assertEqual(parameters.parameterNode.GetParameter("computeProbabilities"), "True")
        widget.ui.deviceComboBox.currentText = "cpu"
        self.assertEqual(parameters.device, "cpu")
        volume = slicer.util.addVolumeFromArray(np.zeros((4, 8, 8), np.int16), name="smoke test volume")
        parameters.inputVolume = volume
        self.assertIs(widget.ui.inputVolumeSelector.currentNode(), volume)
        self.assertTrue(widget.ui.segmentButton.enabled)
        widget.logic.releaseWorker()  # the volume's choice started one where the engine is installed

        self.delayDisplay("The side-by-side gate layouts were registered at start-up")
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            self.assertTrue(layoutManager.layoutLogic().GetLayoutNode().IsLayoutDescription(GATES_LAYOUT_ID + 6))
        self.delayDisplay("Smoke test passed")

    def test_SegmentSampleCTOnCPU(self) -> None:
        self.requireEngine()
        self.delayDisplay("Segmenting the sample CT on the CPU through the panel")
        inputVolume = loadSampleCT()
        voxelsBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        slicer.util.selectModule("AttentionUNetSeg")
        widget = slicer.util.getModuleWidget("AttentionUNetSeg")
        widget._parameterNode.inputVolume = inputVolume
        widget._parameterNode.device = "cpu"
        widget._parameterNode.computeAttention = True
        widget.ui.segmentButton.click()
        self.assertEqual(widget.ui.segmentButton.text, "Cancel")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while widget._run is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNone(widget._run, "the segmentation did not end in time")
        self.assertEqual(widget.ui.segmentButton.text, "Segment")

        logic = AttentionUNetSegLogic()
        segmentations = logic.outputsOf(inputVolume, SEGMENTATION)
        self.assertEqual(len(segmentations), 1, widget.ui.statusLog.plainText)
        metadata = logic.modelMetadata(None)
        foreground = [c for c in metadata.classes if c.value > 0]
        segmentation = segmentations[0].GetSegmentation()
        self.assertEqual(list(segmentation.GetSegmentIDs()), [c.name for c in foreground])
        for segmentClass in foreground:
            if segmentClass.type is not None:
                self.assertIn(f"^{segmentClass.type.code}^", segmentTerminology(segmentation.GetSegment(segmentClass.name)))
        gate = widget._parameterNode.attentionVolume
        self.assertIsNotNone(gate, "the panel was shown: the first gate is")
        self.assertEqual([round(s, 3) for s in gate.GetSpacing()], [round(s, 3) for s in metadata.spacing_mm])
        direction = vtk.vtkMatrix4x4()
        gate.GetIJKToRASDirectionMatrix(direction)  # the model's axis-aligned grid (LPS), in RAS
        self.assertEqual([direction.GetElement(r, r) for r in range(3)], [-1.0, -1.0, 1.0])
        values = slicer.util.arrayFromVolume(gate)
        self.assertTrue(0.0 <= values.min() and values.max() <= 1.0)
        self.assertFalse(gate.GetSaveWithScene(), "maps are saved with the scene only when asked")
        self.assertIn("cpu", widget.ui.statusLog.plainText)
        self.assertTrue((slicer.util.arrayFromVolume(inputVolume) == voxelsBefore).all())
        self.delayDisplay("Sample CT segmentation passed")

    def requireEngine(self) -> None:
        """Skip unless the engine's packages are installed, or installed now because INSTALL_VARIABLE asks."""
        unmet = AttentionUNetSegLogic.unmetDependencies()
        if not unmet:
            return
        if os.environ.get(INSTALL_VARIABLE) != "1":
            self.skipTest(f"the engine's Python packages are missing ({', '.join(map(str, unmet))}); a test does not "
                          f"install them unless {INSTALL_VARIABLE}=1")
        self.delayDisplay(f"Installing {', '.join(map(str, unmet))} ({INSTALL_VARIABLE}=1)")
        result = AttentionUNetSegLogic.installDependencies(unmet)
        if result.restartNeeded:
            self.skipTest(f"upgraded {', '.join(result.restartNeeded)}, which were loaded already: restart Slicer and "
                          "run again")
