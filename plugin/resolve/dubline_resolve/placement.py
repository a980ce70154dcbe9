"""Put the patch on a new video track at the record frame, then read it back and fix an off-by-one.

``MediaPool.AppendToTimeline([{clipInfo}])`` takes source ``startFrame``/``endFrame`` of the media
pool clip, and whether ``endFrame`` is the last frame placed (inclusive) or the one after it
(exclusive) has differed between Resolve versions. So the first append asks for the inclusive form,
the placed item's ``GetDuration()`` is read back, and when it is one frame long or short the item is
removed (``Timeline.DeleteClips``) and appended again with the other convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dubline_resolve.errors import PlacementError
from dubline_resolve.selection import optional_method

Report = Callable[[str], None]
VIDEO_ONLY = 1  # clipInfo "mediaType": 1 - video only, 2 - audio only


@dataclass(frozen=True)
class Placement:
    """The placed patch: its timeline item, track, frames, and the endFrame convention this Resolve uses."""

    item: object
    media_pool_item: object
    track_index: int
    record_first: int
    frame_count: int
    end_frame_inclusive: bool
    appends: int  # 1, or 2 when the first append was corrected


def _clip_info(pool_item: object, frame_count: int, inclusive: bool, track: int, record_first: int) -> dict:
    return {
        "mediaPoolItem": pool_item,
        "startFrame": 0,
        "endFrame": frame_count - 1 if inclusive else frame_count,
        "trackIndex": track,
        "recordFrame": record_first,
        "mediaType": VIDEO_ONLY,
    }


def _append(media_pool: object, info: dict) -> object:
    items = media_pool.AppendToTimeline([info])
    if not items:
        raise PlacementError(f"Resolve did not place the patch on V{info['trackIndex']} at frame {info['recordFrame']} "
                             "(AppendToTimeline with trackIndex/recordFrame needs Resolve 18.5 or later)")
    return items[0]


def read_back(item: object) -> tuple[int, int]:
    """(first frame, frame count) of a placed item; GetEnd() must agree with one of the two conventions."""
    start, end, duration = int(item.GetStart()), int(item.GetEnd()), int(item.GetDuration())
    if end - start not in (duration, duration - 1):
        raise PlacementError(f"Resolve reports the patch at {start}-{end} with duration {duration}, which do not agree")
    return start, duration


def _cleanup(timeline: object, media_pool: object, items: list, track: int | None, pool_item: object | None) -> None:
    """Undo a failed placement: the items placed, the track added, the imported clip."""
    delete_clips = optional_method(timeline, "DeleteClips")
    if items and delete_clips is not None:
        delete_clips(items, False)
    delete_track = optional_method(timeline, "DeleteTrack")
    if track is not None and delete_track is not None:
        delete_track("video", track)
    if pool_item is not None:
        media_pool.DeleteClips([pool_item])


#: Resolve marker colour of each flag kind (docs/ITERATING.md): the source shows through (yellow),
#: the dub is silent (cyan), qc measured a problem (red).
MARKER_COLOURS = {"passthrough": "Yellow", "dub_silent": "Cyan"}
QC_MARKER_COLOUR = "Red"


def mark_flags(item: object, flags, report: Report = print) -> int:
    """One marker on the placed patch item per flag of the render (``RenderDone.flags``): at the
    flag's first frame (counted from the item's start, as AddMarker does), as long as the flag,
    named with what is wrong and noted with the source frames. Returns how many Resolve took."""
    add_marker = optional_method(item, "AddMarker")
    if add_marker is None:
        if flags:
            report("dubline: warning: this Resolve has no TimelineItem.AddMarker; the frames to look at are: "
                   + "; ".join(flag.label for flag in flags))
        return 0
    placed = 0
    for flag in flags:
        colour = MARKER_COLOURS.get(flag.kind, QC_MARKER_COLOUR)
        if add_marker(int(flag.first), colour, flag.note, flag.label, int(flag.end - flag.first), f"dubline:{flag.kind}"):
            placed += 1
        else:
            report(f"dubline: warning: Resolve refused the marker {flag.label!r}")
    return placed


def place_patch(timeline: object, media_pool: object, patch_path: str, record_first: int, frame_count: int,
                report: Report = print) -> Placement:
    """Import ``patch_path`` into the media pool and lay its ``frame_count`` frames at ``record_first`` on a new
    video track above all others, checked by reading the placement back."""
    imported = media_pool.ImportMedia([str(patch_path)])
    if not imported:
        raise PlacementError(f"Resolve could not import the patch {patch_path} into the media pool")
    pool_item = imported[0]
    add_track = optional_method(timeline, "AddTrack")
    if add_track is None:
        _cleanup(timeline, media_pool, [], None, pool_item)
        raise PlacementError("this Resolve has no Timeline.AddTrack: placing the patch needs Resolve 18.5 or later "
                             "(or use the OTIO path)")
    if not add_track("video"):
        _cleanup(timeline, media_pool, [], None, pool_item)
        raise PlacementError("Resolve did not add a video track for the patch")
    track = int(timeline.GetTrackCount("video"))

    placed: list = []
    try:
        inclusive = True
        item = _append(media_pool, _clip_info(pool_item, frame_count, inclusive, track, record_first))
        placed.append(item)
        start, duration = read_back(item)
        appends = 1
        if start == record_first and abs(duration - frame_count) == 1:
            # This version reads endFrame the other way: take the item out and place it again.
            delete_clips = optional_method(timeline, "DeleteClips")
            if delete_clips is None:
                raise PlacementError(f"the patch was placed {duration} frames long instead of {frame_count} and this "
                                     "Resolve has no Timeline.DeleteClips (18.5+) to correct it")
            if not delete_clips([item], False):
                raise PlacementError("Resolve refused to remove the mis-sized patch item for a second try")
            placed.remove(item)
            inclusive = not inclusive  # one frame off: this version reads endFrame the other way
            report(f"dubline: endFrame is {'inclusive' if inclusive else 'exclusive'} here; placing the patch again")
            item = _append(media_pool, _clip_info(pool_item, frame_count, inclusive, track, record_first))
            placed.append(item)
            start, duration = read_back(item)
            appends = 2
        if (start, duration) != (record_first, frame_count):
            raise PlacementError(f"the patch landed at frame {start} for {duration} frames instead of "
                                 f"{record_first} for {frame_count}")
    except PlacementError:
        _cleanup(timeline, media_pool, placed, track, pool_item)
        raise
    return Placement(item=item, media_pool_item=pool_item, track_index=track, record_first=record_first,
                     frame_count=frame_count, end_frame_inclusive=inclusive, appends=appends)
