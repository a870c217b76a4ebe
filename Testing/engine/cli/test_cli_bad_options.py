"""Every command refuses impossible option values before any work: a clean error naming the option and
what is allowed, exit status 1 or 2 (argparse), and no file or folder written."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from conftest import AUTHORS_REFERENCE, SAMPLE_CT, SHARED, TOTALSEG

from AttentionUNetSegLib.cli import main

CT = SAMPLE_CT  # a real CT in the repository: the segment cases need no shared/ folder

CASES = [
    # (command line with OUT for the output path, the message the error must hold)
    (["segment", CT, "-o", "OUT", "--batch-size", "0"], "argument --batch-size: 0 is not allowed; allowed: a whole "
                                                        "number >= 1"),
    (["segment", CT, "-o", "OUT", "--batch-size", "two"], "argument --batch-size: 'two' is not a whole number"),
    (["segment", CT, "-o", "OUT", "--window-voxels", "-5"], "argument --window-voxels: -5 is not allowed"),
    (["segment", CT, "-o", "OUT", "--overlap", "1"], "argument --overlap: 1 is not allowed; allowed: a number in [0, 1)"),
    (["segment", CT, "-o", "OUT", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["segment", CT, "-o", "OUT", "--outptu", "x"], "attention-unet segment: error: unrecognized arguments: --outptu"),
    (["phantom", "-o", "OUT", "--count", "0"], "argument --count: 0 is not allowed; allowed: a whole number from 1 to "
                                               "100000"),
    (["phantom", "-o", "OUT", "--size", "4", "64", "64"], "argument --size: 4 is not allowed; allowed: a whole number "
                                                         "from 8 to 1024"),
    (["phantom", "-o", "OUT", "--spacing", "0", "1", "1"], "argument --spacing: 0 is not allowed; allowed: a positive "
                                                           "number"),
    (["phantom", "-o", "OUT", "--labels", "liver=5"], "label value 'liver' is not an integer; give `VALUE=NAME`"),
    (["evaluate", "--model", "attention-unet-abdomen-v1", "--data", TOTALSEG, "-o", "OUT", "--splits", "s.json",
      "--fold", "-1"], "argument --fold: -1 is not allowed; allowed: a whole number >= 0"),
    (["evaluate", "--pred", TOTALSEG, "--ref", TOTALSEG, "-o", "OUT", "--classes", "1=a", "--label-map", "nope"],
     "label map 'nope' is neither a bundled map"),
    (["evaluate", "--pred", TOTALSEG, "--model", "m", "-o", "OUT"], "give exactly one of"),
    (["train", "CSV", "-o", "OUT"], "no label map: give --label-map"),
    (["train", "CSV", "-o", "OUT", "--label-map", "1=spleen", "--precision", "bf16", "--device", "cpu",
      "--patch-size", "32", "32", "32"], "patch depth of 32 gives feature maps 2 voxels deep"),
    (["train", "CSV", "-o", "OUT", "--label-map", "1=spleen", "--init-model", "no-such-model"],
     "no model named 'no-such-model'"),
    (["train", TOTALSEG, "-o", "OUT", "--intensity", "100,-100,0,1"], "intensity (CLIP_MIN,CLIP_MAX,MEAN,STD): "
                                                                      "invalid intensity normalisation"),
    (["train", TOTALSEG, "-o", "OUT", "--intensity", "100,a"], "argument --intensity: '100,a' is not four numbers"),
    (["train", TOTALSEG, "-o", "OUT", "--epochs", "0"], "epochs must be >= 1, not 0"),
    (["train", TOTALSEG, "-o", "OUT", "--patch-size", "50", "48", "32"], "patch_size must be three multiples of 16"),
    (["train", TOTALSEG, "-o", "OUT", "--fold", "7"], "fold must be 0..4 or 'all', not 7"),
    (["train", TOTALSEG, "-o", "OUT", "--overlap", "1.2"], "overlap must be in [0, 1)"),
    (["train", TOTALSEG, "-o", "OUT", "--lr", "0"], "lr must be > 0"),
    (["train", TOTALSEG, "-o", "OUT", "--max-seconds", "0"], "max_seconds must be > 0, not 0.0"),
    (["train", TOTALSEG, "-o", "OUT", "--scale-range", "1.3", "0.7"], "scale_range must be two numbers 0 < low <= "
                                                                      "high"),
    (["models", "import-authors", AUTHORS_REFERENCE / "att_unet_ct_multi_dsv_fs16_state_dict.safetensors", "-o", "OUT",
      "--patch-size", "160", "160", "90"], "argument --patch-size: 90 is not a multiple of 16"),
    (["models", "import-authors", AUTHORS_REFERENCE / "att_unet_ct_multi_dsv_fs16_state_dict.safetensors", "-o", "OUT",
      "--intensity", "1000", "-1000", "0", "1"], "need clip_min < clip_max and std > 0"),
    (["models", "import-authors", AUTHORS_REFERENCE / "att_unet_ct_multi_dsv_fs16_state_dict.safetensors", "-o", "OUT",
      "--spacing", "1", "-1", "1"], "argument --spacing: -1 is not allowed; allowed: a positive number"),
    (["models", "info", "no-such-model"], "no model named 'no-such-model'"),
    (["models", "list", "--bad"], "attention-unet models list: error: unrecognized arguments: --bad"),
]


def _id(args: List[object]) -> str:
    return " ".join(str(a) if not isinstance(a, Path) else a.name for a in args)


def _needs_shared_data(args: List[object]) -> bool:
    """The command line names a file of the shared/ folder, or CSV: the list of one real labelled CT in it."""
    return "CSV" in args or any(isinstance(a, Path) and SHARED in (a, *a.parents) for a in args)


@pytest.mark.parametrize("args, message", [
    pytest.param(args, message, id=_id(args), marks=[pytest.mark.shared_data] if _needs_shared_data(args) else [])
    for args, message in CASES])
def test_bad_option_values_are_refused_before_any_work(args: List[object], message: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTENTION_UNET_SEG_HOME", str(tmp_path / "home"))
    cases = tmp_path / "cases.csv"  # one real labelled CT
    cases.write_text(f"image,label\n{TOTALSEG / 'example_ct_sm.nii.gz'},{TOTALSEG / 'example_seg.nii.gz'}\n")
    given = {"OUT": str(tmp_path / "out"), "CSV": str(cases)}
    argv = [given.get(a, str(a)) if isinstance(a, str) else str(a) for a in args]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    stderr = capsys.readouterr().err
    assert status in (1, 2), stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.rglob("*")) == [cases], "nothing may be written"


@pytest.mark.parametrize("values, message", [
    ({"overlap": 1.0}, r"overlap must be in \[0, 1\), not 1.0"),
    ({"batch_size": 0}, "batch_size must be >= 1 windows"),
    ({"window_voxels": -1}, "window_voxels must be >= 0"),
])
def test_the_python_api_refuses_the_same_settings(values, message) -> None:
    from AttentionUNetSegLib.errors import InvalidOptionError
    from AttentionUNetSegLib.inference.settings import InferenceSettings

    with pytest.raises(InvalidOptionError, match=message):
        InferenceSettings(**values)
