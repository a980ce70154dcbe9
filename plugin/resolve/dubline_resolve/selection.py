"""What to patch: the current timeline's clip under the playhead, limited to the mark in/out.

Frame numbers: ``TimelineItem.GetStart()`` and ``AppendToTimeline``'s ``recordFrame`` count from the
timeline's frame 0 (a timeline starting at 01:00:00:00 at 24 fps starts at frame 86400), while
``Timeline.GetMarkInOut()`` counts from the timeline's start frame, and its out mark is the last
marked frame (inclusive). Source frames count from the media file's first frame (0), the engine's
convention; ``GetLeftOffset()`` is exactly the source frame of the item's first frame when the clip
plays at 100% at the timeline's rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

from dubline_resolve.errors import MediaError, ResolveStateError
from dubline_resolve.frames import parse_rate, timecode, timeline_rate


@dataclass(frozen=True)
class SourceSpan:
    """A span of one clip: where it is on the timeline and which frames of which file it shows."""

    media_path: str
    item_name: str
    rate: Fraction                 # the clip's and the timeline's rate (they must match)
    drop_frame: bool               # the timeline's timecode display
    source_first: int              # media frames [source_first, source_end), 0 = the file's first frame
    source_end: int
    record_first: int              # timeline frame of source_first (GetStart()/recordFrame numbering)
    from_marks: bool               # limited by the timeline's mark in/out
    warnings: tuple[str, ...] = field(default=())

    @property
    def frame_count(self) -> int:
        return self.source_end - self.source_first

    @property
    def record_end(self) -> int:
        return self.record_first + self.frame_count

    def describe(self) -> str:
        start = timecode(self.record_first, self.rate, self.drop_frame)
        end = timecode(self.record_end, self.rate, self.drop_frame)
        return (f"{self.item_name}: source frames {self.source_first}-{self.source_end} "
                f"({self.frame_count} frames at {_rate_text(self.rate)} fps), record {start}-{end}")


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def optional_method(obj: object, name: str):
    """The API method ``name`` when this Resolve version has it, else None (newer calls are probed, not assumed)."""
    method = getattr(obj, name, None)
    return method if callable(method) else None


def current_project_and_timeline(resolve: object) -> tuple[object, object]:
    """``resolve.GetProjectManager().GetCurrentProject()`` and its ``GetCurrentTimeline()``."""
    if resolve is None:
        raise ResolveStateError("not connected to DaVinci Resolve: run this from Workspace > Scripts inside Resolve")
    project = resolve.GetProjectManager().GetCurrentProject()
    if not project:
        raise ResolveStateError("no project is open in Resolve")
    timeline = project.GetCurrentTimeline()
    if not timeline:
        raise ResolveStateError(f"project {project.GetName()!r} has no current timeline: open the timeline to patch")
    return project, timeline


def media_file_path(media_pool_item: object) -> str:
    """``GetClipProperty("File Path")``: a string, or on old versions a one-entry dict."""
    value = media_pool_item.GetClipProperty("File Path")
    if isinstance(value, dict):
        value = value.get("File Path", "")
    return str(value or "")


def marked_range(timeline: object) -> tuple[int | None, int | None]:
    """Timeline frames [first, end) of the video mark in/out (either may be None), when the API has it."""
    get_marks = optional_method(timeline, "GetMarkInOut")
    if get_marks is None:
        return None, None
    marks = get_marks() or {}
    video = marks.get("video") or {}
    start = timeline.GetStartFrame()
    first = start + int(video["in"]) if "in" in video else None
    end = start + int(video["out"]) + 1 if "out" in video else None
    return first, end


def select_span(project: object, timeline: object, use_marks: bool = True) -> SourceSpan:
    """The current video item (``Timeline.GetCurrentVideoItem``), limited to the mark in/out when set."""
    item = timeline.GetCurrentVideoItem()
    if not item:
        raise ResolveStateError(f"no video clip under the playhead on timeline {timeline.GetName()!r}: "
                                "park the playhead on the clip to patch (Edit or Cut page)")
    name = item.GetName() or "the clip under the playhead"
    pool_item = item.GetMediaPoolItem()
    if not pool_item:
        raise MediaError(f"{name!r} has no media pool clip (a title, generator, or compound clip?): "
                         "only clips of a media file can be patched")
    path = media_file_path(pool_item)
    if not path:
        raise MediaError(f"{name!r} has no media file behind it (File Path is empty)")
    if not os.path.isfile(path):
        raise MediaError(f"the media file of {name!r} is not there: {path} (offline media? relink it first)")

    rate, drop_frame = timeline_rate(timeline, project)
    clip_rate, _ = parse_rate(pool_item.GetClipProperty("FPS"))
    if clip_rate != rate:
        raise MediaError(f"{name!r} is {float(clip_rate):.3f} fps on a {float(rate):.3f} fps timeline: "
                         "dubline patches clips that play at the timeline's rate")

    item_first = int(item.GetStart())
    item_end = item_first + int(item.GetDuration())
    left_offset = int(item.GetLeftOffset())
    warnings: list[str] = []
    get_source_start = optional_method(item, "GetSourceStartFrame")
    if get_source_start is not None:
        source_start = get_source_start()
        if source_start is not None and int(source_start) != left_offset:
            # Reported to differ by a frame on some clips; the left offset is the older, checked value.
            warnings.append(f"GetSourceStartFrame() says {source_start}, GetLeftOffset() {left_offset}; "
                            "using the left offset")

    first, end = item_first, item_end
    from_marks = False
    if use_marks:
        mark_first, mark_end = marked_range(timeline)
        if mark_first is not None or mark_end is not None:
            first = mark_first if mark_first is not None else item_first
            end = mark_end if mark_end is not None else item_end
            from_marks = True
            if end <= first:
                raise ResolveStateError("the mark out is before the mark in: set both again")
            if first < item_first or end > item_end:
                show = lambda frame: timecode(frame, rate, drop_frame)  # noqa: E731
                raise ResolveStateError(
                    f"the marked range {show(first)}-{show(end)} is not inside {name!r} "
                    f"({show(item_first)}-{show(item_end)}): mark a range within one clip")

    source_first = left_offset + (first - item_first)
    return SourceSpan(
        media_path=path, item_name=name, rate=rate, drop_frame=drop_frame,
        source_first=source_first, source_end=source_first + (end - first), record_first=first,
        from_marks=from_marks, warnings=tuple(warnings),
    )
