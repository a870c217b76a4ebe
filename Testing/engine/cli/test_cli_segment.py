"""`attention-unet segment` and `models` through real subprocesses: outputs, summaries and bad input."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SAMPLE_CT, TOTALSEG, make_model_file, run_cli, start_cli

from AttentionUNetSegLib.models.model_file import file_sha256
from AttentionUNetSegLib.models.registry import default_model

GATES = [f"att{lv}_gate{k}" for lv in (4, 3, 2) for k in (1, 2)]


def _files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_sample_ct_with_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    completed = run_cli(["segment", SAMPLE_CT, "-o", out, "--probabilities"])
    assert completed.returncode == 0, completed.stderr
    classes = ["pancreas", "spleen", "kidney", "liver"]
    expected = {"example_ct_seg.nii.gz", "example_ct_summary.json"}
    expected |= {f"example_ct_attention_{g}.nii.gz" for g in GATES}
    expected |= {f"example_ct_prob_{c}.nii.gz" for c in ["background", *classes]}
    assert set(_files(out)) == expected
    ct = sitk.ReadImage(str(SAMPLE_CT))
    labels = sitk.ReadImage(str(out / "example_ct_seg.nii.gz"))
    assert labels.GetSize() == ct.GetSize()
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert np.allclose(labels.GetDirection(), ct.GetDirection())
    assert np.allclose(labels.GetOrigin(), ct.GetOrigin())
    summary = json.loads((out / "example_ct_summary.json").read_text())
    assert summary["labels"] == {str(i + 1): name for i, name in enumerate(classes)}
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=5)
    assert summary["volumes_ml"] == {c: round(counts[i + 1] * 27 / 1000, 2) for i, c in enumerate(classes)}
    assert all(len(str(v).partition(".")[2]) <= 2 for v in summary["volumes_ml"].values()), "0.01 mL steps"
    entry = default_model()
    assert summary["model"]["sha256"] == entry.sha256 == file_sha256(entry.file)
    assert summary["model"]["trained"] is True
    assert "UNTRAINED" not in completed.stderr
    assert summary["attention_gates"] == GATES
    assert summary["device"] == "cpu"
    assert summary["timings_s"]["total"] >= summary["timings_s"]["inference"] > 0
    attention = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "example_ct_attention_att2_gate1.nii.gz")))
    assert attention.shape == sitk.GetArrayViewFromImage(ct).shape
    assert 0 <= attention.min() <= attention.max() <= 1
    # the probabilities' argmax is the labels but on organ boundaries (README, "Outputs": softmax is not linear;
    # where the CT's grid is the model's, as the 3 mm sample for the 3 mm default model, nowhere)
    probabilities = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"example_ct_prob_{c}.nii.gz")))
                              for c in ["background", *classes]])
    values = sitk.GetArrayFromImage(labels)
    differ = probabilities.argmax(axis=0) != values
    on_boundary = np.zeros_like(differ)
    for axis in range(3):
        for shift in (1, -1):
            on_boundary |= np.roll(values, shift, axis) != values
    assert np.count_nonzero(differ) < 0.001 * values.size
    assert np.count_nonzero(differ & ~on_boundary) == 0


@pytest.mark.shared_data
def test_default_model_segments_the_labelled_slab_of_its_training_scan(tmp_path: Path) -> None:
    """A guard on the shipped file (export, precision, registry), not a measure of accuracy: the bundled
    model was trained on these 30 labelled slices of the sample CT, so it must find their organs, and on its
    36 lowest slices (the pelvis, labelled empty), so it must leave them nearly empty."""
    from AttentionUNetSegLib.evaluation.metrics import label_metrics
    from AttentionUNetSegLib.datasets.label_maps import load_label_map

    completed = run_cli(["segment", SAMPLE_CT, "-o", tmp_path, "--no-attention", "--quiet"])
    assert completed.returncode == 0, completed.stderr
    # example_seg labels example_ct_sm, whose voxels are the sample's slices 82-111 (its header keeps the
    # sample's origin, so the slab is matched by index, not by position)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(TOTALSEG / "example_seg.nii.gz")))
    segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "example_ct_seg.nii.gz")))
    labels = segmentation[82:112]
    classes = {"pancreas": 1, "spleen": 2, "kidney": 3, "liver": 4}
    mapped = load_label_map("totalsegmentator").remap(reference, classes, "patient A")
    metrics = label_metrics(labels, mapped, (3.0, 3.0, 3.0), [1, 2, 3, 4])
    dice = {name: metrics[value].dice for name, value in classes.items()}
    assert dice["liver"] > 0.85, dice
    assert dice["spleen"] > 0.75, dice
    assert dice["kidney"] > 0.7, dice
    assert dice["pancreas"] > 0.3, dice
    pelvis_ml = np.count_nonzero(segmentation[:36]) * 27 / 1000  # 3 mm voxels; slices 0-35 as make_dataset.py's
    assert pelvis_ml < 20, f"{pelvis_ml} mL of organs in the pelvis"


@pytest.mark.shared_data
def test_dicom_folder_nrrd_without_attention(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "out"
    completed = run_cli(["segment", TOTALSEG / "example_ct_dicom", "-o", out, "--model", tiny_model_path,
                         "--no-attention", "--format", "nrrd", "--quiet"])
    assert completed.returncode == 0, completed.stderr
    assert _files(out) == ["example_ct_dicom_seg.nrrd", "example_ct_dicom_summary.json"]
    assert completed.stdout == ""
    assert sitk.ReadImage(str(out / "example_ct_dicom_seg.nrrd")).GetSize() == (512, 512, 20)


def test_help_documents_every_flag() -> None:
    completed = run_cli(["segment", "--help"])
    assert completed.returncode == 0
    for flag in ["--output", "--model", "--device", "--precision", "--no-attention", "--probabilities", "--overlap",
                 "--batch-size", "--format", "--quiet"]:
        assert flag in completed.stdout


def test_models_list_and_info() -> None:
    listing = run_cli(["models", "list"])
    entry = default_model()
    assert listing.returncode == 0
    assert entry.name in listing.stdout
    assert entry.sha256[:12] in listing.stdout
    info = run_cli(["models", "info", "--json"])
    assert info.returncode == 0
    assert json.loads(info.stdout)["name"] == entry.name


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _spacing_file(folder: Path, spacing: bytes) -> Path:
    """An MHA file whose header says ElementSpacing = `spacing` (SimpleITK refuses to write such a file)."""
    path = _write(sitk.Image([8, 8, 8], sitk.sitkInt16), folder / "bad_spacing.mha")
    path.write_bytes(path.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = " + spacing))
    return path


def _truncated_file(folder: Path) -> Path:
    path = folder / "truncated.nii.gz"
    path.write_bytes(SAMPLE_CT.read_bytes()[:50_000])
    return path


def _garbled_file(folder: Path) -> Path:
    """A .nii.gz whose header inflates but whose voxels stop being valid deflate data half-way."""
    path = folder / "garbled.nii.gz"
    data = SAMPLE_CT.read_bytes()
    middle = len(data) // 2
    path.write_bytes(data[:middle] + np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes()
                     + data[middle + 50_000:])
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "absent.nii.gz", "does not exist"),
    "corrupt": (_truncated_file, "truncated"),
    "garbled": (_garbled_file, "is corrupt or truncated"),
    "not an image": (lambda d: (d / "notes.nrrd").write_text("hello") and d / "notes.nrrd", "cannot read"),
    "2D": (lambda d: _write(sitk.Image([8, 8], sitk.sitkInt16), d / "slice.nrrd"), "2D"),
    "4D": (lambda d: _write(sitk.Image([8, 8, 8, 2], sitk.sitkInt16), d / "series.nii.gz"), "4D"),
    "vector": (lambda d: _write(sitk.Image([8, 8, 8], sitk.sitkVectorInt16, 3), d / "rgb.nrrd"), "components"),
    "zero spacing": (lambda d: _spacing_file(d, b"0 1 1"), "spacing"),
    "NaN": (lambda d: _write(sitk.GetImageFromArray(np.full((8, 8, 8), np.nan, np.float32)), d / "nan.nrrd"), "NaN"),
    "inf": (lambda d: _write(sitk.GetImageFromArray(np.where(np.eye(8, dtype=bool)[None], np.inf, -500.0)
                                                    .astype(np.float32)), d / "inf.mha"), "8 NaN or infinite"),
    "empty DICOM folder": (lambda d: (d / "dicom").mkdir() or d / "dicom", "no DICOM series"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path: Path, tiny_model_path: Path, case: str) -> None:
    make, message = BAD_INPUTS[case]
    source = tmp_path / "inputs"
    source.mkdir()
    path = make(source)
    before = path.read_bytes() if path.is_file() else None
    out = tmp_path / "out"
    completed = run_cli(["segment", path, "-o", out, "--model", tiny_model_path])
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: ")
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not out.exists()
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "other architecture"])
def test_broken_model_file_fails_and_keeps_existing_outputs(tmp_path: Path, tiny_model_path: Path,
                                                            damage: str) -> None:
    model = tmp_path / "broken.safetensors"
    if damage == "truncated":
        model.write_bytes(tiny_model_path.read_bytes()[:5000])
    else:
        from safetensors.torch import load_file, save_file
        from safetensors import safe_open

        with safe_open(str(tiny_model_path), framework="pt") as handle:
            header = handle.metadata()
        unet = make_model_file(tmp_path / "unet.safetensors", architecture="unet_3d")
        save_file(load_file(str(unet)), str(model), metadata=header)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's file")
    completed = run_cli(["segment", SAMPLE_CT, "-o", out, "--model", model])
    assert completed.returncode == 1
    assert "broken.safetensors" in completed.stderr
    assert _files(out) == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "the user's file"


def test_unwritable_output_folder(tmp_path: Path, tiny_model_path: Path) -> None:
    blocker = tmp_path / "a_file"  # a folder inside a file cannot be made, even by root
    blocker.write_text("")
    completed = run_cli(["segment", SAMPLE_CT, "-o", blocker / "out", "--model", tiny_model_path])
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: ")
    assert "cannot write to output folder" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert blocker.read_text() == ""
    assert _files(tmp_path) == ["a_file"]


def test_negative_spacing_in_a_header_is_read_as_a_flipped_axis(tmp_path: Path, tiny_model_path: Path) -> None:
    """ITK reads a negative spacing as a positive one along a reversed axis (and refuses to make negative
    spacings), so such a file is a valid image whose outputs keep that geometry; zero spacing is an error."""
    path = _spacing_file(tmp_path, b"1 -2 1")
    completed = run_cli(["segment", path, "-o", tmp_path / "out", "--model", tiny_model_path, "--quiet"])
    assert completed.returncode == 0, completed.stderr
    labels = sitk.ReadImage(str(tmp_path / "out" / "bad_spacing_seg.nii.gz"))
    assert labels.GetSpacing() == (1.0, 2.0, 1.0)
    assert labels.GetDirection()[4] == -1.0


@pytest.mark.parametrize("size, spacing", [((6, 5, 4), (1.0, 1.0, 1.0)), ((96, 80, 12), (0.7, 0.7, 5.0))],
                         ids=["smaller than one window", "0.7x0.7x5 mm"])
def test_small_and_anisotropic_images_segment_on_their_own_grid(tmp_path: Path, tiny_model_path: Path,
                                                                size: tuple, spacing: tuple) -> None:
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]]
    body = ((x - size[0] / 2) / (size[0] / 2.5)) ** 2 + ((y - size[1] / 2) / (size[1] / 2.5)) ** 2 < 1
    image = sitk.GetImageFromArray(np.where(body, 40, -1000).astype(np.int16))
    image.SetSpacing(spacing)
    path = _write(image, tmp_path / "odd.nrrd")
    completed = run_cli(["segment", path, "-o", tmp_path / "out", "--model", tiny_model_path, "--quiet"])
    assert completed.returncode == 0, completed.stderr
    for name in ["odd_seg.nii.gz", *(f"odd_attention_{g}.nii.gz" for g in GATES)]:
        written = sitk.ReadImage(str(tmp_path / "out" / name))
        assert written.GetSize() == size, name
        assert np.allclose(written.GetSpacing(), spacing), name


def test_non_ct_intensities_warn(tmp_path: Path, tiny_model_path: Path) -> None:
    image = _write(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (16, 16, 16)).astype(np.uint8)),
                   tmp_path / "photo.nrrd")
    completed = run_cli(["segment", image, "-o", tmp_path / "out", "--model", tiny_model_path])
    assert completed.returncode == 0
    assert "does not look like CT" in completed.stderr
    summary = json.loads((tmp_path / "out" / "photo_summary.json").read_text())
    assert any("does not look like CT" in w for w in summary["warnings"])


@pytest.mark.parametrize("quiet", [False, True], ids=["table and warnings", "--quiet: warnings only"])
def test_warnings_and_organ_volumes_reach_the_terminal(tmp_path: Path, tiny_model_path: Path, quiet: bool) -> None:
    """Each warning of the summary is a `warning: ` line on stderr, --quiet or not; the organ volumes and where
    the run ran are a table on stderr unless --quiet; stdout keeps only the paths written."""
    image = _write(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (16, 16, 16)).astype(np.uint8)),
                   tmp_path / "photo.nrrd")
    out = tmp_path / "out"
    completed = run_cli(["segment", image, "-o", out, "--model", tiny_model_path, "--no-attention",
                         *(["--quiet"] if quiet else [])])
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((out / "photo_summary.json").read_text())
    lines = completed.stderr.splitlines()
    assert summary["warnings"], "an image that is no CT warns"
    for warning in summary["warnings"]:
        assert f"warning: {warning}" in lines
    heading = (f"photo: done in {summary['timings_s']['total']:.1f} s on cpu ({summary['backend']}, "
               f"{summary['precision']})")
    rows = [f"  {organ:<8}  {volume:9.1f} mL" for organ, volume in summary["volumes_ml"].items()]
    if quiet:
        assert completed.stdout == ""
        assert heading not in lines
        assert not any(line.endswith(" mL") for line in lines)
    else:
        assert completed.stdout.splitlines() == [str(out / "photo_seg.nii.gz"), str(out / "photo_summary.json")]
        assert lines[lines.index(heading) + 1:lines.index(heading) + 5] == rows


def test_interrupt_mid_run_leaves_no_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_cli(["segment", SAMPLE_CT, "-o", out])
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if line.startswith("inference") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "nothing was written" in rest
    assert not out.exists()
