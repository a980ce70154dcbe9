"""OpenTimelineIO interchange: a timeline that places the patch above its source
(``patch_timeline``, ``write_timeline``), and editors' timelines read and planned on:

    read     .otio / FCP 7 XML / EDL in, with what the adapter plug-ins lose put back
    survey   where every video clip plays (record time through nests, transitions, disabled, speed)
    select   ``--clip`` by name or index, with short messages
    plan     clip -> media, rates, span clear of transitions and inside the media
    insert   the timeline with the patch on a new top track
"""

from dubline.interchange.insert import (
    PATCH_TRACK_NAME,
    PatchMedia,
    PlacedPatch,
    insert_patch,
    insert_patches,
)
from dubline.interchange.plan import (
    ON_TRANSITION,
    RANGE_SPACES,
    PatchPlan,
    RateMismatchError,
    ResolvedClip,
    SpeedEffectError,
    TransitionError,
    check_media,
    default_patch_path,
    media_path,
    plan_record,
    plan_span,
    plan_summary,
    resolve,
    resolve_clip,
)
from dubline.interchange.read import (
    ADAPTER_PACKAGES,
    ADAPTERS_BY_SUFFIX,
    METADATA_KEY,
    MissingAdapterError,
    read_timeline,
)
from dubline.interchange.select import ClipSelectionError, select_clip
from dubline.interchange.survey import (
    PlacedClip,
    TimelineSurvey,
    TransitionZone,
    speed_effect,
    survey_timeline,
)
from dubline.interchange.timeline import patch_timeline, write_timeline

__all__ = [
    "ADAPTER_PACKAGES", "ADAPTERS_BY_SUFFIX", "METADATA_KEY", "ON_TRANSITION", "PATCH_TRACK_NAME", "RANGE_SPACES",
    "ClipSelectionError", "MissingAdapterError", "PatchMedia", "PatchPlan", "PlacedClip", "PlacedPatch", "RateMismatchError",
    "ResolvedClip", "SpeedEffectError", "TimelineSurvey", "TransitionError", "TransitionZone", "check_media",
    "default_patch_path", "insert_patch", "insert_patches", "media_path", "patch_timeline", "plan_record", "plan_span", "plan_summary",
    "read_timeline", "resolve", "resolve_clip", "select_clip", "speed_effect", "survey_timeline", "write_timeline",
]
