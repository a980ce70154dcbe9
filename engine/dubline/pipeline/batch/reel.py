"""A reel as shot jobs: an editor's timeline with the dub laid on an audio track.

Every video clip overlapped by a dub audio clip becomes one span job: the span is the overlap in
record time, the dub is that audio clip's media with its offset (the dub's file time that plays at
the span's first frame). Only the picture that shows is patched: where clips stack, the topmost
enabled one at a record frame takes it (a patch on the new top track covers everything beneath).
Clips are planned exactly as ``dubline otio`` plans one (``interchange``: nests, transitions kept
clear, disabled clips skipped, speed effects refused), and a clip that cannot be patched becomes a
failed shot with the reason, so the rest of the reel goes on.

Speaker hints come from ``metadata["dubline"]["speaker"]`` on the dub clip or the video clip
(``X,Y@FRAME`` / ``X0,Y0,X1,Y1@FRAME`` on file frames, or an image path), or from a marker on the
video clip named ``speaker X,Y`` (or ``X0,Y0,X1,Y1``) at the frame it marks.

``reel_timeline`` writes the timeline back with every finished patch on one new top video track.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import DublineError, InvalidInputError
from dubline.core.flags import FrameFlag
from dubline.interchange import (
    METADATA_KEY,
    PatchMedia,
    PatchPlan,
    PlacedClip,
    PlacedPatch,
    TimelineSurvey,
    check_media,
    default_patch_path,
    insert_patches,
    media_path,
    plan_record,
    read_timeline,
    resolve,
    survey_timeline,
)
from dubline.interchange.frames import first_few, frame_at
from dubline.pipeline.batch.jobs import JobDefaults, ShotJob, check_jobs
from dubline.stages import media

_SPEAKER_MARKER = re.compile(r"^\s*speaker\s*[:=]?\s*([\d.]+(?:\s*,\s*[\d.]+){1,3})\s*$", re.I)


@dataclass(frozen=True)
class DubClip:
    """An audio clip of a dub track and where it plays."""

    name: str
    track: str
    media: Path
    record: tuple[Fraction, Fraction]  # absolute timeline seconds [start, end)
    file_start: Fraction  # file seconds that play at record[0]
    metadata: Mapping[str, Any]


@dataclass
class ReelPlan:
    """The shot jobs of a reel and where each patch goes back on the timeline."""

    timeline: otio.schema.Timeline
    timeline_path: Path
    jobs: list[ShotJob]
    placements: dict[str, PatchPlan]  # shot id -> the span on the timeline
    warnings: list[str] = field(default_factory=list)
    dub_tracks: list[str] = field(default_factory=list)


def plan_reel(
    timeline_path: Path,
    patch_dir: Path,
    defaults: JobDefaults = JobDefaults(),
    dub_tracks: Sequence[str] = (),
    adapter: str | None = None,
    edl_rate: Fraction | None = None,
    on_transition: str = "shorten",
    include_disabled: bool = False,
    probe: Callable[[Path], Any] | None = None,
) -> ReelPlan:
    """Read ``timeline_path`` and make one job per (visible video clip, dub clip) overlap.

    ``dub_tracks`` names audio tracks (their name, or ``A1``, ``A2`` ... counting the timeline's
    audio tracks from 1); by default the tracks whose name contains "dub". Patches are named as
    ``dubline otio`` names them, in ``patch_dir``.
    """
    probe = probe or media.probe
    timeline = read_timeline(timeline_path, adapter, edl_rate)
    survey = survey_timeline(timeline)
    tracks = _dub_tracks(timeline, dub_tracks)
    dubs = sorted((clip for track in tracks for clip in _dub_clips(track, timeline, timeline_path)),
                  key=lambda d: (d.record[0], d.track))
    if not dubs:
        raise InvalidInputError(f"the dub tracks ({', '.join(t.name or '?' for t in tracks)}) hold no audio clips with media")
    # Topmost first: a higher track (and, inside a nest, a higher track of the nest) hides what is beneath.
    visible = sorted((c for c in survey.clips if include_disabled or c.skipped is None),
                     key=lambda c: (c.track_index, c.index), reverse=True)
    pieces: list[tuple[PlacedClip, DubClip, tuple[int, int]]] = []
    taken: list[tuple[tuple[int, int], str]] = []  # record frames already given a dub
    warnings: list[str] = []
    for dub in dubs:
        remaining = [(frame_at(dub.record[0], survey.rate), frame_at(dub.record[1], survey.rate))]
        for clip in visible:
            next_remaining = []
            for part in remaining:
                inside = (max(part[0], clip.record[0]), min(part[1], clip.record[1]))
                if inside[0] < inside[1]:
                    pieces.append((clip, dub, inside))
                next_remaining += [r for r in ((part[0], inside[0]), (inside[1], part[1])) if r[0] < r[1]] \
                    if inside[0] < inside[1] else [part]
            remaining = next_remaining
        for part in remaining:
            warnings.append(f"dub {dub.name!r} on {dub.track} at record {survey.record_tc(part)} lies over no video clip")
    jobs, placements = [], {}
    patches_named: dict[Path, int] = {}
    for number, (clip, dub, record) in enumerate(sorted(pieces, key=lambda p: p[2]), start=1):
        job_id = f"shot_{number:03d}"
        overlap = next((other for span, other in taken if span[0] < record[1] and record[0] < span[1]), None)
        taken.append((record, job_id))
        job, plan = _plan_piece(job_id, clip, dub, record, survey, timeline_path, patch_dir, defaults, on_transition,
                                probe, patches_named)
        if overlap is not None and job.problem is None:
            job = job.failed(f"{job_id}: record {survey.record_tc(record)} is dubbed by {overlap} already "
                             f"(dub clips overlap on the dub tracks; a frame takes one dub)")
        jobs.append(job)
        if plan is not None and job.problem is None:
            placements[job_id] = plan
    jobs = check_jobs(jobs)
    placements = {job.id: placements[job.id] for job in jobs if job.problem is None and job.id in placements}
    warnings += list(survey.notes)
    return ReelPlan(timeline, Path(timeline_path), jobs, placements, warnings, [t.name for t in tracks])


def _dub_tracks(timeline: otio.schema.Timeline, names: Sequence[str]) -> list[otio.schema.Track]:
    audio = list(timeline.audio_tracks())
    labelled = {f"A{i}": track for i, track in enumerate(audio, start=1)}
    shown = first_few([f"A{i} {t.name!r}" for i, t in enumerate(audio, start=1)], 8)
    if not audio:
        raise InvalidInputError("the timeline has no audio track to take the dub from; lay the dub on an audio track")
    if not names:
        chosen = [t for t in audio if "dub" in (t.name or "").lower()]
        if not chosen:
            raise InvalidInputError(f"no audio track is named like a dub; say which with --dub-track (tracks: {shown})")
        return chosen
    chosen = []
    for name in names:
        matches = [labelled[name.upper()]] if name.upper() in labelled else [t for t in audio if t.name == name]
        if not matches:
            raise InvalidInputError(f"--dub-track {name!r} is no audio track (tracks: {shown})")
        chosen += [t for t in matches if t not in chosen]
    return chosen


def _dub_clips(track: otio.schema.Track, timeline: otio.schema.Timeline, timeline_path: Path) -> list[DubClip]:
    start = _audio_seconds(timeline.global_start_time) if timeline.global_start_time is not None else Fraction(0)
    if timeline.tracks.source_range is not None:
        start -= _audio_seconds(timeline.tracks.source_range.start_time)
    if track.source_range is not None:
        start -= _audio_seconds(track.source_range.start_time)
    clips = []
    for index, item in enumerate(track):
        if not isinstance(item, otio.schema.Clip) or not item.enabled or not track.enabled:
            continue
        reference = item.media_reference
        if not isinstance(reference, otio.schema.ExternalReference):
            continue
        placed = track.range_of_child_at_index(index)
        first = start + _audio_seconds(placed.start_time)
        origin = _audio_seconds(reference.available_range.start_time) if reference.available_range is not None else Fraction(0)
        clips.append(DubClip(
            name=item.name, track=track.name or "?", media=media_path(reference.target_url, timeline_path),
            record=(first, first + _audio_seconds(placed.duration)),
            file_start=_audio_seconds(item.trimmed_range().start_time) - origin, metadata=item.metadata,
        ))
    return clips


def _audio_seconds(time: otio.opentime.RationalTime) -> Fraction:
    # Audio clips count at sample rates (48000): whole rates are taken as they are, NTSC ones snapped.
    return timing.seconds_of(time)


def _plan_piece(job_id: str, placed: PlacedClip, dub: DubClip, record: tuple[int, int], survey: TimelineSurvey,
                timeline_path: Path, patch_dir: Path, defaults: JobDefaults, on_transition: str,
                probe: Callable[[Path], Any], patches_named: dict[Path, int]) -> tuple[ShotJob, PatchPlan | None]:
    label = f"{placed.where()} at record {survey.record_tc(record)}"
    bare = ShotJob(job_id, label, Path(), dub.media, "", Path(), backend=defaults.backend, codec=defaults.codec)
    try:
        resolved = check_media(resolve(placed, survey, timeline_path), probe)
        plan = plan_record(resolved, record, on_transition)
    except DublineError as error:
        return bare.failed(f"{job_id}: {error}"), None
    patch = _unique(default_patch_path(patch_dir / "reel.otio", plan, defaults.codec), patches_named)
    first, end = plan.file_frames()
    offset = dub.file_start + Fraction(plan.record[0]) / plan.rate - dub.record[0]
    try:
        speaker = _speaker(dub.metadata) or _speaker(placed.clip.metadata) or _marker_speaker(placed, plan)
    except InvalidInputError as error:
        return replace(bare, video=plan.clip.media, out=patch).failed(f"{job_id}: {error}"), None
    job = ShotJob(
        id=job_id, label=f"{placed.where()} at record {plan.clip.record_tc(plan.record)}", video=plan.clip.media,
        audio=dub.media, span=f"{first}-{end}", out=patch, backend=defaults.backend, codec=defaults.codec,
        audio_offset=offset, speaker=speaker, expression=defaults.expression, length_policy=defaults.length_policy,
        with_audio=defaults.with_audio, backend_options=dict(defaults.backend_options),
    )
    return job, plan


def _unique(path: Path, named: dict[Path, int]) -> Path:
    """The same source frames patched twice (a take cut in twice, dubbed twice) get ``-2``, ``-3``."""
    count = named.get(path, 0) + 1
    named[path] = count
    return path if count == 1 else path.with_name(f"{path.stem}-{count}{path.suffix}")


def _speaker(metadata: Mapping[str, Any]) -> str | None:
    ours = metadata.get(METADATA_KEY) if hasattr(metadata, "get") else None
    value = str(ours.get("speaker") or "").strip() if hasattr(ours, "get") else ""
    return value or None


def _marker_speaker(placed: PlacedClip, plan: PatchPlan) -> str | None:
    """``speaker X,Y`` / ``speaker X0,Y0,X1,Y1`` as a marker's name or comment, at the frame it marks."""
    for marker in placed.clip.markers:
        for text in (marker.name or "", marker.comment or ""):
            match = _SPEAKER_MARKER.match(text)
            if not match:
                continue
            numbers = [v.strip() for v in match.group(1).split(",")]
            if len(numbers) not in (2, 4):
                raise InvalidInputError(f"marker {text!r} on {placed.where()}: give speaker X,Y or speaker X0,Y0,X1,Y1")
            source_frame = timing.range_to_frames(marker.marked_range, plan.clip.clip_rate)[0]
            file_frame = source_frame - (plan.clip.media_origin or 0)
            return f"{','.join(numbers)}@{max(file_frame, 0)}"
    return None


def reel_timeline(plan: ReelPlan, finished: Mapping[str, Mapping[str, Any]]) -> otio.schema.Timeline:
    """The reel's timeline with the patches of ``finished`` shots (shot id -> its render dict:
    ``out``, ``frames_written``, ``start_timecode``) on one new top video track."""
    placed = []
    jobs = {job.id: job for job in plan.jobs}
    for shot, result in sorted(finished.items()):
        span = plan.placements[shot]
        start = timing.timecode_to_frames(result["start_timecode"], span.rate) if result.get("start_timecode") else span.source[0]
        job = jobs[shot]
        flags = tuple(FrameFlag.from_dict(flag) for flag in result.get("flags", ()))
        placed.append(PlacedPatch(span, PatchMedia(Path(result["out"]), int(result["frames_written"]), start, flags),
                                  job.audio, job.backend, {"codec": job.codec, "shot": shot}))
    return insert_patches(plan.timeline, placed)
