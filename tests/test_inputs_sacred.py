"""No output may ever be an input: same path, symlink, hard link or a symlinked directory, with or
without --overwrite, through every door (render, analyse, otio, the engine). Each case checks the
one-line refusal and that every input is byte-identical afterwards."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dubline.core.errors import OutputIsInputError
from dubline.core.paths import check_outputs, same_file
from mediagen import AudioSpec, make_audio, make_video, spec_for


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    video = make_video(tmp_path / "clip.mp4", spec_for("h264", frames=12, width=64, height=48))
    audio = make_audio(tmp_path / "dub.wav", AudioSpec(rate=16000, channels=1, seconds=1.0))
    return {"video": video, "audio": audio}


def _dubline(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", *map(str, args)], capture_output=True, text=True, timeout=120)


def _assert_refused(run: subprocess.CompletedProcess, *names: str) -> None:
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "same file as" in lines[0] or "are the same file" in lines[0], lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_same_file_sees_links_and_symlinked_directories(tmp_path: Path) -> None:
    original = tmp_path / "a.mov"
    original.write_bytes(b"x")
    (tmp_path / "hard.mov").hardlink_to(original)
    (tmp_path / "soft.mov").symlink_to(original)
    (tmp_path / "dir").symlink_to(tmp_path)
    assert same_file(tmp_path / "hard.mov", original)
    assert same_file(tmp_path / "soft.mov", original)
    assert same_file(tmp_path / "dir" / "a.mov", original)
    assert not same_file(tmp_path / "other.mov", original)
    with pytest.raises(OutputIsInputError):
        check_outputs({"--out": tmp_path / "hard.mov"}, {"--video": original})
    with pytest.raises(OutputIsInputError, match="--out and --matte"):
        check_outputs({"--out": tmp_path / "p.mov", "--matte": tmp_path / "dir" / "p.mov"}, {})


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink", "dirlink"])
def test_render_never_writes_over_the_source(inputs: dict[str, Path], tmp_path: Path, alias: str) -> None:
    video = inputs["video"]
    out = {
        "same": video,
        "symlink": tmp_path / "link.mp4",
        "hardlink": tmp_path / "hard.mp4",
        "dirlink": tmp_path / "via" / video.name,
    }[alias]
    if alias == "symlink":
        out.symlink_to(video)
    elif alias == "hardlink":
        out.hardlink_to(video)
    elif alias == "dirlink":
        (tmp_path / "via").symlink_to(tmp_path)
    before = {k: _sha(p) for k, p in inputs.items()}
    run = _dubline("render", "--video", video, "--audio", inputs["audio"], "--range", "0-10", "--out", out,
                   "--codec", "h264", "--overwrite")
    _assert_refused(run, "--out", "--video")
    assert {k: _sha(p) for k, p in inputs.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("flag,target", [("--matte", "video"), ("--otio", "audio"), ("--matte", "audio")])
def test_render_never_writes_a_matte_or_timeline_over_an_input(inputs: dict[str, Path], tmp_path: Path, flag: str, target: str) -> None:
    before = {k: _sha(p) for k, p in inputs.items()}
    run = _dubline("render", "--video", inputs["video"], "--audio", inputs["audio"], "--range", "0-10",
                   "--out", tmp_path / "patch.mov", flag, inputs[target], "--overwrite")
    _assert_refused(run, flag)
    assert {k: _sha(p) for k, p in inputs.items()} == before
    assert not (tmp_path / "patch.mov").exists()


def test_analyse_never_writes_over_its_video(inputs: dict[str, Path]) -> None:
    before = _sha(inputs["video"])
    run = _dubline("analyse", "--video", inputs["video"], "--overlay", inputs["video"], "--overwrite")
    _assert_refused(run, "--overlay")
    assert _sha(inputs["video"]) == before


def test_otio_never_writes_the_patch_over_the_clip_media(inputs: dict[str, Path], tmp_path: Path) -> None:
    import opentimelineio as otio

    rate = 25.0
    timeline = otio.schema.Timeline(name="t")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    reference = otio.schema.ExternalReference(
        target_url=str(inputs["video"]),
        available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(12, rate)),
    )
    track.append(otio.schema.Clip(name="shot", media_reference=reference,
                                  source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate),
                                                                       otio.opentime.RationalTime(10, rate))))
    timeline.tracks.append(track)
    timeline_path = tmp_path / "in.otio"
    otio.adapters.write_to_file(timeline, str(timeline_path))
    before = {k: _sha(p) for k, p in {**inputs, "timeline": timeline_path}.items()}
    run = _dubline("otio", "--timeline", timeline_path, "--clip", "shot", "--audio", inputs["audio"],
                   "--out", tmp_path / "out.otio", "--patch", inputs["video"], "--overwrite")
    _assert_refused(run, "--patch")
    run = _dubline("otio", "--timeline", timeline_path, "--clip", "shot", "--audio", inputs["audio"],
                   "--out", timeline_path, "--overwrite")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert {k: _sha(p) for k, p in {**inputs, "timeline": timeline_path}.items()} == before


def test_engine_refuses_out_equal_to_video(inputs: dict[str, Path], tmp_path: Path) -> None:
    from dubline.apps.server.app import create_server
    from dubline_client import EngineClient, EngineError, frames_span, render_spec

    server, port = create_server("127.0.0.1:0", media_roots=[tmp_path], cache_root=tmp_path / "cache",
                                 work_dir=tmp_path / "work")
    server.start()
    before = _sha(inputs["video"])
    try:
        with EngineClient(f"127.0.0.1:{port}", timeout=10) as client:
            spec = render_spec(str(inputs["video"]), str(inputs["audio"]), frames_span(0, 10, 25), str(inputs["video"]),
                               codec="h264", overwrite=True)
            with pytest.raises(EngineError) as caught:
                list(client.render(spec))
    finally:
        server.stop(1)
    assert caught.value.code == "INVALID_ARGUMENT" and "same file as" in caught.value.message
    assert _sha(inputs["video"]) == before
    assert os.path.getsize(inputs["video"]) > 0
