"""`segment` on real CT: geometry, blending, progress, cancel, odd inputs."""
from __future__ import annotations

from pathlib import Path

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import TOTALSEG

from AttentionUNetSegLib.models.model_file import read_model
from AttentionUNetSegLib.backends.device import cpu_has_native_bf16
from AttentionUNetSegLib.errors import CancelledError, InputImageError, InvalidOptionError
from AttentionUNetSegLib.io.grid import Grid
from AttentionUNetSegLib.io.images import read_image
from AttentionUNetSegLib.inference.segmenter import ATTENTION_STEP, Segmenter, segment
from AttentionUNetSegLib.inference.plausibility import plausibility_warnings
from AttentionUNetSegLib.models.intensity import normalise
from AttentionUNetSegLib.progress import SegmentationStage


def test_the_public_api_is_lazy_and_its_own() -> None:
    """In a fresh interpreter: the package and its settings load without PyTorch or SimpleITK; every public name
    resolves to the engine's own object."""
    check = ("import json, sys; import AttentionUNetSegLib as lib; heavy = {'torch', 'SimpleITK'}; "
             "package = sorted(heavy & set(sys.modules)); from AttentionUNetSegLib import InferenceSettings; "
             "settings = sorted(heavy & set(sys.modules)); "
             "print(json.dumps([package, settings, sorted(lib.__all__), sorted(dir(lib))]))")
    output = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    package, settings, public, listed = json.loads(output.stdout)
    assert package == [], "importing the package"
    assert settings == [], "importing InferenceSettings"
    assert public == ["AttentionUNet3D", "InferenceSettings", "ModelConfig", "ModelMetadata", "SegmentationResult",
                      "Segmenter", "load_model", "read_image", "save_model", "segment"]
    assert set(public) <= set(listed)
    import AttentionUNetSegLib as lib

    assert lib.Segmenter is Segmenter
    assert lib.segment is segment
    assert lib.read_image is read_image
    with pytest.raises(AttributeError, match="no attribute 'Trainer'"):
        lib.Trainer  # noqa: B018 (internal names are not public)


def _assert_same_grid(image: sitk.Image, reference: sitk.Image) -> None:
    """`image` lies on `reference`'s voxel grid; a failure says which of size, origin, spacing, direction differs."""
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetOrigin(), reference.GetOrigin())
    assert np.allclose(image.GetSpacing(), reference.GetSpacing())
    assert np.allclose(image.GetDirection(), reference.GetDirection())


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path: Path):
    return read_model(tiny_model_path)


@pytest.fixture(scope="module")
def patient_a_result(patient_a: sitk.Image, tiny_model):
    before = sitk.GetArrayFromImage(patient_a).copy()
    result = segment(patient_a, tiny_model, probabilities=True)
    return result, before


def test_outputs_share_the_input_grid(patient_a: sitk.Image, patient_a_result) -> None:
    result, _ = patient_a_result
    assert result.labels.GetPixelID() == sitk.sitkUInt8
    _assert_same_grid(result.labels, patient_a)
    assert list(result.attention) == [f"att{lv}_gate{k}" for lv in (4, 3, 2) for k in (1, 2)]
    for image in [*result.attention.values(), *result.probabilities.values()]:
        assert image.GetPixelID() == sitk.sitkFloat32
        _assert_same_grid(image, patient_a)
        values = sitk.GetArrayViewFromImage(image)
        assert 0 <= values.min() <= values.max() <= 1
    total = sum(sitk.GetArrayFromImage(p) for p in result.probabilities.values())
    assert np.allclose(total, 1, atol=1e-4)
    labels = sitk.GetArrayViewFromImage(result.labels)
    assert labels.max() < len(result.classes)
    argmax = np.argmax(np.stack([sitk.GetArrayFromImage(p) for p in result.probabilities.values()]), axis=0)
    assert (argmax == labels).mean() > 0.99


def test_one_segmenter_segments_many_cts_as_segment_does(patient_a: sitk.Image, tiny_model) -> None:
    segmenter = Segmenter(tiny_model, attention=False, backend="openvino")
    backend = segmenter.backend
    region = patient_a[10:70, 5:80, :]
    for image in (patient_a, region, patient_a):
        once = segment(image, tiny_model, attention=False, backend="openvino")
        again = segmenter(image)
        assert np.array_equal(sitk.GetArrayViewFromImage(again.labels), sitk.GetArrayViewFromImage(once.labels))
        _assert_same_grid(again.labels, image)
        assert again.warnings == once.warnings
    assert segmenter.backend is backend  # built once


def test_impossible_settings_are_refused_before_any_ct(tiny_model) -> None:
    with pytest.raises(InvalidOptionError, match="int8 inference runs on the OpenVINO backend"):
        Segmenter(tiny_model, precision="int8", backend="torch")


def test_input_is_not_modified(patient_a: sitk.Image, patient_a_result) -> None:
    _, before = patient_a_result
    assert np.array_equal(sitk.GetArrayViewFromImage(patient_a), before)
    assert patient_a.GetPixelID() == sitk.sitkInt32


def test_volumes_and_run_facts(patient_a_result) -> None:
    result, _ = patient_a_result
    volumes = result.volumes_ml()
    assert list(volumes) == ["pancreas", "spleen", "kidney", "liver"]
    counts = np.bincount(sitk.GetArrayViewFromImage(result.labels).ravel(), minlength=5)
    assert volumes["liver"] == round(counts[4] * 27 / 1000, 2)
    assert result.device == "cpu"
    assert result.precision == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert set(result.timings) == {"preprocess_s", "inference_s", "postprocess_s"}


def test_one_window_matches_a_direct_forward(tiny_model) -> None:
    """With the image exactly one window on the model grid, resampling and blending are identities."""
    rng = np.random.default_rng(0)
    array = rng.normal(0, 300, size=(32, 32, 32)).astype(np.float32)  # z, y, x
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tiny_model.metadata.spacing_mm)
    image.SetOrigin((-12.0, 40.0, 7.5))
    result = segment(image, tiny_model, probabilities=True, precision="fp32")
    with torch.no_grad():
        logits, attention = tiny_model(torch.from_numpy(normalise(array, tiny_model.metadata.intensity))[None, None],
                                       return_attention=True)
    probabilities = torch.softmax(logits, 1)[0].numpy()
    for c in result.classes:
        assert np.abs(sitk.GetArrayFromImage(result.probabilities[c.name]) - probabilities[c.value]).max() < 1e-4
    assert np.array_equal(sitk.GetArrayFromImage(result.labels), probabilities.argmax(0))
    for name, alpha in attention.items():
        full = torch.nn.functional.interpolate(alpha, size=(32, 32, 32), mode="trilinear")[0, 0].numpy()
        written = sitk.GetArrayFromImage(result.attention[name])
        assert np.abs(written - full).max() <= ATTENTION_STEP / 2 + 1e-5  # stored in steps of about 0.001
        assert np.array_equal(written / ATTENTION_STEP, np.round(written / ATTENTION_STEP))


def test_flipped_index_order_gives_the_same_physical_result(patient_a: sitk.Image, tiny_model) -> None:
    """The same physical CT stored with a flipped y axis yields the same labels at the same points."""
    region = patient_a[20:90, 10:80, 40:80]
    flipped = sitk.Flip(region, [False, True, False], flipAboutOrigin=False)
    flipped_geometry = sitk.GetImageFromArray(sitk.GetArrayFromImage(region)[:, ::-1, :].copy())
    direction = np.array(region.GetDirection()).reshape(3, 3)
    origin = region.TransformIndexToPhysicalPoint((0, region.GetSize()[1] - 1, 0))
    direction[:, 1] *= -1
    flipped_geometry.SetDirection(direction.ravel().tolist())
    flipped_geometry.SetOrigin(origin)
    flipped_geometry.SetSpacing(region.GetSpacing())
    assert np.array_equal(sitk.GetArrayViewFromImage(flipped), sitk.GetArrayViewFromImage(flipped_geometry))
    original = sitk.GetArrayFromImage(segment(region, tiny_model).labels)
    mirrored = sitk.GetArrayFromImage(segment(flipped_geometry, tiny_model).labels)[:, ::-1, :]
    assert (original == mirrored).mean() > 0.999


def test_oblique_input_keeps_its_grid(patient_a: sitk.Image, tiny_model) -> None:
    region = patient_a[30:70, 30:70, 50:70]
    rotation = sitk.VersorTransform((0, 0, 1), np.deg2rad(30))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(region.GetDirection()).reshape(3, 3)
    region.SetDirection(direction.ravel().tolist())
    result = segment(region, tiny_model, probabilities=True)
    _assert_same_grid(result.labels, region)
    _assert_same_grid(result.attention["att2_gate1"], region)


@pytest.mark.shared_data
def test_dicom_series_with_anisotropic_spacing(tiny_model) -> None:
    image = read_image(TOTALSEG / "example_ct_dicom")
    assert image.GetSize() == (512, 512, 20)
    result = segment(image, tiny_model, attention=False)
    _assert_same_grid(result.labels, image)
    assert len(result.attention) == 0


def test_image_smaller_than_one_window_is_padded(tiny_model) -> None:
    image = sitk.GetImageFromArray(np.full((3, 5, 4), -50, dtype=np.int16))
    image.SetSpacing((2.5, 2.5, 2.5))
    result = segment(image, tiny_model)
    assert result.labels.GetSize() == (4, 5, 3)


def test_strongly_anisotropic_voxels(patient_a: sitk.Image, tiny_model) -> None:
    thick = sitk.Resample(patient_a, [150, 150, 20], sitk.Transform(), sitk.sitkLinear, patient_a.GetOrigin(),
                          (0.7, 0.7, 5.0), patient_a.GetDirection(), -1024, sitk.sitkInt16)
    result = segment(thick, tiny_model)
    guard = plausibility_warnings(sitk.GetArrayFromImage(result.labels), Grid.of(thick),
                                  {c.value: c.name for c in result.classes}, sitk.GetArrayFromImage(thick))
    _assert_same_grid(result.labels, thick)
    assert result.warnings == guard  # no input warning: only the guard's


def test_non_ct_intensities_warn_but_run(tiny_model) -> None:
    image = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 255, (16, 16, 16)).astype(np.uint8))
    result = segment(image, tiny_model)
    assert any("does not look like CT" in w for w in result.warnings)
    assert result.labels.GetSize() == (16, 16, 16)


def test_progress_is_reported_in_order(patient_a: sitk.Image, tiny_model) -> None:
    events = []
    segment(patient_a[:60, :60, :60], tiny_model, progress=lambda stage, fraction: events.append((stage, fraction)))
    stages = list(dict.fromkeys(stage for stage, _ in events))
    assert stages == [SegmentationStage.PREPARING, SegmentationStage.INFERENCE, SegmentationStage.RESAMPLING,
                      SegmentationStage.DONE]
    inference = [f for s, f in events if s is SegmentationStage.INFERENCE]
    assert len(inference) > 1
    assert inference == sorted(inference)
    assert inference[-1] == 1.0


def test_the_model_file_chooses_its_windows_unless_the_settings_do(patient_a: sitk.Image, tiny_model_path: Path,
                                                                   tmp_path: Path) -> None:
    """A model file's `window_voxels` sets the windows when the settings leave them (None); 0 in the settings
    means the training patch, N up to N voxels. One progress report per window tells how many there were."""
    from dataclasses import replace

    from AttentionUNetSegLib.models.model_file import save_model

    tiny = read_model(tiny_model_path)
    large = read_model(save_model(tiny, replace(tiny.metadata, window_voxels=10**9), tmp_path / "large.safetensors"))
    image = patient_a[:60, :60, :60]

    def windows(model, **options) -> int:
        reports = []
        segment(image, model, attention=False, progress=lambda stage, f: reports.append(stage), **options)
        return reports.count(SegmentationStage.INFERENCE)

    patch_windows = windows(tiny)
    assert patch_windows > 1
    assert windows(large) == 1  # the file's choice: one window over the whole scan
    assert windows(large, window_voxels=0) == patch_windows
    assert windows(tiny, window_voxels=10**9) == 1


def test_cancel_between_windows(patient_a: sitk.Image, tiny_model) -> None:
    calls = []

    def cancel_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError, match="cancelled"):
        segment(patient_a, tiny_model, cancel=cancel_after_two)
    assert len(calls) == 3


@pytest.mark.parametrize("make, message", [
    (lambda: sitk.Image([8, 8], sitk.sitkInt16), "2D"),
    (lambda: sitk.Image([8, 8, 8, 3], sitk.sitkInt16), "4D"),
    (lambda: sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 3), "3 components"),
    (lambda: sitk.GetImageFromArray(np.full((8, 8, 8), np.nan, dtype=np.float32)), "NaN or infinite"),
])
def test_invalid_images_are_rejected(tiny_model, make, message: str) -> None:
    with pytest.raises(InputImageError, match=message):
        segment(make(), tiny_model)
