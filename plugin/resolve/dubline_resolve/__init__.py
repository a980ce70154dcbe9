"""dubline for DaVinci Resolve: patch the clip under the playhead (or the marked range) with a dub.

All logic is plain functions over the Resolve API objects, so it runs against the stand-in in
``tests/resolve_standin.py``; ``plugin/resolve/Dubline.py`` is the thin Workspace > Scripts > Utility
entry point. Imports only grpcio + protobuf through ``dubline_client`` (never torch, never ``dubline``).

Resolve calls used, and the oldest scripting README (as shipped with that Resolve version) that was
read and lists them in the form used; "<=17.0" means already in the 17.0 README (dated 20 October
2020), the oldest one checked:

==========================================================  =========================================
call                                                        listed since
==========================================================  =========================================
Resolve.GetProjectManager, ProjectManager.GetCurrentProject  <=17.0
Project.GetCurrentTimeline / SetCurrentTimeline              <=17.0
Project.GetMediaPool / GetSetting                            <=17.0
Timeline.GetName / GetStartFrame / GetSetting                <=17.0
Timeline.GetCurrentVideoItem                                 <=17.0
Timeline.GetTrackCount / GetItemListInTrack                  <=17.0
Timeline.Export(path, type, subtype)                         <=17.0; resolve.EXPORT_OTIO from 18.5
Timeline.AddTrack("video"), DeleteTrack, DeleteClips         18.5 (not in 18.0.4; AddTrack options 19.0)
Timeline.GetMarkInOut                                        19.1 (optional: skipped when absent)
TimelineItem.GetName / GetStart / GetEnd / GetDuration       <=17.0 (subframe argument 19.0.2, unused)
TimelineItem.GetLeftOffset / GetMediaPoolItem                <=17.0
TimelineItem.GetSourceStartFrame                             19.0.2 (optional cross-check)
MediaPoolItem.GetName / GetClipProperty("File Path"/"FPS")   <=17.0 (a one-entry dict in old
                                                             versions, per public code: handled)
MediaPool.ImportMedia([paths]) / DeleteClips([clips])        <=17.0
MediaPool.AppendToTimeline([{mediaPoolItem, startFrame,      <=17.0 (start/end), 18.0 (mediaType,
  endFrame, trackIndex, recordFrame, mediaType}])            returns [TimelineItem]), 18.5 (trackIndex,
                                                             recordFrame)
MediaPool.ImportTimelineFromFile(path, {timelineName, ...})  <=17.0; OTIO listed from the 18.6 README
==========================================================  =========================================

So the direct path needs Resolve 18.5 or later. Frame conventions assumed (from the README and
public reports; see docs/RESOLVE.md): recordFrame and GetStart() count from the timeline's frame 0
(01:00:00:00 at 25 fps is 90000); GetMarkInOut counts from the timeline start with an inclusive out;
startFrame 0 is the patch file's first frame; endFrame inclusivity differs by version and is
detected from the read-back. THE LIVE CHECK IN RESOLVE IS OUTSTANDING: this package has only been
run against the stand-in, which implements the documented semantics above.
"""

from dubline_resolve.engine import (
    DEFAULT_ENGINE_ADDRESS, BridgeSettings, connect, engine_choices, load_settings, render_patch, settings_for_engine,
)
from dubline_resolve.errors import (
    BridgeError, EngineUnavailableError, MediaError, OtioRoundTripError, PlacementError, RenderError,
    ResolveStateError,
)
from dubline_resolve.flow import OtioResult, PatchResult, patch_current_item, patch_via_otio
from dubline_resolve.frames import parse_rate, timecode, timeline_rate
from dubline_resolve.placement import Placement, mark_flags, place_patch
from dubline_resolve.selection import SourceSpan, current_project_and_timeline, select_span

__all__ = [
    "DEFAULT_ENGINE_ADDRESS", "BridgeError", "BridgeSettings", "EngineUnavailableError", "MediaError",
    "OtioResult", "OtioRoundTripError", "PatchResult", "Placement", "PlacementError", "RenderError",
    "ResolveStateError", "SourceSpan", "connect", "current_project_and_timeline", "engine_choices", "load_settings",
    "mark_flags", "parse_rate", "patch_current_item", "patch_via_otio", "place_patch", "render_patch", "select_span",
    "settings_for_engine", "timecode", "timeline_rate",
]
