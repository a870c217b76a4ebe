"""Attention U-Net segmentation of abdominal CT with attention-map overlays (3D Slicer scripted module).

This file holds the Slicer-facing classes only: the module description, the parameter node, the
panel (widget) and the self-test. All processing lives in AttentionUNetSegLogic (no Qt) and the
engine in AttentionUNetSegLib (no Slicer); AttentionUNetSegLogic is re-exported here.
"""
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLColorNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from AttentionUNetSegLib.errors import CancelledError
from AttentionUNetSegLogic import AttentionUNetSegLogic, overallProgress
from AttentionUNetSegLogic.outputs import ATTENTION, OUTPUT_ATTRIBUTE, SEGMENTATION, VOLUMES

SAMPLE_NAME = "AttentionUNetSegAbdomenCT"
SAMPLE_FILE = Path(__file__).resolve().parent / "Resources" / "SampleData" / "example_ct.nii.gz"
SAMPLE_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
POLL_INTERVAL_MS = 200


#
# AttentionUNetSeg
#


class AttentionUNetSeg(ScriptedLoadableModule):
    """Module description shown in Slicer; the icon is Resources/Icons/AttentionUNetSeg.png."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Attention U-Net Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AttentionUNetSeg developers"]
        self.parent.helpText = _("""
Segments the pancreas, spleen, kidneys and liver in abdominal CT with the 3D Attention U-Net and shows
the network's attention-coefficient maps over the CT, gate by gate, so that you can see where it looked.
Choose the CT volume and a model, click Segment; the run happens in a background process and can be
cancelled. The model shipped by default is a demonstration model trained on two partial CT scans and
synthetic phantoms: not for clinical use. Its model card (attention-unet-abdomen-v1.md, beside the model
file) gives its training data and its accuracy on a scan it did not see.
""")
        self.parent.acknowledgementText = _("""
The network follows Oktay O, Schlemper J, Le Folgoc L, Lee M, Heinrich M, Misawa K, Mori K, McDonagh S,
Hammerla NY, Kainz B, Glocker B, Rueckert D. "Attention U-Net: Learning Where to Look for the Pancreas".
Medical Imaging with Deep Learning (MIDL) 2018, arXiv:1804.03999, and the authors' released code
(ozan-oktay/Attention-Gated-Networks). The sample CT comes from TotalSegmentator (Wasserthal et al., Apache-2.0).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Register the bundled abdominal CT in the Sample Data module (loaded from the module's own folder)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="AttentionUNetSeg",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(SAMPLE_FILE.parents[1] / "Icons" / "AttentionUNetSeg.png"),
        uris=SAMPLE_FILE.as_uri(),
        fileNames=f"{SAMPLE_NAME}.nii.gz",
        checksums=f"SHA256:{SAMPLE_SHA256}",
        nodeNames=SAMPLE_NAME,
    )


#
# AttentionUNetSegParameterNode
#


@parameterNodeWrapper
class AttentionUNetSegParameterNode:
    """The panel's choices, saved with the scene.

    model: registry name or .safetensors path ("" = the registry's default model).
    attentionVolume: the attention gate shown in the slice views.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    computeAttention: bool = True
    computeProbabilities: bool = False
    attentionVolume: vtkMRMLScalarVolumeNode
    attentionOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    attentionThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    attentionColorMap: vtkMRMLColorNode


#
# AttentionUNetSegWidget
#


class AttentionUNetSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: wiring between the .ui, the parameter node and the logic; no processing of its own."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runStarted = 0.0
        self._lastStage = None
        self._shownMap = None
        self._describedModel = None
        self._defaultModel = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AttentionUNetSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AttentionUNetSegLogic()

        self.ui.attentionVolumeSelector.addAttribute("vtkMRMLScalarVolumeNode", OUTPUT_ATTRIBUTE, ATTENTION)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.modelComboBox.connect("activated(int)", self.onModelActivated)
        self.ui.showAllGatesButton.connect("clicked(bool)", self.onShowAllGates)

        self.initializeParameterNode()
        self.updateEngineInfo()

    def cleanup(self) -> None:
        """Called when the application closes: stop a running segmentation and all observations."""
        if self._timer is not None:
            self._timer.stop()
        if self._run is not None:
            self._run.cancel()
            self._run = None
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self.onSegmentButton()  # cancels: the outputs would have no scene to go to
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(AttentionUNetSegParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.inputVolume:  # the first CT-like volume, not a map this module made
            self._parameterNode.inputVolume = next(
                (node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                 if not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetAttribute(OUTPUT_ATTRIBUTE) is None), None)

    def setParameterNode(self, parameterNode: Optional[AttentionUNetSegParameterNode]) -> None:
        """Connect the panel to `parameterNode` (and disconnect it from the previous one)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Keep buttons, model list, results table and the shown attention map in step with the parameters."""
        parameters = self._parameterNode
        running = self._run is not None
        self.ui.segmentButton.enabled = running or bool(parameters.inputVolume)
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        self.ui.segmentButton.toolTip = _("Stop the running segmentation; nothing is added.") if running else (
            _("Segment the input volume.") if parameters.inputVolume else _("Select an input volume first."))
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.outputsCollapsibleButton.enabled = not running
        self.selectModelItem(parameters.model)
        tables = self.logic.outputsOf(parameters.inputVolume, VOLUMES) if parameters.inputVolume else []
        self.ui.volumesTableView.setMRMLTableNode(tables[-1] if tables else None)
        self.ui.showAllGatesButton.enabled = bool(
            parameters.inputVolume and self.logic.outputsOf(parameters.inputVolume, ATTENTION))
        self.showSelectedMap()

    def showSelectedMap(self) -> None:
        """Show the selected gate with the chosen look, if any of those choices changed."""
        parameters = self._parameterNode
        mapVolume = parameters.attentionVolume
        state = (mapVolume, parameters.attentionOpacity, parameters.attentionThreshold, parameters.attentionColorMap)
        if mapVolume is None or state == self._shownMap:
            return
        self._shownMap = state
        self.logic.showMap(mapVolume, parameters.attentionOpacity, parameters.attentionThreshold,
                           parameters.attentionColorMap)

    # --- model and device -----------------------------------------------------------------------------------

    def updateEngineInfo(self) -> None:
        """Fill the model list and describe the device (both need the engine's packages)."""
        missing = self.logic.missingDependencies()
        if missing:
            self.ui.deviceInfoLabel.text = _("Not installed yet: {packages}. Click Segment to install them.").format(
                packages=", ".join(missing))
            return
        combo = self.ui.modelComboBox
        combo.clear()
        with self.reportingErrors(_("Cannot read the model registry.")):
            for entry in self.logic.models():
                combo.addItem(entry.name + (_(" (default)") if entry.default else ""), entry.name)
                combo.setItemData(combo.count - 1, entry.description, qt.Qt.ToolTipRole)
                if entry.default:
                    self._defaultModel = entry.name
        combo.addItem(_("Load from file..."), "")
        self.ui.deviceInfoLabel.text = _("Detected: {device}").format(device=self.logic.deviceDescription())
        self._describedModel = None
        self.selectModelItem(self._parameterNode.model if self._parameterNode else "")

    def selectModelItem(self, model: str) -> None:
        """Select `model` ("" = the registry's default) in the list, adding a file item for a file path,
        and describe it; only when it changed."""
        combo = self.ui.modelComboBox
        wanted = model or self._defaultModel
        if wanted is None or model == self._describedModel:
            return
        self._describedModel = model
        index = combo.findData(wanted)
        if index < 0:
            combo.insertItem(combo.count - 1, os.path.basename(model), model)
            index = combo.count - 2
        combo.currentIndex = index
        try:
            metadata = self.logic.modelMetadata(combo.itemData(index) or None)
        except Exception as exc:  # a missing or corrupt file: say so where the model is chosen
            self.ui.modelInfoLabel.text = str(exc)
            return
        warning = "" if metadata.trained else _("UNTRAINED: results are not anatomical. ")
        self.ui.modelInfoLabel.text = warning + metadata.description

    def onModelActivated(self, index: int) -> None:
        combo = self.ui.modelComboBox
        model = combo.itemData(index)
        if index == combo.count - 1:  # "Load from file..."
            model = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Model file"), "",
                                                   _("Model files (*.safetensors)"))
            if not model:
                self._describedModel = None
                self.selectModelItem(self._parameterNode.model)
                return
        self._parameterNode.model = "" if model == self._defaultModel else model

    # --- running --------------------------------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        """Start a background segmentation, or cancel the running one."""
        if self._run is not None:
            self._run.cancel()
            self.onPoll()
            return
        parameters = self._parameterNode
        self.ui.statusLog.clear()
        self.ui.progressBar.value = 0
        with self.reportingErrors(_("Segmentation could not start.")):
            if not self.ensureDependencies():
                return
            self._run = self.logic.startBackground(
                parameters.inputVolume, model=parameters.model or None,
                outputSegmentation=parameters.outputSegmentation, attention=parameters.computeAttention,
                probabilities=parameters.computeProbabilities, device=parameters.device)
            self._runStarted = time.monotonic()
            self._lastStage = None
            self.log(_("Segmenting '{name}' in a background process...").format(name=parameters.inputVolume.GetName()))
            self._timer.start()
            self.onParameterNodeModified()

    def onPoll(self) -> None:
        """Timer tick: show the worker's events; when it has ended, show the outputs or why there are none."""
        run = self._run
        for event in run.poll():
            self.showEvent(event)
        if not run.done:
            return
        self._timer.stop()
        self._run = None
        self.onParameterNodeModified()
        with self.reportingErrors(_("Segmentation failed.")):
            try:
                outputs = run.result()
            except CancelledError as exc:
                self.ui.progressBar.value = 0
                self.log(str(exc))
                return
            self.showOutputs(outputs)

    def showEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            fraction = overallProgress(event["stage"], event["fraction"])
            if fraction is not None:
                self.ui.progressBar.value = round(100 * fraction)
            if event["stage"] != self._lastStage:
                self._lastStage = event["stage"]
                self.log(_("Stage: {stage}").format(stage=event["stage"]))
        elif kind == "log":  # an "error" event is reported once the run has ended, by onPoll
            self.log(event["message"])

    def showOutputs(self, outputs) -> None:
        """Report a finished run and show its first attention gate."""
        self.ui.progressBar.value = 100
        self.log(_("Done in {seconds:.1f} s on {device}.").format(seconds=time.monotonic() - self._runStarted,
                                                                   device=outputs.device))
        for warning in outputs.warnings:
            self.log(_("Warning: {message}").format(message=warning))
        for name, volume in outputs.volumesMl.items():
            self.log(f"  {name}: {volume:.1f} mL")
        if outputs.attention:
            self._parameterNode.attentionVolume = next(iter(outputs.attention.values()))
        self.onParameterNodeModified()

    def onShowAllGates(self) -> None:
        with self.reportingErrors(_("Cannot show the attention gates.")):
            if not self.logic.showAllGates(self._parameterNode.inputVolume, self._parameterNode.attentionOpacity):
                self.log(_("No attention maps to show for this input yet."))

    def ensureDependencies(self) -> bool:
        """True when the engine's packages are installed, installing them on the user's confirmation."""
        missing = self.logic.missingDependencies()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("Segmentation needs these Python packages: {packages}.\nInstall them now? "
                  "This downloads several hundred MB and can take minutes.").format(packages=", ".join(missing))):
            self.log(_("The required packages were not installed; nothing was run."))
            return False
        with slicer.util.WaitCursor():
            self.logic.installDependencies(missing)
        self.updateEngineInfo()
        return True

    @contextlib.contextmanager
    def reportingErrors(self, message: str):
        """Show an error both in the panel's log and in a message box (with the details)."""
        with slicer.util.tryWithErrorDisplay(message):
            try:
                yield
            except Exception as exc:
                self.log(f"{message} {exc}")
                raise

    def log(self, text: str) -> None:
        self.ui.statusLog.appendPlainText(text)
        logging.info(text)


#
# AttentionUNetSegTest
#


class AttentionUNetSegTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer's CI: the sample CT through the logic, in process and in the background."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_ProcessSampleCT, self.test_BackgroundMatchesInProcess, self.test_PanelSegmentButton):
            self.setUp()
            test()

    def loadSampleCT(self):
        import SampleData

        registerSampleData()
        return SampleData.downloadSample(SAMPLE_NAME)

    def test_ProcessSampleCT(self):
        self.delayDisplay("Segmenting the sample CT in process")
        inputVolume = self.loadSampleCT()
        voxelsBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = vtk.vtkMatrix4x4()
        inputVolume.GetIJKToRASMatrix(matrixBefore)
        logic = AttentionUNetSegLogic()
        outputs = logic.process(inputVolume, attention=True, probabilities=True)

        metadata = logic.modelMetadata(None)
        foreground = [c for c in metadata.classes if c.value > 0]
        segmentation = outputs.segmentation.GetSegmentation()
        self.assertEqual(list(segmentation.GetSegmentIDs()), [c.name for c in foreground])
        for segmentClass in foreground:
            segment = segmentation.GetSegment(segmentClass.name)
            self.assertEqual(segment.GetName(), segmentClass.name)
            if segmentClass.type is not None:
                self.assertIn(f"^{segmentClass.type.code}^", segment.GetTerminology())
        segmentationNode = outputs.segmentation
        self.assertEqual(segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole()),
                         inputVolume)
        self.assertGreater(len(outputs.attention), 0)
        for volume in list(outputs.attention.values()) + list(outputs.probabilities.values()):
            self.assertEqual(volume.GetImageData().GetDimensions(), inputVolume.GetImageData().GetDimensions())
            matrix = vtk.vtkMatrix4x4()
            volume.GetIJKToRASMatrix(matrix)
            self.assertTrue(all(abs(matrix.GetElement(r, c) - matrixBefore.GetElement(r, c)) < 1e-6
                                for r in range(4) for c in range(4)))
            values = slicer.util.arrayFromVolume(volume)
            self.assertGreaterEqual(values.min(), 0.0)
            self.assertLessEqual(values.max(), 1.0)
        self.assertEqual(outputs.volumesTable.GetNumberOfRows(), len(foreground))
        self.assertTrue((slicer.util.arrayFromVolume(inputVolume) == voxelsBefore).all())
        self.delayDisplay("In-process segmentation passed")

    def test_BackgroundMatchesInProcess(self):
        self.delayDisplay("Segmenting the sample CT in a background process")
        inputVolume = self.loadSampleCT()
        logic = AttentionUNetSegLogic()
        inProcess = logic.process(inputVolume, attention=False)
        expected = {
            segmentId: slicer.util.arrayFromSegmentBinaryLabelmap(inProcess.segmentation, segmentId, inputVolume).copy()
            for segmentId in inProcess.segmentation.GetSegmentation().GetSegmentIDs()}
        started = time.monotonic()
        run = logic.startBackground(inputVolume, attention=False)
        while not run.done:
            slicer.app.processEvents()
            run.poll()
            time.sleep(0.05)
        outputs = run.result()
        logging.info(f"Background segmentation of the sample CT: {time.monotonic() - started:.1f} s to outputs")
        for segmentId, labels in expected.items():
            actual = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.segmentation, segmentId, inputVolume)
            self.assertTrue((actual == labels).all(), segmentId)
        self.delayDisplay("Background segmentation passed")

    def test_PanelSegmentButton(self):
        self.delayDisplay("Segmenting through the panel")
        inputVolume = self.loadSampleCT()
        slicer.util.selectModule("AttentionUNetSeg")
        widget = slicer.util.getModuleWidget("AttentionUNetSeg")
        widget._parameterNode.inputVolume = inputVolume
        widget._parameterNode.computeAttention = True
        widget.ui.segmentButton.click()
        self.assertEqual(widget.ui.segmentButton.text, _("Cancel"))
        deadline = time.monotonic() + 600
        while widget._run is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNone(widget._run)
        self.assertEqual(widget.ui.segmentButton.text, _("Segment"))
        self.assertIsNotNone(widget._parameterNode.attentionVolume)
        self.assertEqual(len(AttentionUNetSegLogic.outputsOf(inputVolume, SEGMENTATION)), 1)
        self.delayDisplay("Panel segmentation passed")
