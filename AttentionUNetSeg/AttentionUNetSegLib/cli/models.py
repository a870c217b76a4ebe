"""`attention-unet models list|info|import-authors`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

from ..authors import convert_authors_state_dict, read_authors_state_dict
from ..bundle import IntensityNormalisation, ModelMetadata, read_metadata, save_model
from ..classes import make_classes
from ..errors import InvalidOptionError
from ..model import AttentionUNet3D, ModelConfig, count_parameters
from ..registry import list_models, resolve_model_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, inspect and import models",
                                   description="Manage model files and the model registry.")
    commands = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="list registered models")
    listing.set_defaults(handler=_list)

    info = commands.add_parser("info", help="show a model's metadata")
    info.add_argument("model", nargs="?", default=None, help="registry name or .safetensors file (default model)")
    info.add_argument("--json", action="store_true", help="print the metadata as JSON")
    info.set_defaults(handler=_info)

    convert = commands.add_parser(
        "import-authors",
        help="convert a checkpoint of the authors' code into a model file",
        description="Convert a state dict of ozan-oktay/Attention-Gated-Networks' unet_CT_multi_att_dsv_3D or "
        "unet_CT_dsv_3D (.pth/.pt read with weights_only, or .safetensors) into a model file.",
    )
    convert.add_argument("checkpoint", type=Path, help="the authors' checkpoint")
    convert.add_argument("-o", "--output", type=Path, required=True, help="model file to write (.safetensors)")
    convert.add_argument("--name", default=None, help="model name (default: the output file's stem)")
    convert.add_argument("--classes", default=None,
                         help="comma-separated class names, background first (default: background,class1,...)")
    convert.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("X", "Y", "Z"),
                         help="voxel spacing in mm the model was trained at (default: 1 1 1)")
    convert.add_argument("--patch-size", type=int, nargs=3, default=(160, 160, 96), metavar=("X", "Y", "Z"),
                         help="sliding-window size in voxels, multiples of 16 (default: the paper's 160 160 96)")
    convert.add_argument("--intensity", type=float, nargs=4, default=(-1000.0, 1000.0, 0.0, 1000.0),
                         metavar=("CLIP_MIN", "CLIP_MAX", "MEAN", "STD"),
                         help="HU clip window and standardisation used in training (default: -1000 1000 0 1000)")
    convert.set_defaults(handler=_import_authors)


def _list(args: argparse.Namespace) -> int:
    for entry in list_models():
        marker = "*" if entry.default else " "
        print(f"{marker} {entry.name:<28} {entry.file.name:<40} {entry.sha256[:12]}  {entry.description}")
    return 0


def _info(args: argparse.Namespace) -> int:
    path = resolve_model_path(args.model)
    metadata = read_metadata(path)
    if args.json:
        print(json.dumps(json.loads(metadata.to_json()), indent=2))
        return 0
    config = metadata.architecture
    print(f"name:          {metadata.name}{'' if metadata.trained else '  (UNTRAINED)'}")
    print(f"file:          {path}")
    print(f"description:   {metadata.description}")
    print(f"architecture:  {config.architecture}, channels {config.channels}, "
          f"{count_parameters(AttentionUNet3D(config)):,} parameters")
    print(f"classes:       {', '.join(f'{c.value}={c.name}' for c in metadata.classes)}")
    print(f"spacing (mm):  {metadata.spacing_mm}   patch (voxels): {metadata.patch_size}")
    intensity = metadata.intensity
    print(f"intensity:     clip [{intensity.clip_min:g}, {intensity.clip_max:g}] HU, "
          f"(x - {intensity.mean:g}) / {intensity.std:g}")
    print(f"license:       {metadata.license or 'not stated'}")
    return 0


def _import_authors(args: argparse.Namespace) -> int:
    config, state = convert_authors_state_dict(read_authors_state_dict(args.checkpoint))
    names = args.classes.split(",") if args.classes else ["background"] + [
        f"class{i}" for i in range(1, config.num_classes)]
    if len(names) != config.num_classes:
        raise InvalidOptionError(f"--classes names {len(names)} classes but the checkpoint has {config.num_classes}")
    model = AttentionUNet3D(config)
    model.load_state_dict(state)
    try:
        metadata = _authors_metadata(args, config, names)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from exc
    save_model(model, metadata, args.output)
    print(f"wrote {args.output} ({config.architecture}, {count_parameters(model):,} parameters)")
    return 0


def _authors_metadata(args: argparse.Namespace, config: ModelConfig, names: List[str]) -> ModelMetadata:
    return ModelMetadata(
        name=args.name or args.output.stem,
        description=f"imported from the authors' checkpoint {args.checkpoint.name}",
        architecture=config,
        classes=make_classes(names),
        spacing_mm=tuple(args.spacing),
        patch_size=tuple(args.patch_size),
        intensity=IntensityNormalisation(*args.intensity),
        provenance={"source": "ozan-oktay/Attention-Gated-Networks checkpoint", "checkpoint": args.checkpoint.name},
    )
