"""The panel's Fine-tune section: training pairs and options, a background fine-tuning, its progress and result."""
import time
from typing import Callable, List, Optional, Tuple

import qt

import slicer
from slicer.i18n import tr as _

from AttentionUNetSegLib.errors import CancelledError
from AttentionUNetSegLib.backends.choices import DEVICE_CHOICES
from AttentionUNetSegLogic import AttentionUNetSegLogic, FineTuneFollower, FineTuneUpdate
from AttentionUNetSegLogic.fine_tuning import validationSummary
from AttentionUNetSegLogic.reporting import reportedErrors

POLL_INTERVAL_MS = 500
VOLUME_COLUMN, SEGMENTATION_COLUMN, REMOVE_COLUMN = 0, 1, 2


class FineTuneSection:
    """Wires the Fine-tune widgets of the .ui to the logic. `log(text)` writes to the panel's status log,
    `reportError(message, error)` shows an error, `onModelAdded(name)` is called with the name of a newly
    registered model (the panel then lists and selects it)."""

    def __init__(self, ui, logic: AttentionUNetSegLogic, log: Callable[[str], None],
                 reportError: Callable[[str, BaseException], None], onModelAdded: Callable[[str], None]) -> None:
        self.ui = ui
        self.logic = logic
        self.log = log
        self.reportError = reportError
        self.onModelAdded = onModelAdded
        self._run: Optional[FineTuneFollower] = None
        self._pairsAdded = 0  # names each row's Remove button
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.ui.fineTuneAddPairButton.connect("clicked(bool)", self.onAddPair)
        self.ui.fineTuneCheckButton.connect("clicked(bool)", self.onCheck)
        self.ui.fineTuneButton.connect("clicked(bool)", self.onFineTuneButton)
        header = self.ui.fineTunePairsTable.horizontalHeader()
        header.setSectionResizeMode(qt.QHeaderView.Stretch)
        header.setSectionResizeMode(REMOVE_COLUMN, qt.QHeaderView.ResizeToContents)
        self.ui.fineTuneDeviceComboBox.addItems(list(DEVICE_CHOICES))
        self.onAddPair()

    @property
    def running(self) -> bool:
        return self._run is not None

    def fillModels(self, names: List[str], default: Optional[str]) -> None:
        """List the registered models as base models, the default one selected."""
        combo = self.ui.fineTuneBaseModelComboBox
        combo.clear()
        for name in names:
            combo.addItem(name + (_(" (default)") if name == default else ""), name)
        if default is not None:
            combo.currentIndex = combo.findData(default)

    # --- pairs and options ------------------------------------------------------------------------------------

    def onAddPair(self) -> None:
        table = self.ui.fineTunePairsTable
        row = table.rowCount
        table.insertRow(row)
        for column, nodeType in ((VOLUME_COLUMN, "vtkMRMLScalarVolumeNode"),
                                 (SEGMENTATION_COLUMN, "vtkMRMLSegmentationNode")):
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = [nodeType]
            selector.showChildNodeTypes = False
            selector.noneEnabled = True
            selector.addEnabled = False
            selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.setCurrentNode(None)
            table.setCellWidget(row, column, selector)
        self._pairsAdded += 1
        remove = qt.QPushButton(_("Remove"))
        remove.objectName = f"removePair{self._pairsAdded}"
        remove.toolTip = _("Remove this pair.")
        remove.connect("clicked(bool)", lambda checked=False, name=remove.objectName: self.onRemovePair(name))
        table.setCellWidget(row, REMOVE_COLUMN, remove)

    def onRemovePair(self, buttonName: str) -> None:
        """Remove the row of the Remove button named `buttonName` (rows above it may have gone meanwhile)."""
        table = self.ui.fineTunePairsTable
        for row in range(table.rowCount):
            if table.cellWidget(row, REMOVE_COLUMN).objectName == buttonName:
                table.removeRow(row)
                return

    def pairs(self) -> List[Tuple]:
        """The (volume, segmentation) rows with a volume chosen (a missing segmentation is reported by the logic)."""
        table = self.ui.fineTunePairsTable
        rows = [(table.cellWidget(row, VOLUME_COLUMN).currentNode(), table.cellWidget(row, SEGMENTATION_COLUMN)
                 .currentNode()) for row in range(table.rowCount)]
        return [row for row in rows if row[0] is not None]

    def validation(self) -> Optional[Tuple]:
        volume = self.ui.fineTuneValidationVolumeSelector.currentNode()
        return None if volume is None else (volume, self.ui.fineTuneValidationSegmentationSelector.currentNode())

    def baseModel(self) -> Optional[str]:
        combo = self.ui.fineTuneBaseModelComboBox
        return combo.itemData(combo.currentIndex) or None

    def ignoredSegments(self) -> List[str]:
        return [name.strip() for name in self.ui.fineTuneIgnoredLineEdit.text.split(",") if name.strip()]

    def settings(self):
        """The engine's FineTuneSettings for the chosen name, base model, budget and device."""
        from AttentionUNetSegLib.training.fine_tuning import FineTuneSettings  # needs PyTorch: not before a click

        minutes = self.ui.fineTuneMinutesSpinBox.value
        return FineTuneSettings(self.modelName(), self.baseModel(), self.ui.fineTuneStepsSpinBox.value,
                                60.0 * minutes if minutes else None, self.ui.fineTuneDeviceComboBox.currentText)

    def modelName(self) -> str:
        """The name typed in, or a new one from the base model and the time (written into the field)."""
        name = self.ui.fineTuneNameLineEdit.text.strip()
        if not name:
            name = f"{self.baseModel() or 'model'}-tuned-{time.strftime('%Y%m%d-%H%M')}"
            self.ui.fineTuneNameLineEdit.text = name
        return name

    # --- running ----------------------------------------------------------------------------------------------

    def reportingErrors(self, message: str):
        """A block whose error is shown (panel log, message box with the details) and goes no further."""
        return reportedErrors(message, self.reportError)

    def onCheck(self) -> None:
        """Say how each segment is matched and what looks doubtful, without training."""
        with self.reportingErrors(_("The pairs cannot be used for fine-tuning.")):
            with slicer.util.WaitCursor():
                plan = self.logic.fineTunePlan(self.pairs(), self.baseModel(), self.validation(),
                                               self.ignoredSegments())
            for line in plan.describe():
                self.log(line)
            self.ui.fineTuneStatusLabel.text = _("{count} pair(s) ready; the matches are in the status log.").format(
                count=len(plan.pairs))

    def onFineTuneButton(self) -> None:
        """Start a background fine-tuning, or cancel the running one (which returns at once)."""
        if self._run is not None:
            self._run.run.cancel()
            self.onPoll()
            return
        self.ui.fineTuneProgressBar.value = 0
        with self.reportingErrors(_("Fine-tuning could not start.")):
            run = self.logic.startFineTune(self.pairs(), self.settings(), self.validation(), self.ignoredSegments())
            self._run = FineTuneFollower(run)
            self.log(_("Fine-tuning '{name}' in a background process...").format(name=self.modelName()))
            self._timer.start()
        self.updateButtons()

    def cancel(self) -> None:
        """Cancel a running fine-tuning (scene closing, module cleanup)."""
        if self._run is not None:
            self.onFineTuneButton()

    def onPoll(self) -> None:
        update = self._run.tick()  # never raises
        self.showProgress(update)
        if not update.ended:
            return
        self._timer.stop()
        self._run = None
        if update.modelName is not None:
            self.showResult(update.modelName)
        elif isinstance(update.error, CancelledError):
            self.ui.fineTuneProgressBar.value = 0
            self.ui.fineTuneStatusLabel.text = str(update.error)
            self.log(str(update.error))
        elif update.error is not None:
            self.ui.fineTuneStatusLabel.text = _("Fine-tuning failed.")
            self.reportError(_("Fine-tuning failed."), update.error)
        self.updateButtons()

    def showProgress(self, update: FineTuneUpdate) -> None:
        if update.progress is not None:
            self.ui.fineTuneProgressBar.value = round(100 * update.progress)
        if update.status:
            self.ui.fineTuneStatusLabel.text = update.status
        for stage in update.stages:
            self.log(_("Stage: {stage}").format(stage=stage.value))
        for message in update.messages:
            self.log(message)

    def showResult(self, name: str) -> None:
        """Report the new model (Dice before and after on the validation pair) and hand it to the panel."""
        self.ui.fineTuneProgressBar.value = 100
        lines = validationSummary(self.logic.modelMetadata(name).metrics)
        self.ui.fineTuneStatusLabel.text = "\n".join(
            [_("Added model '{name}'.").format(name=name)] + ([_("Validation:")] + lines if lines else []))
        self.log(_("Fine-tuned model '{name}' added to your models.").format(name=name))
        for line in lines:
            self.log(f"  {line}")
        self.ui.fineTuneNameLineEdit.text = ""
        self.onModelAdded(name)

    def updateButtons(self) -> None:
        running = self._run is not None
        self.ui.fineTuneButton.text = _("Cancel") if running else _("Fine-tune")
        self.ui.fineTuneButton.toolTip = _("Stop the fine-tuning; no model is added.") if running else _(
            "Fine-tune the base model on the pairs, in a background process.")
        for widget in (self.ui.fineTunePairsTable, self.ui.fineTuneAddPairButton, self.ui.fineTuneCheckButton):
            widget.enabled = not running
