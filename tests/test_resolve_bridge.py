"""The Resolve bridge (plugin/resolve) against the API stand-in, and end to end against a real engine.

Resolve itself cannot run here: tests/resolve_standin.py implements the documented calls the bridge
uses. The live check in Resolve is outstanding (docs/RESOLVE.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "plugin" / "resolve"))

import dubline_resolve  # noqa: E402
from dubline_resolve import (  # noqa: E402
    BridgeSettings,
    EngineUnavailableError,
    MediaError,
    PlacementError,
    ResolveStateError,
    place_patch,
    select_span,
)
from dubline_resolve.otio_roundtrip import (  # noqa: E402
    clip_argument,
    export_timeline_otio,
    import_timeline_otio,
    run_dubline_otio,
)
from resolve_standin import (  # noqa: E402
    FakeMedia,
    StandInResolve,
    TimelineItem,
    pyav_probe,
)

DUBLINE = Path(sys.executable).with_name("dubline")


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "interview.mov"
    path.write_bytes(b"not decoded by the stand-in")
    return path


def _setup(source: Path, frame_rate: str = "25", start: int = 90000, drop_frame: bool = False,
           version=(20, 2, 0), inclusive: bool = True, fps: str | None = None):
    resolve = StandInResolve(version=version, end_frame_inclusive=inclusive, probe=FakeMedia(1000, fps or frame_rate.replace(" DF", "")))
    project, timeline = resolve.open_timeline(start_frame=start, frame_rate=frame_rate, drop_frame=drop_frame)
    clip = project.GetMediaPool().ImportMedia([str(source)])[0]
    item = timeline.add_item(1, TimelineItem(resolve, clip, start + 100, 50, 37))
    timeline.playhead = start + 120
    return resolve, project, timeline, item


# -- configuration ---------------------------------------------------------------------------------

def test_default_engine_address_is_the_one_dubline_serve_listens_on() -> None:
    from dubline.apps.cli.serve import DEFAULT_LISTEN

    assert dubline_resolve.DEFAULT_ENGINE_ADDRESS == DEFAULT_LISTEN


def test_bridge_imports_without_torch_or_the_engine() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import dubline_resolve, dubline_resolve.flow; "
            "bad = [m for m in ('torch', 'dubline', 'av', 'opentimelineio') if m in sys.modules]; print(bad)")
    result = subprocess.run([sys.executable, "-c", code, str(REPOSITORY / "plugin" / "resolve")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_settings_come_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    config = tmp_path / "resolve.json"
    config.write_text('{"engine": "unix:/run/dubline.sock", "codec": "dnxhr", "token_file": "%s"}' % token)
    settings = dubline_resolve.load_settings({}, config)
    assert (settings.engine_address, settings.codec, settings.token) == ("unix:/run/dubline.sock", "dnxhr", "0123456789abcdef0123")
    overridden = dubline_resolve.load_settings({"DUBLINE_ENGINE": "127.0.0.1:6000", "DUBLINE_CODEC": "h264"}, config)
    assert (overridden.engine_address, overridden.codec) == ("127.0.0.1:6000", "h264")
    assert dubline_resolve.load_settings({}, tmp_path / "absent.json").engine_address == dubline_resolve.DEFAULT_ENGINE_ADDRESS
    with pytest.raises(MediaError, match="unknown patch codec 'mpeg2'"):
        dubline_resolve.load_settings({"DUBLINE_CODEC": "mpeg2"}, tmp_path / "absent.json")


def test_the_bridge_reaches_an_engine_on_another_machine_over_tls(tls_engine: str, certificate, tmp_path: Path) -> None:
    from conftest import TLS_ENGINE_TOKEN

    token = tmp_path / "token"
    token.write_text(TLS_ENGINE_TOKEN + "\n")
    config = tmp_path / "resolve.json"
    config.write_text(json.dumps({"engine": tls_engine, "token_file": str(token), "tls_ca": str(certificate[0])}))
    settings = dubline_resolve.load_settings({}, config)
    with dubline_resolve.connect(settings) as client:
        assert client.health() == "SERVING"
        assert client.capabilities().api == "dubline.v1"
    # The OTIO path hands the same authority to `dubline otio`.
    from types import SimpleNamespace

    from dubline_resolve.otio_roundtrip import dubline_otio_command

    span = SimpleNamespace(source_first=0, source_end=10)  # the command needs only the frames
    command = dubline_otio_command(settings, tmp_path / "in.otio", "clip", span, str(tmp_path / "dub.wav"),
                                   tmp_path / "out.otio")
    assert command[command.index("--tls-ca") + 1] == str(certificate[0])
    with pytest.raises(dubline_resolve.EngineUnavailableError, match="not a readable file"):
        dubline_resolve.load_settings({"DUBLINE_TLS_CA": str(tmp_path / "absent.pem")}, config)


# -- selection and source frames ---------------------------------------------------------------------

@pytest.mark.parametrize("frame_rate, start, drop_frame, rate, record_tc", [
    ("24", 86400, False, (24, 1), "01:00:04:04"),
    ("25", 90000, False, (25, 1), "01:00:04:00"),
    ("23.976", 86400, False, (24000, 1001), "01:00:04:04"),
    ("29.97", 107892, True, (30000, 1001), "01:00:03;10"),
])
def test_source_frames_from_left_offset_at_an_hour_start(source: Path, frame_rate, start, drop_frame, rate, record_tc) -> None:
    resolve, project, timeline, _ = _setup(source, frame_rate, start, drop_frame)
    span = select_span(project, timeline)
    assert (span.source_first, span.source_end, span.record_first) == (37, 87, start + 100)
    assert (span.rate.numerator, span.rate.denominator) == rate and span.drop_frame == drop_frame
    assert not span.from_marks and span.media_path == str(source)
    assert f"record {record_tc}-" in span.describe()

    timeline.set_marks(110, 119)  # marks count from the timeline start; the out mark is the last frame
    marked = select_span(project, timeline)
    assert (marked.source_first, marked.source_end, marked.record_first, marked.frame_count) == (47, 57, start + 110, 10)
    assert marked.from_marks
    assert (select_span(project, timeline, use_marks=False).frame_count) == 50


def test_drop_frame_written_in_the_rate_setting(source: Path) -> None:
    _, project, timeline, _ = _setup(source, "29.97 DF", 107892, drop_frame=False, fps="29.97")
    assert select_span(project, timeline).drop_frame


def test_a_single_mark_limits_one_side(source: Path) -> None:
    _, project, timeline, _ = _setup(source)
    timeline.set_marks(130, None)
    span = select_span(project, timeline)
    assert (span.record_first, span.record_end, span.source_first) == (90130, 90150, 67)


def test_marks_outside_the_clip_are_refused(source: Path) -> None:
    _, project, timeline, _ = _setup(source)
    timeline.set_marks(140, 160)
    with pytest.raises(ResolveStateError, match=r"01:00:05:15-01:00:06:11 is not inside 'interview.mov' \(01:00:04:00-01:00:06:00\)"):
        select_span(project, timeline)


def test_without_get_mark_in_out_the_whole_item_is_used(source: Path) -> None:
    _, project, timeline, _ = _setup(source, version=(18, 5, 0))
    timeline.set_marks(110, 119)
    assert not hasattr(timeline, "GetMarkInOut")
    assert select_span(project, timeline).frame_count == 50


def test_the_topmost_item_under_the_playhead_is_chosen(source: Path, tmp_path: Path) -> None:
    resolve, project, timeline, _ = _setup(source)
    other = tmp_path / "closeup.mov"
    other.write_bytes(b"x")
    clip = project.GetMediaPool().ImportMedia([str(other)])[0]
    timeline.add_item(2, TimelineItem(resolve, clip, 90110, 20, 500))
    span = select_span(project, timeline)
    assert (span.media_path, span.source_first, span.record_first) == (str(other), 500, 90110)


def test_a_source_start_frame_that_disagrees_is_reported(source: Path) -> None:
    resolve, project, timeline, _ = _setup(source)
    resolve.source_start_skew = -1
    span = select_span(project, timeline)
    assert span.source_first == 37 and "GetSourceStartFrame() says 36" in span.warnings[0]


def test_mixed_rates_are_refused(source: Path) -> None:
    _, project, timeline, _ = _setup(source, "25", fps="50")
    with pytest.raises(MediaError, match="50.000 fps on a 25.000 fps timeline"):
        select_span(project, timeline)


# -- errors ------------------------------------------------------------------------------------------

def test_no_project_or_timeline(source: Path) -> None:
    resolve = StandInResolve(probe=FakeMedia())
    with pytest.raises(ResolveStateError, match="no project is open"):
        dubline_resolve.current_project_and_timeline(resolve)
    project, _ = resolve.open_timeline()
    project.current = None
    with pytest.raises(ResolveStateError, match="has no current timeline"):
        dubline_resolve.current_project_and_timeline(resolve)


def test_no_video_item_under_the_playhead(source: Path) -> None:
    _, project, timeline, _ = _setup(source)
    timeline.playhead = 90000
    with pytest.raises(ResolveStateError, match="no video clip under the playhead on timeline 'Edit'"):
        select_span(project, timeline)


def test_items_without_a_media_file(source: Path) -> None:
    resolve, project, timeline, item = _setup(source)
    timeline.add_item(2, TimelineItem(resolve, None, 90110, 20, 0, name="Text+"))
    with pytest.raises(MediaError, match="'Text\\+' has no media pool clip"):
        select_span(project, timeline)
    timeline.tracks.pop()
    source.unlink()
    with pytest.raises(MediaError, match="the media file of 'interview.mov' is not there"):
        select_span(project, timeline)
    item.pool_item.path = ""
    with pytest.raises(MediaError, match="has no media file behind it"):
        select_span(project, timeline)


def test_missing_dub_and_unreachable_engine(source: Path, tmp_path: Path) -> None:
    resolve, _, _, _ = _setup(source)
    nowhere = BridgeSettings(engine_address=f"unix:{tmp_path / 'no-engine.sock'}", connect_timeout=0.5)
    with pytest.raises(MediaError, match="the dub audio file is not there"):
        dubline_resolve.patch_current_item(resolve, str(tmp_path / "dub.wav"), nowhere, report=lambda line: None)
    dub = tmp_path / "dub.wav"
    dub.write_bytes(b"RIFF")
    with pytest.raises(EngineUnavailableError, match="no dubline engine answers at unix:.*no-engine.sock.*dubline serve"):
        dubline_resolve.patch_current_item(resolve, str(dub), nowhere, report=lambda line: None)


# -- placement and the endFrame off-by-one ---------------------------------------------------------------

@pytest.mark.parametrize("inclusive", [True, False])
def test_placement_is_read_back_and_corrected(source: Path, tmp_path: Path, inclusive: bool) -> None:
    resolve, project, timeline, _ = _setup(source, inclusive=inclusive)
    patch = tmp_path / "patch.mov"
    patch.write_bytes(b"x")
    resolve.probe = FakeMedia(10, "25")
    lines: list[str] = []
    placed = place_patch(timeline, project.GetMediaPool(), str(patch), 90110, 10, lines.append)
    assert (placed.track_index, timeline.GetTrackCount("video")) == (2, 2)
    assert (placed.item.GetStart(), placed.item.GetDuration(), placed.item.GetEnd()) == (90110, 10, 90120)
    assert placed.end_frame_inclusive is inclusive
    assert placed.appends == (1 if inclusive else 2)
    assert timeline.GetItemListInTrack("video", 2) == [placed.item]  # the mis-sized first try is gone
    assert bool(lines) is not inclusive


def test_failed_placement_leaves_nothing_behind(source: Path, tmp_path: Path) -> None:
    resolve, project, timeline, _ = _setup(source)
    patch = tmp_path / "short.mov"
    patch.write_bytes(b"x")
    resolve.probe = FakeMedia(6, "25")  # the file holds fewer frames than the span
    pool = project.GetMediaPool()
    before = list(pool.clips)
    with pytest.raises(PlacementError, match="did not place the patch on V2 at frame 90110"):
        place_patch(timeline, pool, str(patch), 90110, 10, lambda line: None)
    assert timeline.GetTrackCount("video") == 1 and pool.clips == before


def test_placement_needs_add_track(source: Path, tmp_path: Path) -> None:
    _, project, timeline, _ = _setup(source, version=(18, 0, 4))
    patch = tmp_path / "patch.mov"
    patch.write_bytes(b"x")
    with pytest.raises(PlacementError, match="needs Resolve 18.5 or later"):
        place_patch(timeline, project.GetMediaPool(), str(patch), 90110, 10, lambda line: None)
    assert len(project.GetMediaPool().clips) == 1


# -- OTIO path pieces --------------------------------------------------------------------------------------

def test_clip_argument_uses_the_name_unless_it_is_ambiguous(source: Path) -> None:
    resolve, project, timeline, item = _setup(source)
    assert clip_argument(timeline, item.GetName(), item) == "interview.mov"
    timeline.add_item(1, TimelineItem(resolve, item.pool_item, 90000, 50, 0))
    assert clip_argument(timeline, item.GetName(), item) == "#2"


def test_otio_export_needs_18_5_and_import_refuses_file_urls(source: Path, tmp_path: Path) -> None:
    resolve, project, timeline, _ = _setup(source, version=(18, 0, 4))
    with pytest.raises(dubline_resolve.OtioRoundTripError, match="needs Resolve 18.5"):
        export_timeline_otio(resolve, timeline, tmp_path / "a.otio")
    resolve.version = (20, 2, 0)
    exported = tmp_path / "a.otio"
    export_timeline_otio(resolve, timeline, exported)
    with pytest.raises(dubline_resolve.OtioRoundTripError, match="exists"):
        export_timeline_otio(resolve, timeline, exported)
    as_url = tmp_path / "url.otio"
    as_url.write_text(exported.read_text().replace(f'"{source}"', f'"file://{source}"'))
    with pytest.raises(dubline_resolve.OtioRoundTripError, match="Resolve 20 only imports plain paths"):
        import_timeline_otio(project.GetMediaPool(), as_url, "patched")
    imported = import_timeline_otio(project.GetMediaPool(), exported, "copy")
    assert imported.GetItemListInTrack("video", 1)[0].GetStart() == 90100


def test_a_failing_dubline_otio_reports_its_last_error_line() -> None:
    def runner(command, **kwargs):
        return subprocess.CompletedProcess(command, 2, "", "reading...\ndubline: span 900-910 crosses the clip's end\n")

    with pytest.raises(dubline_resolve.OtioRoundTripError, match="dubline otio failed: dubline: span 900-910 crosses"):
        run_dubline_otio(["dubline", "otio"], runner=runner)
    with pytest.raises(dubline_resolve.OtioRoundTripError, match="not on PATH"):
        run_dubline_otio(["/nonexistent/dubline", "otio"])


# -- end to end against a real engine --------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tmp_path_factory, shared_media: Path):
    root = tmp_path_factory.mktemp("resolve-engine")
    for name in ("speaker_b.mp4", "dub_en_16k.wav"):
        shutil.copy(shared_media / name, root / name)
    socket = root / "engine.sock"
    environment = dict(os.environ, DUBLINE_CACHE=str(root / "cache"))
    process = subprocess.Popen([str(DUBLINE), "serve", "--listen", f"unix:{socket}", "--grace", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    line = process.stdout.readline()
    assert line.startswith("dubline engine listening on "), process.stderr.read() if process.poll() is not None else line
    yield root, line.removeprefix("dubline engine listening on ").strip()
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def _real_timeline(root: Path):
    resolve = StandInResolve(probe=pyav_probe)
    project, timeline = resolve.open_timeline(start_frame=90000, frame_rate="25")
    clip = project.GetMediaPool().ImportMedia([str(root / "speaker_b.mp4")])[0]
    timeline.add_item(1, TimelineItem(resolve, clip, 90200, 40, 30))
    timeline.playhead = 90210
    timeline.set_marks(205, 214)  # 10 frames: source 35-45
    return resolve, project, timeline


@pytest.mark.slow
def test_full_flow_against_a_real_engine(engine, tmp_path: Path) -> None:
    root, address = engine
    resolve, project, timeline = _real_timeline(root)
    settings = BridgeSettings(engine_address=address, codec="h264", patch_dir=str(tmp_path))
    lines: list[str] = []
    result = dubline_resolve.patch_current_item(resolve, str(root / "dub_en_16k.wav"), settings, report=lines.append)
    assert (result.span.source_first, result.span.source_end) == (35, 45)
    assert result.patch_path.parent == tmp_path and result.patch_path.is_file()
    assert pyav_probe(str(result.patch_path))[0] == 10
    placed = result.placement
    assert (placed.track_index, placed.item.GetStart(), placed.item.GetDuration()) == (2, 90205, 10)
    assert placed.item.GetMediaPoolItem().GetClipProperty("File Path") == str(result.patch_path)
    assert timeline.GetItemListInTrack("video", 1)[0].GetStart() == 90200  # the original is untouched
    assert any(line.startswith("dubline: render") for line in lines), lines


def _dubline_otio_available() -> bool:
    try:
        return subprocess.run([str(DUBLINE), "otio", "--help"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
def test_otio_round_trip_against_a_real_engine(engine, tmp_path: Path) -> None:
    if not _dubline_otio_available():
        pytest.skip("`dubline otio` is not available yet")
    root, address = engine
    resolve, project, timeline = _real_timeline(root)
    settings = BridgeSettings(engine_address=address, codec="h264", dubline_cli=str(DUBLINE))
    result = dubline_resolve.patch_via_otio(resolve, str(root / "dub_en_16k.wav"), settings, work_dir=tmp_path,
                                            report=lambda line: None)
    patched = result.timeline
    assert project.GetCurrentTimeline() is patched and patched is not timeline
    assert timeline.GetTrackCount("video") == 1  # the original timeline is untouched
    source_track, patch_track = patched.GetItemListInTrack("video", 1), patched.GetItemListInTrack("video", 2)
    assert [(i.GetStart(), i.GetDuration()) for i in source_track] == [(90200, 40)]
    assert [(i.GetStart(), i.GetDuration()) for i in patch_track] == [(90205, 10)]
    assert not patch_track[0].GetMediaPoolItem().GetClipProperty("File Path").startswith("file://")


# -- backends and codecs come from the engine ----------------------------------------------------------

def test_backends_and_codecs_are_the_engines(extra_backend: str, in_process_engine: str, source: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from dubline_resolve.engine import patch_path_for

    settings = BridgeSettings(engine_address=in_process_engine, patch_dir=str(tmp_path / "patches"))
    client = dubline_resolve.connect(settings)
    try:
        choices = dubline_resolve.engine_choices(client, settings)
        offered = client.capabilities()
    finally:
        client.close()
    assert choices.from_engine and choices.backend_names == tuple(b.name for b in offered.backends)
    assert extra_backend in choices.backend_names and choices.codec_names == tuple(offered.codecs)
    # Unset choices become the engine's defaults; a backend only the engine knows is accepted.
    resolved = dubline_resolve.settings_for_engine(settings, choices)
    assert (resolved.backend, resolved.codec) == (offered.default_backend, offered.default_codec) == ("retrieval", "prores")
    assert dubline_resolve.settings_for_engine(replace(settings, backend=extra_backend), choices).backend == extra_backend
    with pytest.raises(MediaError, match="unknown backend 'nonesuch'; the engine offers retrieval") as refused:
        dubline_resolve.settings_for_engine(replace(settings, backend="nonesuch"), choices)
    assert extra_backend in str(refused.value)
    # The patch file takes the suffix the engine writes its codec into.
    _, project, timeline, _ = _setup(source)
    span = select_span(project, timeline)
    assert patch_path_for(span, str(source), replace(settings, codec="ffv1"), choices).suffix == ".mkv"
    assert patch_path_for(span, str(source), replace(settings, codec="h264"), choices).suffix == ".mov"


def test_a_backend_the_engine_lacks_stops_before_rendering(in_process_engine: str, source: Path, tmp_path: Path) -> None:
    resolve, project, timeline, _ = _setup(source)
    dub = tmp_path / "dub.wav"
    dub.write_bytes(b"not read: the render never starts")
    settings = BridgeSettings(engine_address=in_process_engine, backend="nonesuch", patch_dir=str(tmp_path / "patches"))
    with pytest.raises(MediaError, match="unknown backend 'nonesuch'"):
        dubline_resolve.patch_current_item(resolve, str(dub), settings, report=lambda line: None)
    assert not (tmp_path / "patches").exists() and timeline.GetTrackCount("video") == 1


def test_the_otio_path_leaves_unset_choices_to_the_engine(source: Path, tmp_path: Path) -> None:
    from dubline_resolve.otio_roundtrip import dubline_otio_command

    _, project, timeline, _ = _setup(source)
    span = select_span(project, timeline)
    command = dubline_otio_command(BridgeSettings(), tmp_path / "in.otio", "interview.mov", span, str(source), tmp_path / "out.otio")
    assert "--codec" not in command and "--backend" not in command
    command = dubline_otio_command(BridgeSettings(codec="dnxhr", backend="wav2lip"), tmp_path / "in.otio", "interview.mov",
                                   span, str(source), tmp_path / "out.otio")
    assert command[command.index("--codec") + 1] == "dnxhr" and command[command.index("--backend") + 1] == "wav2lip"


# -- markers: the render's flags on the placed patch (issue 18) -------------------------------------------

def test_flags_become_markers_on_the_placed_item(source: Path, tmp_path: Path) -> None:
    from dubline_client import pb
    from dubline_resolve import mark_flags

    resolve, project, timeline, _ = _setup(source)
    patch = tmp_path / "patch.mov"
    patch.write_bytes(b"x")
    resolve.probe = FakeMedia(50, "25")
    placed = place_patch(timeline, project.GetMediaPool(), str(patch), 90110, 50, lambda line: None)
    flags = [pb.FrameFlag(first=12, end=20, kind="passthrough", note="no face", label="frames 149-156: no face"),
             pb.FrameFlag(first=40, end=45, kind="dub_silent", note="dub silent, own mouth kept",
                          label="frames 177-181: dub silent, own mouth kept"),
             pb.FrameFlag(first=44, end=51, kind="sync", note="weak sync", label="frames 181-187: weak sync")]
    lines: list[str] = []
    assert mark_flags(placed.item, flags, lines.append) == 2
    markers = placed.item.GetMarkers()
    assert {frame: (m["color"], m["name"], m["note"], m["duration"]) for frame, m in markers.items()} == {
        12: ("Yellow", "no face", "frames 149-156: no face", 8),
        40: ("Cyan", "dub silent, own mouth kept", "frames 177-181: dub silent, own mouth kept", 5)}
    assert lines == ["dubline: warning: Resolve refused the marker 'frames 181-187: weak sync'"]  # past the item's end
