"""AttentionUNetSegLogic: everything the module does, usable from the Python console and tests without a GUI.

It imports `slicer` and VTK but never Qt, so the same code runs inside Slicer and on a bare MRML
scene (the `slicer-core` package). The engine (AttentionUNetSegLib, which needs PyTorch) is
imported only when a run starts, so the module loads even before its dependencies are installed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import slicer
from AttentionUNetSegLib.progress import CancelCheck, EventCallback, FineTuneStage, ProgressCallback, SegmentationStage
from AttentionUNetSegLib.errors import AttentionUNetSegError, CancelledError, InputImageError
from AttentionUNetSegLib.inference.settings import InferenceSettings

from . import dependencies, display, installer
from .background import BackgroundRun, BackgroundSegmentation
from .conversion import volumeNodeToImage
from .inputs import validateInputVolume
from .outputs import (ATTENTION, CANCELLED, DONE, FAILED, GATE_ATTRIBUTE, INPUT_ROLE, MAPS, OUTPUT_ATTRIBUTE,
                      CohortOutputs, OutputChoice, SegmentationOutputs, VolumeRun, claimOutput, editsAtRisk,
                      latestRunOutputs, mapOutputs, previousOutputs, saveWithScene, writeCohortTable, writeOutputs)
from .standby import IDLE_RELEASE_S, StandbyWorker

if TYPE_CHECKING:  # imported when a run or a fine-tuning needs them: SimpleITK, and PyTorch for the training side
    import SimpleITK as sitk
    from AttentionUNetSegLib.training.fine_tuning import FineTuneSettings

    from .fine_tuning import FineTunePlan, Pair

ModelChoice = Union[str, Path, None]


class AttentionUNetSegLogic:
    """Segment a CT volume node with an Attention U-Net and show its attention maps.

    Same contract as a ScriptedLoadableModuleLogic (which cannot be imported without Qt): the module's
    parameter node is a singleton vtkMRMLScriptedModuleNode tagged with the module name.
    """

    moduleName = "AttentionUNetSeg"
    _standby: Optional[StandbyWorker] = None
    _sceneClose: Optional[Tuple[slicer.vtkMRMLScene, int]] = None
    """The scene whose closing releases the standby worker, and that observation's tag."""

    def getParameterNode(self) -> slicer.vtkMRMLScriptedModuleNode:
        """The module's parameter node in the current scene (created on first use)."""
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(scene.GenerateUniqueName(self.moduleName))
            scene.AddNode(node)
        node.SetAttribute("ModuleName", self.moduleName)
        return node

    # --- running --------------------------------------------------------------------------------------------

    def process(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, model=None,
                settings: Optional[InferenceSettings] = None,
                outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None,
                progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelCheck] = None, *, overwriteEdited: bool = False,
                saveMapsWithScene: bool = False) -> SegmentationOutputs:
        """Segment `inputVolume` in this process and add the output nodes (synchronous): a new segmentation node
        and maps and table, each run its own.

        `model`: a registry name, a .safetensors path, a loaded model, or None for the registry's
        default. `settings`: the engine's InferenceSettings (device, which maps, ...; default: InferenceSettings()).
        `outputSegmentation`: a segmentation node to fill instead of a new one (its other segments are kept; the maps
        and table of the run that filled it before are replaced). If its segments this run would replace may hold
        the user's edits (`editsAtRisk` names them), EditedSegmentationError unless `overwriteEdited`.
        `saveMapsWithScene`: whether the map volumes are saved with the scene (default: not).
        `progress(stage, fraction)` is called as the run advances; `cancel()` returning True
        stops it (CancelledError). On any error nothing is added to the scene.
        """
        from AttentionUNetSegLib.inference.segmenter import Segmenter

        started = time.monotonic()
        image = self.inputImage(inputVolume)
        return self._segmentInto(Segmenter(model, settings), inputVolume, image, started,
                                 OutputChoice(outputSegmentation, overwriteEdited, saveMapsWithScene), progress, cancel)

    def processMany(self, inputVolumes: Sequence[slicer.vtkMRMLScalarVolumeNode], model=None,
                    settings: Optional[InferenceSettings] = None, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelCheck] = None, *, saveMapsWithScene: bool = False) -> CohortOutputs:
        """Segment each of `inputVolumes` in turn, each with the outputs `process` makes for it (a new segmentation
        node each), then add a cohort table: one row per input with its organ volumes, run time, device and status
        (see outputs.writeCohortTable).

        The model is made ready once (the engine's Segmenter: read, backend built) for all of them; each input's run
        time is its own. An input that fails (not a CT volume, no voxels, an engine error) gets no
        outputs and is reported in its VolumeRun (name, FAILED, message); the others are done.
        `progress(stage, fraction)` gets the fraction of the whole cohort, each input having an equal share.
        `cancel()` is checked before each input and during it; cancelling keeps the outputs of the inputs
        finished, leaves none for the one under way (CANCELLED) or those after it (NOT_RUN), still adds the
        cohort table for them all, and returns with `cancelled` True.
        Raises InputImageError for an empty list or one naming a volume twice (or None), and ModelFileError for a model
        that cannot be loaded, before anything is added to the scene.
        """
        from AttentionUNetSegLib.inference.segmenter import Segmenter

        _checkCohort(inputVolumes)
        segmenter = Segmenter(model, settings)
        runs = [VolumeRun(volume, volume.GetName()) for volume in inputVolumes]
        cancelled = False
        for index, run in enumerate(runs):
            cancelled = cancelled or (cancel is not None and cancel())
            if cancelled:
                continue  # stays NOT_RUN
            try:
                started = time.monotonic()
                run.outputs = self._segmentInto(segmenter, run.volume, self.inputImage(run.volume), started,
                                                OutputChoice(saveMapsWithScene=saveMapsWithScene),
                                                _shareOfProgress(progress, index, len(runs)), cancel)
                run.status = DONE
            except CancelledError as exc:
                run.status, run.message, cancelled = CANCELLED, str(exc), True
            except Exception as exc:  # this input's failure: its outputs were rolled back, the others go on
                run.status, run.message = FAILED, str(exc) or type(exc).__name__
        scene = next((volume.GetScene() for volume in inputVolumes if volume.GetScene() is not None), slicer.mrmlScene)
        table = writeCohortTable(scene, runs, f"{segmenter.metadata.name} cohort organ volumes")
        return CohortOutputs(runs, table, cancelled)

    @staticmethod
    def _segmentInto(segmenter, inputVolume: slicer.vtkMRMLScalarVolumeNode, image: sitk.Image, started: float,
                     choice: OutputChoice, progress: Optional[ProgressCallback],
                     cancel: Optional[CancelCheck]) -> SegmentationOutputs:
        """Segment `image` (`inputVolume`'s) with a ready Segmenter and add its outputs as `choice` says."""
        claimOutput(choice, segmenter.metadata.class_names)
        result = segmenter(image, progress=progress, cancel=cancel)
        return writeOutputs(inputVolume, result, time.monotonic() - started, choice, progress)

    def startBackground(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, model: ModelChoice = None,
                        settings: Optional[InferenceSettings] = None,
                        outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None,
                        python: Optional[str] = None, *, overwriteEdited: bool = False,
                        saveMapsWithScene: bool = False) -> BackgroundSegmentation:
        """`process` in a separate process; drive it with `poll()`, end it with `cancel()`.

        The input, the model file and the output segmentation (`overwriteEdited`) are checked before the process
        starts, so those errors are raised here; editing the output segmentation during the run stops its commit
        (EditedSegmentationError, nothing added). `python` runs the worker (default: PythonSlicer inside Slicer,
        else this interpreter).
        """
        from AttentionUNetSegLib.models.registry import resolve_model_path

        image = self.inputImage(inputVolume)
        modelPath = resolve_model_path(model)
        metadata = self.modelMetadata(modelPath)  # a corrupt file fails here, before the process starts
        choice = OutputChoice(outputSegmentation, overwriteEdited, saveMapsWithScene)
        claimOutput(choice, metadata.class_names)
        return BackgroundSegmentation(
            inputVolume, image, str(modelPath), settings or InferenceSettings(),
            commit=lambda result, seconds: writeOutputs(inputVolume, result, seconds, choice),
            python=python, standby=self._takeWorker())

    def prepareWorker(self, model: ModelChoice = None, settings: Optional[InferenceSettings] = None,
                      python: Optional[str] = None, idleSeconds: float = IDLE_RELEASE_S,
                      prebuildOnGpu: bool = False) -> None:
        """Start a worker that loads the engine now, and reads `model` and builds its backend for these settings
        if they run on the CPU (on a GPU too with `prebuildOnGpu`: its backend then holds GPU memory while it
        waits), then waits for the next `startBackground` (which then does not wait for them; with other choices
        it still gains the engine's loading); nothing when one expecting the same is waiting already. It holds the
        engine's memory (a few hundred MB) until that run, `idleSeconds` without one, the scene's close or
        `releaseWorker()`."""
        from AttentionUNetSegLib.models.registry import resolve_model_path

        try:
            modelPath = str(resolve_model_path(model))
        except AttentionUNetSegError:  # the click will say what is wrong; the engine still loads meanwhile
            modelPath, settings = None, None
        else:
            settings = settings or InferenceSettings()
        standby = self._standby
        if standby is not None and standby.alive and standby.expects(python, modelPath, settings, prebuildOnGpu):
            return
        self.releaseWorker()
        self._standby = StandbyWorker(python, modelPath, settings, idleSeconds, prebuildOnGpu)
        scene = slicer.mrmlScene
        self._sceneClose = (scene, scene.AddObserver(scene.StartCloseEvent, lambda caller, event: self.releaseWorker()))

    def _takeWorker(self) -> Optional[StandbyWorker]:
        """The standby worker, for a run to hand its job to (or release): no longer this logic's to release."""
        standby, self._standby = self._standby, None
        self.releaseWorker()  # what is left: the scene's observation
        return standby

    def releaseWorker(self) -> None:
        """End the worker `prepareWorker` started, if it still waits."""
        if self._standby is not None:
            self._standby.release()
            self._standby = None
        if self._sceneClose is not None:
            scene, tag = self._sceneClose
            scene.RemoveObserver(tag)
            self._sceneClose = None

    # --- fine-tuning ------------------------------------------------------------------------------------------

    def fineTunePlan(self, pairs: Sequence[Pair], baseModel: ModelChoice = None, validation: Optional[Pair] = None,
                     ignoredSegments: Sequence[str] = ()) -> FineTunePlan:
        """Check (volume, segmentation) pairs for fine-tuning `baseModel` and match their segments to its classes;
        `plan.describe()` says what each segment becomes and what looks doubtful. Raises InputImageError naming
        a pair that cannot be used. Nothing is modified."""
        from .fine_tuning import planFineTune

        return planFineTune(pairs, self.modelMetadata(baseModel).classes, ignoredSegments, validation)

    def fineTune(self, pairs: Sequence[Pair], settings: FineTuneSettings, validation: Optional[Pair] = None,
                 ignoredSegments: Sequence[str] = (), progress: Optional[EventCallback] = None,
                 cancel: Optional[CancelCheck] = None) -> str:
        """Fine-tune `settings.base_model` (registry name, file, None: the default) on (volume, segmentation) pairs
        in this process (synchronous) and add the new model to the user's models as `settings.name`; returns that
        name. `settings`: AttentionUNetSegLib.training.fine_tuning.FineTuneSettings (name, base model, steps,
        time budget, device, learning rate, seed).

        Segments are matched to the model's classes (see fineTunePlan), classes the segmentations do not label
        are left out of the loss, and training runs for `settings.steps` optimizer steps or
        `settings.max_seconds`, whichever ends first. With a `validation` pair, Dice before and after is recorded
        in the model file's metrics.
        `progress(event)` gets AttentionUNetSegLib.progress.ProgressEvent objects (FineTuneStage); `cancel()` returning
        True stops it (CancelledError). Nothing is added on failure or cancel.
        """
        import tempfile

        from AttentionUNetSegLib.training.fine_tuning import fine_tune, register_fine_tuned

        plan, settings = self._prepareFineTune(pairs, settings, validation, ignoredSegments)
        self.releaseWorker()  # its memory (GPU memory too) is the training's now
        deleted = lambda: next((node for node in plan.watched if node.GetScene() is None), None)  # noqa: E731
        with tempfile.TemporaryDirectory(prefix="AttentionUNetSeg-finetune-") as work:
            try:
                result = fine_tune(plan.cases, settings, Path(work), plan.validationCase, progress,
                                   cancel=lambda: bool(deleted()) or (cancel is not None and cancel()))
            except CancelledError:
                if deleted() is not None:
                    raise InputImageError(f"'{deleted().GetName()}' was deleted during the fine-tuning; nothing was "
                                          "added.") from None
                raise
            return register_fine_tuned(result).name

    def startFineTune(self, pairs: Sequence[Pair], settings: FineTuneSettings, validation: Optional[Pair] = None,
                      ignoredSegments: Sequence[str] = (), python: Optional[str] = None) -> BackgroundRun:
        """`fineTune` in a worker process: drive it with `poll()` (progress events carry step, total_steps, loss
        and seconds_left while training), end it with `cancel()`; `result()` is the new model's name once it is
        registered. The pairs, the name and the user's model folder are checked before the process starts."""
        from AttentionUNetSegLib.worker import jobs as worker
        from AttentionUNetSegLib.training.fine_tuning import register_fine_tuned

        plan, settings = self._prepareFineTune(pairs, settings, validation, ignoredSegments)
        self.releaseWorker()  # its memory (GPU memory too) is the training's now
        return BackgroundRun(
            lambda folder: worker.write_fine_tune_job(folder, plan.cases, settings, plan.validationCase),
            lambda folder, seconds: register_fine_tuned(worker.read_fine_tune_result(folder)).name,
            plan.watched, "fine-tuning", FineTuneStage, python)

    def _prepareFineTune(self, pairs: Sequence[Pair], settings: FineTuneSettings, validation: Optional[Pair],
                         ignoredSegments: Sequence[str]) -> Tuple[FineTunePlan, FineTuneSettings]:
        """The checked plan (its matches and warnings logged) and the settings with the base model's file (for
        the worker), once the new model's name and folder are checked."""
        from AttentionUNetSegLib.models.registry import resolve_model_path
        from AttentionUNetSegLib.training.fine_tuning import new_model_file

        resolved = replace(settings, base_model=str(resolve_model_path(settings.base_model)))
        new_model_file(settings.name)
        plan = self.fineTunePlan(pairs, settings.base_model, validation, ignoredSegments)
        for line in plan.describe():
            logging.info("fine-tuning %s", line)
        return plan, resolved

    @staticmethod
    def inputImage(inputVolume: Optional[slicer.vtkMRMLScalarVolumeNode]) -> sitk.Image:
        """The validated input volume as a SimpleITK image in world coordinates (the node is not modified)."""
        validateInputVolume(inputVolume)
        return volumeNodeToImage(inputVolume)

    # --- models, devices, dependencies ------------------------------------------------------------------------

    @staticmethod
    def models() -> List:
        """The registry's models (RegistryEntry: name, file, sha256, description, default); reads the registry
        files only (no PyTorch)."""
        from AttentionUNetSegLib.models.registry import list_models

        return list_models()

    @staticmethod
    def modelMetadata(model: ModelChoice):
        """The metadata (name, description, classes, trained, licence...) of a registry name, a file or None (the
        default), read from the file's header (no PyTorch).

        Raises ModelFileError for a missing, corrupt or unregistered model.
        """
        from AttentionUNetSegLib.models.model_file import read_metadata
        from AttentionUNetSegLib.models.registry import resolve_model_path

        return read_metadata(resolve_model_path(model))

    @staticmethod
    def unmetDependencies() -> List[dependencies.UnmetRequirement]:
        """Requirements of the engine that are not installed or too old (empty when all are met)."""
        return dependencies.unmetRequirements()

    @staticmethod
    def unsupportedPlatform() -> Optional[str]:
        """Why the engine's packages cannot be installed on this platform (macOS), or None."""
        return dependencies.unsupportedPlatform()

    @staticmethod
    def installDependencies(unmet: Sequence[dependencies.UnmetRequirement]) -> installer.InstallResult:
        """Install or upgrade `unmet` requirements (PyTorch only through the PyTorch extension) and the optional
        packages (each on its own: a failure is reported in the result), Slicer's own packages pinned; see
        installer.py. Raises DependencyError, or RestartRequiredError for packages loaded already, before
        installing anything, and when an install fails or another one runs."""
        return installer.installRequirements(unmet)

    # --- outputs and their display ----------------------------------------------------------------------------

    @staticmethod
    def outputsOf(inputVolume: slicer.vtkMRMLNode, kind: Optional[str] = None) -> List[slicer.vtkMRMLNode]:
        """The output nodes this module made for `inputVolume`, all or of one kind (see outputs.py)."""
        return previousOutputs(inputVolume, kind)

    @staticmethod
    def inputOf(outputNode: slicer.vtkMRMLNode) -> Optional[slicer.vtkMRMLScalarVolumeNode]:
        """The input volume an output node was made from."""
        return outputNode.GetNodeReference(INPUT_ROLE)

    @staticmethod
    def editsAtRisk(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode], model: ModelChoice = None) -> List[str]:
        """The segments of `segmentationNode` that a run with `model` would replace and that may hold the user's
        edits (see edits.py): ask before passing `overwriteEdited=True`. Empty for None or a node with none."""
        if segmentationNode is None:
            return []
        return editsAtRisk(segmentationNode, AttentionUNetSegLogic.modelMetadata(model).class_names)

    @staticmethod
    def setMapsSavedWithScene(scene: slicer.vtkMRMLScene, save: bool) -> None:
        """Whether every attention and probability map of `scene` is saved with it (runs decide for theirs with
        `saveMapsWithScene`)."""
        saveWithScene(mapOutputs(scene), save)

    def showMap(self, mapVolume: slicer.vtkMRMLScalarVolumeNode, opacity: float = 0.5, threshold: float = 0.2,
                colorNode: Optional[slicer.vtkMRMLColorNode] = None) -> None:
        """Show an attention (or probability) map over its input in every slice view.

        Threshold and colour map are applied to all maps of the same input, so switching gates keeps them.
        """
        scene = mapVolume.GetScene()
        inputVolume = self.inputOf(mapVolume)
        siblings = [mapVolume] if inputVolume is None else [
            node for node in previousOutputs(inputVolume) if node.GetAttribute(OUTPUT_ATTRIBUTE) in MAPS]
        colorNode = colorNode or display.heatColorNode(scene)
        for node in siblings:
            display.configureMapDisplay(node, colorNode, threshold)
        display.showInSliceViews(scene, inputVolume, mapVolume, opacity)

    @staticmethod
    def hideMaps(scene: slicer.vtkMRMLScene) -> None:
        """Take this module's maps out of the slice views that show them (other foregrounds stay)."""
        display.hideInSliceViews(scene, mapOutputs(scene))

    def showAllGates(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, opacity: float = 0.5) -> bool:
        """One slice view per attention gate of `inputVolume`'s latest run that made them; False where there is no
        view layout."""
        gates = sorted(latestRunOutputs(inputVolume, ATTENTION), key=lambda node: node.GetAttribute(GATE_ATTRIBUTE))
        return display.showGatesSideBySide(inputVolume.GetScene(), inputVolume, gates, opacity)


def _checkCohort(inputVolumes: Sequence[Optional[slicer.vtkMRMLScalarVolumeNode]]) -> None:
    """Raise InputImageError for a cohort that cannot be run: no volumes, a missing one, or one given twice."""
    if len(inputVolumes) == 0:
        raise InputImageError("No input volumes were given: pass a list of the CT volume nodes to segment.")
    seen = set()
    for index, volume in enumerate(inputVolumes):
        if volume is None:
            raise InputImageError(f"Input volume {index + 1} of {len(inputVolumes)} is None: pass volume nodes only.")
        if volume in seen:
            raise InputImageError(f"The volume '{volume.GetName()}' is given more than once: "
                                  "list each input volume once.")
        seen.add(volume)


def _shareOfProgress(progress: Optional[ProgressCallback], index: int, count: int) -> Optional[ProgressCallback]:
    """A run's progress callback reporting the fraction of the cohort: run `index` of `count` has an equal share,
    split between its stages as their spans split a single run."""
    if progress is None:
        return None

    def report(stage: SegmentationStage, fraction: float) -> None:
        progress(stage, (index + stage.overall(fraction)) / count)

    return report
