"""`attention-unet models list|info|add|download|remove|verify|cache|export|import-authors`."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

from ..backends.openvino import CacheEntry, cache_entries, cache_root, remove_cache_entries
from ..errors import InvalidOptionError
from ..models.background_offset import PROVENANCE_KEY, lower_background_logit
from ..models.intensity import IntensityNormalisation
from ..models.model_file import ModelMetadata, file_sha256, read_metadata, read_model, save_model
from ..models.registry import RegistryEntry, list_models, resolve_model_path, verify_models
from ..models.segment_classes import make_classes
from ..models.user_folders import user_registry
from ..models.user_registry import add_file, add_url, download_model, remove_model
from ..network.attention_unet import AttentionUNet3D, ModelConfig, count_parameters
from ..network.authors_checkpoints import convert_authors_state_dict, read_authors_state_dict
from .option_types import multiple_of_16, positive_number, whole_number
from .progress import DownloadBar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, inspect and import models",
                                   description="Manage model files and the model registry.")
    commands = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="list registered models",
                                  description="List the bundled and the user's models (* marks the default).")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    listing.set_defaults(handler=_list)

    add = commands.add_parser(
        "add", help="register a model file or an https download",
        description="Register a model under NAME in the user's registry. --file records a local model file and "
        "its sha256; --url downloads the file over https into the per-user cache, verifies it against --sha256 "
        "and only then records it. The model's metadata (classes, spacing...) is checked first.")
    add.add_argument("name", help="the model's name (letters, digits, '-', '_', '.')")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a local .safetensors model file")
    source.add_argument("--url", help="an https URL of a .safetensors model file")
    add.add_argument("--sha256", help="the file's sha256 (required with --url)")
    add.add_argument("--description", default="", help="one line about the model (default: the file's own)")
    add.add_argument("--quiet", action="store_true", help="no download progress bar")
    add.set_defaults(handler=_add)

    fetch = commands.add_parser("download", help="(re-)download a registered URL model into the cache",
                                description="Download a model registered with --url again, e.g. after the cache "
                                "was cleared; a verified file already in the cache is kept.")
    fetch.add_argument("name", help="registered model name")
    fetch.add_argument("--quiet", action="store_true", help="no download progress bar")
    fetch.set_defaults(handler=_download)

    remove = commands.add_parser("remove", help="remove a user-registered model",
                                 description="Remove a model from the user's registry, and its downloaded file and "
                                 "converted OpenVINO model from the cache (kept while another registered model "
                                 "has the same sha256); a --file model's own file is left where it is.")
    remove.add_argument("name", help="registered model name")
    remove.set_defaults(handler=_remove)

    verify = commands.add_parser("verify", help="check models' files, checksums and metadata",
                                 description="Check that each model's file is present, matches its registered "
                                 "sha256 and has valid metadata. Exit code 0 only if all are fine.")
    verify.add_argument("names", nargs="*", help="model names (default: every registered model)")
    verify.set_defaults(handler=_verify)

    cache = commands.add_parser("cache", help="show or clear the converted OpenVINO models",
                                description="List the per-user OpenVINO cache: one converted model per model file "
                                "(by sha256), OpenVINO version and precision (float, or int8 once --precision int8 "
                                "has quantized it), with the registered models it belongs to and its size. --clear removes every entry; each is converted again when next used.")
    cache.add_argument("--clear", action="store_true", help="remove every converted model")
    cache.set_defaults(handler=_cache)

    info = commands.add_parser("info", help="show a model's metadata and its OpenVINO cache entry")
    info.add_argument("model", nargs="?", default=None, help="registry name or .safetensors file (default model)")
    info.add_argument("--json", action="store_true", help="print the metadata as JSON")
    info.set_defaults(handler=_info)

    export = commands.add_parser(
        "export", help="write a copy of a model for distribution (half precision, new name or description)",
        description="Write a copy of a model file, e.g. a training run's final.safetensors, as the file to ship: "
        "optionally with float16 weights (half the size; loaded back as float32), a new name, description "
        "and licence, and the background's logit lowered (--background-offset). Everything else in the metadata "
        "(classes, spacing, normalisation, provenance, metrics) is kept; the sha256 of the source is recorded in "
        "the provenance.")
    export.add_argument("model", help="registry name or .safetensors file")
    export.add_argument("-o", "--output", type=Path, required=True, help="model file to write (.safetensors)")
    export.add_argument("--half", action="store_true", help="store float weights as float16")
    export.add_argument("--name", default=None, help="new model name")
    export.add_argument("--description", default=None, help="new description")
    export.add_argument("--license", default=None, help="licence of the weights, e.g. Apache-2.0")
    export.add_argument("--window-voxels", type=whole_number(0), default=None, metavar="N",
                        help="inference windows of up to N voxels by default (0: the training patch), once checked "
                        "on held-out scans (default: keep the model's)")
    export.add_argument("--background-offset", type=float, default=0.0, metavar="DELTA",
                        help="lower the background's logit by DELTA: every organ grows where the model was unsure "
                        "(choose DELTA on held-out scans, e.g. models/abdomen-v5/calibrate.py; default: 0)")
    export.set_defaults(handler=_export)

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
    convert.add_argument("--spacing", type=positive_number, nargs=3, default=(1.0, 1.0, 1.0), metavar=("X", "Y", "Z"),
                         help="voxel spacing in mm the model was trained at (default: 1 1 1)")
    convert.add_argument("--patch-size", type=multiple_of_16, nargs=3, default=(160, 160, 96), metavar=("X", "Y", "Z"),
                         help="sliding-window size in voxels, multiples of 16 (default: the paper's 160 160 96)")
    convert.add_argument("--intensity", type=float, nargs=4, default=(-1000.0, 1000.0, 0.0, 1000.0),
                         metavar=("CLIP_MIN", "CLIP_MAX", "MEAN", "STD"),
                         help="HU clip window and standardisation used in training (default: -1000 1000 0 1000)")
    convert.set_defaults(handler=_import_authors)


def _list(args: argparse.Namespace) -> int:
    entries = list_models()
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=2))
        return 0
    for entry in entries:
        marker = "*" if entry.default else " "
        where = "bundled" if entry.bundled else "user" if entry.available else "user, not downloaded"
        print(f"{marker} {entry.name:<28} {where:<22} {entry.sha256[:12]}  {entry.description}")
    print(f"(user registry: {user_registry()})")
    return 0


def _entry_json(entry: RegistryEntry) -> dict:
    return {"name": entry.name, "file": str(entry.file), "url": entry.url, "sha256": entry.sha256,
            "classes": list(entry.classes), "description": entry.description, "default": entry.default,
            "bundled": entry.bundled, "available": entry.available}


def _add(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.sha256:
            raise InvalidOptionError("--sha256 goes with --url; a --file's checksum is computed from the file")
        entry = add_file(args.name, args.file, args.description)
    else:
        if not args.sha256:
            raise InvalidOptionError("--url needs --sha256 (the file's published checksum), so the download "
                                     "can be verified")
        with DownloadBar(enabled=not args.quiet) as bar:
            entry = add_url(args.name, args.url, args.sha256, args.description, progress=bar)
    print(f"registered {entry.name}: {entry.file} ({', '.join(entry.classes)}) in {user_registry()}")
    return 0


def _download(args: argparse.Namespace) -> int:
    with DownloadBar(enabled=not args.quiet) as bar:
        entry = download_model(args.name, progress=bar)
    print(f"{entry.name}: {entry.file} (sha256 verified)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    entry, orphaned = remove_model(args.name)
    converted = remove_cache_entries(entry.sha256) if orphaned else []
    freed = f", and its converted OpenVINO model ({_mib(converted)})" if converted else ""
    print(f"removed {entry.name} from {user_registry()}{freed}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    if args.clear:
        removed = remove_cache_entries()
        print(f"removed {len(removed)} converted model(s) ({_mib(removed)}) from {cache_root()}")
        return 0
    entries = cache_entries()
    names: Dict[str, List[str]] = {}
    for model in list_models():
        names.setdefault(model.sha256, []).append(model.name)
    print(f"OpenVINO cache: {cache_root()}")
    for entry in entries:
        owners = ", ".join(names.get(entry.sha256, ["(no registered model)"]))
        precision = "int8, quantized" if entry.int8 else "float"
        unused = "" if entry.current else "  [another OpenVINO or conversion version: unused]"
        print(f"  {entry.path.name[:12]}  {precision:<15}  {_mib([entry]):>10}  {owners}{unused}")
    print(f"{len(entries)} converted model(s), {_mib(entries)} (`attention-unet models cache --clear` removes them)")
    return 0


def _mib(entries: List[CacheEntry]) -> str:
    return f"{sum(e.size for e in entries) / 2**20:.1f} MiB"


def _verify(args: argparse.Namespace) -> int:
    problems = verify_models(args.names)
    for name, problem in problems.items():
        print(f"{'ok    ' if problem is None else 'FAILED'} {name}" + ("" if problem is None else f": {problem}"))
    return 0 if all(p is None for p in problems.values()) else 1


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
    windows = f"up to {metadata.window_voxels} voxels" if metadata.window_voxels else "the patch"
    print(f"spacing (mm):  {metadata.spacing_mm}   patch (voxels): {metadata.patch_size}   windows: {windows}")
    intensity = metadata.intensity
    print(f"intensity:     clip [{intensity.clip_min:g}, {intensity.clip_max:g}] HU, "
          f"(x - {intensity.mean:g}) / {intensity.std:g}")
    print(f"license:       {metadata.license or 'not stated'}")
    converted = cache_entries(file_sha256(path))
    print(f"openvino:      {f'converted, {_mib(converted)} in {cache_root()}' if converted else 'not converted yet'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    source = resolve_model_path(args.model)
    model = read_model(source)
    changes = {key: value for key, value in (("name", args.name), ("description", args.description),
                                             ("license", args.license), ("window_voxels", args.window_voxels))
               if value is not None}
    provenance = {**model.metadata.provenance, "exported_from": {"file": source.name, "sha256": model.sha256}}
    if args.background_offset:
        lower_background_logit(model, args.background_offset)
        provenance[PROVENANCE_KEY] = provenance.get(PROVENANCE_KEY, 0.0) + args.background_offset
    metadata = replace(model.metadata, **changes, provenance=provenance)
    written = save_model(model, metadata, args.output, half_precision=args.half)
    print(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB, sha256 {file_sha256(written)})")
    return 0


def _import_authors(args: argparse.Namespace) -> int:
    IntensityNormalisation(*args.intensity)  # refused before the checkpoint is read
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
