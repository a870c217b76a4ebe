"""Side-by-side speed and memory of our networks and MONAI's AttentionUnet (and the authors', if given).

Every configuration runs in this one process, interleaved repeat by repeat, so machine noise hits all
alike; results are medians after warm-up, reported with ratios against the fastest peer. `progress`
hears of every slow step: building and converting networks, and each configuration in each round.
"""
from __future__ import annotations

import copy
import importlib
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..errors import InvalidOptionError
from ..network.attention_unet import AttentionUNet3D, ModelConfig
from ..network.batchnorm_folding import prepare_for_inference
from .device import autocast, resolve_precision

PEER_CHANNELS = (16, 32, 64, 128, 256)
Progress = Callable[[str], None]


@dataclass
class Candidate:
    """One network in one configuration; `ours` tells which side of the ratio it is on. `infer`, if set,
    runs the forward instead of `model` (another backend, e.g. OpenVINO). `reference`: the network as defined,
    whose fp32 forward a fast configuration of ours must reproduce (None for the reference itself and peers).
    `compiled`: under torch.compile, which compiles on the first run."""

    name: str
    model: nn.Module
    dtype: torch.dtype
    channels_last: bool
    ours: bool
    attention_output: bool = False
    infer: Optional[Callable[[torch.Tensor], object]] = None
    reference: Optional[nn.Module] = None
    compiled: bool = False


@dataclass
class Measurement:
    task: str
    name: str
    ours: bool
    precision: str
    median_ms: float
    peak_memory_mib: Optional[float] = None
    speedup_vs_best_peer: Optional[float] = None
    max_deviation: Optional[float] = None
    """Largest |logit - reference logit| over the input, as a fraction of the reference's logit range."""


def monai_attention_unet(num_classes: int) -> nn.Module:
    """MONAI's AttentionUnet with the same channels as the paper's network (16-256)."""
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims=3, in_channels=1, out_channels=num_classes, channels=PEER_CHANNELS,
                         strides=(2, 2, 2, 2))


def authors_attention_unet(path: Path, num_classes: int) -> nn.Module:
    """The authors' unet_CT_multi_att_dsv_3D imported from a local clone of their repository."""
    sys.path.insert(0, str(path))
    module = importlib.import_module("models.networks.unet_CT_multi_att_dsv_3D")
    return module.unet_CT_multi_att_dsv_3D(feature_scale=4, n_classes=num_classes, in_channels=1)


def _peers(num_classes: int, authors_path: Optional[Path], progress: Progress) -> Dict[str, nn.Module]:
    progress("building MONAI AttentionUnet")
    peers = {"MONAI AttentionUnet": monai_attention_unet(num_classes)}
    if authors_path is not None:
        progress(f"importing the authors' Attention U-Net from {authors_path}")
        peers["authors' Attention U-Net"] = authors_attention_unet(authors_path, num_classes)
    return peers


def forward_candidates(device: torch.device, num_classes: int, authors_path: Optional[Path],
                       progress: Progress = lambda message: None) -> List[Candidate]:
    """Ours as defined (fp32) and in its fastest correct configurations (PyTorch; OpenVINO on the CPU, where
    `segment` uses it); each peer in fp32 and at its best in PyTorch, and through OpenVINO on the CPU too."""
    fast = resolve_precision("auto", device)
    progress("forward: building our Attention U-Net and U-Net, as defined and folded for inference")
    ours = AttentionUNet3D(ModelConfig(num_classes=num_classes, feature_scale=4)).eval().to(device)
    unet = AttentionUNet3D(ModelConfig(architecture="unet_3d", num_classes=num_classes, feature_scale=4)).eval()
    found = [
        Candidate("ours Attention U-Net, as defined", ours, torch.float32, False, True),
        Candidate("ours Attention U-Net, PyTorch fast path + attention maps", prepare_for_inference(ours, device),
                  fast, True, True, attention_output=True, reference=ours),
        Candidate("ours Attention U-Net, PyTorch fast path", prepare_for_inference(ours, device), fast, True, True,
                  reference=ours),
        Candidate("ours U-Net, PyTorch fast path", prepare_for_inference(unet, device), fast, True, True,
                  reference=unet),
    ]
    if _openvino_runs(device):
        from .openvino import OpenVINOBackend

        for name, model in (("Attention U-Net", ours), ("U-Net", unet)):
            progress(f"forward: converting ours {name} to OpenVINO ({_name(fast)})")
            backend = OpenVINOBackend(model, fast)
            found.append(Candidate(f"ours {name}, OpenVINO + attention maps", model, fast, False, True,
                                   infer=lambda x, backend=backend: backend(x, attention=True), reference=model))
        progress("forward: converting ours Attention U-Net to OpenVINO (float32)")
        found.append(Candidate("ours Attention U-Net, OpenVINO, float32", ours, torch.float32, False, True,
                               infer=lambda x, backend=OpenVINOBackend(ours, torch.float32): backend(x, True),
                               reference=ours))
    return found + _peer_candidates(device, num_classes, authors_path, train=False, progress=progress)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILED_NETWORKS = ("ours Attention U-Net", "MONAI AttentionUnet", "authors' Attention U-Net")


def with_compiled(found: List[Candidate], mode: str) -> List[Candidate]:
    """`found` plus torch.compile(mode) of each network's fastest PyTorch configuration (ours: the fast path
    without attention outputs; peers: channels-last at reduced precision, or fp32 where that is all there is).
    Compilation happens in the warm-up rounds ("reduce-overhead" also captures CUDA graphs)."""
    compiled = []
    for network_name in COMPILED_NETWORKS:
        eager = [c for c in found if c.name.startswith(network_name) and c.infer is None and not c.attention_output]
        if eager:
            best = max(eager, key=lambda c: (c.dtype != torch.float32, c.channels_last))
            compiled.append(Candidate(f"{best.name}, torch.compile {mode}", torch.compile(best.model, mode=mode),
                                      best.dtype, best.channels_last, best.ours, reference=best.reference,
                                      compiled=True))
    return found + compiled


def _openvino_runs(device: torch.device) -> bool:
    from .selection import openvino_installed

    return device.type == "cpu" and openvino_installed()


def _openvino_module(module: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], object]:
    """A peer's network converted to OpenVINO as it is (no folding: that is our optimisation)."""
    from .openvino import compile_request, convert

    request = compile_request(convert(module.eval(), 1), dtype)
    return lambda x: request.infer({0: x.numpy()})


def train_candidates(device: torch.device, num_classes: int, authors_path: Optional[Path],
                     progress: Progress = lambda message: None) -> List[Candidate]:
    """Training needs the unfolded networks: each side in fp32 and with channels-last mixed precision."""
    fast = resolve_precision("auto", device)
    progress("train step: building our Attention U-Net")
    ours = AttentionUNet3D(ModelConfig(num_classes=num_classes, feature_scale=4)).to(device)
    found = [Candidate("ours Attention U-Net, fp32", ours, torch.float32, False, True)]
    if fast != torch.float32:
        found.append(Candidate(f"ours Attention U-Net, channels-last {_name(fast)}",
                               copy.deepcopy(ours).to(memory_format=torch.channels_last_3d), fast, True, True))
    return found + _peer_candidates(device, num_classes, authors_path, train=True, progress=progress)


def _peer_candidates(device: torch.device, num_classes: int, authors_path: Optional[Path], train: bool,
                     progress: Progress) -> List[Candidate]:
    fast = resolve_precision("auto", device)
    found = []
    task = "train step" if train else "forward"
    for name, peer in _peers(num_classes, authors_path, lambda message: progress(f"{task}: {message}")).items():
        peer = peer.train(train).to(device)
        found.append(Candidate(f"{name}, fp32", peer, torch.float32, False, False))
        if fast != torch.float32:
            found.append(Candidate(f"{name}, channels-last {_name(fast)}",
                                   copy.deepcopy(peer).to(memory_format=torch.channels_last_3d), fast, True, False))
        if not train and _openvino_runs(device):
            progress(f"forward: converting {name} to OpenVINO ({_name(fast)})")
            found.append(Candidate(f"{name}, OpenVINO", peer, fast, False, False, infer=_openvino_module(peer, fast)))
    return found


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _layout(candidate: Candidate, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last_3d) if candidate.channels_last else x.contiguous()


def _forward_step(candidate: Candidate, x: torch.Tensor, device: torch.device) -> Callable[[], object]:
    """The candidate's forward on `x`, returning its output (a tensor, or logits first in a tuple)."""
    x = _layout(candidate, x)
    if candidate.infer is not None:
        return lambda: candidate.infer(x)

    def run() -> object:
        with torch.inference_mode(), autocast(device, candidate.dtype):
            return candidate.model(x, return_attention=True) if candidate.attention_output else candidate.model(x)
    return run


def deviations(found: List[Candidate], x: torch.Tensor, device: torch.device) -> Dict[str, float]:
    """For each candidate with a reference: its largest logit difference from the reference's fp32 forward on
    `x`, as a fraction of the reference's logit range (what the tolerance tests bound on the CPU)."""
    references: Dict[int, torch.Tensor] = {}
    found_deviations = {}
    for candidate in (c for c in found if c.reference is not None):
        if id(candidate.reference) not in references:
            with torch.inference_mode():
                references[id(candidate.reference)] = candidate.reference(x).float()
        reference = references[id(candidate.reference)]
        output = _forward_step(candidate, x, device)()
        logits = output[0] if isinstance(output, (tuple, list)) else output
        difference = (logits.to(device).float() - reference).abs().max()
        found_deviations[candidate.name] = float(difference / (reference.max() - reference.min()))
    return found_deviations


def _train_step(candidate: Candidate, x: torch.Tensor, num_classes: int, device: torch.device) -> Callable[[], None]:
    """One training step: forward, soft Dice loss over all classes, backward, Adam."""
    from monai.losses import DiceLoss

    optimiser = torch.optim.Adam(candidate.model.parameters(), lr=1e-4)
    loss_fn = DiceLoss(softmax=True, to_onehot_y=True)
    x = _layout(candidate, x)
    target = torch.randint(0, num_classes, (x.shape[0], 1, *x.shape[2:]), device=device)

    def run() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device, candidate.dtype):
            loss = loss_fn(candidate.model(x).float(), target)
        loss.backward()
        optimiser.step()
    return run


def _elapsed_ms(run: Callable[[], object], device: torch.device) -> float:
    _synchronise(device)
    start = time.perf_counter()
    run()
    _synchronise(device)
    return (time.perf_counter() - start) * 1000


def _peak_memory_mib(run: Callable[[], object], device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    run()
    _synchronise(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _measure(task: str, steps: Dict[str, Callable[[], object]], found: List[Candidate], device: torch.device,
             repeats: int, warmup: int, progress: Progress) -> List[Measurement]:
    """Interleave the steps repeat by repeat; medians after warm-up and speed-ups against the best peer."""
    times: Dict[str, List[float]] = {c.name: [] for c in found}
    for repeat in range(warmup + repeats):
        phase = "warm-up" if repeat < warmup else "timed"
        for candidate in found:
            compiling = " (compiling)" if candidate.compiled and repeat == 0 else ""
            progress(f"{task}, {phase} round {repeat + 1}/{warmup + repeats}: {candidate.name}{compiling}")
            elapsed = _elapsed_ms(steps[candidate.name], device)
            if repeat >= warmup:
                times[candidate.name].append(elapsed)
    if device.type == "cuda":
        progress(f"{task}: peak GPU memory of each configuration")
    results = [Measurement(task, c.name, c.ours, _name(c.dtype), statistics.median(times[c.name]),
                           _peak_memory_mib(steps[c.name], device)) for c in found]
    best_peer = min(m.median_ms for m in results if not m.ours)
    for m in results:
        m.speedup_vs_best_peer = best_peer / m.median_ms
    return results


def run_benchmark(device: torch.device, shape: Sequence[int] = (1, 1, 160, 160, 96), num_classes: int = 4,
                  repeats: int = 5, warmup: int = 1, train_batch: int = 0, authors_path: Optional[Path] = None,
                  compile_mode: Optional[str] = None, progress: Progress = lambda message: None) -> List[Measurement]:
    """Forward latency (and, with train_batch > 0, training-step time) of every candidate; with `compile_mode`
    (one of COMPILE_MODES) also of each network's best configuration under torch.compile (`with_compiled`)."""
    if warmup < 1 or repeats < 1:
        raise InvalidOptionError(f"warmup and repeats must each be at least 1, not {warmup} and {repeats}: the "
                                 "first runs (compiling, allocating, cuDNN's search) are not timed")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    extend = (lambda found: with_compiled(found, compile_mode)) if compile_mode else (lambda found: found)
    x = torch.randn(*shape, device=device)
    found = extend(forward_candidates(device, num_classes, authors_path, progress))
    results = _measure("forward", {c.name: _forward_step(c, x, device) for c in found}, found, device, repeats,
                       warmup, progress)
    progress("forward: checking our fast configurations against the reference forward")
    found_deviations = deviations(found, x, device)
    for m in results:
        m.max_deviation = found_deviations.get(m.name)
    if train_batch:
        batch = torch.randn(train_batch, *shape[1:], device=device)
        found = extend(train_candidates(device, num_classes, authors_path, progress))
        results += _measure(f"train step (batch {train_batch})",
                            {c.name: _train_step(c, batch, num_classes, device) for c in found}, found, device,
                            repeats, warmup, progress)
    return results


def to_markdown(results: List[Measurement], device: str, shape: Sequence[int]) -> str:
    """One table per task: median time, speed-up over the fastest peer, peak GPU memory, and for our fast
    configurations the largest deviation from the reference forward."""
    lines = [f"device: {device}; input {'x'.join(map(str, shape))}; medians after warm-up; deviation: largest "
             "|logit - reference logit| as a fraction of the reference's logit range"]
    for task in dict.fromkeys(m.task for m in results):
        lines += ["", f"**{task}**", "", "| network, configuration | precision | median ms | speed-up vs best peer "
                  "| peak MiB | deviation |", "|---|---|---|---|---|---|"]
        for m in (m for m in results if m.task == task):
            memory = f"{m.peak_memory_mib:.0f}" if m.peak_memory_mib is not None else "-"
            deviation = f"{m.max_deviation:.1e}" if m.max_deviation is not None else "-"
            lines.append(f"| {m.name} | {m.precision} | {m.median_ms:.1f} | {m.speedup_vs_best_peer:.2f}x | {memory} "
                         f"| {deviation} |")
    return "\n".join(lines)


def as_dicts(results: List[Measurement]) -> List[dict]:
    return [asdict(m) for m in results]
