"""``dubline otio`` on timelines as editors export them (tests/golden/editors/): Premiere-style FCP 7
XML with nested sequences, transitions, a disabled clip and track, a retimed and a 15 fps clip;
Hiero-style XML with a 25% time remap; an Avid EDL with a dissolve, a wipe, M2 speed lines and
freeze frames; drop-frame EDLs at 29.97.

The media is synthesised here at the rate and start timecode the timelines expect, so every plan is
a dry run (``prepare``) that probes real files: rates, start timecodes and frame counts are checked
as a render would. Each case asserts the plan: clip, source and record frames, warnings.
"""

from __future__ import annotations

import json
import urllib.parse
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest
from dubline import interchange as ic
from dubline.apps.cli.main import main
from dubline.core import errors, timing
from dubline.core.errors import InvalidRangeError
from dubline.interchange.frames import to_frames
from dubline.pipeline import timeline as rt
from mediagen import AudioSpec, make_audio, make_video, spec_for

EDITORS = Path(__file__).parent / "golden" / "editors"
NTSC30 = Fraction(30000, 1001)

# name -> (rate, frames, start timecode). Some are shorter or faster than the timelines claim, on purpose.
MEDIA = {
    "A001C003.mov": (Fraction(30), 300, "01:00:00:00"),
    "A002C001.mov": (Fraction(30), 240, "02:00:00:00"),
    "B001_slowmo.mov": (Fraction(30), 90, None),  # the XML says 15 fps, 45 frames
    "A003_remap.mov": (Fraction(30), 90, None),
    "bg_plate.mov": (Fraction(30), 90, "00:00:00:00"),  # the XML says 150 frames
    "anim_v003.mov": (Fraction(30), 150, "00:10:00:00"),
    "plate_25.mov": (Fraction(25), 200, None),
    "A001C003_25.mov": (Fraction(25), 200, "01:00:00:00"),
    "A002C001_25.mov": (Fraction(25), 200, "02:00:00:00"),
    "A004C002_25.mov": (Fraction(25), 100, "03:00:00:00"),
    "interview_df.mov": (NTSC30, 480, "00:00:58;00"),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("editor media")  # a space, as media folders have
    for name, (rate, frames, timecode) in MEDIA.items():
        make_video(folder / name, spec_for("h264", rate=rate, frames=frames, timecode=timecode, width=32, height=32))
    make_audio(folder / "dub.wav", AudioSpec(rate=16000, channels=1, seconds=2.0))
    return folder


def timeline_file(name: str, media: Path, out_dir: Path) -> Path:
    """The golden timeline with $MEDIA pointing at the synthetic media (a file://localhost URL in
    XML, as Premiere writes it; a plain path in EDLs)."""
    text = (EDITORS / name).read_text()
    folder = f"file://localhost{urllib.parse.quote(str(media))}" if name.endswith(".xml") else str(media)
    path = out_dir / name
    path.write_text(text.replace("$MEDIA", folder))
    return path


def dry_run(timeline: Path, clip: str, media: Path, **options) -> ic.PatchPlan:
    settings = rt.RenderSettings(audio=media / "dub.wav")
    return rt.prepare(timeline, clip, timeline.parent / "out.otio", settings, **options).plan


def frames(plan: ic.PatchPlan) -> tuple:
    return plan.clip.name, plan.clip.index, plan.record, plan.source, plan.file_frames()


# --------------------------------------------------------------------------- Premiere FCP 7 XML


@pytest.fixture()
def premiere(media: Path, tmp_path: Path) -> Path:
    return timeline_file("premiere_nests_30.xml", media, tmp_path)


def test_premiere_clip_list(premiere: Path) -> None:
    """Every video clip where Premiere shows it: nested clips in their place with record time
    through the nest's in/out, the audio inside the nest not counted, record timecode at the
    sequence's 30 fps (the 15 fps clip at 00:00:17:26, not 00:00:17:13)."""
    survey = ic.survey_timeline(ic.read_timeline(premiere))
    listing = [(c.index, c.name, c.track_label(), survey.record_tc(c.record), c.skipped, c.speed) for c in survey.clips]
    assert listing == [
        (1, "A001C003.mov", "V1", "00:00:00:00-00:00:04:00", None, None),
        (2, "A002C001.mov", "V1", "00:00:04:00-00:00:08:00", None, None),
        (3, "A001C003.mov", "V1", "00:00:08:00-00:00:10:00", "it is disabled", None),
        (4, "B001_slowmo.mov", "V1", "00:00:17:26-00:00:19:26", None, None),
        (5, "A003_remap.mov", "V1", "00:00:20:00-00:00:22:00", None, "a Time Remap at 50% (FCP XML filter)"),
        (6, "bg_plate.mov", "V2 in 'sc01_sh010_anim'", "00:00:02:00-00:00:05:00", None, None),
        (7, "anim_v003.mov", "V2 in 'sc01_sh010_anim'", "00:00:02:00-00:00:05:00", None, None),
        (8, "bg_plate.mov", "V2 in 'sc01_sh010_anim'", "00:00:13:10-00:00:14:10", None, None),
        (9, "anim_v003.mov", "V2 in 'sc01_sh010_anim'", "00:00:13:10-00:00:14:10", None, None),
        (10, "A002C001.mov", "V3", "00:00:10:00-00:00:12:00", "track V3 is disabled", None),
    ]
    assert [(z.name, z.record) for z in survey.clips[1].transitions] == [("Cross Dissolve", (110, 130))]
    assert [(z.name, z.record) for z in survey.clips[6].transitions] == [("Dip to Black", (140, 150))]
    assert survey.notes == (
        "nested sequence 'sc01_sh020_comp' on V2 at record 00:00:16:00-00:00:17:10 came from the reader with no "
        "tracks: its clips cannot be seen or patched",
    )


def test_the_fcp_adapter_alone_reads_nests_as_empty(premiere: Path) -> None:
    """Why read.py reads nests itself: otio-fcp-adapter 1.0.0 gives each nest an empty Stack. When
    this fails, the adapter was fixed and the work-around can go."""
    plain = otio.adapters.read_from_file(str(premiere), adapter_name="fcp_xml")
    nests = [item for item in plain.video_tracks()[1] if isinstance(item, otio.schema.Stack)]
    assert [len(nest) for nest in nests] == [0, 0, 0]
    assert all(clip.enabled for clip in plain.find_clips())  # and <enabled>FALSE</enabled> is not applied


def test_premiere_whole_cut_stops_at_the_dissolve_and_skips_the_disabled_namesake(premiere: Path, media: Path) -> None:
    plan = dry_run(premiere, "A001C003.mov", media)
    # In 30 at 01:00:00:00; the Cross Dissolve (110-130) takes the last 10 frames of the cut.
    assert frames(plan) == ("A001C003.mov", 1, (0, 110), (108030, 108140), (30, 140))
    assert plan.warnings == (
        "skipped clip 'A001C003.mov' (#3 on V1): it is disabled",
        "span record 00:00:00:00-00:00:04:00 of clip 'A001C003.mov' (#1 on V1) shortened by 10 frames at its tail "
        "to record 00:00:00:00-00:00:03:20, clear of the transition 'Cross Dissolve' at record 00:00:03:20-00:00:04:10",
    )


def test_premiere_span_under_a_dissolve_is_shortened_or_refused(premiere: Path, media: Path) -> None:
    plan = dry_run(premiere, "A002C001.mov", media, span="00:00:04:00-00:00:05:00")
    # The incoming clip's head: in 50 at the transition's start (110), so source 02:00:00:00 + 60 at the cut (120).
    assert frames(plan) == ("A002C001.mov", 2, (130, 150), (216070, 216090), (70, 90))
    assert plan.warnings == (
        "skipped clip 'A002C001.mov' (#10 on V3): track V3 is disabled",
        "span '00:00:04:00-00:00:05:00' of clip 'A002C001.mov' (#2 on V1) shortened by 10 frames at its head to "
        "record 00:00:04:10-00:00:05:00, clear of the transition 'Cross Dissolve' at record 00:00:03:20-00:00:04:10",
    )
    with pytest.raises(ic.TransitionError, match=r"touches the transition 'Cross Dissolve' at record 00:00:03:20-00:00:04:10"):
        dry_run(premiere, "A002C001.mov", media, span="00:00:04:00-00:00:05:00", on_transition="error")
    with pytest.raises(ic.TransitionError, match="no frame of it is clear to patch"):
        dry_run(premiere, "#2", media, span="00:00:04:00-00:00:04:05")
    clear = dry_run(premiere, "#2", media, span="00:00:04:10-00:00:05:00", on_transition="error")
    assert clear.record == (130, 150) and clear.warnings == ()


def test_premiere_nested_clips_are_planned_in_place(premiere: Path, media: Path) -> None:
    with pytest.raises(ic.ClipSelectionError, match=(
        r"2 clips are named 'anim_v003.mov' \(#7 on V2 in 'sc01_sh010_anim' at 00:00:02:00-00:00:05:00; "
        r"#9 on V2 in 'sc01_sh010_anim' at 00:00:13:10-00:00:14:10\)"
    )):
        dry_run(premiere, "anim_v003.mov", media)
    # The nest plays at record 60 from its frame 20; anim_v003 sits at nest frame 10 from its frame 5
    # (00:10:00:05), so record 60 shows source 18015. The Dip to Black (140-150) ends the nest.
    first = dry_run(premiere, "#7", media)
    assert frames(first) == ("anim_v003.mov", 7, (60, 140), (18015, 18095), (15, 95))
    assert first.clip.nest == ("sc01_sh010_anim",)
    assert first.warnings == (
        "span record 00:00:02:00-00:00:05:00 of clip 'anim_v003.mov' (#7 on V2 in 'sc01_sh010_anim') shortened by "
        "10 frames at its tail to record 00:00:02:00-00:00:04:20, clear of the transition 'Dip to Black' at record "
        "00:00:04:20-00:00:05:00",
    )
    # The same nest again (by id), from its frame 100: record 400 shows nest frame 100.
    again = dry_run(premiere, "#9", media, span="00:00:13:15-00:00:14:00")
    assert frames(again) == ("anim_v003.mov", 9, (405, 420), (18100, 18115), (100, 115)) and again.warnings == ()


def test_premiere_nests_are_named_when_asked_for(premiere: Path, media: Path) -> None:
    with pytest.raises(ic.ClipSelectionError, match=(
        r"^'sc01_sh010_anim' is a nested sequence; dubline patches the clips inside it: #6 'bg_plate.mov', "
        r"#7 'anim_v003.mov', #8 'bg_plate.mov', #9 'anim_v003.mov'$"
    )):
        dry_run(premiere, "sc01_sh010_anim", media)
    with pytest.raises(ic.ClipSelectionError, match=(
        r"^no video clip is named 'sc01_sh020_comp': nested sequence 'sc01_sh020_comp' on V2 at record "
        r"00:00:16:00-00:00:17:10 came from the reader with no tracks"
    )):
        dry_run(premiere, "sc01_sh020_comp", media)


def test_premiere_disabled_clips_need_the_flag(premiere: Path, media: Path) -> None:
    with pytest.raises(ic.ClipSelectionError, match=(
        r"^clip 'A002C001.mov' \(#10 on V3\) is skipped: track V3 is disabled; pass --include-disabled to patch it anyway$"
    )):
        dry_run(premiere, "#10", media)
    track_off = dry_run(premiere, "#10", media, include_disabled=True)
    assert frames(track_off) == ("A002C001.mov", 10, (300, 360), (216100, 216160), (100, 160))
    assert track_off.warnings == ("patching clip 'A002C001.mov' (#10 on V3) although track V3 is disabled",)
    with pytest.raises(ic.ClipSelectionError, match=r"\(#3 on V1\) is skipped: it is disabled"):
        dry_run(premiere, "#3", media)
    clip_off = dry_run(premiere, "#3", media, include_disabled=True)
    assert frames(clip_off) == ("A001C003.mov", 3, (240, 300), (108200, 108260), (200, 260))
    # With the flag a name no longer skips the disabled namesake.
    with pytest.raises(ic.ClipSelectionError, match=r"2 clips are named 'A001C003.mov' \(#1 on V1 .*; #3 on V1"):
        dry_run(premiere, "A001C003.mov", media, include_disabled=True)


def test_premiere_rate_and_speed_refusals_name_what_differs(premiere: Path, media: Path) -> None:
    with pytest.raises(ic.RateMismatchError, match=(
        r"^clip 'B001_slowmo.mov' \(#4 on V1\) plays B001_slowmo.mov as 15 fps footage, but the file is 30 fps; "
        r"the timeline is 30 fps: footage played at another rate is a speed change"
    )):
        dry_run(premiere, "B001_slowmo.mov", media)
    with pytest.raises(ic.SpeedEffectError, match=(
        r"^clip 'A003_remap.mov' \(#5 on V1\) has a Time Remap at 50% \(FCP XML filter\); "
        r"dubline patches clips that play their media at normal speed"
    )):
        dry_run(premiere, "A003_remap.mov", media)


def test_premiere_dry_run_checks_the_span_lies_in_the_media(premiere: Path, media: Path) -> None:
    """bg_plate.mov has 90 frames; the XML places nest frames 20-100 of it (the issue's "real run
    fails after the dry run passed")."""
    with pytest.raises(InvalidRangeError, match=(
        r"of clip 'bg_plate.mov' \(#6 on V2 in 'sc01_sh010_anim'\) is file frames 20-100 of bg_plate.mov, "
        r"which has 90 frames \(0-89\)"
    )):
        dry_run(premiere, "#6", media)
    assert dry_run(premiere, "#6", media, span="00:00:02:00-00:00:04:10").file_frames() == (20, 90)


def test_fcp_reference_before_its_definition(media: Path, tmp_path: Path) -> None:
    """Hiero-style XML: the retimed shot refers to its file by id before the file is defined. The
    refusal names the time remap (it used to say the clip had no media reference)."""
    hiero = timeline_file("hiero_retime_25.xml", media, tmp_path)
    timeline = ic.read_timeline(hiero)
    first = timeline.video_tracks()[0][0]
    assert first.media_reference.target_url.endswith("/plate_25.mov")
    with pytest.raises(ic.SpeedEffectError, match=r"^clip 'sh010_plate' \(#1 on V1\) has a Time Remap at 25% \(FCP XML filter\)"):
        dry_run(hiero, "sh010_plate", media)
    plan = dry_run(hiero, "sh020_plate", media, span="01:00:04:10-01:00:05:00")
    assert frames(plan) == ("sh020_plate", 2, (90110, 90125), (130, 145), (130, 145))


# --------------------------------------------------------------------------------------- EDLs


@pytest.fixture()
def avid(media: Path, tmp_path: Path) -> Path:
    return timeline_file("avid_25.edl", media, tmp_path)


def test_avid_edl_dissolve_and_wipe(avid: Path, media: Path) -> None:
    edl = dict(edl_rate=Fraction(25))
    with pytest.raises(ic.ClipSelectionError, match=r"2 clips are named 'interview_A' \(#1 on V1 'V' at 10:00:00:00-10:00:03:00; #9"):
        dry_run(avid, "interview_A", media, **edl)
    # Event 001 ends where the dissolve starts (an EDL dissolve lies on the incoming clip): no warning.
    cut = dry_run(avid, "#1", media, **edl)
    assert frames(cut) == ("interview_A", 1, (900000, 900075), (90025, 90100), (25, 100)) and cut.warnings == ()
    dissolve = dry_run(avid, "interview_B", media, **edl)
    assert frames(dissolve) == ("interview_B", 2, (900100, 900175), (180050, 180125), (50, 125))
    assert dissolve.warnings == (
        "span record 10:00:03:00-10:00:07:00 of clip 'interview_B' (#2 on V1 'V') shortened by 25 frames at its head "
        "to record 10:00:04:00-10:00:07:00, clear of the transition 'SMPTE_Dissolve from interview_A to interview_B' "
        "at record 10:00:03:00-10:00:04:00",
    )
    wipe = dry_run(avid, "interview_A2", media, span="10:00:07:05-10:00:08:00", **edl)
    assert frames(wipe) == ("interview_A2", 3, (900185, 900200), (90135, 90150), (135, 150))
    assert "shortened by 5 frames at its head" in wipe.warnings[0] and "SMPTE_Wipe" in wipe.warnings[0]
    with pytest.raises(ic.TransitionError, match="touches the transition 'SMPTE_Wipe from interview_B to interview_A2'"):
        dry_run(avid, "interview_A2", media, span="10:00:07:05-10:00:08:00", on_transition="error", **edl)


@pytest.mark.parametrize("clip, effect", [
    ("slowmo_B", "a speed change to 50% (LinearTimeWarp)"),  # M2 with source = record duration: the adapter drops it
    ("slowmo_C", "a speed change to 50% (LinearTimeWarp)"),  # M2 the adapter reads
    ("freeze_A", "a freeze frame (FreezeFrame)"),  # Avid's 1-frame freeze: M2 at 000.0
    ("freeze_B", "a freeze frame (FreezeFrame)"),  # * FREEZE FRAME over 25 record frames
])
def test_avid_edl_speed_lines_are_refused_by_name(avid: Path, media: Path, clip: str, effect: str) -> None:
    with pytest.raises(ic.SpeedEffectError, match=rf"^clip '{clip}' \(#\d on V1 'V'\) has {re_escape(effect)}; "):
        dry_run(avid, clip, media, edl_rate=Fraction(25))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_avid_edl_black_is_not_a_file(avid: Path, media: Path) -> None:
    with pytest.raises(errors.InvalidInputError, match=r"clip '008' \(#8 on V1 'V'\) has no file media reference \(GeneratorReference\)"):
        dry_run(avid, "#8", media, edl_rate=Fraction(25))


@pytest.mark.parametrize("name", ["resolve_df_2997.edl", "avid_df_colons_2997.edl"])
def test_drop_frame_edl(name: str, media: Path, tmp_path: Path) -> None:
    """FCM: DROP FRAME at 29.97, spelled with ';' (Resolve) or with ':' throughout (the adapter alone
    reads the latter non-drop, 108 frames off an hour in). Record spans the dropped 01:01:00;00-;01."""
    edl = timeline_file(name, media, tmp_path)
    whole = dry_run(edl, "interview_df", media, edl_rate="29.97")
    # 01:00:59;00 is frame 109662 drop-frame; 00:00:59;00 is 1770 and the file starts at 00:00:58;00 (1740).
    assert frames(whole) == ("interview_df", 1, (109662, 109750), (1770, 1858), (30, 118))
    assert whole.clip.drop_frame and ic.plan_summary(whole)["record"] == "01:00:59;00-01:01:02;00"
    # Typed with colons, a drop-frame timeline's timecodes are still read drop-frame.
    for span in ("01:01:00;02-01:01:01;00", "01:01:00:02-01:01:01:00"):
        part = dry_run(edl, "interview_df", media, edl_rate="29.97", span=span)
        assert frames(part) == ("interview_df", 1, (109692, 109720), (1800, 1828), (60, 88))
    dissolve = dry_run(edl, "reaction_df", media, edl_rate="29.97")
    assert frames(dissolve) == ("reaction_df", 2, (109765, 109840), (2113, 2188), (373, 448))
    assert dissolve.warnings[0].endswith("at record 01:01:02;00-01:01:02;15")
    with pytest.raises(errors.InvalidInputError, match="FCM: DROP FRAME, which exists at 29.97 and 59.94 fps only"):
        ic.read_timeline(edl, edl_rate=Fraction(30))


# --------------------------------------------------------------------------- big timelines, CLI


def test_ambiguous_name_on_a_big_timeline_is_one_short_line() -> None:
    rate = Fraction(24)
    timeline = otio.schema.Timeline(name="reel 3")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for number in range(147):
        name = "take" if number % 7 == 0 else f"shot_{number:03d}_v{number % 4 + 1}"
        track.append(otio.schema.Clip(name=name, source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(24, 24))))
    timeline.tracks.append(track)
    survey = ic.survey_timeline(timeline)
    with pytest.raises(ic.ClipSelectionError) as ambiguous:
        ic.select_clip(survey, "take")
    message = str(ambiguous.value)
    assert message.startswith("21 clips are named 'take' (#1 on V1 at 00:00:00:00-00:00:01:00; #8 on V1")
    assert "and 15 more); pass --clip '#N' to pick one" in message and len(message) < 400
    with pytest.raises(ic.ClipSelectionError) as unknown:
        ic.select_clip(survey, "Take")
    message = str(unknown.value)
    assert message.startswith("no video clip is named 'Take'; did you mean 'take'? the timeline has 147: #1 'take' (V1), ")
    assert message.endswith("and 141 more") and len(message) < 400
    assert survey.rate == rate


def test_otio_nest_with_audio_and_in_out(tmp_path: Path) -> None:
    """A nested Stack in .otio: its audio clips are not video clips, and its in/out trims what shows."""
    t = lambda frames: otio.opentime.RationalTime(frames, 25)  # noqa: E731
    inner = otio.schema.Track(name="nest V1", kind=otio.schema.TrackKind.Video)
    media = tmp_path / "a.mov"
    media.touch()
    reference = otio.schema.ExternalReference(target_url=str(media), available_range=otio.opentime.TimeRange(t(0), t(500)))
    inner.append(otio.schema.Clip(name="in1", media_reference=reference, source_range=otio.opentime.TimeRange(t(100), t(50))))
    inner.append(otio.schema.Clip(name="in2", media_reference=reference.clone(), source_range=otio.opentime.TimeRange(t(0), t(50))))
    inner.append(otio.schema.Clip(name="in3", media_reference=reference.clone(), source_range=otio.opentime.TimeRange(t(0), t(50))))
    sound = otio.schema.Track(name="nest A1", kind=otio.schema.TrackKind.Audio)
    sound.append(otio.schema.Clip(name="sound", source_range=otio.opentime.TimeRange(t(0), t(100))))
    nest = otio.schema.Stack(name="nest", source_range=otio.opentime.TimeRange(t(20), t(60)), children=[inner, sound])
    top = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    top.append(otio.schema.Gap(duration=t(10)))
    top.append(nest)
    timeline = otio.schema.Timeline(global_start_time=t(90000))
    timeline.tracks.append(top)
    survey = ic.survey_timeline(timeline)
    assert [(c.name, c.record, c.skipped) for c in survey.clips] == [
        ("in1", (90010, 90040), None),  # nest frames 20-50 of in1's 0-50
        ("in2", (90040, 90070), None),  # nest frames 50-80: in2's first 30
        ("in3", (90090, 90090), "it lies outside the in/out of nested sequence 'nest'"),  # would start at 90090
    ]
    in1 = ic.resolve(survey.clips[0], survey)
    assert in1.source == (120, 150) and in1.record == (90010, 90040)
    assert ic.plan_span(in1, "01:00:00:20-01:00:01:00").source == (130, 135)
    with pytest.raises(ic.ClipSelectionError, match=r"^clip 'in3' \(#3 on V1 in 'nest'\) shows no frames: it lies outside"):
        ic.select_clip(survey, "in3")
    with pytest.raises(errors.InvalidInputError, match=r"^clip 'in3' \(#3 on V1 in 'nest'\) shows no frames on the timeline"):
        ic.resolve_clip(timeline, "in3", include_disabled=True)


def test_cli_dry_run_json_and_text(premiere: Path, media: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["otio", "--timeline", str(premiere), "--audio", str(media / "dub.wav"), "--out", str(premiere.parent / "o.otio"),
            "--dry-run"]
    assert main(base + ["--clip", "#7", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["record"], report["source_frames"], report["file_frames"], report["nest"]) == (
        "00:00:02:00-00:00:04:20", [18015, 18095], [15, 95], ["sc01_sh010_anim"])
    assert report["patch"] == str(premiere.parent / "anim_v003.dubline.18015-18095.mov")
    assert len(report["warnings"]) == 1 and "Dip to Black" in report["warnings"][0]
    assert main(base + ["--clip", "#7"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("clip 'anim_v003.mov' (#7 on V2 in 'sc01_sh010_anim'): ")
    assert text[-1].startswith("warning: span record 00:00:02:00-00:00:05:00")
    assert main(base + ["--clip", "#2", "--range", "00:00:04:00-00:00:05:00", "--on-transition", "error"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "touches the transition 'Cross Dissolve'" in error[0]
    assert main(base + ["--clip", "#10", "--include-disabled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["record_frames"] == [300, 360]
    assert sorted(p.name for p in premiere.parent.iterdir()) == [premiere.name]  # nothing written


def test_timing_helpers_agree_with_the_drop_frame_numbers() -> None:
    """The hand-worked drop-frame numbers above, from the timecode module."""
    assert timing.timecode_to_frames("01:00:59;00", NTSC30) == 109662
    assert timing.timecode_to_frames("01:01:02;00", NTSC30) == 109750
    assert timing.timecode_to_frames("00:00:58;00", NTSC30) == 1740


def test_real_render_of_a_clip_inside_a_nest(shared_media: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The one real render here: a span of speaker_b.mp4 inside Premiere's nest, through the CLI.
    The nest plays from record 30 (its frame 10); speaker_b starts at nest frame 0 from its frame 15,
    so record 01:00:02:00 (frame 50) shows speaker_b frame 45."""
    timeline = timeline_file("premiere_nest_speaker_25.xml", shared_media, tmp_path)
    out = tmp_path / "out.otio"
    monkeypatch.setenv("DUBLINE_CACHE", str(tmp_path / "cache"))
    code = main(["otio", "--timeline", str(timeline), "--clip", "speaker_b.mp4", "--range", "01:00:02:00-01:00:02:10",
                 "--audio", str(shared_media / "dub_en_16k.wav"), "--out", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (report["record_frames"], report["file_frames"], report["nest"]) == ([90050, 90060], [45, 55], ["dub_nest"])
    patch = Path(report["patch"])
    assert patch == tmp_path / "speaker_b.dubline.45-55.mov"

    from dubline.stages import media as media_module

    video = media_module.probe(patch).video
    assert video.frame_count == 10 and video.start_timecode == "00:00:01:20"
    written = otio.adapters.read_from_file(str(out))
    assert [t.name for t in written.video_tracks()][-1] == "dubline"
    nest = written.video_tracks()[1][1]
    assert isinstance(nest, otio.schema.Stack) and nest.find_clips()[0].name == "speaker_b.mp4"  # the nest, read in full
    track = written.video_tracks()[-1]
    placed = track.range_of_child(track.find_clips()[0])
    assert (to_frames(placed.start_time, Fraction(25)), to_frames(placed.duration, Fraction(25))) == (50, 10)
    assert list(track.find_clips()[0].metadata["dubline"]["source_nest"]) == ["dub_nest"]
    # Frame-exact: away from the mouth (the top rows), each patch frame is closest to speaker_b's
    # frame 45+i, not to its neighbours.
    import numpy as np

    source = [f.image for f in media_module.read_span(shared_media / "speaker_b.mp4", timing.frames_to_range(44, 56, Fraction(25)))]
    for i, frame in enumerate(media_module.read_span(patch, timing.frames_to_range(0, 10, Fraction(25)))):
        top = media_module.to_8bit(frame.image[:120]).astype(np.float64)  # a ProRes patch reads back 16-bit
        errors = [np.abs(top - source[k][:120]).mean() for k in (i, i + 1, i + 2)]  # frames 44+i, 45+i, 46+i
        assert errors[1] == min(errors), (i, errors)


def test_fcp_drop_frame_sequence(media: Path, tmp_path: Path) -> None:
    """A 29.97 sequence whose timecode is DF: record timecodes are shown and read drop-frame."""
    rate = "<rate><timebase>30</timebase><ntsc>TRUE</ntsc></rate>"
    xml = tmp_path / "df.xml"
    xml.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><xmeml version="4"><sequence id="sequence-1"><name>df</name>{rate}'
        f"<timecode>{rate}<string>01:00:59;00</string><frame>109662</frame><displayformat>DF</displayformat></timecode>"
        f'<media><video><track><clipitem id="clipitem-1"><name>interview_df</name>{rate}<start>0</start><end>88</end>'
        f'<in>30</in><out>118</out><file id="file-1"><name>interview_df.mov</name>'
        f"<pathurl>file://localhost{urllib.parse.quote(str(media / 'interview_df.mov'))}</pathurl>{rate}<duration>480</duration>"
        f"<timecode>{rate}<string>00:00:58;00</string><frame>1740</frame><displayformat>DF</displayformat></timecode>"
        "</file></clipitem></track></video></media></sequence></xmeml>"
    )
    plan = dry_run(xml, "interview_df", media, span="01:01:00:02-01:01:01:00")
    assert plan.clip.drop_frame and ic.plan_summary(plan)["record"] == "01:01:00;02-01:01:01;00"
    assert frames(plan) == ("interview_df", 1, (109692, 109720), (1800, 1828), (60, 88))
