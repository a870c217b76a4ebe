"""The module panel: wiring between the .ui, the parameter node and the logic; no processing of its own."""
import logging
import os
import traceback
from typing import Optional

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from AttentionUNetSegLogic import AttentionUNetSegLogic, MapLook, RunFollower, RunUpdate
from AttentionUNetSegLogic.dependencies import DependencyError, RestartRequiredError
from AttentionUNetSegLogic.outputs import ATTENTION, OUTPUT_ATTRIBUTE, VOLUMES
from AttentionUNetSegLogic.reloading import reloadPackages
from AttentionUNetSegLogic.reporting import reportedErrors

from .fine_tuning import FineTuneSection
from .parameters import AttentionUNetSegParameterNode

POLL_INTERVAL_MS = 200
RELOADED_PACKAGES = ("AttentionUNetSegLib", "AttentionUNetSegLogic", "AttentionUNetSegApp")


class AttentionUNetSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel. Leaving the module disconnects only the GUI (the parameter node is kept), and a running
    segmentation is followed by a RunFollower, which needs neither: a run always ends shown or reported. Choosing
    an input volume (or another model or device with one chosen) starts a standby worker, which the logic releases
    after its idle time, when the scene closes or a fine-tuning starts."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode: Optional[AttentionUNetSegParameterNode] = None
        self._parameterNodeGuiTag = None
        self._run: Optional[RunFollower] = None
        self._shownMap = None
        self._describedModel = None
        self._defaultModel = None
        self._timer = None
        self._engineReady = False
        self._standbyFor = None  # (input volume, model, settings) the standby worker was started for
        self._mapsSaved: Optional[bool] = None

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
        self.fineTuneSection = FineTuneSection(self.ui, self.logic, self.log, self.reportError, self.onModelAdded)

        unsupported = self.logic.unsupportedPlatform()
        self.ui.platformLabel.text = unsupported or ""
        self.ui.platformLabel.visible = bool(unsupported)
        self.updateEngineInfo()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes or the module reloads: stop running work and all observations."""
        if self._run is not None:
            self._run.run.cancel()
            self.onPoll()
        self.fineTuneSection.cancel()
        self.logic.releaseWorker()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """Disconnect the GUI: the parameter node stays, and so do a running segmentation and a standby worker
        (released after its idle time)."""
        self.disconnectGui()

    def prepareWorker(self) -> None:
        """Once the engine's packages are installed and an input volume is chosen, start a worker loading the
        engine and the chosen model for the next Segment click; again only when those choices change."""
        parameters = self._parameterNode
        if parameters is None or not parameters.inputVolume or not self._engineReady or self._run is not None:
            return
        choices = (parameters.inputVolume.GetID(), parameters.model, parameters.inferenceSettings())
        if choices != self._standbyFor:
            self._standbyFor = choices
            self.logic.prepareWorker(parameters.model or None, parameters.inferenceSettings())

    def onReload(self) -> None:
        """Reload the engine, logic and panel packages first: Slicer reloads only the module file."""
        for name in reloadPackages(RELOADED_PACKAGES):
            logging.info(f"Reloading {name}")
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        """Cancel what runs on the scene's nodes (the logic releases the standby worker itself)."""
        if self._run is not None:
            self.onSegmentButton()  # cancels: the outputs would have no scene to go to
        self.fineTuneSection.cancel()  # its pairs are leaving the scene
        self.setParameterNode(None)
        self._standbyFor = None
        self._mapsSaved = None

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
        self.disconnectGui()
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def disconnectGui(self) -> None:
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNodeGuiTag = None

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Keep buttons, model list, results table and the shown attention map in step with the parameters."""
        parameters = self._parameterNode
        if parameters is None or self._parameterNodeGuiTag is None:
            return
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
        if parameters.saveMapsWithScene != self._mapsSaved:
            self._mapsSaved = parameters.saveMapsWithScene
            self.logic.setMapsSavedWithScene(slicer.mrmlScene, parameters.saveMapsWithScene)
        self.showSelectedMap()
        self.prepareWorker()

    def mapLook(self) -> MapLook:
        """The attention map settings of the parameter node, or the defaults without one."""
        parameters = self._parameterNode
        if parameters is None:
            return MapLook()
        return MapLook(parameters.attentionOpacity, parameters.attentionThreshold, parameters.attentionColorMap)

    def showSelectedMap(self) -> None:
        """Show the selected gate with the chosen look, if any of those choices changed; choosing no gate (after
        one) takes the module's maps out of the slice views."""
        mapVolume = self._parameterNode.attentionVolume
        look = self.mapLook()
        if (mapVolume, look) == self._shownMap or (mapVolume is None and self._shownMap is None):
            return
        if mapVolume is None:
            self.logic.hideMaps(slicer.mrmlScene)
            self._shownMap = None
            return
        self._shownMap = (mapVolume, look)
        self.logic.showMap(mapVolume, look.opacity, look.threshold, look.colorNode)

    # --- model and device -----------------------------------------------------------------------------------

    def updateEngineInfo(self) -> None:
        """Fill the model list (once the engine's packages are installed) and say when the device is chosen: all
        without PyTorch, which only the worker loads."""
        unmet = self.logic.unmetDependencies()
        self._engineReady = not unmet
        if unmet:
            self.ui.deviceInfoLabel.text = _("Missing or too old: {packages}. Click Segment to install them.").format(
                packages=", ".join(map(str, unmet)))
            return
        combo = self.ui.modelComboBox
        combo.clear()
        with self.reportingErrors(_("Cannot read the model registry.")):
            entries = self.logic.models()
            for entry in entries:
                combo.addItem(entry.name + (_(" (default)") if entry.default else ""), entry.name)
                combo.setItemData(combo.count - 1, entry.description, qt.Qt.ToolTipRole)
                if entry.default:
                    self._defaultModel = entry.name
            self.fineTuneSection.fillModels([entry.name for entry in entries], self._defaultModel)
        combo.addItem(_("Load from file..."), "")
        self.ui.deviceInfoLabel.text = _("Chosen when a run starts (auto: a GPU if PyTorch sees one, else the CPU); "
                                         "the status log says which it was.")
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
            self.ui.modelLicenseLabel.text = ""
            return
        warning = "" if metadata.trained else _("UNTRAINED: results are not anatomical. ")
        self.ui.modelInfoLabel.text = warning + metadata.description
        self.ui.modelLicenseLabel.text = _("Licence of the model: {license}").format(
            license=metadata.license or _("not stated in its file"))

    def onModelAdded(self, name: str) -> None:
        """A model was fine-tuned: list it and select it for segmentation."""
        self.updateEngineInfo()
        if self._parameterNode is not None:
            self._parameterNode.model = name

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
        """Start a background segmentation, or cancel the running one (which returns at once)."""
        if self._run is not None:
            self._run.run.cancel()
            self.onPoll()
            return
        parameters = self._parameterNode
        self.ui.statusLog.clear()
        self.ui.progressBar.value = 0
        with self.reportingErrors(_("Segmentation could not start.")):
            if not self.ensureDependencies():
                return
            overwrite = self.confirmOverwrite(parameters.outputSegmentation, parameters.model or None)
            if overwrite is None:
                return
            run = self.logic.startBackground(parameters.inputVolume, parameters.model or None,
                                             parameters.inferenceSettings(), parameters.outputSegmentation,
                                             overwriteEdited=overwrite,
                                             saveMapsWithScene=parameters.saveMapsWithScene)
            self._run = RunFollower(run, self.logic.showMap, self.mapLook, shown=lambda: self.parent.isEntered)
            self.log(_("Segmenting '{name}' in a background process...").format(name=parameters.inputVolume.GetName()))
            self._timer.start()
            self.onParameterNodeModified()

    def onPoll(self) -> None:
        """Timer tick: show the worker's news; when the run has ended, its outputs or why there are none."""
        update = self._run.tick()  # never raises
        self.showProgress(update)
        if not update.ended:
            return
        self._timer.stop()
        self._run = None
        if update.cancelled:
            self.ui.progressBar.value = 0
            self.log(str(update.error))
        elif update.error is not None:
            self.reportError(_("Segmentation failed."), update.error)
        if update.outputs is not None:
            self.showOutputs(update)
        self.onParameterNodeModified()

    def showProgress(self, update: RunUpdate) -> None:
        if update.progress is not None:
            self.ui.progressBar.value = round(100 * update.progress)
        for stage in update.stages:
            self.log(_("Stage: {stage}").format(stage=stage.value))
        for message in update.messages:
            self.log(message)

    def showOutputs(self, update: RunUpdate) -> None:
        """Report a finished run: time, device, warnings, organ volumes; select the gate the follower showed."""
        outputs = update.outputs
        self.ui.progressBar.value = 100
        self.log(_("Done in {seconds:.1f} s on {device}.").format(seconds=outputs.seconds, device=outputs.computedOn))
        self.ui.deviceInfoLabel.text = _("The last run ran on {device}.").format(device=outputs.computedOn)
        for warning in outputs.warnings:
            self.log(_("Warning: {message}").format(message=warning))
        for name, volume in outputs.volumesMl.items():
            self.log(f"  {name}: {volume:.1f} mL")
        if update.shownGate is not None and self._parameterNode is not None:
            self._shownMap = (update.shownGate, self.mapLook())
            self._parameterNode.attentionVolume = update.shownGate

    def onShowAllGates(self) -> None:
        with self.reportingErrors(_("Cannot show the attention gates.")):
            if not self.logic.showAllGates(self._parameterNode.inputVolume, self._parameterNode.attentionOpacity):
                self.log(_("No attention maps to show for this input yet."))

    def confirmOverwrite(self, segmentation, model) -> Optional[bool]:
        """Whether the run may replace segments of the chosen output segmentation that may hold the user's edits:
        False when none would be, True once the user agrees, None (no run) when they do not."""
        atRisk = self.logic.editsAtRisk(segmentation, model)
        if not atRisk:
            return False
        if slicer.util.confirmOkCancelDisplay(
                _("The segmentation '{name}' may hold your edits in {segments}, which this run would replace.\n"
                  "Replace them? (Cancel, then choose 'Create new segmentation' as the output to keep them.)").format(
                    name=segmentation.GetName(), segments=", ".join(atRisk))):
            return True
        self.log(_("Nothing was run: '{name}' was left as it is.").format(name=segmentation.GetName()))
        return None

    def ensureDependencies(self) -> bool:
        """True when the engine's packages are installed and recent enough, installing them on the user's
        confirmation with the panel disabled meanwhile (a restart first, where loaded packages need one)."""
        unmet = self.logic.unmetDependencies()
        if not unmet:
            return True
        unsupported = self.logic.unsupportedPlatform()
        if unsupported:
            raise DependencyError(unsupported)
        if not slicer.util.confirmOkCancelDisplay(
                _("Segmentation needs these Python packages: {packages}.\nInstall them now? "
                  "This downloads several hundred MB and can take minutes.").format(
                    packages=", ".join(map(str, unmet)))):
            self.log(_("The required packages were not installed; nothing was run."))
            return False
        self.parent.enabled = False
        try:
            with slicer.util.WaitCursor():
                result = self.logic.installDependencies(unmet)
        except RestartRequiredError as exc:
            if slicer.util.confirmOkCancelDisplay(_("{reason}\n\nRestart Slicer now?").format(reason=exc)):
                slicer.util.restart()
            return False
        finally:
            self.parent.enabled = True
        for failure in result.optionalFailed:
            self.log(_("Optional package not installed: {failure}. Segmentation runs without it.").format(
                failure=failure))
        if result.restartNeeded:
            slicer.util.warningDisplay(_("Upgraded {packages}, which Slicer had loaded: restart Slicer to use the new "
                                         "versions.").format(packages=", ".join(result.restartNeeded)))
            return False
        self.updateEngineInfo()
        return True

    def reportingErrors(self, message: str):
        """A block whose error is shown (panel log, message box with the details) and goes no further."""
        return reportedErrors(message, self.reportError)

    def reportError(self, message: str, error: BaseException) -> None:
        self.log(f"{message} {error}")
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        logging.error(f"{message}\n{details}")
        slicer.util.errorDisplay(f"{message}\n\n{error}", detailedText=details)

    def log(self, text: str) -> None:
        self.ui.statusLog.appendPlainText(text)
        logging.info(text)
