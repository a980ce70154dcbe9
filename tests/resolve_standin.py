"""A stand-in for the part of DaVinci Resolve's scripting API the dubline bridge uses.

Only the documented calls the bridge makes exist, with the documented semantics (scripting README of
17.0, 18.0.4, 18.5.1, 18.6 and the per-version notes of 19.x), gated by the emulated version:
calls newer than ``version`` are absent, as on a real older Resolve. Frame numbers follow Resolve:
item starts and ``recordFrame`` count from the timeline's frame 0 (01:00:00:00 at 25 fps = 90000),
``GetMarkInOut`` counts from the timeline start with an inclusive out, ``GetEnd`` is exclusive.
``end_frame_inclusive`` picks how ``AppendToTimeline`` reads ``endFrame`` (it has differed between
versions), so the bridge's read-back correction is exercised both ways.

Lower-case methods (``add_item``, ``set_marks``, ...) are the tests' own set-up helpers, not API.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

Version = tuple[int, int, int]
Probe = Callable[[str], tuple[int, str]]  # path -> (frame count, Resolve's "FPS" text)

#: Calls that appeared after the 17.0 README, by the version that lists them.
SINCE: dict[str, Version] = {
    "Timeline.AddTrack": (18, 5, 0),
    "Timeline.DeleteTrack": (18, 5, 0),
    "Timeline.DeleteClips": (18, 5, 0),
    "Timeline.GetMarkInOut": (19, 1, 0),
    "TimelineItem.GetSourceStartFrame": (19, 0, 2),
    "StandInResolve.EXPORT_OTIO": (18, 5, 0),
}
_ids = itertools.count(1)


def pyav_probe(path: str) -> tuple[int, str]:
    """Frame count and rate of a real file, as Resolve would show them after importing it."""
    import av  # test-side only: the bridge itself never decodes media

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        rate = Fraction(stream.average_rate)
    return frames, f"{float(rate):.3f}"


class _Gated:
    """Hides the calls this emulated version does not have."""

    _resolve: "StandInResolve"

    def __getattribute__(self, name: str):
        since = SINCE.get(f"{type(self).__name__}.{name}")
        if since is not None and object.__getattribute__(self, "_resolve").version < since:
            raise AttributeError(name)
        return object.__getattribute__(self, name)


class MediaPoolItem(_Gated):
    def __init__(self, resolve: "StandInResolve", path: str, frames: int, fps: str) -> None:
        self._resolve, self.path, self.frames, self.fps = resolve, path, frames, fps
        self._id = f"mpi-{next(_ids)}"

    def GetName(self) -> str:
        return os.path.basename(self.path)

    def GetClipProperty(self, propertyName: str | None = None):
        properties = {"File Path": self.path, "FPS": self.fps, "Frames": str(self.frames), "Clip Name": self.GetName()}
        return properties if not propertyName else properties.get(propertyName, "")

    def GetUniqueId(self) -> str:
        return self._id


class Generator(_Gated):
    """A timeline item without media (a title or generator): GetMediaPoolItem answers None."""

    def __init__(self, resolve: "StandInResolve", name: str) -> None:
        self._resolve, self.name = resolve, name


class TimelineItem(_Gated):
    def __init__(self, resolve: "StandInResolve", pool_item: MediaPoolItem | None, start: int, duration: int,
                 source_first: int, name: str | None = None) -> None:
        self._resolve, self.pool_item = resolve, pool_item
        self.start, self.duration, self.source_first = start, duration, source_first
        self.name = name or (pool_item.GetName() if pool_item else "Text+")
        self._id = f"item-{next(_ids)}"
        self.markers: dict[int, dict] = {}

    #: The marker colours Resolve's scripting README lists.
    MARKER_COLOURS = ("Blue", "Cyan", "Green", "Yellow", "Red", "Pink", "Purple", "Fuchsia", "Rose", "Lavender",
                      "Sky", "Mint", "Lemon", "Sand", "Cocoa", "Cream")

    def AddMarker(self, frameId, color: str, name: str, note: str, duration, customData: str = "") -> bool:
        """As the README documents it: frameId counts from the item's first frame; False for a colour
        Resolve does not have, a marker outside the item, or a frame that already holds one."""
        frame, length = int(frameId), int(duration)
        if color not in self.MARKER_COLOURS or length < 1 or frame < 0 or frame + length > self.duration:
            return False
        if frame in self.markers:
            return False
        self.markers[frame] = {"color": color, "duration": length, "note": note, "name": name, "customData": customData}
        return True

    def GetMarkers(self) -> dict[int, dict]:
        return dict(self.markers)

    def GetName(self) -> str:
        return self.name

    def GetStart(self) -> int:
        return self.start

    def GetEnd(self) -> int:
        return self.start + self.duration

    def GetDuration(self) -> int:
        return self.duration

    def GetLeftOffset(self) -> int:
        return self.source_first if self.pool_item else 0

    def GetRightOffset(self) -> int:
        return self.pool_item.frames - self.source_first - self.duration if self.pool_item else 0

    def GetSourceStartFrame(self) -> int:
        return self.source_first + self._resolve.source_start_skew

    def GetMediaPoolItem(self) -> MediaPoolItem | None:
        return self.pool_item

    def GetUniqueId(self) -> str:
        return self._id


class Timeline(_Gated):
    def __init__(self, resolve: "StandInResolve", name: str, start_frame: int, frame_rate: str,
                 drop_frame: bool = False) -> None:
        self._resolve, self.name, self.start_frame = resolve, name, start_frame
        self.settings = {"timelineFrameRate": frame_rate, "timelineDropFrameTimecode": "1" if drop_frame else "0"}
        self.tracks: list[list[TimelineItem]] = [[]]
        self.playhead = start_frame
        self.marks: dict = {}

    # -- set-up helpers --
    def add_item(self, track: int, item: TimelineItem) -> TimelineItem:
        while len(self.tracks) < track:
            self.tracks.append([])
        self.tracks[track - 1].append(item)
        self.tracks[track - 1].sort(key=lambda i: i.start)
        return item

    def set_marks(self, mark_in: int | None, mark_out: int | None) -> None:
        video = {k: v for k, v in (("in", mark_in), ("out", mark_out)) if v is not None}
        self.marks = {"video": video, "audio": dict(video)} if video else {}

    # -- API --
    def GetName(self) -> str:
        return self.name

    def GetStartFrame(self) -> int:
        return self.start_frame

    def GetEndFrame(self) -> int:
        return max([self.start_frame] + [i.GetEnd() for t in self.tracks for i in t])

    def GetSetting(self, settingName: str) -> str:
        return self.settings.get(settingName, "")

    def GetCurrentVideoItem(self):
        """The item under the playhead on the topmost video track that has one."""
        for track in reversed(self.tracks):
            for item in track:
                if item.start <= self.playhead < item.start + item.duration:
                    return item
        return None

    def GetMarkInOut(self) -> dict:
        return json.loads(json.dumps(self.marks))

    def GetTrackCount(self, trackType: str) -> int:
        return len(self.tracks) if trackType == "video" else 0

    def GetItemListInTrack(self, trackType: str, index: int) -> list:
        if trackType != "video" or not 1 <= index <= len(self.tracks):
            return []
        return list(self.tracks[index - 1])

    def AddTrack(self, trackType: str, subTrackType: str | None = None) -> bool:
        if trackType != "video":
            return False
        self.tracks.append([])
        return True

    def DeleteTrack(self, trackType: str, trackIndex: int) -> bool:
        if trackType != "video" or not 1 <= trackIndex <= len(self.tracks):
            return False
        del self.tracks[trackIndex - 1]
        return True

    def DeleteClips(self, timelineItems: list, ripple: bool = False) -> bool:
        found = [(track, item) for track in self.tracks for item in track if item in timelineItems]
        if len(found) != len(timelineItems):
            return False
        for track, item in found:
            track.remove(item)
        return True

    def Export(self, fileName: str, exportType: int, exportSubtype: int = 0) -> bool:
        if exportType != StandInResolve.EXPORT_OTIO_VALUE:
            return False
        import opentimelineio as otio  # test-side: Resolve writes OTIO itself

        rate = float(Fraction(_exact_rate(self.settings["timelineFrameRate"])))
        timeline = otio.schema.Timeline(name=self.name, global_start_time=otio.opentime.RationalTime(self.start_frame, rate))
        for index, items in enumerate(self.tracks, 1):
            track = otio.schema.Track(name=f"Video {index}", kind=otio.schema.TrackKind.Video)
            cursor = self.start_frame
            for item in items:
                if item.start > cursor:
                    track.append(otio.schema.Gap(duration=otio.opentime.RationalTime(item.start - cursor, rate)))
                reference = (otio.schema.ExternalReference(
                    target_url=item.pool_item.path,  # a plain path, as Resolve writes on this platform
                    available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate),
                                                            otio.opentime.RationalTime(item.pool_item.frames, rate)))
                    if item.pool_item else otio.schema.GeneratorReference(name=item.name))
                track.append(otio.schema.Clip(name=item.name, media_reference=reference, source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(item.source_first, rate), otio.opentime.RationalTime(item.duration, rate))))
                cursor = item.start + item.duration
            timeline.tracks.append(track)
        otio.adapters.write_to_file(timeline, fileName)
        return True


def _exact_rate(text: str) -> Fraction:
    number = float(text.replace("DF", "").strip())
    for nominal in (24, 30, 48, 60, 120):
        if abs(number - nominal * 1000 / 1001) < 0.002:
            return Fraction(nominal * 1000, 1001)
    return Fraction(number).limit_denominator(1001)


class MediaPool(_Gated):
    def __init__(self, resolve: "StandInResolve", project: "Project") -> None:
        self._resolve, self.project = resolve, project
        self.clips: list[MediaPoolItem] = []

    def ImportMedia(self, items: list) -> list:
        imported = []
        for path in items:
            if not isinstance(path, str) or not os.path.isfile(path):
                continue
            frames, fps = self._resolve.probe(path)
            clip = MediaPoolItem(self._resolve, path, frames, fps)
            self.clips.append(clip)
            imported.append(clip)
        return imported

    def DeleteClips(self, clips: list) -> bool:
        if any(clip not in self.clips for clip in clips):
            return False
        for clip in clips:
            self.clips.remove(clip)
        return True

    def AppendToTimeline(self, clips: list) -> list:
        """Append clipInfo dicts to the current timeline; before 18.5 trackIndex/recordFrame are not read."""
        timeline = self.project.GetCurrentTimeline()
        appended = []
        for info in clips:
            clip, first, last = info["mediaPoolItem"], int(info["startFrame"]), int(info["endFrame"])
            count = last - first + 1 if self._resolve.end_frame_inclusive else last - first
            knows_placement = self._resolve.version >= (18, 5, 0)
            track = int(info.get("trackIndex", 1)) if knows_placement else 1
            if not 1 <= track <= len(timeline.tracks) or count <= 0 or first < 0 or first + count > clip.frames:
                return []
            default_record = max([timeline.start_frame] + [i.GetEnd() for i in timeline.tracks[track - 1]])
            record = int(info.get("recordFrame", default_record)) if knows_placement else default_record
            appended.append(timeline.add_item(track, TimelineItem(self._resolve, clip, record, count, first)))
        return appended

    def ImportTimelineFromFile(self, filePath: str, importOptions: dict | None = None):
        """An OTIO file becomes a new timeline; ``file://`` references are refused, as Resolve 20 does."""
        import opentimelineio as otio

        options = importOptions or {}
        name = options.get("timelineName") or os.path.splitext(os.path.basename(filePath))[0]
        if any(t.name == name for t in self.project.timelines) or not os.path.isfile(filePath):
            return None
        source = otio.adapters.read_from_file(filePath)
        for clip in source.find_clips():
            if str(getattr(clip.media_reference, "target_url", "")).startswith("file://"):
                return None
        rate = source.global_start_time.rate if source.global_start_time else 24.0
        start = round(source.global_start_time.value) if source.global_start_time else 0
        timeline = Timeline(self._resolve, name, start, f"{rate:.3f}".rstrip("0").rstrip("."))
        timeline.tracks = []
        for track in source.video_tracks():
            timeline.tracks.append([])
            for child in track:
                if not isinstance(child, otio.schema.Clip):
                    continue
                record = start + round(track.range_of_child(child).start_time.value)
                path = getattr(child.media_reference, "target_url", None)
                pool_item = self.ImportMedia([path])[0] if path and options.get("importSourceClips", True) else None
                timeline.add_item(len(timeline.tracks), TimelineItem(
                    self._resolve, pool_item, record, round(child.source_range.duration.value),
                    round(child.source_range.start_time.value), name=child.name))
        self.project.timelines.append(timeline)
        return timeline


class Project(_Gated):
    def __init__(self, resolve: "StandInResolve", name: str) -> None:
        self._resolve, self.name = resolve, name
        self.timelines: list[Timeline] = []
        self.current: Timeline | None = None
        self.media_pool = MediaPool(resolve, self)

    def GetName(self) -> str:
        return self.name

    def GetCurrentTimeline(self):
        return self.current

    def SetCurrentTimeline(self, timeline: Timeline) -> bool:
        if timeline not in self.timelines:
            return False
        self.current = timeline
        return True

    def GetMediaPool(self) -> MediaPool:
        return self.media_pool

    def GetSetting(self, settingName: str) -> str:
        return self.current.GetSetting(settingName) if self.current else ""


class ProjectManager(_Gated):
    def __init__(self, resolve: "StandInResolve") -> None:
        self._resolve = resolve
        self.project: Project | None = None

    def GetCurrentProject(self):
        return self.project


class StandInResolve(_Gated):
    """``resolve``: the stand-in's root object. ``version`` gates calls; ``end_frame_inclusive`` sets
    AppendToTimeline's reading of endFrame; ``source_start_skew`` makes GetSourceStartFrame disagree."""

    EXPORT_OTIO_VALUE = 27
    EXPORT_NONE = 0

    def __init__(self, version: Version = (20, 2, 0), end_frame_inclusive: bool = True,
                 probe: Probe = pyav_probe) -> None:
        self._resolve = self
        self.version, self.end_frame_inclusive, self.probe = version, end_frame_inclusive, probe
        self.source_start_skew = 0
        self.project_manager = ProjectManager(self)

    @property
    def EXPORT_OTIO(self) -> int:
        return self.EXPORT_OTIO_VALUE

    def GetProjectManager(self) -> ProjectManager:
        return self.project_manager

    # -- set-up helper --
    def open_timeline(self, name: str = "Edit", start_frame: int = 90000, frame_rate: str = "25",
                      drop_frame: bool = False) -> tuple[Project, Timeline]:
        project = self.project_manager.project or Project(self, "Dub project")
        self.project_manager.project = project
        timeline = Timeline(self, name, start_frame, frame_rate, drop_frame)
        project.timelines.append(timeline)
        project.current = timeline
        return project, timeline


@dataclass
class FakeMedia:
    """A probe for unit tests: any existing file is ``frames`` long at ``fps``."""

    frames: int = 1000
    fps: str = "25"

    def __call__(self, path: str) -> tuple[int, str]:
        return self.frames, self.fps
