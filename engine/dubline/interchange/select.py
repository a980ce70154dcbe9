"""``--clip``: a clip name (exact, case-sensitive), or ``N`` / ``#N`` for the N-th video clip.

Disabled clips (or clips on a disabled track or in a disabled nest) are skipped unless asked for:
a name shared by one enabled clip and disabled ones picks the enabled clip and says what it
skipped. Messages list a few candidates and then "and N more", so a 1000-clip reel still gets a
one-line error.
"""

from __future__ import annotations

import difflib

from dubline.core.errors import InvalidInputError
from dubline.interchange.frames import first_few
from dubline.interchange.survey import PlacedClip, TimelineSurvey

#: How many candidates an error line lists before "and N more".
LISTED = 6
INCLUDE_DISABLED_FLAG = "--include-disabled"


class ClipSelectionError(InvalidInputError):
    """``--clip`` names no clip, more than one, or one that is skipped."""


def select_clip(survey: TimelineSurvey, selector: str, include_disabled: bool = False) -> tuple[PlacedClip, list[str]]:
    """The clip ``selector`` names, and notes on what was passed over to find it.

    A name wins over an index when a clip is named like a number; ``#N`` always means the index.
    Skipped clips (see ``PlacedClip.skipped``) are chosen only with ``include_disabled``.
    """
    clips = survey.clips
    if not clips:
        raise ClipSelectionError("the timeline has no video clips" + _nest_notes(survey))
    text = selector.strip()
    if not text.startswith("#"):
        named = [c for c in clips if c.name == text]
        if named:
            return _one_of(survey, text, named, include_disabled)
    number = text.removeprefix("#")
    if number.isdigit():
        index = int(number)
        if not 1 <= index <= len(clips):
            raise ClipSelectionError(f"--clip {selector}: the timeline has {len(clips)} video clips (1-{len(clips)})")
        chosen = clips[index - 1]
        if chosen.skipped and not include_disabled:
            raise ClipSelectionError(_skipped(chosen))
        return chosen, []
    raise ClipSelectionError(_unknown(survey, text))


def _one_of(survey: TimelineSurvey, name: str, named: list[PlacedClip], include_disabled: bool) -> tuple[PlacedClip, list[str]]:
    usable = named if include_disabled else [c for c in named if not c.skipped]
    if len(usable) == 1:
        notes = [f"skipped {c.where()}: {c.skipped}" for c in named if c is not usable[0]]
        return usable[0], notes
    if len(usable) > 1:
        candidates = [f"#{c.index} on {c.track_label()} at {survey.record_tc(c.record)}" for c in usable]
        raise ClipSelectionError(
            f"{len(usable)} clips are named {name!r} ({first_few(candidates, LISTED, '; ')}); pass --clip '#N' to pick one"
        )
    if len(named) == 1:
        raise ClipSelectionError(_skipped(named[0]))
    reasons = [f"#{c.index}: {c.skipped}" for c in named]
    raise ClipSelectionError(
        f"all {len(named)} clips named {name!r} are skipped ({first_few(reasons, LISTED, '; ')}); "
        f"pass {INCLUDE_DISABLED_FLAG} and --clip '#N' to patch one anyway"
    )


def _skipped(clip: PlacedClip) -> str:
    if clip.record[0] >= clip.record[1]:
        return f"{clip.where()} shows no frames: {clip.skipped}"
    return f"{clip.where()} is skipped: {clip.skipped}; pass {INCLUDE_DISABLED_FLAG} to patch it anyway"


def _unknown(survey: TimelineSurvey, text: str) -> str:
    clips = survey.clips
    inside = [f"#{c.index} {c.name!r}" for c in clips if text in c.nest]
    if inside:
        return f"{text!r} is a nested sequence; dubline patches the clips inside it: {first_few(inside, LISTED)}"
    unreadable = [note for note in survey.notes if note.startswith(f"nested sequence {text!r} ")]
    if unreadable:
        return f"no video clip is named {text!r}: {unreadable[0]}"
    names = list(dict.fromkeys(c.name for c in clips))
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(n) for n in close)}? " if close else ""
    listing = [f"#{c.index} {c.name!r} ({c.track_label()})" for c in clips]
    return (
        f"no video clip is named {text!r}; {hint}the timeline has {len(clips)}: {first_few(listing, LISTED)}"
        + _nest_notes(survey)
    )


def _nest_notes(survey: TimelineSurvey) -> str:
    if not survey.notes:
        return ""
    return "; " + first_few(list(survey.notes), 2, "; ")
