"""The wav2lip backend: crop conventions, reference choice, options, and end-to-end renders.

The end-to-end renders use the conformance kit's deterministic (random) weights: they prove the
plumbing (frames, timecode, matte exactness, faces processed), not the quality of the mouths.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from dubline.core import timing
from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.core.models import MODELS_ENV
from dubline.pipeline import RenderRequest, analyse_clip, render, span_start_timecode
from dubline.stages import media
from dubline.stages.backends import get_backend
from dubline.stages.backends.references import (
    REST_PERCENTILE,
    choose_references,
    reference_frames,
    rest_candidates,
)
from dubline.stages.backends.wav2lip.backend import (
    Wav2LipOptions,
    dub_mel_windows,
    generator_for,
    source_crop_boxes,
)
from dubline.stages.backends.wav2lip.checkpoint import (
    deterministic_generator,
    deterministic_syncnet,
)
from dubline.stages.backends.wav2lip.crops import (
    PAD_BOTTOM_FRACTION,
    crop_face,
    padded_boxes,
    paste_face,
    smooth_boxes,
)
from dubline.stages.backends.wav2lip.sync_qc import wav2lip_sync_report

SPAN = (10, 34)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- crop geometry -------------------------------------------------------------------------


def test_smooth_boxes_is_a_centred_mean_that_never_crosses_a_gap():
    boxes = np.array([[0, 0, 10, 10]] * 9, dtype=np.float32)
    boxes[:, 0] = np.arange(9) * 5.0  # x0 moves 5 px a frame
    present = np.ones(9, dtype=bool)
    present[6] = False
    boxes[6] = np.nan
    smoothed = smooth_boxes(boxes, present)
    assert smoothed[2, 0] == pytest.approx(10.0)  # mean of frames 0..4 = 10
    assert smoothed[0, 0] == pytest.approx(5.0)  # window cut at the start: frames 0..2
    assert smoothed[5, 0] == pytest.approx(20.0)  # frames 3..5 only: the gap at 6 stops the window
    assert smoothed[7, 0] == pytest.approx(37.5)  # frames 7..8 only
    assert np.isnan(smoothed[6]).all()


def test_padded_boxes_pad_downward_by_a_fraction_of_the_face_and_clamp_to_the_frame():
    boxes = np.array(
        [[100, 50, 300, 250], [-20, 10, 60, 95], [np.nan] * 4, [500, 10, 640, 20]], dtype=np.float64
    )
    out = padded_boxes(boxes, (100, 520, 3))
    assert out[0].tolist() == [100, 50, 300, 100]  # 250 + 20 clamped to the frame height 100
    wide = padded_boxes(boxes[:1], (1000, 1000, 3))
    assert wide[0].tolist() == [100, 50, 300, 250 + round(PAD_BOTTOM_FRACTION * 200)]
    assert out[1].tolist() == [0, 10, 60, 100]
    assert out[2].tolist() == [-1, -1, -1, -1]  # no face
    assert out[3].tolist() == [500, 10, 520, 21]  # clamped on the right, padded 1 px


def test_paste_back_changes_only_the_box_and_round_trips_a_smooth_face():
    yy, xx = np.mgrid[0:240, 0:320]
    image = np.dstack([xx % 256, yy % 256, (xx + yy) % 256]).astype(np.uint8)
    box = np.array([60, 40, 252, 232])
    crop = crop_face(image, box)
    assert crop.shape == (96, 96, 3)
    pasted = paste_face(image, box, crop)
    outside = np.ones(image.shape[:2], dtype=bool)
    outside[40:232, 60:252] = False
    assert np.array_equal(pasted[outside], image[outside])
    assert pasted is not image and np.array_equal(image, np.dstack([xx % 256, yy % 256, (xx + yy) % 256]))
    error = np.abs(pasted[40:232, 60:252].astype(int) - image[40:232, 60:252]).mean()
    assert error < 2.0  # a linear ramp survives the 2x shrink and cubic enlarge


def test_rest_candidates_are_the_quietest_usable_mouths():
    aperture = np.array([0.30, 0.01, 0.20, 0.02, 0.25, 0.15, 0.005, 0.22, 0.18, 0.12, 0.21], dtype=np.float32)
    usable = np.ones(len(aperture), dtype=bool)
    usable[6] = False  # the quietest mouth is unusable
    chosen = rest_candidates(aperture, usable)
    assert set(chosen) <= {1, 3} and 1 in chosen
    assert np.all(aperture[chosen] <= np.percentile(aperture[usable], REST_PERCENTILE))
    with pytest.raises(InvalidInputError, match="no usable frame"):
        rest_candidates(aperture, np.zeros(len(aperture), dtype=bool))


def test_references_follow_the_head_pose_with_hysteresis():
    candidates = np.array([100, 200])
    candidate_pose = np.array([[0.0, 0.0], [0.0, 0.3]])  # frontal, turned
    yaw = np.repeat([0.0, 0.2, 0.3, 0.0], 10)
    yaw[5] = 0.3  # a one-frame yaw glitch of the landmarks: steadied away
    target_pose = np.stack([np.zeros_like(yaw), yaw], axis=1)
    usable = np.ones(len(yaw), dtype=bool)
    usable[35] = False
    chosen = choose_references(target_pose, usable, candidates, candidate_pose)
    # 0.2 is nearer the turned candidate, but not by the switch margin: keep the frontal one.
    expected = [100] * 20 + [200] * 10 + [100] * 10
    expected[35] = -1
    assert chosen.tolist() == expected


# --- options, weights, audio -------------------------------------------------------------------


def test_options_are_validated_by_name():
    assert Wav2LipOptions.parse({"device": "cpu"}).reference == "rest"
    for bad, name in (
        ({"refrence": "rest"}, "refrence"),
        ({"reference": "other"}, "reference"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "many"}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"deterministic": True, "checkpoint": "x.pth"}, "checkpoint"),
    ):
        with pytest.raises(InvalidInputError, match=name):
            Wav2LipOptions.parse(bad)


def test_default_batch_size_per_device_and_frame_size():
    from dubline.stages.backends.wav2lip.backend import CHUNK_FRAME_BYTES, default_batch_size

    assert Wav2LipOptions.parse({"device": "cpu"}).batch_size is None  # chosen in prepare
    assert Wav2LipOptions.parse({"device": "cpu", "batch_size": "8"}).batch_size == 8
    assert default_batch_size("cpu", (512, 512)) == 16
    assert default_batch_size("cuda:0", (512, 512)) == 128
    assert default_batch_size("cpu", (1080, 1920)) == 16
    assert default_batch_size("cuda", (1080, 1920)) == 64  # two chunks of 128 1080p frames: 1.6 GB
    assert default_batch_size("cuda", (2160, 3840)) == 16
    assert default_batch_size("cpu", (4320, 7680)) == 4
    for device in ("cpu", "cuda"):
        for shape in ((96, 96), (1080, 1920), (2160, 3840), (8640, 15360)):
            batch = default_batch_size(device, shape)
            assert batch >= 1 and (batch == 1 or batch * shape[0] * shape[1] * 3 <= CHUNK_FRAME_BYTES)


def test_chunks_start_and_end_small_and_cover_the_span():
    from dubline.stages.backends.wav2lip.backend import chunk_sizes

    assert chunk_sizes(200, 64) == [8, 16, 32, 64, 24, 32, 16, 8]
    assert chunk_sizes(40, 64) == [8, 16, 8, 8]
    assert chunk_sizes(20, 8) == [8, 8, 4]  # nothing smaller than a batch of 8 to ramp from
    assert chunk_sizes(0, 64) == []
    for total in range(0, 300, 7):
        for batch in (1, 8, 16, 64, 128):
            sizes = chunk_sizes(total, batch)
            assert sum(sizes) == total and all(0 < size <= batch for size in sizes)
            if total >= 2 * 8:  # the generator starts early, the tail is short
                assert sizes[0] == min(8, batch) and sizes[-1] <= 8


def test_missing_weights_name_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="wav2lip_gan.pth") as caught:
        generator_for(Wav2LipOptions.parse({"device": "cpu"}))
    assert str(tmp_path) in str(caught.value)
    with pytest.raises(ModelNotFoundError, match="wav2lip_gan.pth"):
        get_backend("wav2lip").preflight({"device": "cpu"})
    missing = tmp_path / "elsewhere" / "my_wav2lip.pth"
    with pytest.raises(ModelNotFoundError, match="my_wav2lip.pth"):
        generator_for(Wav2LipOptions.parse({"device": "cpu", "checkpoint": str(missing)}))


@pytest.mark.slow
def test_checkpoint_option_loads_an_official_container_once(tmp_path):
    state = deterministic_generator(seed=3).state_dict()
    path = tmp_path / "renamed_checkpoint.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "global_step": 1}, path)
    options = Wav2LipOptions.parse({"device": "cpu", "checkpoint": str(path)})
    model = generator_for(options)
    assert generator_for(options) is model  # resident in the registry
    assert torch.equal(model.state_dict()["output_block.1.weight"], state["output_block.1.weight"])


def test_backend_is_registered_and_declares_weights_and_gpu():
    info = get_backend("wav2lip").info
    assert info.name == "wav2lip" and info.prefers_gpu
    assert "wav2lip_gan.pth" in info.weights[0] and "wav2lip.pth" in info.weights[0]


def test_dub_mel_windows_cover_the_span_and_pad_with_silence():
    rng = np.random.default_rng(0)
    noise = media.AudioClip(rng.normal(0, 0.1, 16000).astype(np.float32), 16000)  # 1 s
    windows = dub_mel_windows(noise, Fraction(25), 50)  # 2 s of frames
    assert windows.shape == (50, 1, 80, 16)
    assert windows[0].mean() > -3.0  # noise
    assert np.all(windows[-1] == -4.0)  # past the dub's end: silence, not the last real window
    with pytest.raises(InvalidInputError, match="16000"):
        dub_mel_windows(media.AudioClip(noise.samples, 48000), Fraction(25), 50)


# --- sync report ---------------------------------------------------------------------------


def test_sync_report_is_none_without_the_expert(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    frames = [np.zeros((64, 64, 3), np.uint8)] * 6
    assert wav2lip_sync_report(frames, np.tile([8, 8, 56, 56], (6, 1)), np.zeros(16000, np.float32), Fraction(25)) is None


@pytest.mark.slow
def test_sync_report_measures_the_longest_run_with_a_face():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (80, 80, 3), dtype=np.uint8) for _ in range(14)]
    boxes = np.tile(np.array([10, 10, 70, 70], np.float64), (14, 1))
    boxes[3] = np.nan  # runs: 0..2 and 4..13
    audio = rng.normal(0, 0.1, 16000).astype(np.float32)
    report = wav2lip_sync_report(iter(frames), boxes, audio, Fraction(25), model=deterministic_syncnet())
    assert report is not None
    assert (report["frames"], report["frames_measured"], report["first_frame"]) == (14, 10, 4)
    assert 0.0 <= report["lse_distance"] <= 2.0 and report["lse_confidence"] >= 0.0
    assert abs(report["best_offset"]) <= 5  # offsets clamped to windows - 1 = 5
    short = wav2lip_sync_report(frames[:4], boxes[:4], audio, Fraction(25), model=deterministic_syncnet())
    assert short is not None and short["lse_distance"] is None


# --- end to end on shared media -------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(shared_media, tmp_path_factory):
    """One render per reference mode of speaker_a, frames SPAN, deterministic weights on CPU."""
    root = tmp_path_factory.mktemp("wav2lip_e2e")
    results = {}
    for reference in ("rest", "same"):
        request = RenderRequest(
            video=shared_media / "speaker_a.mp4",
            audio=shared_media / "dub_en_16k.wav",
            span=f"{SPAN[0]}-{SPAN[1]}",
            out=root / f"patch_{reference}.mkv",
            matte=root / f"matte_{reference}.mkv",
            backend="wav2lip",
            codec="ffv1",
            backend_options={"deterministic": True, "device": "cpu", "reference": reference, "batch_size": 8},
        )
        results[reference] = render(request, cache_root=root / "cache")
    return root, results


def _frames(path: Path, first: int, end: int) -> list[np.ndarray]:
    rate = media.probe(path).video.rate
    return [f.image for f in media.read_span(path, timing.frames_to_range(first, end, rate))]


@pytest.mark.slow
def test_render_keeps_frames_timecode_and_everything_outside_the_matte(rendered, shared_media):
    _, results = rendered
    result = results["rest"]
    source_path = shared_media / "speaker_a.mp4"
    source_info = media.probe(source_path)
    patch_info = media.probe(result.out).video
    count = SPAN[1] - SPAN[0]
    assert patch_info.frame_count == count and result.frames_written == count
    assert patch_info.rate == source_info.video.rate
    assert patch_info.start_timecode == span_start_timecode(source_info, SPAN[0]) == result.start_timecode
    assert result.frames_patched == count and result.passthrough == {}

    source = _frames(source_path, *SPAN)
    patch = _frames(result.out, 0, count)
    matte = _frames(result.matte, 0, count)
    changed_inside = []
    for src, out, alpha in zip(source, patch, matte, strict=True):
        outside = alpha[..., 0] == 0
        assert outside.mean() > 0.8
        assert np.array_equal(out[outside], src[outside])  # bit-identical outside the matte
        inside = alpha[..., 0] == 255
        changed_inside.append(np.abs(out[inside].astype(int) - src[inside]).mean())
    assert min(changed_inside) > 2.0  # the generator's (noise) mouth reached every frame


@pytest.mark.slow
def test_reference_modes_render_differently_inside_the_matte(rendered):
    _, results = rendered
    count = SPAN[1] - SPAN[0]
    rest = _frames(results["rest"].out, 0, count)
    same = _frames(results["same"].out, 0, count)
    matte = _frames(results["rest"].matte, 0, count)
    # The reference feeds the generator, so the mouths differ (by how much says nothing about
    # quality with random weights; they differ by about 0.6 levels on average here).
    differences = [
        np.abs(r[m[..., 0] == 255].astype(int) - s[m[..., 0] == 255]).mean() for r, s, m in zip(rest, same, matte)
    ]
    assert np.mean(differences) > 0.2


def test_rest_references_are_quiet_mouths_and_same_references_are_the_frames(rendered, shared_media):
    root, _ = rendered
    analysis = analyse_clip(shared_media / "speaker_a.mp4", cache_root=root / "cache")  # cached: fast
    faces = analysis.faces
    boxes = source_crop_boxes(faces, (analysis.info.video.height, analysis.info.video.width))
    same = reference_frames(faces, SPAN, "same", boxes[:, 0] >= 0)
    assert same.tolist() == list(range(*SPAN))
    rest = reference_frames(faces, SPAN, "rest", boxes[:, 0] >= 0)
    assert np.all(rest >= 0)
    quiet = np.percentile(faces.aperture[faces.usable], REST_PERCENTILE)
    assert np.all(faces.aperture[rest] <= quiet)
    assert len(set(rest.tolist())) <= 3  # references change rarely


@pytest.mark.gpu
@requires_cuda
def test_render_on_cuda_fp16(rendered, shared_media):
    root, results = rendered
    request = RenderRequest(
        video=shared_media / "speaker_a.mp4",
        audio=shared_media / "dub_en_16k.wav",
        span=f"{SPAN[0]}-{SPAN[1]}",
        out=root / "patch_cuda.mkv",
        backend="wav2lip",
        codec="ffv1",
        backend_options={"deterministic": True, "device": "cuda"},
    )
    result = render(request, cache_root=root / "cache")
    count = SPAN[1] - SPAN[0]
    assert result.frames_patched == count
    cpu = np.stack(_frames(results["rest"].out, 0, count)).astype(int)
    cuda = np.stack(_frames(result.out, 0, count)).astype(int)
    assert np.abs(cpu - cuda).mean() < 1.0  # fp16 vs fp32 differ by rounding only


@pytest.mark.weights
def test_render_with_official_weights(rendered, shared_media):
    weights = Path(os.environ.get(MODELS_ENV, ""))
    if not os.environ.get(MODELS_ENV) or not any((weights / f).is_file() for f in ("wav2lip_gan.pth", "wav2lip.pth")):
        pytest.skip(f"${MODELS_ENV} has no wav2lip_gan.pth or wav2lip.pth")
    root, _ = rendered
    request = RenderRequest(
        video=shared_media / "speaker_a.mp4",
        audio=shared_media / "dub_en_16k.wav",
        span=f"{SPAN[0]}-{SPAN[1]}",
        out=root / "patch_official.mkv",
        backend="wav2lip",
        codec="ffv1",
    )
    result = render(request, cache_root=root / "cache")
    assert result.frames_patched == SPAN[1] - SPAN[0]
