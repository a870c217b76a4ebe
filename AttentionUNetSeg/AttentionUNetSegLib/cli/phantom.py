"""`attention-unet phantom`: write a seeded set of synthetic abdominal CT volumes with organ labels."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..datasets.label_maps import parse_label_map
from ..io.images import OUTPUT_FORMATS
from ..phantom import DEFAULT_SIZE, DEFAULT_SPACING, write_phantom_dataset
from .option_types import positive_number, whole_number

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate synthetic abdominal CT volumes with organ labels",
        description="Write COUNT reproducible phantoms (case i uses seed SEED+i) as imagesTr/phantom_XXX and "
        "labelsTr/phantom_XXX with a Medical Segmentation Decathlon style dataset.json. Labels follow "
        "TotalSegmentator v2 (1 spleen, 2 kidney_right, 3 kidney_left, 5 liver, 7 pancreas, ...) unless "
        "--labels says otherwise. Geometry: LPS, identity direction, field of view centred on the origin.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="dataset folder")
    parser.add_argument("--count", type=whole_number(1, 100_000), default=1, help="number of phantoms (default: 1)")
    parser.add_argument("--seed", type=whole_number(0), default=0, help="seed of the first phantom (default: 0)")
    parser.add_argument("--size", type=whole_number(8, 1024), nargs=3, default=list(DEFAULT_SIZE), metavar=("X", "Y", "Z"),
                        help=f"voxels (default: {' '.join(map(str, DEFAULT_SIZE))})")
    parser.add_argument("--spacing", type=positive_number, nargs=3, default=list(DEFAULT_SPACING), metavar=("SX", "SY", "SZ"),
                        help=f"mm (default: {' '.join(map(str, DEFAULT_SPACING))})")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="nii.gz", help="file format (default: nii.gz)")
    parser.add_argument("--labels", default=None, metavar="JSON_OR_SPEC",
                        help="label values of the structures to label, e.g. '1=pancreas,2=liver' or a JSON file; "
                        "other structures are drawn but labelled 0")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    label_ids = None
    if args.labels is not None:
        label_ids = {name: value for value, name in parse_label_map(args.labels).items()}
    dataset = write_phantom_dataset(args.output, args.count, args.seed, args.size, args.spacing, args.format,
                                    label_ids, progress=lambda done, total, path: log.info("[%d/%d] %s", done,
                                                                                          total, path))
    print(dataset)
    return 0
