"""The 3D Attention U-Net of Oktay et al. 2018 and its plain U-Net baseline.

Built as the authors' released code builds `unet_CT_multi_att_dsv_3D` and `unet_CT_dsv_3D`
(ozan-oktay/Attention-Gated-Networks): five encoder levels of two [conv3 -> BN -> ReLU], 2x max-pool,
a 1x1x1 gating signal on the bottleneck, grid attention gates on skips 2-4 (two per level, merged by a
1x1x1 conv), trilinear x2 decoder, and deep-supervision heads whose upsampled outputs are concatenated
and fused by a final 1x1x1 conv. All resampling is trilinear with align_corners=False, as theirs.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

GATED_LEVELS = (2, 3, 4)


class ConvBnReLU(nn.Sequential):
    """Convolution -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3x3 ConvBnReLU: one encoder or decoder level."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBnReLU(in_channels, out_channels), ConvBnReLU(out_channels, out_channels))


class GridAttentionGate(nn.Module):
    """Additive grid attention: alpha = sigmoid(psi(ReLU(theta(x) + phi(g)))), output W(alpha * x).

    theta is a strided conv (no bias) that brings x to the gating grid; phi(g) is resampled to
    theta's grid; alpha is upsampled back to x's grid.
    """

    def __init__(self, in_channels: int, gating_channels: int, inter_channels: int,
                 sub_sample: Tuple[int, ...]) -> None:
        super().__init__()
        self.theta = nn.Conv3d(in_channels, inter_channels, kernel_size=sub_sample, stride=sub_sample, bias=False)
        self.phi = nn.Conv3d(gating_channels, inter_channels, kernel_size=1)
        self.psi = nn.Conv3d(inter_channels, 1, kernel_size=1)
        self.W = nn.Sequential(nn.Conv3d(in_channels, in_channels, kernel_size=1), nn.BatchNorm3d(in_channels))

    def init_passthrough(self, alpha: float = 0.95) -> None:
        """Start with alpha ~= `alpha` everywhere (the paper's initialisation), psi still trainable."""
        nn.init.zeros_(self.psi.weight)
        nn.init.constant_(self.psi.bias, float(torch.logit(torch.tensor(alpha))))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        theta_x = self.theta(x)
        phi_g = F.interpolate(self.phi(g), size=theta_x.shape[2:], mode="trilinear")
        alpha = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        alpha = F.interpolate(alpha, size=x.shape[2:], mode="trilinear")
        return self.W(alpha * x), alpha


class MultiAttentionGate(nn.Module):
    """Several attention gates on one skip; their outputs are merged by 1x1x1 conv+BN+ReLU."""

    def __init__(self, in_channels: int, gating_channels: int, num_gates: int, sub_sample: Tuple[int, ...]) -> None:
        super().__init__()
        self.gates = nn.ModuleList(
            GridAttentionGate(in_channels, gating_channels, in_channels, sub_sample) for _ in range(num_gates)
        )
        self.combine = ConvBnReLU(in_channels * num_gates, in_channels, kernel_size=1) if num_gates > 1 else None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        outputs, alphas = zip(*(gate(x, g) for gate in self.gates))
        gated = self.combine(torch.cat(outputs, dim=1)) if self.combine is not None else outputs[0]
        return gated, list(alphas)


class UpBlock(nn.Module):
    """Trilinear x2 upsampling of the coarser map, concatenated after the skip, then DoubleConv."""

    def __init__(self, coarse_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(skip_channels + coarse_channels, skip_channels)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(coarse, scale_factor=2.0, mode="trilinear")
        return self.conv(torch.cat([skip, upsampled], dim=1))


class AttentionUNet3D(nn.Module):
    """3D (Attention) U-Net with deep supervision; `config.architecture` chooses gates on or off.

    `model(x)` returns logits (N, classes, D, H, W); `return_attention=True` adds a dict of every
    gate's coefficients named `att{level}_gate{k}`, each (N, 1) on its skip's grid;
    `return_scale_logits=True` adds the four deep-supervision maps (full size, finest first).
    Spatial sizes must be divisible by 16.
    """

    def __init__(self, config: Optional[ModelConfig] = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config.channels
        n = self.config.num_classes
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out) for c_in, c_out in zip([self.config.in_channels] + c[:-1], c)
        )
        if self.config.has_attention:
            sub_sample = tuple(self.config.gate_sub_sample)
            self.gating = ConvBnReLU(c[4], c[4], kernel_size=1)
            self.attention = nn.ModuleDict(
                {
                    str(level): MultiAttentionGate(c[level - 1], c[level], self.config.gates_per_level, sub_sample)
                    for level in GATED_LEVELS
                }
            )
        # decoder[i] produces decoder level i+1 (finest first) from level i+2's output
        self.decoder = nn.ModuleList(UpBlock(c[i + 1], c[i]) for i in range(4))
        self.heads = nn.ModuleList(nn.Conv3d(c[i], n, kernel_size=1) for i in range(4))
        self.final = nn.Conv3d(4 * n, n, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
        if self.config.has_attention and self.config.passthrough_gate_init:
            for module in self.modules():
                if isinstance(module, GridAttentionGate):
                    module.init_passthrough()

    @property
    def gate_names(self) -> List[str]:
        """Names of the attention maps, coarsest level first, as `return_attention` yields them."""
        if not self.config.has_attention:
            return []
        return [f"att{level}_gate{k + 1}"
                for level in reversed(GATED_LEVELS) for k in range(self.config.gates_per_level)]

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, return_scale_logits: bool = False
    ) -> Union[torch.Tensor, Tuple]:
        skips: List[torch.Tensor] = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else F.max_pool3d(skips[-1], kernel_size=2))
            skips.append(x)
        coarse = skips[4]
        gating = self.gating(coarse) if self.config.has_attention else None
        attention: Dict[str, torch.Tensor] = {}
        decoded: List[torch.Tensor] = []
        for level in (4, 3, 2, 1):  # level numbers as in the paper; skips[level - 1]
            skip = skips[level - 1]
            if self.config.has_attention and level in GATED_LEVELS:
                signal = gating if level == 4 else decoded[-1]
                skip, alphas = self.attention[str(level)](skip, signal)
                for k, alpha in enumerate(alphas):
                    attention[f"att{level}_gate{k + 1}"] = alpha
            coarse = self.decoder[level - 1](skip, coarse)
            decoded.append(coarse)
        full_size = decoded[-1].shape[2:]
        scale_logits = [self.heads[0](decoded[3])] + [
            F.interpolate(self.heads[i](decoded[3 - i]), size=full_size, mode="trilinear") for i in range(1, 4)
        ]
        logits = self.final(torch.cat(scale_logits, dim=1))
        outputs: Tuple = (logits,)
        if return_attention:
            outputs += (attention,)
        if return_scale_logits:
            outputs += (scale_logits,)
        return outputs[0] if len(outputs) == 1 else outputs


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
