"""3D surfaces of a segmentation in Slicer: the default conversion against the one the module sets.

Adds the labels of a `segment` output (`--labels`, e.g. the real CT's `ircad1_512_seg.nii.gz`) as the module
adds them (one segment per class, one shared labelmap) to a headless scene (slicer-core), and times
`CreateClosedSurfaceRepresentation` with Slicer's default parameters (flying edges, windowed-sinc smoothing)
and with SurfaceNets and its own smoothing (outputs.useSurfaceNets), interleaved round by round. Prints
each conversion's seconds and the surfaces' points.

Usage: python Testing/benchmarks/closed_surface.py --labels OUT/CASE_seg.nii.gz [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

import SimpleITK as sitk  # noqa: E402
from slicer_scene import new_scene  # noqa: E402

import slicer  # noqa: E402
from AttentionUNetSegLib.models.model_file import read_metadata  # noqa: E402
from AttentionUNetSegLib.models.registry import resolve_model_path  # noqa: E402
from AttentionUNetSegLogic.outputs import useSurfaceNets  # noqa: E402
from AttentionUNetSegLogic.segments import addSegmentsFromLabels  # noqa: E402


def convert(scene: slicer.vtkMRMLScene, labels: sitk.Image, classes, surfaceNets: bool) -> tuple:
    """Seconds to make the closed surfaces, and their points in all."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    addSegmentsFromLabels(segmentation, labels, classes)
    if surfaceNets:
        useSurfaceNets(segmentation)
    started = time.perf_counter()
    node.CreateClosedSurfaceRepresentation()
    seconds = time.perf_counter() - started
    name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    points = sum(segmentation.GetSegment(i).GetRepresentation(name).GetNumberOfPoints()
                 for i in segmentation.GetSegmentIDs())
    scene.RemoveNode(node)
    return seconds, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True, help="a label file that `segment` wrote")
    parser.add_argument("--model", default=None, help="the model that wrote it (default: the default model)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    labels = sitk.ReadImage(str(args.labels))
    classes = read_metadata(resolve_model_path(args.model)).classes
    with tempfile.TemporaryDirectory() as cache:
        scene = new_scene(Path(cache))
        for round_ in range(1, args.rounds + 1):
            for title, surfaceNets in (("default (flying edges, windowed sinc)", False),
                                       ("SurfaceNets with its smoothing", True)):
                seconds, points = convert(scene, labels, classes, surfaceNets)
                print(f"round {round_}, {title}: {seconds:.2f} s, {points} points")


if __name__ == "__main__":
    main()
