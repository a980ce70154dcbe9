"""The musetalk backend: options, model directory checks, and end-to-end renders.

The renders use small fake weights (tests/musetalk_fakes.py: the official file structure with
narrow layers and random values) through the real loader, audio path, runner and compositor: they
prove the plumbing (frames, timecode, matte exactness, passthrough, cancel), not the quality of the
mouths, which are noise.
"""

from __future__ import annotations

import dataclasses
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from dubline.core import timing
from dubline.core.errors import CancelledError, InvalidInputError, ModelNotFoundError
from dubline.core.models import MODELS_ENV
from dubline.core.progress import CancelToken
from dubline.pipeline import RenderRequest, analyse_clip, render, span_start_timecode
from dubline.stages import media
from dubline.stages.backends import get_backend
from dubline.stages.backends.musetalk import layout
from dubline.stages.backends.musetalk.backend import (
    MuseTalkOptions,
    dub_whisper_steps,
    models_for,
    source_crop_boxes,
)
from dubline.stages.backends.musetalk.infer import MuseTalkRunner
from dubline.stages.backends.references import reference_frames
from fakes import FixedAnalyses
from musetalk_fakes import write_small_model_dir

SPAN = (10, 15)
BATCH = 3  # two chunks over the span: 3 + 2


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_small_model_dir(tmp_path_factory.mktemp("musetalk_models"))


@pytest.fixture(scope="module")
def small_models(small_dir):
    return models_for(MuseTalkOptions.parse({"model_dir": str(small_dir), "device": "cpu"}))


# --- options and the model directory ---------------------------------------------------------


def test_options_are_validated_by_name():
    options = MuseTalkOptions.parse({"device": "cpu"})
    assert (options.reference, options.sample, options.batch_size, options.extra_margin) == ("same", False, 8, 10)
    assert options.dtype == torch.float32
    assert MuseTalkOptions.parse({"device": "cpu", "sample": "true", "seed": "7"}).sample is True
    for bad, name in (
        ({"refrence": "same"}, "refrence"),
        ({"reference": "other"}, "reference"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "many"}, "batch_size"),
        ({"extra_margin": -1}, "extra_margin"),
        ({"seed": "x"}, "seed"),
        ({"device": "tpu"}, "device"),
    ):
        with pytest.raises(InvalidInputError, match=name):
            MuseTalkOptions.parse(bad)


def test_backend_is_registered_and_declares_weights_and_gpu():
    info = get_backend("musetalk").info
    assert info.name == "musetalk" and info.prefers_gpu
    assert layout.UNET_WEIGHTS in info.weights and layout.UNET_CONFIG in info.weights
    assert set(info.options) == {"model_dir", "batch_size", "device", "sample", "seed", "extra_margin", "reference"}


def test_preflight_names_the_missing_file_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    with pytest.raises(ModelNotFoundError) as caught:
        get_backend("musetalk").preflight({"device": "cpu"})
    text = str(caught.value)
    assert str(tmp_path / "musetalkV15" / "unet.pth") in text and MODELS_ENV in text
    assert "sd-vae/config.json" in text and "whisper/pytorch_model.bin" in text
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(ModelNotFoundError, match="model_dir option"):
        get_backend("musetalk").preflight({"device": "cpu", "model_dir": str(elsewhere)})


def test_render_fails_on_missing_weights_before_any_analysis(tmp_path, monkeypatch, shared_media):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "empty"))
    request = RenderRequest(video=shared_media / "speaker_a.mp4", audio=shared_media / "dub_en_16k.wav",
                            span="0-5", out=tmp_path / "p.mkv", backend="musetalk", codec="ffv1",
                            backend_options={"device": "cpu"})
    with pytest.raises(ModelNotFoundError, match="musetalkV15/unet.pth"):
        render(request, cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # failed before the clip was analysed
    assert not (tmp_path / "p.mkv").exists()


def test_models_are_resident_once_per_directory_device_and_dtype(small_dir, small_models):
    again = models_for(MuseTalkOptions.parse({"model_dir": str(small_dir), "device": "cpu"}))
    assert again.unet is small_models.unet and again.vae is small_models.vae
    assert again.whisper_encoder is small_models.whisper_encoder
    assert small_models.dtype == torch.float32 and small_models.scaling_factor == pytest.approx(0.18215)


# --- audio and the runner ----------------------------------------------------------------------


def test_dub_steps_cover_the_span_and_the_last_window(small_models):
    rng = np.random.default_rng(0)
    long_dub = media.AudioClip(rng.normal(0, 0.1, 16000 * 3).astype(np.float32), 16000)
    steps = dub_whisper_steps(small_models, long_dub, Fraction(25), 25)  # 1 s span of a 3 s dub
    assert steps.shape == (50 + 6, 5, 32)  # the span's 50 steps and the 6 the last window reaches past it
    short_dub = media.AudioClip(long_dub.samples[:8000], 16000)
    assert dub_whisper_steps(small_models, short_dub, Fraction(25), 25).shape[0] == 25  # the rest are zeros
    with pytest.raises(InvalidInputError, match="16000"):
        dub_whisper_steps(small_models, media.AudioClip(long_dub.samples, 48000), Fraction(25), 25)


def test_runner_is_deterministic_batch_independent_and_samples_by_seed(small_models):
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    windows = rng.normal(0, 1, (2, 50, 32)).astype(np.float32)
    pair = MuseTalkRunner(small_models, batch_size=2)
    mean = pair.run(crops, windows)
    assert mean.shape == (2, 256, 256, 3) and mean.dtype == np.uint8
    single = MuseTalkRunner(small_models, batch_size=1)
    assert np.abs(single.run(crops, windows).astype(int) - mean).max() <= 1  # float reassociation only
    seeds = np.array([5, 6])
    sampled = pair.run(crops, windows, sample_seeds=seeds)
    assert np.array_equal(sampled, pair.run(crops, windows, sample_seeds=seeds))
    assert not np.array_equal(sampled[:1], pair.run(crops[:1], windows[:1], sample_seeds=seeds[:1] + 1))
    assert not np.array_equal(sampled, mean)
    # Per-frame seeds: a frame's sample does not depend on its batch.
    alone = single.run(crops[1:], windows[1:], sample_seeds=seeds[1:])
    assert np.abs(alone.astype(int) - sampled[1:]).max() <= 1
    references = pair.reference_latents(crops[:1])
    assert references.shape == (1, 4, 32, 32)
    with_reference = pair.run(crops, windows, reference_latents=references.expand(2, -1, -1, -1))
    assert np.abs(with_reference[0].astype(int) - mean[0]).max() <= 1  # its own crop: the same reference
    assert not np.array_equal(with_reference[1], mean[1])


def test_cancel_stops_the_runner_between_batches(small_models):
    token = CancelToken()
    seen = []

    def progress(stage, done, total):
        seen.append(done)
        if done >= 1:
            token.cancel()

    crops = np.zeros((3, 256, 256, 3), np.uint8)
    with pytest.raises(CancelledError):
        MuseTalkRunner(small_models, batch_size=1).run(crops, np.zeros((3, 50, 32), np.float32), cancel=token, progress=progress)
    assert seen == [0, 1]


# --- end to end on shared media -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(shared_media, small_dir, tmp_path_factory):
    """speaker_a frames SPAN with the small fakes on CPU, one render per reference mode."""
    root = tmp_path_factory.mktemp("musetalk_e2e")
    results = {}
    for reference in ("same", "rest"):
        request = RenderRequest(
            video=shared_media / "speaker_a.mp4",
            audio=shared_media / "dub_en_16k.wav",
            span=f"{SPAN[0]}-{SPAN[1]}",
            out=root / f"patch_{reference}.mkv",
            matte=root / f"matte_{reference}.mkv",
            backend="musetalk",
            codec="ffv1",
            backend_options={"model_dir": str(small_dir), "device": "cpu", "batch_size": BATCH, "reference": reference},
        )
        results[reference] = render(request, cache_root=root / "cache")
    return root, results


def _frames(path: Path, first: int, end: int) -> list[np.ndarray]:
    rate = media.probe(path).video.rate
    return [f.image for f in media.read_span(path, timing.frames_to_range(first, end, rate))]


@pytest.mark.slow
def test_render_keeps_frames_timecode_and_everything_outside_the_matte(rendered, shared_media):
    _, results = rendered
    result = results["same"]
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
    assert min(changed_inside) > 2.0  # the generated (noise) face reached every frame


@pytest.mark.slow
def test_reference_modes_render_differently_and_rest_references_are_quiet(rendered, shared_media):
    root, results = rendered
    count = SPAN[1] - SPAN[0]
    same = np.stack(_frames(results["same"].out, 0, count)).astype(int)
    rest = np.stack(_frames(results["rest"].out, 0, count)).astype(int)
    inside = np.stack(_frames(results["same"].matte, 0, count))[..., 0] == 255
    assert np.abs(same - rest)[inside].mean() > 0.2
    analysis = analyse_clip(shared_media / "speaker_a.mp4", cache_root=root / "cache")  # cached: fast
    boxes = source_crop_boxes(analysis.faces, (analysis.info.video.height, analysis.info.video.width))
    assert reference_frames(analysis.faces, SPAN, "same", boxes[:, 0] >= 0).tolist() == list(range(*SPAN))
    chosen = reference_frames(analysis.faces, SPAN, "rest", boxes[:, 0] >= 0)
    quiet = np.percentile(analysis.faces.aperture[analysis.faces.usable], 10.0)
    assert np.all(chosen >= 0) and np.all(analysis.faces.aperture[chosen] <= quiet)


@pytest.mark.slow
def test_unusable_frames_pass_through_with_their_reasons(rendered, shared_media, small_dir):
    root, _ = rendered
    video = shared_media / "speaker_a.mp4"
    analysis = analyse_clip(video, cache_root=root / "cache")
    faces = analysis.faces
    reason = faces.reason.copy()
    reason[SPAN[0] + 1] = "turned_away"
    landmarks = faces.landmarks.copy()
    landmarks[SPAN[0] + 3] = landmarks[SPAN[0] + 3].mean(axis=0)  # a box of zero size: no crop
    altered = dataclasses.replace(analysis, faces=dataclasses.replace(faces, reason=reason, landmarks=landmarks))
    out = root / "patch_passthrough.mkv"
    result = render(
        RenderRequest(video=video, audio=shared_media / "dub_en_16k.wav", span=f"{SPAN[0]}-{SPAN[1]}", out=out,
                      backend="musetalk", codec="ffv1",
                      backend_options={"model_dir": str(small_dir), "device": "cpu", "batch_size": BATCH}),
        cache_root=root / "cache",
        analyses=FixedAnalyses({video.resolve(): altered}),
    )
    assert result.passthrough == {"turned_away": 1, "face box outside the frame": 1}
    assert result.frames_patched == SPAN[1] - SPAN[0] - 2
    source = _frames(video, *SPAN)
    patch = _frames(out, 0, SPAN[1] - SPAN[0])
    assert np.array_equal(patch[1], source[1]) and np.array_equal(patch[3], source[3])
    assert not np.array_equal(patch[0], source[0])


@pytest.mark.slow
def test_cancel_leaves_nothing_behind(rendered, shared_media, small_dir, tmp_path):
    root, _ = rendered
    token = CancelToken()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "render" and done == 2:
            token.cancel()

    out, matte = tmp_path / "p.mkv", tmp_path / "m.mkv"
    with pytest.raises(CancelledError):
        render(
            RenderRequest(video=shared_media / "speaker_a.mp4", audio=shared_media / "dub_en_16k.wav",
                          span=f"{SPAN[0]}-{SPAN[1]}", out=out, matte=matte, backend="musetalk", codec="ffv1",
                          backend_options={"model_dir": str(small_dir), "device": "cpu", "batch_size": BATCH}),
            progress=progress, cancel=token, cache_root=root / "cache",
        )
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "matte-writer"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_render_on_cuda_fp16_matches_the_cpu_render(rendered, shared_media, small_dir):
    root, results = rendered
    out = root / "patch_cuda.mkv"
    result = render(
        RenderRequest(video=shared_media / "speaker_a.mp4", audio=shared_media / "dub_en_16k.wav",
                      span=f"{SPAN[0]}-{SPAN[1]}", out=out, backend="musetalk", codec="ffv1",
                      backend_options={"model_dir": str(small_dir), "device": "cuda", "batch_size": BATCH}),
        cache_root=root / "cache",
    )
    count = SPAN[1] - SPAN[0]
    assert result.frames_patched == count
    cpu = np.stack(_frames(results["same"].out, 0, count)).astype(int)
    cuda = np.stack(_frames(out, 0, count)).astype(int)
    assert np.abs(cpu - cuda).mean() < 1.0  # fp16 vs fp32 differ by rounding only


@pytest.mark.weights
def test_render_with_official_weights(rendered, shared_media):
    import os

    try:
        layout.locate(Path(os.environ[MODELS_ENV]))
    except (KeyError, ModelNotFoundError):
        pytest.skip(f"${MODELS_ENV} does not hold the MuseTalk 1.5 layout")
    root, _ = rendered
    result = render(
        RenderRequest(video=shared_media / "speaker_a.mp4", audio=shared_media / "dub_en_16k.wav",
                      span=f"{SPAN[0]}-{SPAN[1]}", out=root / "patch_official.mkv", backend="musetalk", codec="ffv1"),
        cache_root=root / "cache",
    )
    assert result.frames_patched == SPAN[1] - SPAN[0]
