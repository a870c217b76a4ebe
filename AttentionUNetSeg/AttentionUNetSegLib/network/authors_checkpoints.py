"""Import checkpoints of the authors' released code (ozan-oktay/Attention-Gated-Networks).

Their `unet_CT_multi_att_dsv_3D` and `unet_CT_dsv_3D` state dicts map one-to-one onto
`AttentionUNet3D`; only the key names differ. Checkpoints are read with `weights_only=True`
(or as .safetensors), so importing never runs pickled code.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

from ..errors import ModelFileError
from .config import BASE_CHANNELS, ModelConfig

_ENCODER_NAMES = {"conv1": 0, "conv2": 1, "conv3": 2, "conv4": 3, "center": 4}

# (pattern on the authors' key, replacement builder) applied in order; the first match wins.
_RULES: List[Tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^(conv[1-4]|center)\.conv([12])\.(.*)$"),
     lambda m: f"encoder.{_ENCODER_NAMES[m[1]]}.{int(m[2]) - 1}.{m[3]}"),
    (re.compile(r"^gating\.conv1\.(.*)$"), lambda m: f"gating.{m[1]}"),
    (re.compile(r"^attentionblock([2-4])\.gate_block_(\d+)\.(.*)$"),
     lambda m: f"attention.{m[1]}.gates.{int(m[2]) - 1}.{m[3]}"),
    (re.compile(r"^attentionblock([2-4])\.combine_gates\.(.*)$"), lambda m: f"attention.{m[1]}.combine.{m[2]}"),
    (re.compile(r"^up_concat([1-4])\.conv\.conv([12])\.(.*)$"),
     lambda m: f"decoder.{int(m[1]) - 1}.conv.{int(m[2]) - 1}.{m[3]}"),
    (re.compile(r"^dsv([2-4])\.dsv\.0\.(.*)$"), lambda m: f"heads.{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^dsv1\.(.*)$"), lambda m: f"heads.0.{m[1]}"),
    (re.compile(r"^final\.(.*)$"), lambda m: f"final.{m[1]}"),
]


def map_authors_key(key: str) -> str:
    """Our parameter name for one of the authors' state-dict keys."""
    for pattern, build in _RULES:
        match = pattern.match(key)
        if match:
            return build(match)
    raise ModelFileError(f"unexpected key {key!r}: not a key of unet_CT_multi_att_dsv_3D or unet_CT_dsv_3D")


def read_authors_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Read a checkpoint (.safetensors, or a torch file holding a state dict, possibly under 'state_dict')."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # both readers raise assorted types on corrupt files
        raise ModelFileError(f"cannot read checkpoint {path}: {exc}") from exc
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_authors_state_dict(state: Dict[str, torch.Tensor]) -> Tuple[ModelConfig, Dict[str, torch.Tensor]]:
    """Infer our ModelConfig from the authors' tensors and rename them to our keys."""
    required = ["conv1.conv1.0.weight", "center.conv1.0.weight", "final.weight"]
    missing = [k for k in required if k not in state]
    if missing:
        raise ModelFileError(f"not an authors' CT U-Net checkpoint: keys {missing} are missing")
    channels = [int(state[f"{name}.conv1.0.weight"].shape[0]) for name in _ENCODER_NAMES]
    has_attention = "gating.conv1.0.weight" in state
    gates = len({k.split(".")[1] for k in state if k.startswith("attentionblock2.gate_block_")})
    sub_sample = list(state["attentionblock2.gate_block_1.theta.weight"].shape[2:]) if has_attention else [2, 2, 2]
    feature_scale = BASE_CHANNELS[0] // channels[0]
    standard = [c // feature_scale for c in BASE_CHANNELS] == channels
    config = ModelConfig(
        architecture="attention_unet_3d" if has_attention else "unet_3d",
        in_channels=int(state["conv1.conv1.0.weight"].shape[1]),
        num_classes=int(state["final.weight"].shape[0]),
        feature_scale=feature_scale if standard else 1,
        channels=None if standard else channels,
        gates_per_level=max(gates, 1),
        gate_sub_sample=sub_sample,
        deep_supervision="final",
        passthrough_gate_init=False,
    )
    return config, {map_authors_key(k): v for k, v in state.items()}
