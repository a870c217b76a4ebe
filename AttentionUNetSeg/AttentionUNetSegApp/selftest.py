"""The self-test Slicer's CI runs (ctest) and "Reload and Test" runs: one CPU segmentation of the sample CT
through the panel, checked as the pytest suite checks the logic (which covers the rest headless)."""
import time
import unittest

import vtk

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from AttentionUNetSegLogic import AttentionUNetSegLogic
from AttentionUNetSegLogic.dependencies import DependencyError
from AttentionUNetSegLogic.outputs import SEGMENTATION
from AttentionUNetSegLogic.segments import segmentTerminology

from .sampledata import loadSampleCT

RUN_TIMEOUT_S = 900


class AttentionUNetSegTest(ScriptedLoadableModuleTest):
    """Installs the engine's packages first, or skips saying why they could not be installed."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()
        unmet = AttentionUNetSegLogic.unmetDependencies()
        if not unmet:
            return
        self.delayDisplay(f"Installing {', '.join(map(str, unmet))}")
        try:
            imported = AttentionUNetSegLogic.installDependencies(unmet)
        except DependencyError as exc:
            self.skipTest(f"the engine's Python packages could not be installed, so nothing was tested: {exc}")
        if imported:
            self.skipTest(f"upgraded {', '.join(imported)}, which were loaded already: restart Slicer and run again")

    def runTest(self) -> None:
        try:
            self.setUp()
        except unittest.SkipTest as skipped:
            self.delayDisplay(f"Self-test skipped: {skipped}")
            return
        self.test_SegmentSampleCTOnCPU()

    def test_SegmentSampleCTOnCPU(self) -> None:
        self.delayDisplay("Segmenting the sample CT on the CPU through the panel")
        inputVolume = loadSampleCT()
        voxelsBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = vtk.vtkMatrix4x4()
        inputVolume.GetIJKToRASMatrix(matrixBefore)
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
        foreground = [c for c in logic.modelMetadata(None).classes if c.value > 0]
        segmentation = segmentations[0].GetSegmentation()
        self.assertEqual(list(segmentation.GetSegmentIDs()), [c.name for c in foreground])
        for segmentClass in foreground:
            if segmentClass.type is not None:
                self.assertIn(f"^{segmentClass.type.code}^", segmentTerminology(segmentation.GetSegment(segmentClass.name)))
        gate = widget._parameterNode.attentionVolume
        self.assertIsNotNone(gate)
        self.assertEqual(gate.GetImageData().GetDimensions(), inputVolume.GetImageData().GetDimensions())
        matrix = vtk.vtkMatrix4x4()
        gate.GetIJKToRASMatrix(matrix)
        self.assertTrue(all(abs(matrix.GetElement(r, c) - matrixBefore.GetElement(r, c)) < 1e-6
                            for r in range(4) for c in range(4)))
        values = slicer.util.arrayFromVolume(gate)
        self.assertTrue(0.0 <= values.min() and values.max() <= 1.0)
        self.assertIn("cpu", widget.ui.statusLog.plainText)
        self.assertTrue((slicer.util.arrayFromVolume(inputVolume) == voxelsBefore).all())
        self.delayDisplay("Sample CT segmentation passed")
