"""``dubline otio``: clip and span resolution, the patch track, and golden timelines.

Golden files live in tests/golden/otio/. After an intended change of the output, regenerate them
with

    DUBLINE_REGEN_GOLDEN=1 /work/venv/bin/python -m pytest -q tests/test_otio_roundtrip.py

and review the diff. Absolute paths are written as ``$TMP`` (the test's tmp folder) in them.
Only the end-to-end test renders; the golden tests run the plan and insert functions with a
given patch path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest
from dubline import interchange as ic
from dubline.apps.cli.main import main
from dubline.core import errors, timing
from dubline.core.errors import InvalidRangeError, MediaNotFoundError
from dubline.interchange.frames import to_frames
from dubline.pipeline import timeline as rt

GOLDEN = Path(__file__).parent / "golden" / "otio"
REGENERATE = os.environ.get("DUBLINE_REGEN_GOLDEN") == "1"
RT = otio.opentime.RationalTime
TR = otio.opentime.TimeRange

RATES = {"24": Fraction(24), "25": Fraction(25), "23976": Fraction(24000, 1001), "2997": Fraction(30000, 1001)}


def hour(rate: Fraction) -> int:
    """01:00:00:00 in frames (timecode counts rounded-rate frames per second)."""
    return timing.timecode_base(rate) * 3600


def t(frames: int, rate: Fraction) -> otio.opentime.RationalTime:
    return RT(frames, float(rate))


def editorial_timeline(root: Path, rate: Fraction) -> otio.schema.Timeline:
    """A timeline as an NLE exports it, starting at 01:00:00:00:

    V1: gap 12 | "interview" (file:// URL, percent-encoded, media from 01:00:00:00, trimmed at both
        ends) | dissolve 6+6 | "cutaway" (relative plain path) | gap 20 | "reaction" (absolute path)
    V2: gap 30 | "title card" (a generator: not a file clip)
    A1: the interview's sound
    """
    media_dir = root / "media dir"
    media_dir.mkdir(exist_ok=True)
    for name in ("interview take 1.mov", "cutaway.mov", "reaction.mov"):
        (media_dir / name).touch()
    origin = hour(rate)
    timeline = otio.schema.Timeline(name=f"edit {rate}")
    timeline.global_start_time = t(origin, rate)
    v1 = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    v1.append(otio.schema.Gap(duration=t(12, rate)))
    interview_ref = otio.schema.ExternalReference(
        target_url=(media_dir / "interview take 1.mov").as_uri(),  # file:///.../media%20dir/interview%20take%201.mov
        available_range=TR(t(origin, rate), t(400, rate)),
    )
    v1.append(otio.schema.Clip(name="interview", media_reference=interview_ref,
                               source_range=TR(t(origin + 37, rate), t(90, rate))))
    v1.append(otio.schema.Transition(transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                                     in_offset=t(6, rate), out_offset=t(6, rate)))
    cutaway_ref = otio.schema.ExternalReference(target_url="cutaway.mov", available_range=TR(t(0, rate), t(120, rate)))
    v1.append(otio.schema.Clip(name="cutaway", media_reference=cutaway_ref, source_range=TR(t(10, rate), t(60, rate))))
    v1.append(otio.schema.Gap(duration=t(20, rate)))
    reaction_ref = otio.schema.ExternalReference(
        target_url=str(media_dir / "reaction.mov"), available_range=TR(t(2 * origin, rate), t(300, rate))
    )
    v1.append(otio.schema.Clip(name="reaction", media_reference=reaction_ref,
                               source_range=TR(t(2 * origin + 100, rate), t(48, rate))))
    v2 = otio.schema.Track(name="V2", kind=otio.schema.TrackKind.Video)
    v2.append(otio.schema.Gap(duration=t(30, rate)))
    v2.append(otio.schema.Clip(name="title card", media_reference=otio.schema.GeneratorReference(generator_kind="SolidColor"),
                               source_range=TR(t(0, rate), t(24, rate))))
    a1 = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    a1.append(otio.schema.Gap(duration=t(12, rate)))
    a1.append(otio.schema.Clip(name="interview", media_reference=interview_ref.clone(),
                               source_range=TR(t(origin + 37, rate), t(90, rate))))
    timeline.tracks.extend([v1, v2, a1])
    return timeline


def save(timeline: otio.schema.Timeline, root: Path, name: str = "edit.otio") -> Path:
    path = root / "media dir" / name  # beside the media, so "cutaway.mov" resolves
    otio.adapters.write_to_file(timeline, str(path))
    return path


def normalised(timeline: otio.schema.Timeline, root: Path) -> str:
    text = otio.adapters.write_to_string(timeline, "otio_json")
    absolute = str(root.resolve())
    return text.replace(urllib.parse.quote(absolute), "$TMP").replace(absolute, "$TMP")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with DUBLINE_REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file (DUBLINE_REGEN_GOLDEN=1 regenerates)"


def patch_for(plan: ic.PatchPlan, root: Path) -> ic.PatchMedia:
    """The patch a render would write: the span's frames, starting at the source timecode."""
    return ic.PatchMedia(root / "out" / "patch.mov", plan.frame_count, plan.source[0])


# (case name, --clip, --range, --range-in) per rate; spans are timeline (record) time unless said.
CASES = [
    ("interview_record_tc", "interview", "01:00:01:00-01:00:02:00", "record"),
    ("cutaway_after_dissolve", "cutaway", None, "record"),
    ("reaction_by_index_frames", "#3", "190-200", "record"),
    ("interview_source_frames", "interview", "40-50", "source"),
]


@pytest.mark.parametrize("rate_name", RATES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_golden_patch_timelines(tmp_path: Path, rate_name: str, case: tuple) -> None:
    rate = RATES[rate_name]
    name, selector, span, range_in = case
    original = editorial_timeline(tmp_path, rate)
    timeline_path = save(original, tmp_path)
    timeline = ic.read_timeline(timeline_path)
    plan = ic.plan_span(ic.resolve_clip(timeline, selector, timeline_path), span, range_in)
    result = ic.insert_patch(timeline, plan, patch_for(plan, tmp_path), tmp_path / "dub.wav", "retrieval")

    # Every original track is exactly as it was; the patch track is new and on top of the video.
    assert len(result.tracks) == len(original.tracks) + 1
    for before, after in zip(original.tracks, result.tracks):
        assert otio.adapters.write_to_string(after) == otio.adapters.write_to_string(before)
    assert result.video_tracks()[-1].name == "dubline"
    assert normalised(timeline, tmp_path) == normalised(original, tmp_path)  # input not mutated
    check_golden(f"{rate_name}_{name}.otio", normalised(result, tmp_path))


def test_plan_numbers_at_23976(tmp_path: Path) -> None:
    """The golden cases' numbers, worked out by hand at 24000/1001."""
    rate = Fraction(24000, 1001)
    path = save(editorial_timeline(tmp_path, rate), tmp_path)
    timeline = ic.read_timeline(path)
    origin = 86400
    interview = ic.resolve_clip(timeline, "interview", path)
    assert interview.rate == rate  # not 23.976023976023978
    assert interview.media == tmp_path / "media dir" / "interview take 1.mov"
    assert interview.record == (origin + 12, origin + 102)
    assert interview.source == (origin + 37, origin + 127)
    assert interview.media_origin == origin
    plan = ic.plan_span(interview, "01:00:01:00-01:00:02:00")
    assert plan.record == (origin + 24, origin + 48)
    assert plan.source == (origin + 37 + 12, origin + 37 + 36)
    assert plan.file_frames() == (49, 73)
    # The dissolve takes no record time: cutaway starts where interview's cut ends.
    cutaway = ic.resolve_clip(timeline, "cutaway", path)
    assert cutaway.media == tmp_path / "media dir" / "cutaway.mov"
    assert cutaway.record == (origin + 102, origin + 162)
    reaction = ic.resolve_clip(timeline, "3", path)
    assert reaction.name == "reaction" and reaction.record == (origin + 182, origin + 230)
    source_plan = ic.plan_span(interview, "40-50", "source")
    assert source_plan.source == (origin + 40, origin + 50) and source_plan.record == (origin + 15, origin + 25)


def test_written_timeline_reads_back_with_the_patch_at_the_span(tmp_path: Path) -> None:
    from dubline.interchange.timeline import write_timeline

    rate = Fraction(30000, 1001)
    path = save(editorial_timeline(tmp_path, rate), tmp_path)
    timeline = ic.read_timeline(path)
    plan = ic.plan_span(ic.resolve_clip(timeline, "cutaway", path), "01:00:03:20-01:00:04:10")
    patch = patch_for(plan, tmp_path)
    out = write_timeline(ic.insert_patch(timeline, plan, patch, tmp_path / "dub.wav", "retrieval"), tmp_path / "out.otio")
    read = otio.adapters.read_from_file(str(out))
    clip = read.video_tracks()[-1].find_clips()[0]
    record = clip.transformed_time_range(clip.trimmed_range(), read.tracks)
    start = to_frames(read.global_start_time, rate)
    assert (start + to_frames(record.start_time, rate), to_frames(record.duration, rate)) == (
        timing.timecode_to_frames("01:00:03:20", rate), 20,
    )
    assert clip.media_reference.target_url == str(patch.path.resolve())
    assert not clip.media_reference.target_url.startswith("file:")
    assert to_frames(clip.media_reference.available_range.start_time, rate) == plan.source[0]
    assert clip.metadata["dubline"]["source_clip"] == "cutaway"
    assert clip.metadata["dubline"]["span"]["record"] == "01:00:03:20-01:00:04:10"


def test_span_crossing_the_clip_end_names_the_clip_range(tmp_path: Path) -> None:
    rate = Fraction(25)
    path = save(editorial_timeline(tmp_path, rate), tmp_path)
    clip = ic.resolve_clip(ic.read_timeline(path), "interview", path)
    # interview's cut is record 01:00:00:12-01:00:04:02; this span runs 5 frames past it.
    with pytest.raises(InvalidRangeError, match=r"not inside clip 'interview'.*01:00:00:12-01:00:04:02"):
        ic.plan_span(clip, "01:00:03:20-01:00:04:07")
    with pytest.raises(InvalidRangeError, match="01:00:00:12-01:00:04:02"):
        ic.plan_span(clip, "30-40", "source")  # source frames 30-40: before the trimmed head (37)
    # Ends exactly at the cut, which is allowed, but the last 6 frames lie under the dissolve to
    # 'cutaway' (6+6 frames around the cut: 01:00:03:21-01:00:04:08 at 25 fps): the patch stops short of it, or fails if asked.
    plan = ic.plan_span(clip, "01:00:03:20-01:00:04:02")
    assert plan.record == (90095, 90096) and plan.source == (90120, 90121)
    assert plan.warnings == (
        "span '01:00:03:20-01:00:04:02' of clip 'interview' (#1 on V1) shortened by 6 frames at its tail to record "
        "01:00:03:20-01:00:03:21, clear of the transition 'SMPTE_Dissolve' at record 01:00:03:21-01:00:04:08",
    )
    with pytest.raises(ic.TransitionError, match=r"touches the transition 'SMPTE_Dissolve' at record 01:00:03:21-01:00:04:08"):
        ic.plan_span(clip, "01:00:03:20-01:00:04:02", on_transition="error")
    assert ic.plan_span(clip, "01:00:03:00-01:00:03:21", on_transition="error").frame_count == 21


def test_unknown_and_ambiguous_clips_list_the_candidates(tmp_path: Path) -> None:
    rate = Fraction(24)
    timeline = editorial_timeline(tmp_path, rate)
    survey = ic.survey_timeline(timeline)
    with pytest.raises(ic.ClipSelectionError, match=r"'nobody'.*#1 'interview' \(V1\), #2 'cutaway'.*#4 'title card' \(V2\)"):
        ic.select_clip(survey, "nobody")
    with pytest.raises(ic.ClipSelectionError, match=r"did you mean 'interview'\?"):
        ic.select_clip(survey, "Interveiw")
    with pytest.raises(ic.ClipSelectionError, match=r"has 4 video clips \(1-4\)"):
        ic.select_clip(survey, "#5")
    timeline.video_tracks()[1].append(otio.schema.Clip(name="interview", source_range=TR(t(0, rate), t(5, rate))))
    survey = ic.survey_timeline(timeline)
    with pytest.raises(ic.ClipSelectionError, match=r"2 clips are named 'interview' \(#1 on V1 at 01:00:00:12-01:00:04:06; #5 on V2 at 01:00:02:06-01:00:02:11"):
        ic.select_clip(survey, "interview")
    assert ic.select_clip(survey, "#5")[0].name == "interview"
    with pytest.raises(errors.InvalidInputError, match="no file media reference"):
        ic.resolve_clip(timeline, "title card", require_media=False)


def test_missing_media_is_a_file_not_found_error(tmp_path: Path) -> None:
    path = save(editorial_timeline(tmp_path, Fraction(25)), tmp_path)
    (tmp_path / "media dir" / "cutaway.mov").unlink()
    with pytest.raises(MediaNotFoundError, match="cutaway.mov") as caught:
        ic.resolve_clip(ic.read_timeline(path), "cutaway", path)
    assert isinstance(caught.value, FileNotFoundError)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("file:///media/a%20b/clip%231.mov", "/media/a b/clip#1.mov"),
        ("file://localhost/media/clip.mov", "/media/clip.mov"),
        ("file:///C:/Footage/Day%201/clip.mov", "C:/Footage/Day 1/clip.mov"),
        ("file://server/share/clip.mov", "//server/share/clip.mov"),
        ("/abs/clip.mov", "/abs/clip.mov"),
        ("D:\\Footage\\clip.mov", "D:\\Footage\\clip.mov"),
        ("sub/clip.mov", "/timelines/sub/clip.mov"),
    ],
)
def test_media_urls_and_paths(url: str, expected: str) -> None:
    assert str(ic.media_path(url, Path("/timelines/edit.otio"))) == expected


def test_media_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(errors.InvalidInputError, match="https: URL"):
        ic.media_path("https://example.com/clip.mov")


def test_fcp_xml_reads_to_the_same_plan(tmp_path: Path) -> None:
    rate = Fraction(24000, 1001)
    timeline = editorial_timeline(tmp_path, rate)
    # otio-fcp-adapter 1.0.0 cannot write V2's generator clip, nor read back its own dissolves
    # (they lack <alignment>); neither changes record time here.
    del timeline.tracks[1]
    del timeline.tracks[0][2]
    otio_path = save(timeline, tmp_path)
    xml_path = tmp_path / "media dir" / "edit.xml"
    otio.adapters.write_to_file(ic.read_timeline(otio_path), str(xml_path), adapter_name="fcp_xml")
    from_xml = ic.read_timeline(xml_path)
    for selector in ("interview", "reaction"):
        via_xml = ic.resolve_clip(from_xml, selector, xml_path)
        via_otio = ic.resolve_clip(ic.read_timeline(otio_path), selector, otio_path)
        assert (via_xml.rate, via_xml.record, via_xml.source, via_xml.media) == (
            via_otio.rate, via_otio.record, via_otio.source, via_otio.media,
        )


def test_edl_places_events_at_record_timecode(tmp_path: Path) -> None:
    edl = tmp_path / "cut.edl"
    (tmp_path / "a.mov").touch()
    edl.write_text(
        "TITLE: cut\nFCM: NON-DROP FRAME\n\n"
        "001  AX       V     C        00:00:04:04 00:00:06:06 01:00:00:10 01:00:02:12\n"
        f"* FROM CLIP NAME:  a\n* FROM CLIP: {tmp_path / 'a.mov'}\n\n"
        "002  AX       V     C        00:00:01:00 00:00:02:00 01:00:02:12 01:00:03:12\n"
        f"* FROM CLIP NAME:  b\n* FROM CLIP: {tmp_path / 'a.mov'}\n"
    )
    with pytest.raises(errors.InvalidInputError, match="--edl-rate"):
        ic.read_timeline(edl)
    timeline = ic.read_timeline(edl, edl_rate=Fraction(25))
    a = ic.resolve_clip(timeline, "a", edl)
    b = ic.resolve_clip(timeline, "b", edl)
    assert a.rate == 25 and a.record == (90010, 90062) and a.source == (104, 156)
    assert b.record == (90062, 90087) and b.source == (25, 50)


def test_missing_adapter_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xml = tmp_path / "edit.xml"
    xml.write_text("<xmeml/>")

    class NoPlugins:
        adapters = [a for a in otio.plugins.ActiveManifest().adapters if a.name == "otio_json"]

    monkeypatch.setattr(otio.plugins, "ActiveManifest", lambda: NoPlugins())
    with pytest.raises(ic.MissingAdapterError, match="pip install otio-fcp-adapter"):
        ic.read_timeline(xml)


def speaker_timeline(root: Path, media: Path) -> Path:
    """25 fps from 01:00:00:00: gap 50 | speaker_b.mp4 (file:// URL) frames 20-100."""
    rate = Fraction(25)
    timeline = otio.schema.Timeline(name="speaker")
    timeline.global_start_time = t(90000, rate)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(otio.schema.Gap(duration=t(50, rate)))
    reference = otio.schema.ExternalReference(target_url=media.resolve().as_uri(), available_range=TR(t(0, rate), t(122, rate)))
    track.append(otio.schema.Clip(name="speaker_b", media_reference=reference, source_range=TR(t(20, rate), t(80, rate))))
    timeline.tracks.append(track)
    path = root / "speaker.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def test_existing_output_is_refused_before_rendering(tmp_path: Path, shared_media: Path) -> None:
    timeline = speaker_timeline(tmp_path, shared_media / "speaker_b.mp4")
    out = tmp_path / "out.otio"
    out.write_text("keep me")
    code = main(["otio", "--timeline", str(timeline), "--clip", "speaker_b", "--range", "01:00:02:20-01:00:03:05",
                 "--audio", str(shared_media / "dub_en_16k.wav"), "--out", str(out)])
    assert code == 2
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.otio", "speaker.otio"]  # no patch rendered


@pytest.mark.slow
def test_cli_renders_the_span_and_places_it(tmp_path: Path, shared_media: Path) -> None:
    timeline = speaker_timeline(tmp_path, shared_media / "speaker_b.mp4")
    out = tmp_path / "out.otio"
    env = {**os.environ, "DUBLINE_CACHE": str(tmp_path / "cache")}
    script = Path(sys.executable).parent / "dubline"  # the installed console script
    command = [str(script), "otio", "--timeline", str(timeline), "--clip", "speaker_b",
               "--range", "01:00:02:20-01:00:03:05", "--audio", str(shared_media / "dub_en_16k.wav"),
               "--out", str(out), "--json"]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Record 01:00:02:20 is 20 frames into the clip, whose cut starts at source frame 20.
    assert report["record_frames"] == [90070, 90080] and report["file_frames"] == [40, 50]
    patch = Path(report["patch"])
    assert patch == tmp_path / "speaker_b.dubline.40-50.mov"

    from dubline.stages import media

    video = media.probe(patch).video
    assert video.frame_count == 10
    assert video.start_timecode == "00:00:01:15"  # speaker_b has no timecode: frame 40 at 25 fps

    read = otio.adapters.read_from_file(str(out))
    assert [t.name for t in read.video_tracks()] == ["V1", "dubline"]
    new = read.video_tracks()[-1]
    clip = new.find_clips()[0]
    assert new.range_of_child(clip).start_time.to_frames() == 70
    assert clip.source_range.start_time.to_frames() == 40 and clip.source_range.duration.to_frames() == 10
    assert clip.media_reference.target_url == str(patch)
    assert clip.metadata["dubline"]["dub"] == str(shared_media / "dub_en_16k.wav")


def test_dry_run_prints_the_plan_without_rendering(tmp_path: Path, shared_media: Path, capsys: pytest.CaptureFixture) -> None:
    timeline = speaker_timeline(tmp_path, shared_media / "speaker_b.mp4")
    code = main(["otio", "--timeline", str(timeline), "--clip", "1", "--range", "75-85", "--audio",
                 str(shared_media / "dub_en_16k.wav"), "--out", str(tmp_path / "out.otio"), "--dry-run", "--json"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["record"] == "01:00:03:00-01:00:03:10" and plan["file_frames"] == [45, 55]
    assert plan["patch"] == str(tmp_path / "speaker_b.dubline.45-55.mov")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speaker.otio"]


def test_engine_renderer_sends_file_frames_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dubline_client import pb

    rate = Fraction(30000, 1001)
    path = save(editorial_timeline(tmp_path, rate), tmp_path)
    plan = ic.plan_span(ic.resolve_clip(ic.read_timeline(path), "interview", path), "01:00:01:00-01:00:01:12")
    sent = []

    class FakeEngine:
        def render_and_wait(self, spec, on_event=None):
            sent.append(spec)
            return pb.RenderDone(out=spec.out, frames_written=12, span_first=55, span_end=67,
                                 start_timecode="01:00:01:25", backend=spec.backend)

    monkeypatch.chdir(tmp_path)
    settings = rt.RenderSettings(audio=Path("dub.wav"), audio_offset=Fraction(1, 3), codec="h264")
    media, report, _ = rt.engine_renderer(FakeEngine())(plan, Path("p.mov"), settings, False)
    spec = sent[0]
    assert (spec.span.range.start.value, spec.span.range.duration.value) == (55, 12)  # 30 frames from 01:00:00:00 is 18 into the cut, whose head is trimmed by 37
    assert (spec.span.range.start.rate_num, spec.span.range.start.rate_den) == (30000, 1001)
    assert spec.video == str(tmp_path / "media dir" / "interview take 1.mov")
    assert spec.audio == str(tmp_path / "dub.wav") and spec.out == str(tmp_path / "p.mov")
    assert (spec.audio_offset.value, spec.audio_offset.rate_num) == (1, 3) and spec.codec == "h264"
    assert media == ic.PatchMedia(tmp_path / "p.mov", 12, 108000 + 55)
    assert report["span"] == [55, 67]


def test_round_trip_writes_nothing_when_the_render_fails(tmp_path: Path, shared_media: Path) -> None:
    timeline = speaker_timeline(tmp_path, shared_media / "speaker_b.mp4")
    settings = rt.RenderSettings(audio=shared_media / "dub_en_16k.wav")
    calls = []

    def failing(plan, patch, settings, overwrite):
        calls.append((plan.file_frames(), patch))
        raise errors.InvalidInputError("render failed")

    with pytest.raises(errors.InvalidInputError, match="render failed"):
        rt.round_trip(rt.prepare(timeline, "speaker_b", tmp_path / "out.otio", settings, span="70-80"), failing)
    assert calls == [((40, 50), tmp_path / "speaker_b.dubline.40-50.mov")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speaker.otio"]

    def short(plan, patch, settings, overwrite):
        patch.write_bytes(b"patch")
        return ic.PatchMedia(patch, plan.frame_count - 1, plan.source[0]), {}, []

    with pytest.raises(errors.InvalidInputError, match="has 9 frames, the span 10"):
        rt.round_trip(rt.prepare(timeline, "speaker_b", tmp_path / "out.otio", settings, span="70-80"), short)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speaker.otio"]  # the unplaceable patch is removed


def test_out_must_be_an_otio_file(tmp_path: Path) -> None:
    settings = rt.RenderSettings(audio=tmp_path / "dub.wav")
    with pytest.raises(errors.InvalidInputError, match=r"--out .*edit\.xml must be an \.otio file"):
        rt.prepare(tmp_path / "edit.otio", "a", tmp_path / "edit.xml", settings)
