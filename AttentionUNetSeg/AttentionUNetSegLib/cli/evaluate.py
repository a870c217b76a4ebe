"""`attention-unet evaluate` (predictions vs references) and `attention-unet compare` (two evaluations)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..comparison import compare_reports
from ..evaluation import evaluate_folders, load_report
from ..labelmap import parse_label_map

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score predicted label volumes against reference ones",
        description="Per case and class Dice, precision, recall, mean surface-to-surface distance and HD95 (mm) "
        "of the label files in --pred against those in --ref (matched by file name; a prediction may end in "
        "_seg, e.g. case1_seg.nii.gz for case1.nii.gz; NIfTI, NRRD or MHA on identical grids). Prints a "
        "mean ± std table; with -o also writes evaluation.md, evaluation.csv (one row per case and class) "
        "and evaluation.json (input of `compare`). Undefined values (empty masks) are null/nan and counted.",
    )
    evaluate.add_argument("--pred", type=Path, required=True, metavar="DIR", help="folder of predicted label volumes")
    evaluate.add_argument("--ref", type=Path, required=True, metavar="DIR", help="folder of reference label volumes")
    evaluate.add_argument("--classes", required=True, metavar="JSON_OR_SPEC",
                          help="label values and names: '1=pancreas,2=spleen', a JSON file {\"1\": \"pancreas\"} "
                          "or a dataset.json with \"labels\"")
    evaluate.add_argument("-o", "--output", type=Path, default=None, metavar="OUTDIR",
                          help="folder for the tables (created if missing)")
    evaluate.add_argument("--allow-missing", action="store_true",
                          help="evaluate only the matched cases when some references have no prediction")
    evaluate.set_defaults(handler=run_evaluate)

    compare = subparsers.add_parser(
        "compare",
        help="paired Wilcoxon tests between two evaluations",
        description="Compare two evaluation.json files on their common cases and classes (by name): means of "
        "both and two-sided Wilcoxon signed-rank p-values per class and metric. Prints a Markdown table; "
        "with -o also writes comparison.md and comparison.json.",
    )
    compare.add_argument("a", type=Path, metavar="A.json", help="evaluation.json of method A")
    compare.add_argument("b", type=Path, metavar="B.json", help="evaluation.json of method B")
    compare.add_argument("-o", "--output", type=Path, default=None, metavar="OUTDIR",
                         help="folder for the tables (created if missing)")
    compare.set_defaults(handler=run_compare)


def run_evaluate(args: argparse.Namespace) -> int:
    classes = parse_label_map(args.classes)
    report = evaluate_folders(args.pred, args.ref, classes, allow_missing=args.allow_missing,
                              progress=lambda done, total, case: log.info("[%d/%d] %s", done, total, case))
    print(report.to_markdown(), end="")
    if args.output is not None:
        for path in report.write(args.output):
            log.info("wrote %s", path)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    comparison = compare_reports(load_report(args.a), load_report(args.b), str(args.a), str(args.b))
    print(comparison.to_markdown(), end="")
    if args.output is not None:
        for path in comparison.write(args.output):
            log.info("wrote %s", path)
    return 0
