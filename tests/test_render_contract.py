"""render()'s own logic, fast: synthetic 8-frame clips, the fake analysis and fake backend of
``fakes.py`` (no dlib, no weights), the real media, speech and composite stages. Covers exact
frames and timecode, pixels outside the matte, passthrough reasons, cancel, length policies,
preflight before analysis, and nothing half-written on failure."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from dubline.core import timing
from dubline.core.errors import (
    CancelledError,
    InvalidInputError,
    ModelNotFoundError,
    NoFaceError,
)
from dubline.core.progress import CancelToken
from dubline.pipeline import RenderRequest, render
from dubline.stages import media
from fakes import FakeAnalyses, register_fake_backend, write_clip


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def _dub(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    samples = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return media.write_audio(media.AudioClip(samples, 16000), path)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mkv", frames=8)


def _request(clip: Path, tmp_path: Path, **changes) -> RenderRequest:
    fields = dict(video=clip, audio=_dub(tmp_path / "dub.wav", 0.32) if not (tmp_path / "dub.wav").exists() else tmp_path / "dub.wav",
                  span="2-7", out=tmp_path / "patch.mkv", codec="ffv1", matte=tmp_path / "matte.mkv", backend="fake")
    fields.update(changes)
    return RenderRequest(**fields)


def _frames(path: Path) -> list[np.ndarray]:
    info = media.probe(path)
    return [f.image for f in media.read_span(path, timing.frames_to_range(0, info.video.frame_count, info.video.rate))]


def test_exact_frames_timecode_and_untouched_pixels(clip: Path, tmp_path: Path) -> None:
    analyses = FakeAnalyses()
    result = render(_request(clip, tmp_path), analyses=analyses, cache_root=tmp_path / "cache")
    assert result.span == (2, 7) and result.frames_written == 5 and result.frames_patched == 5
    assert result.start_timecode == "01:00:00:02"
    patch_info = media.probe(result.out)
    assert patch_info.video.frame_count == 5 and patch_info.video.start_timecode == "01:00:00:02"
    source, patch, matte = _frames(clip)[2:7], _frames(result.out), _frames(result.matte)
    for src, out, alpha in zip(source, patch, matte):
        outside = alpha[..., 0] == 0
        assert outside.any() and (~outside).any()
        np.testing.assert_array_equal(out[outside], src[outside])  # bit-exact outside the matte
        full = alpha[..., 0] == 255
        # Inside, the backend's flat patch (colour-matched to the skin ring) replaced the noise.
        assert full.any() and out[full].std(axis=0).max() < 0.2 * src[full].std(axis=0).min()
    assert analyses.calls == [clip]


def test_passthrough_reasons_are_counted(clip: Path, tmp_path: Path) -> None:
    analyses = FakeAnalyses(no_face_frames=frozenset({4}))
    request = _request(clip, tmp_path, backend_options={"passthrough": "0:occluded,1:occluded"})
    result = render(request, analyses=analyses, cache_root=tmp_path / "cache")
    assert result.passthrough == {"occluded": 2, "no_face": 1}
    assert result.frames_patched == 2
    assert any("frames passed through untouched: 1 no_face, 2 occluded" in w for w in result.warnings)
    source, patch = _frames(clip)[2:7], _frames(result.out)
    for row in (0, 1, 2):  # frames 2, 3 and 4 are the source's own
        np.testing.assert_array_equal(patch[row], source[row])


def test_no_usable_face_in_the_span_is_refused(clip: Path, tmp_path: Path) -> None:
    analyses = FakeAnalyses(no_face_frames=frozenset(range(2, 7)))
    with pytest.raises(NoFaceError, match="no usable face of the speaker in frames 2-7"):
        render(_request(clip, tmp_path), analyses=analyses, cache_root=tmp_path / "cache")
    assert not (tmp_path / "patch.mkv").exists() and not (tmp_path / "matte.mkv").exists()


def test_preflight_fails_before_any_analysis(clip: Path, tmp_path: Path) -> None:
    analyses = FakeAnalyses()
    with pytest.raises(ModelNotFoundError, match="weights missing"):
        render(_request(clip, tmp_path, backend_options={"fail_preflight": "weights missing"}), analyses=analyses)
    assert analyses.calls == []


def test_cancel_mid_span_leaves_nothing(clip: Path, tmp_path: Path) -> None:
    token = CancelToken()
    seen = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "render" and done == 2:
            token.cancel()
            seen.set()

    with pytest.raises(CancelledError):
        render(_request(clip, tmp_path), progress=progress, cancel=token, analyses=FakeAnalyses(),
               cache_root=tmp_path / "cache")
    assert seen.is_set()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clip.mkv", "dub.wav"]


@pytest.mark.parametrize("policy,dub_seconds,ok", [
    ("pad_or_trim", 0.1, True), ("pad", 0.1, True), ("trim", 0.1, False), ("error", 0.1, False),
    ("trim", 1.0, True), ("pad", 1.0, False),
])
def test_length_policies(clip: Path, tmp_path: Path, policy: str, dub_seconds: float, ok: bool) -> None:
    request = _request(clip, tmp_path, audio=_dub(tmp_path / "short.wav", dub_seconds), length_policy=policy)
    if ok:
        result = render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
        assert result.frames_written == 5
    else:
        with pytest.raises(InvalidInputError, match=f"length_policy={policy!r}"):
            render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
        assert not request.out.exists()


def test_negative_offset_and_otio(clip: Path, tmp_path: Path) -> None:
    request = _request(clip, tmp_path, audio_offset=timing.seconds_time(Fraction(-1, 10)), otio_path=tmp_path / "t.otio")
    result = render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert result.otio_path == tmp_path / "t.otio" and result.otio_path.exists()


def test_request_validation_names_fields_per_door(clip: Path, tmp_path: Path) -> None:
    from dubline.pipeline import SPEC_LABELS

    with pytest.raises(InvalidInputError, match="--codec 'mpeg1'"):
        _request(clip, tmp_path, codec="mpeg1")
    with pytest.raises(InvalidInputError, match="spec.codec 'mpeg1'"):
        _request(clip, tmp_path, codec="mpeg1", labels=SPEC_LABELS)
    with pytest.raises(InvalidInputError, match="--expression"):
        _request(clip, tmp_path, expression="grin")
    with pytest.raises(InvalidInputError, match="prores patches go in .mov"):
        _request(clip, tmp_path, codec="prores")
    with pytest.raises(InvalidInputError, match="--audio-offset 'soon'"):
        RenderRequest.from_text(video=clip, audio=tmp_path / "dub.wav", span="0-2", out=tmp_path / "o.mkv", codec="ffv1",
                                audio_offset="soon")
    request = RenderRequest.from_text(video=clip, audio=tmp_path / "dub.wav", span="0-2", out=tmp_path / "o.mkv",
                                      codec="ffv1", audio_offset="-0.5s", backend_options=["a=1", "b = 2"])
    assert timing.seconds_of(request.audio_offset) == Fraction(-1, 2)
    assert dict(request.backend_options) == {"a": "1", "b": "2"}
