"""AttentionUNetSegLogic: everything the module does, usable from the Python console and tests without a GUI.

It imports `slicer` and VTK but never Qt, so the same code runs inside Slicer and on a bare MRML
scene (the `slicer-core` package). The engine (AttentionUNetSegLib, which needs PyTorch) is
imported only when a run starts, so the module loads even before its dependencies are installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import SimpleITK as sitk

import slicer

from . import dependencies, display
from .background import BackgroundSegmentation
from .conversion import volumeNodeToImage
from .inputs import validateInputVolume
from .outputs import (ATTENTION, GATE_ATTRIBUTE, INPUT_ROLE, OUTPUT_ATTRIBUTE, PROBABILITY, SegmentationOutputs,
                      previousOutputs, writeOutputs)

Progress = Callable[[str, float], None]
Cancel = Callable[[], bool]
ModelChoice = Union[str, Path, None]

# Share of the progress bar for each stage reported by the engine, the worker and the output writer.
_STAGE_SPANS: Dict[str, Tuple[float, float]] = {
    "preparing": (0.0, 0.05), "inference": (0.05, 0.85), "resampling": (0.85, 0.9), "done": (0.9, 0.9),
    "saving": (0.9, 0.93), "outputs": (0.93, 1.0),
}


def overallProgress(stage: str, fraction: float) -> Optional[float]:
    """Progress of the whole run in [0, 1] for a stage's own fraction; None for an unknown stage."""
    if stage not in _STAGE_SPANS:
        return None
    start, end = _STAGE_SPANS[stage]
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


class AttentionUNetSegLogic:
    """Segment a CT volume node with an Attention U-Net and show its attention maps.

    Same contract as a ScriptedLoadableModuleLogic (which cannot be imported without Qt): the module's
    parameter node is a singleton vtkMRMLScriptedModuleNode tagged with the module name.
    """

    moduleName = "AttentionUNetSeg"

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
                outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None, attention: bool = True,
                probabilities: bool = False, device: str = "auto", progress: Optional[Progress] = None,
                cancel: Optional[Cancel] = None) -> SegmentationOutputs:
        """Segment `inputVolume` in this process and add the output nodes (synchronous).

        `model`: a registry name, a .safetensors path, a loaded model, or None for the registry's
        default. `progress(stage, fraction)` is called as the run advances; `cancel()` returning True
        stops it (CancelledError). On any error nothing is added to the scene.
        """
        from AttentionUNetSegLib.inference import segment

        image = self.inputImage(inputVolume)
        result = segment(image, model, device=device, attention=attention, probabilities=probabilities,
                         progress=progress, cancel=cancel)
        return writeOutputs(inputVolume, result, outputSegmentation, progress)

    def startBackground(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, model: ModelChoice = None,
                        outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None, attention: bool = True,
                        probabilities: bool = False, device: str = "auto") -> BackgroundSegmentation:
        """Start segmenting `inputVolume` in a separate process; drive it with `poll()`, end it with `cancel()`.

        The input and the model file are checked before the process starts, so those errors are raised here.
        """
        from AttentionUNetSegLib.registry import resolve_model_path

        image = self.inputImage(inputVolume)
        modelPath = resolve_model_path(model)
        self.modelMetadata(modelPath)  # a corrupt file fails here, before the process starts
        return BackgroundSegmentation(
            inputVolume, image, str(modelPath), device, attention, probabilities,
            commit=lambda result: writeOutputs(inputVolume, result, outputSegmentation))

    @staticmethod
    def inputImage(inputVolume: Optional[slicer.vtkMRMLScalarVolumeNode]) -> sitk.Image:
        """The validated input volume as a SimpleITK image in world coordinates (the node is not modified)."""
        validateInputVolume(inputVolume)
        return volumeNodeToImage(inputVolume)

    # --- models, devices, dependencies ------------------------------------------------------------------------

    @staticmethod
    def models() -> List:
        """The registry's models (RegistryEntry: name, file, sha256, description, default)."""
        from AttentionUNetSegLib.registry import list_models

        return list_models()

    @staticmethod
    def modelMetadata(model: ModelChoice):
        """The metadata (name, description, classes, trained...) of a registry name, a file or None (default).

        Raises ModelFileError for a missing, corrupt or unregistered model.
        """
        from AttentionUNetSegLib.model_file import read_metadata
        from AttentionUNetSegLib.registry import resolve_model_path

        return read_metadata(resolve_model_path(model))

    @staticmethod
    def deviceDescription() -> str:
        """What 'auto' will use, in words (imports PyTorch)."""
        from AttentionUNetSegLib.device import resolve_device

        device = resolve_device("auto")
        if device.type == "cuda":
            import torch

            return f"GPU: {torch.cuda.get_device_name(device)}"
        return "Apple GPU (MPS)" if device.type == "mps" else "CPU (PyTorch sees no GPU)"

    @staticmethod
    def missingDependencies() -> List[str]:
        """Requirements of the engine that are not installed (empty when all are)."""
        return dependencies.missingRequirements()

    @staticmethod
    def installDependencies(missing: Sequence[str]) -> None:
        """Install `missing` requirements (PyTorch through the PyTorch extension where present)."""
        dependencies.installRequirements(missing)

    # --- outputs and their display ----------------------------------------------------------------------------

    @staticmethod
    def outputsOf(inputVolume: slicer.vtkMRMLNode, kind: Optional[str] = None) -> List[slicer.vtkMRMLNode]:
        """The output nodes this module made for `inputVolume`, all or of one kind (see outputs.py)."""
        return previousOutputs(inputVolume, kind)

    @staticmethod
    def inputOf(outputNode: slicer.vtkMRMLNode) -> Optional[slicer.vtkMRMLScalarVolumeNode]:
        """The input volume an output node was made from."""
        return outputNode.GetNodeReference(INPUT_ROLE)

    def showMap(self, mapVolume: slicer.vtkMRMLScalarVolumeNode, opacity: float = 0.5, threshold: float = 0.2,
                colorNode: Optional[slicer.vtkMRMLColorNode] = None) -> None:
        """Show an attention (or probability) map over its input in every slice view.

        Threshold and colour map are applied to all maps of the same input, so switching gates keeps them.
        """
        scene = mapVolume.GetScene()
        inputVolume = self.inputOf(mapVolume)
        siblings = [mapVolume] if inputVolume is None else [
            node for node in previousOutputs(inputVolume)
            if node.GetAttribute(OUTPUT_ATTRIBUTE) in (ATTENTION, PROBABILITY)]
        colorNode = colorNode or display.heatColorNode(scene)
        for node in siblings:
            display.configureMapDisplay(node, colorNode, threshold)
        display.showInSliceViews(scene, inputVolume, mapVolume, opacity)

    def showAllGates(self, inputVolume: slicer.vtkMRMLScalarVolumeNode, opacity: float = 0.5) -> bool:
        """One slice view per attention gate of `inputVolume`'s latest run; False where there is no view layout."""
        gates = sorted(previousOutputs(inputVolume, ATTENTION), key=lambda node: node.GetAttribute(GATE_ATTRIBUTE))
        return display.showGatesSideBySide(inputVolume.GetScene(), inputVolume, gates, opacity)
