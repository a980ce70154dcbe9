"""Issue 18, QC markers on the timeline: a render whose dub falls silent and whose speaker leaves the
picture for part of the span writes OTIO markers on the patch clip covering exactly those frames,
each saying why; the same flags reach ``dubline otio``, batch reels and the engine's done event.
Also the contact sheet of ``render --sheet`` and qc's flags (fast: fake analysis and backend,
real media, speech and composite stages)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from dubline.apps.demo.speech import synthesise_speech
from dubline.core import timing
from dubline.core.flags import FrameFlag, group_flags
from dubline.interchange.insert import PATCH_TRACK_NAME
from dubline.pipeline import RenderRequest, render
from dubline.pipeline.flags import flags_of, qc_flags
from dubline.stages import media
from dubline.stages.speech import analyse_speech
from dubline.stages.speech.dub import read_dub
from fakes import FakeAnalyses, register_fake_backend, write_clip

RATE = Fraction(25)
SPAN = (5, 55)  # 50 frames, 2 s
NO_FACE = frozenset(range(20, 28))  # source frames where the speaker has left the picture
SILENT_SECONDS = (1.2, 1.8)  # of the dub (= of the span): digital silence


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def _silent_dub(path: Path) -> Path:
    speech = synthesise_speech(2.0, seed=3)
    samples = speech.samples.astype(np.float32).copy()
    rate = speech.sample_rate
    samples[int(SILENT_SECONDS[0] * rate): int(SILENT_SECONDS[1] * rate)] = 0
    return media.write_audio(media.AudioClip(samples, rate), path)


def _frames(path: Path, first: int = 0, end: int | None = None) -> list[np.ndarray]:
    info = media.probe(path)
    end = info.video.frame_count if end is None else end
    return [f.image for f in media.read_span(path, timing.frames_to_range(first, end, info.video.rate))]


def _expected(dub: Path) -> list[FrameFlag]:
    """What each span frame should be flagged with: the face's absence first (the backend checks it
    first), then the dub's silence as the speech stage hears it."""
    audio, _ = read_dub(dub, timing.seconds_time(0))
    count = SPAN[1] - SPAN[0]
    voiced = analyse_speech(audio, rate=RATE, frame_count=count, cache=False).voice_activity >= 0.5
    per_frame = []
    for row in range(count):
        if SPAN[0] + row in NO_FACE:
            per_frame.append(("passthrough", "no face"))
        elif not voiced[row]:
            per_frame.append(("dub_silent", "dub silent, own mouth kept"))
        else:
            per_frame.append(None)
    return group_flags(per_frame)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("markers")
    clip = write_clip(tmp / "clip.mkv", frames=60, rate=RATE)
    dub = _silent_dub(tmp / "dub.wav")
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_fake_backend(monkeypatch)
        request = RenderRequest(video=clip, audio=dub, span=f"{SPAN[0]}-{SPAN[1]}", out=tmp / "patch.mkv",
                                codec="ffv1", matte=tmp / "matte.mkv", otio_path=tmp / "patch.otio",
                                sheet=tmp / "sheet.png", backend="fake", backend_options={"silent_keeps_own": "1"})
        result = render(request, analyses=FakeAnalyses(no_face_frames=NO_FACE), cache_root=tmp / "cache")
    return clip, dub, result


def test_markers_cover_exactly_the_frames_passed_through_with_their_reasons(rendered) -> None:
    clip, dub, result = rendered
    expected = _expected(dub)
    kinds = {flag.kind for flag in expected}
    assert kinds == {"passthrough", "dub_silent"}  # the test means something: both happen
    silent_rows = [row for f in expected if f.kind == "dub_silent" for row in range(f.first, f.end)]
    quiet = range(int(SILENT_SECONDS[0] * RATE) + 1, int(SILENT_SECONDS[1] * RATE) - 1)
    assert set(quiet) <= set(silent_rows)  # the digital silence is heard as silence
    assert result.flags == expected

    timeline = otio.adapters.read_from_file(str(result.otio_path))
    patch_track = next(t for t in timeline.video_tracks() if t.name == PATCH_TRACK_NAME)
    clip_item = next(c for c in patch_track if isinstance(c, otio.schema.Clip))
    start = timing.timecode_to_frames(result.start_timecode, RATE)
    marked = []
    for marker in clip_item.markers:
        first = int(round(marker.marked_range.start_time.to_frames(float(RATE)))) - start
        count = int(round(marker.marked_range.duration.to_frames(float(RATE))))
        note = marker.metadata["dubline"]["note"]
        marked.append((first, first + count, note))
        assert marker.name == f"frames {SPAN[0] + first}-{SPAN[0] + first + count - 1}: {note}"
        expected_colour = otio.schema.MarkerColor.YELLOW if note == "no face" else otio.schema.MarkerColor.CYAN
        assert marker.color == expected_colour
    assert marked == [(f.first, f.end, f.note) for f in expected]
    no_face = [m for m in marked if m[2] == "no face"]
    assert no_face == [(min(NO_FACE) - SPAN[0], max(NO_FACE) + 1 - SPAN[0], "no face")]

    # The pixels agree: marked frames are the source's own, every other frame was patched.
    source, patch = _frames(clip, *SPAN), _frames(result.out)
    flagged = {row for f in expected for row in range(f.first, f.end)}
    for row, (src, out) in enumerate(zip(source, patch)):
        assert np.array_equal(src, out) == (row in flagged), row


def test_render_writes_a_contact_sheet(rendered) -> None:
    import cv2

    _, _, result = rendered
    image = cv2.imread(str(result.sheet))
    assert image is not None
    # rows source / patch / mouth source / mouth patch / matte, of 220-px tiles: five rows tall
    assert image.shape[0] >= 5 * 220 and image.shape[1] >= 8 * 220
    assert result.to_dict()["sheet"] == str(result.sheet)


def _round_trip(clip: Path, dub: Path, tmp_path: Path, monkeypatch, wrap=lambda renderer: renderer):
    """``dubline otio``'s round trip of the span on a one-clip cut of ``clip``, rendered in process
    by the fake backend (through ``wrap``)."""
    from dubline.pipeline import timeline as rt

    editor = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    available = otio.opentime.TimeRange(otio.opentime.RationalTime(90000, 25), otio.opentime.RationalTime(60, 25))
    track.append(otio.schema.Clip(name="clip", media_reference=otio.schema.ExternalReference(
        target_url=str(clip), available_range=available), source_range=available))
    editor.tracks.append(track)
    timeline_path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(editor, str(timeline_path))
    settings = rt.RenderSettings(audio=dub, backend="fake", codec="ffv1", backend_options={"silent_keeps_own": "1"})
    prepared = rt.prepare(timeline_path, "clip", tmp_path / "out.otio", settings, span=f"{SPAN[0]}-{SPAN[1]}",
                          range_in="source")

    def renderer(plan, patch, settings, overwrite):
        return rt.render_in_process(plan, patch, settings, overwrite, cache_root=tmp_path / "cache")

    monkeypatch.setattr(rt, "render", lambda request, **kw: render(
        request, **{**kw, "analyses": FakeAnalyses(no_face_frames=NO_FACE)}))
    return rt.round_trip(prepared, wrap(renderer))


def _patch_clip(timeline: Path) -> otio.schema.Clip:
    written = otio.adapters.read_from_file(str(timeline))
    return next(c for t in written.video_tracks() if t.name == PATCH_TRACK_NAME
                for c in t if isinstance(c, otio.schema.Clip))


def test_otio_round_trip_puts_markers_on_the_patch_clip(rendered, tmp_path: Path, monkeypatch) -> None:

    clip, dub, result = rendered
    done = _round_trip(clip, dub, tmp_path, monkeypatch)
    patch_clip = _patch_clip(done.timeline)
    assert [m.name for m in patch_clip.markers] == [f.label(SPAN[0]) for f in result.flags]


def test_otio_with_qc_marks_what_qc_found_beside_the_render_flags(rendered, tmp_path: Path, monkeypatch) -> None:
    # `dubline otio --qc`: qc measures the written patch against the source span and the dub; its
    # flags join the render's as markers. qc itself is replaced by what it would report (weak sync
    # on patch frames 30-34), so this checks the plumbing, not qc's numbers.
    from dubline.pipeline import qc as qc_module
    from dubline.pipeline import timeline as rt

    clip, dub, result = rendered
    count = SPAN[1] - SPAN[0]
    local = [0.6] * count
    local[30:34] = [-0.3] * 4
    measured = {}

    class Report:
        def to_dict(self) -> dict:
            return {"frames": count, "pac_sync": 0.5, "per_frame": {"local_pac": local}}

    def fake_qc(patch, audio, source=None, span=None, audio_offset=None, progress=None, **_):
        measured.update(patch=Path(patch), audio=audio, source=source, span=span)
        return Report()

    monkeypatch.setattr(qc_module, "run_qc", fake_qc)
    done = _round_trip(clip, dub, tmp_path, monkeypatch, rt.with_qc)
    assert measured["patch"] == done.patch and measured["source"] == clip
    assert measured["span"] == timing.frames_to_range(*SPAN, RATE)
    assert done.render["qc"]["pac_sync"] == 0.5
    patch_clip = _patch_clip(done.timeline)
    expected = flags_of(result.to_dict(), Report().to_dict())
    assert FrameFlag(30, 34, "sync", "weak sync") in expected
    assert [m.name for m in patch_clip.markers] == [f.label(SPAN[0]) for f in expected]


def test_qc_flags_from_per_frame_arrays() -> None:
    nan = float("nan")
    count = 12
    local = [0.6] * count
    local[3:7] = [-0.2, -0.3, -0.1, -0.2]  # weak local sync for 4 frames
    local[9] = -0.5  # one frame alone is noise
    change = [1.0] * count
    change[10:12] = [5.0, 4.0]
    identity = [0.2] * count
    identity[0:2] = [0.5, None]  # a gap in the measure is not drift
    seam = [0.3, nan] + [0.3] * 8 + [1.5, 1.6]
    report = {"frames": count, "pac_sync": 0.5, "per_frame": {
        "local_pac": local, "change_ratio": change, "identity_distance": identity, "seam": seam}}
    flags = qc_flags(report)
    assert flags == [FrameFlag(3, 7, "sync", "weak sync"), FrameFlag(10, 12, "flicker", "flicker"),
                     FrameFlag(10, 12, "seam", "seam shows")]
    # qc's flags join the render's, in frame order
    render_dict = {"flags": [FrameFlag(0, 2, "passthrough", "no face").to_dict()]}
    assert [f.kind for f in flags_of(render_dict, report)] == ["passthrough", "sync", "flicker", "seam"]
    assert qc_flags({"frames": count, "pac_sync": 0.5}) == []  # no per-frame arrays: nothing to say
