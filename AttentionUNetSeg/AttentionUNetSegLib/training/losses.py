"""The training loss: Sørensen-Dice over all classes (the paper), optionally plus cross-entropy.

Only the trained classes enter softmax and loss: when fine-tuning on data that labels fewer organs than
the model outputs (the paper's AFT), the other outputs are left out rather than taught as background.
The same holds per sample for a class its case does not label (a source without pancreas masks): with
partial_labels "exclude" it is left out of that sample's softmax, so that background must claim the unlabelled
organ; with "marginal" its probability is merged into background's (the marginal loss of Shi et al., "Marginal
loss and exclusion loss for partially supervised multi-organ segmentation", Medical Image Analysis 2021), so
that the organ may be found there without penalty. Either way it contributes nothing to that class's Dice
terms. Voxels labelled IGNORE_LABEL are left out of every term (MONAI's masked Dice; cross-entropy ignores them).
With deep supervision "per_scale" the loss is the mean over the final output and the four scale maps.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from monai.losses import DiceCELoss, DiceLoss, MaskedDiceLoss
from monai.networks.utils import one_hot
from torch import nn

from ..datasets.label_maps import IGNORE_LABEL

ModelOutput = Union[torch.Tensor, tuple]


class SegmentationLoss(nn.Module):
    """Loss of network outputs (logits, or (logits, scale logits)) against class-value labels (N, 1, z, y, x)."""

    def __init__(self, num_classes: int, trained_values: Sequence[int], kind: str = "dice",
                 partial_labels: str = "exclude") -> None:
        super().__init__()
        self.marginal = partial_labels == "marginal"
        settings = dict(include_background=True, to_onehot_y=True, softmax=True, batch=True)
        self.base = DiceCELoss(**settings) if kind == "dice_ce" else DiceLoss(**settings)
        self.masked_dice = MaskedDiceLoss(**{**settings, "to_onehot_y": False})  # masks a one-hot target
        self.with_cross_entropy = kind == "dice_ce"
        self.register_buffer("channels", torch.tensor(sorted(trained_values)), persistent=False)
        lookup = torch.zeros(num_classes, dtype=torch.long)
        lookup[self.channels] = torch.arange(len(self.channels))
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, outputs: ModelOutput, labels: torch.Tensor,
                labelled: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`labelled` (N, num_classes) booleans: the classes each sample's labels hold (default: all)."""
        maps: List[torch.Tensor] = [outputs[0], *outputs[1]] if isinstance(outputs, tuple) else [outputs]
        ignored = labels == IGNORE_LABEL
        ignoring = bool(ignored.any())
        target = self.lookup[labels.long().masked_fill(ignored, 0)]
        unlabelled = None
        if labelled is not None and not bool(labelled[:, self.channels].all()):
            unlabelled = ~labelled[:, self.channels].reshape(*labelled.shape[:1], -1, *(1,) * (labels.dim() - 2))
        losses = []
        for logits in maps:
            logits = logits.float().index_select(1, self.channels)
            if unlabelled is not None:
                logits = (merged_into_background(logits, unlabelled) if self.marginal
                          else logits.masked_fill(unlabelled, float("-inf")))  # probability and gradient exactly 0
            losses.append(self._masked(logits, target, ~ignored) if ignoring else self.base(logits, target))
        return torch.stack(losses).mean()

    def _masked(self, logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The loss over the voxels `keep` marks only (the target one-hot before masking: a masked class index
        would read as background)."""
        loss = self.masked_dice(logits, one_hot(target, logits.shape[1]), keep.to(logits.dtype))
        if self.with_cross_entropy:
            classes = target[:, 0].masked_fill(~keep[:, 0], -100)
            loss = loss + nn.functional.cross_entropy(logits, classes, ignore_index=-100)
        return loss


def merged_into_background(logits: torch.Tensor, unlabelled: torch.Tensor) -> torch.Tensor:
    """Log-probabilities whose softmax is the marginal one: per sample, the probabilities of its `unlabelled`
    classes (N, C, 1, ...) added to background's (channel 0), theirs then exactly 0."""
    log_p = torch.log_softmax(logits, 1)
    merged = unlabelled.clone()
    merged[:, 0] = True  # background and the unlabelled classes
    background = torch.logsumexp(log_p.masked_fill(~merged, float("-inf")), 1, keepdim=True)
    return torch.cat([background, log_p[:, 1:].masked_fill(unlabelled[:, 1:], float("-inf"))], 1)
