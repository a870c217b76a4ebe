"""`attention-unet evaluate` (predictions vs references, a model on a dataset, or merged evaluations) and
`attention-unet compare` (two evaluations)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import InvalidOptionError
from ..backends.choices import DEVICE_CHOICES
from .option_types import whole_number

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score predictions, or a model on a dataset, against reference labels",
        description="Per case and class Dice, precision, recall, mean surface-to-surface distance and HD95 (mm), "
        "in one of three ways: (1) a label file --pred against a label file --ref, or the label files in a folder "
        "--pred against those in a folder --ref (matched by file name; a prediction may end in _seg, e.g. "
        "case1_seg.nii.gz for case1.nii.gz; the attention and probability maps `segment` writes beside it are "
        "skipped; NIfTI, NRRD or MHA on identical grids) with --classes; (2) --model on the cases of --data (any layout `train` reads; --splits and "
        "--fold choose that fold's held-out cases), references mapped to the model's classes by --label-map, "
        "predictions and mapped references written to OUTDIR/predictions and OUTDIR/references; (3) --merge "
        "of evaluation.json files of disjoint cases (the held-out folds of a cross-validation). Prints a mean "
        "± std table; with -o also writes evaluation.md, evaluation.csv (one row per case and class) and "
        "evaluation.json (input of `compare`). Undefined values (empty masks) are null/nan and counted.",
    )
    folders = evaluate.add_argument_group("predictions against references")
    folders.add_argument("--pred", type=Path, metavar="FILE|DIR",
                         help="a predicted label volume, or a folder of them (e.g. segment's output folder)")
    folders.add_argument("--ref", type=Path, metavar="FILE|DIR",
                         help="the reference label volume, or a folder of them (a file when --pred is a file)")
    folders.add_argument("--classes", metavar="JSON_OR_SPEC",
                         help="label values and names: '1=pancreas,2=spleen', a JSON file {\"1\": \"pancreas\"} "
                         "or a dataset.json with \"labels\"")
    folders.add_argument("--allow-missing", action="store_true",
                         help="evaluate only the matched cases when some references have no prediction")
    folders.add_argument("--ignore-other-labels", action="store_true",
                         help="count label values outside --classes as background (default: refuse them, since a "
                         "different numbering would score the wrong organs)")
    on_data = evaluate.add_argument_group("a model on a dataset")
    on_data.add_argument("--model", help="model file or registry name")
    on_data.add_argument("--data", type=Path, help="dataset: MSD folder, images/ + labels/ folders, or CSV")
    evaluate.add_argument("--label-map", default=None,
                          help="reference label values -> class names, as for train (a bundled map, a file or "
                          "VALUE=NAME pairs, where several values may form one class: 1=liver,2=liver); with --model "
                          "the default is the dataset.json labels, with --ref the references are taken as numbered "
                          "like --classes")
    on_data.add_argument("--splits", type=Path, default=None, help="splits file (nnU-Net splits_final.json format)")
    on_data.add_argument("--fold", type=whole_number(0), default=None, help="with --splits: evaluate this fold's held-out cases")
    on_data.add_argument("--cases", default=None, help="comma-separated case names (default: every case)")
    on_data.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    evaluate.add_argument("--merge", type=Path, nargs="+", metavar="JSON", default=None,
                          help="merge these evaluation.json files of disjoint cases into one evaluation")
    evaluate.add_argument("-o", "--output", type=Path, default=None, metavar="OUTDIR",
                          help="folder for the tables (created if missing; required with --model)")
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
    # SciPy's statistics and MONAI (through the datasets) are imported when a command runs: together they
    # would double the time of every `attention-unet --help` (docs/benchmarks.md, "Start-up")
    from ..datasets.label_maps import load_label_map, parse_label_map
    from ..evaluation.model_scoring import merge_reports
    from ..evaluation.report import load_report
    from ..evaluation.scoring import evaluate_predictions

    modes = {"--pred/--ref": args.pred is not None or args.ref is not None,
             "--model/--data": args.model is not None or args.data is not None, "--merge": args.merge is not None}
    chosen = [name for name, given in modes.items() if given]
    if len(chosen) != 1:
        raise InvalidOptionError(f"give exactly one of {', '.join(modes)} (got {', '.join(chosen) or 'none'})")
    if chosen == ["--model/--data"]:
        return _evaluate_model(args)
    if args.merge is not None:
        report = merge_reports([load_report(path) for path in args.merge], [str(path) for path in args.merge])
    else:
        if args.pred is None or args.ref is None or args.classes is None:
            raise InvalidOptionError("--pred, --ref and --classes go together")
        reference_map = load_label_map(args.label_map) if args.label_map is not None else None
        report = evaluate_predictions(args.pred, args.ref, parse_label_map(args.classes),
                                      allow_missing=args.allow_missing,
                                      progress=lambda done, total, case: log.info("[%d/%d] %s", done, total, case),
                                      reference_map=reference_map, ignore_other_labels=args.ignore_other_labels)
    print(report.to_markdown(), end="")
    if args.output is not None:
        for path in report.write(args.output):
            log.info("wrote %s", path)
    return 0


def _evaluate_model(args: argparse.Namespace) -> int:
    from ..evaluation.model_scoring import PREDICTIONS_DIR, REFERENCES_DIR, CaseSelection, evaluate_model

    if args.model is None or args.data is None or args.output is None:
        raise InvalidOptionError("--model, --data and -o OUTDIR go together")
    if (args.fold is None) != (args.splits is None) or (args.splits is not None and args.cases):
        raise InvalidOptionError("give --splits with --fold, or --cases, or neither (every case)")
    selection = CaseSelection(args.splits, args.fold, [n.strip() for n in (args.cases or "").split(",") if n.strip()])
    report = evaluate_model(args.model, args.data, args.output, args.label_map, selection, args.device,
                            progress=lambda done, total, case, seconds: log.info(
                                "[%d/%d] %s segmented in %.1f s", done, total, case, seconds))
    print(report.to_markdown(), end="")
    log.info("wrote %s (tables), %s/ and %s/", args.output, PREDICTIONS_DIR, REFERENCES_DIR)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..evaluation.comparison import compare_reports
    from ..evaluation.report import load_report

    comparison = compare_reports(load_report(args.a), load_report(args.b), str(args.a), str(args.b))
    print(comparison.to_markdown(), end="")
    if args.output is not None:
        for path in comparison.write(args.output):
            log.info("wrote %s", path)
    return 0
