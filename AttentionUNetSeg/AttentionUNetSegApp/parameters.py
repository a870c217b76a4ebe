"""The panel's choices, saved with the scene (a parameter node wrapper around the logic's parameter node)."""
from typing import Annotated

from slicer import vtkMRMLColorNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from AttentionUNetSegLib.backends.choices import DEVICE_CHOICES
from AttentionUNetSegLib.inference.settings import InferenceSettings


@parameterNodeWrapper
class AttentionUNetSegParameterNode:
    """model: registry name or .safetensors path ("" = the registry's default model).
    saveMapsWithScene: whether the maps (of every run in the scene) are saved with it.
    attentionVolume: the attention gate shown in the slice views (None: none).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    computeAttention: bool = True
    computeProbabilities: bool = False
    saveMapsWithScene: bool = False
    attentionVolume: vtkMRMLScalarVolumeNode
    attentionOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    attentionThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    attentionColorMap: vtkMRMLColorNode

    def inferenceSettings(self) -> InferenceSettings:
        """The engine's settings for these choices; the same for a run in the worker and one it is made ready for."""
        return InferenceSettings(device=self.device, attention=self.computeAttention,
                                 probabilities=self.computeProbabilities)
