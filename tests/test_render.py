"""The main job end to end on real footage: exact frames and timecode, untouched pixels outside the
matte, the OTIO placement, and clear results for bad input (never a traceback)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from dubline.apps.cli.main import main as cli
from dubline.core import timing
from dubline.core.errors import CancelledError, NoFaceError
from dubline.core.progress import CancelToken
from dubline.pipeline import RenderRequest, render
from dubline.stages import media
from conftest import set_cpu_budget
from mediagen import AudioSpec, make_video, spec_for


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def speaker_b(shared_media: Path) -> Path:
    return shared_media / "speaker_b.mp4"


def _frames(path: Path, first: int, end: int) -> list[np.ndarray]:
    rate = media.probe(path).video.rate
    return [f.image for f in media.read_span(path, timing.frames_to_range(first, end, rate))]


@pytest.mark.slow
def test_mid_clip_span_is_exact_and_outside_the_matte_untouched(tmp_path, cache, speaker_b, shared_media) -> None:
    out, matte, timeline = tmp_path / "patch.mov", tmp_path / "matte.mov", tmp_path / "patch.otio"
    result = render(
        RenderRequest(video=speaker_b, audio=shared_media / "dub_en_16k.wav", span="30-54", out=out,
                      codec="png", matte=matte, otio_path=timeline),
        cache_root=cache,
    )
    info = media.probe(out)
    assert info.video.frame_count == 24 == result.frames_written
    assert info.video.start_timecode == "00:00:01:05"  # frame 30 at 25 fps
    assert result.frames_patched > 12
    patch, source, mattes = _frames(out, 0, 24), _frames(speaker_b, 30, 54), _frames(matte, 0, 24)
    changed_inside = 0
    for out_image, src_image, matte_image in zip(patch, source, mattes):
        outside = matte_image[..., 0] == 0
        assert np.array_equal(out_image[outside], src_image[outside])
        changed_inside += int(np.any(out_image[~outside] != src_image[~outside]))
    assert changed_inside >= result.frames_patched - 1
    placed = otio.adapters.read_from_file(str(timeline)).video_tracks()[1]
    clip = placed[-1]
    assert placed.range_of_child(clip).start_time.to_frames() == 30
    assert clip.source_range.duration.to_frames() == 24


@pytest.mark.slow
def test_whole_clip_and_single_frame(tmp_path, cache, speaker_b, shared_media) -> None:
    whole = render(RenderRequest(video=speaker_b, audio=shared_media / "dub_en_48k_stereo.wav", span="0-122",
                                 out=tmp_path / "whole.mp4", codec="h264"), cache_root=cache)
    assert media.probe(whole.out).video.frame_count == 122
    assert media.probe(whole.out).video.start_timecode == "00:00:00:00"
    one = render(RenderRequest(video=speaker_b, audio=shared_media / "dub_en_48k_stereo.wav", span="121-122",
                               out=tmp_path / "one.mov", codec="prores"), cache_root=cache)
    assert media.probe(one.out).video.frame_count == 1
    assert media.probe(one.out).video.start_timecode == "00:00:04:21"


@pytest.mark.slow
def test_dub_far_longer_than_the_span_is_trimmed_with_a_warning(tmp_path, cache, speaker_b, shared_media) -> None:
    result = render(RenderRequest(video=speaker_b, audio=shared_media / "dub_ja_24bit.wav", span="0-25",
                                  out=tmp_path / "p.mov", codec="prores"), cache_root=cache)
    assert any("trimmed" in w for w in result.warnings)


@pytest.mark.slow
def test_silent_dub_keeps_the_mouth_closed_or_at_rest(tmp_path, cache, speaker_b) -> None:
    silence = media.write_audio(media.AudioClip(np.zeros(96000, np.float32), 48000), tmp_path / "silence.wav")
    result = render(RenderRequest(video=speaker_b, audio=silence, span="10-40", out=tmp_path / "p.mov",
                                  codec="png"), cache_root=cache)
    assert any("no speech" in w for w in result.warnings)
    from dubline.core.landmarks import inner_lip_aperture
    from dubline.stages.faces import FaceTrackParams, detect_frame

    apertures = []
    for image in _frames(result.out, 0, 30)[::5]:
        faces = detect_frame(image, FaceTrackParams())
        apertures.append(inner_lip_aperture(max(faces, key=lambda f: f.area).landmarks))
    assert max(apertures) < 0.12


@pytest.mark.slow
@pytest.mark.parametrize("backend,options", [("retrieval", {}),
                                             ("wav2lip", {"deterministic": True, "device": "cpu", "batch_size": 8})])
def test_threaded_frame_loop_writes_the_one_thread_loops_frames(tmp_path, cache, speaker_b, shared_media, backend,
                                                                options, monkeypatch) -> None:
    # Real backends on threads: the retrieval backend transfers mouths on two threads, the wav2lip
    # generator runs a chunk ahead on another; neither may change a pixel against a process kept to
    # one CPU, where the loop, the transfers and the generator all run in this thread.
    outputs = {}
    for pipelined in (True, False):
        set_cpu_budget(monkeypatch, None if pipelined else "1", needs_cores=True)
        out, matte = tmp_path / f"{pipelined}.mkv", tmp_path / f"{pipelined}_matte.mkv"
        result = render(RenderRequest(video=speaker_b, audio=shared_media / "dub_en_16k.wav", span="30-56", out=out,
                                      codec="ffv1", matte=matte, backend=backend, backend_options=options),
                        cache_root=cache)
        assert result.frames_patched > 20
        outputs[pipelined] = (_frames(out, 0, 26), _frames(matte, 0, 26))
    for threaded, inline in zip(outputs[True], outputs[False]):
        for a, b in zip(threaded, inline, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("render-", "writer-", "dubline-retrieval"))]


@pytest.mark.slow
def test_cancel_leaves_nothing_behind(tmp_path, cache, speaker_b, shared_media) -> None:
    token = CancelToken()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "render" and done == 3:
            token.cancel()

    out, matte = tmp_path / "p.mov", tmp_path / "m.mov"
    with pytest.raises(CancelledError):
        render(RenderRequest(video=speaker_b, audio=shared_media / "dub_en_16k.wav", span="0-100", out=out,
                             codec="prores", matte=matte), progress=progress, cancel=token, cache_root=cache)
    assert list(tmp_path.iterdir()) == []
    # the frame loop's threads and the matte writer's are gone too
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("render-", "writer-"))]


@pytest.mark.slow
def test_cli_json_and_bad_input(tmp_path, speaker_b, shared_media, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DUBLINE_CACHE", str(tmp_path / "cache"))
    dub = str(shared_media / "dub_en_16k.wav")
    out = tmp_path / "p.mov"
    assert cli(["render", "--video", str(speaker_b), "--audio", dub, "--range", "5-15", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_written"] == 10 and report["backend"] == "retrieval"
    assert set(report["stage_seconds"]) >= {"analyse_source", "render_and_encode", "render.decode", "render.encode"}
    assert set(report["loop_shares"]) == {"decode", "backend", "composite", "matte", "encode"}
    # the same output again without --overwrite: refused, file untouched
    before = out.stat().st_mtime_ns
    assert cli(["render", "--video", str(speaker_b), "--audio", dub, "--range", "5-15", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    cases = {
        "does not exist": ["--video", str(tmp_path / "nope.mp4"), "--range", "0-5"],
        "outside": ["--video", str(speaker_b), "--range", "100-200"],
        "reversed": ["--video", str(speaker_b), "--range", "20-10"],
    }
    for expected, arguments in cases.items():
        code = cli(["render", "--audio", dub, "--out", str(tmp_path / "x.mov"), *arguments])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and "Traceback" not in err
    assert cli(["render", "--video", str(speaker_b), "--audio", dub, "--range", "0-5",
                "--out", str(tmp_path / "missing" / "x.mov")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_face_in_the_span_is_a_clear_error(tmp_path, shared_media) -> None:
    clip = make_video(tmp_path / "noface.mp4", spec_for("h264", width=128, height=96, frames=12),
                      audio=AudioSpec(rate=48000, channels=1, seconds=0.5))
    with pytest.raises(NoFaceError, match="no usable face"):
        render(RenderRequest(video=clip, audio=shared_media / "dub_en_16k.wav", span="0-12",
                             out=tmp_path / "p.mov"), cache_root=tmp_path / "cache")
    assert not (tmp_path / "p.mov").exists()


@pytest.mark.slow
def test_source_without_audio_uses_default_calibration(tmp_path, cache, speaker_b, shared_media) -> None:
    silent_video = media.write_patch(_frames(speaker_b, 0, 40), tmp_path / "mute.mov", "h264",
                                     media.probe(speaker_b).video.rate)
    result = render(RenderRequest(video=silent_video, audio=shared_media / "dub_en_16k.wav", span="0-40",
                                  out=tmp_path / "p.mov"), cache_root=cache)
    assert result.frames_written == 40
    assert any("calibration uses defaults" in w for w in result.warnings)


@pytest.mark.slow
def test_cli_negative_offset_with_qc(tmp_path, speaker_b, shared_media, capsys, monkeypatch) -> None:
    """render and qc read the dub with the same reader: a negative offset (the dub starts later than
    the span) renders and is measured, where qc used to refuse what render had accepted."""
    monkeypatch.setenv("DUBLINE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "p.mov"
    code = cli(["render", "--video", str(speaker_b), "--audio", str(shared_media / "dub_en_16k.wav"), "--range", "20-32",
                "--out", str(out), "--audio-offset", "-0.5", "--qc", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["frames_written"] == 12 and report["qc"]["frames"] == 12


def test_cli_backend_options_reach_the_backend_before_analysis(tmp_path, speaker_b, shared_media, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DUBLINE_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("DUBLINE_CACHE", str(tmp_path / "cache"))
    args = ["render", "--video", str(speaker_b), "--audio", str(shared_media / "dub_en_16k.wav"), "--range", "0-5",
            "--out", str(tmp_path / "p.mov"), "--backend", "wav2lip"]
    assert cli([*args, "--backend-option", "device=cpu"]) == 2
    assert "wav2lip_gan.pth" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # failed before any analysis
    assert cli([*args, "--backend-option", "batch_size=many"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert cli([*args, "--backend-option", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
