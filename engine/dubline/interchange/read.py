"""Reading an editor's timeline: ``.otio`` with OpenTimelineIO, FCP 7 XML and CMX 3600 EDL through
OTIO's adapter plug-ins, with what those adapters (1.0.0) lose put back:

* FCP XML: a clip of a nested sequence (Premiere's nest) comes back as an empty Stack; here the
  nest's own ``<sequence>`` is read, in place, by the adapter's parser. ``<enabled>FALSE</enabled>``
  on clips, nests and tracks becomes OTIO's ``enabled = False``.
* EDL: ``FCM: DROP FRAME`` is ignored by the adapter, which counts ``HH:MM:SS:FF`` non-drop; here
  those events are read drop-frame. An ``M2`` speed line or ``* FREEZE FRAME`` whose source and
  record durations match (a 1-frame freeze) is dropped by the adapter; here it becomes the
  ``LinearTimeWarp`` / ``FreezeFrame`` the adapter writes when they differ. Record placement
  becomes ``global_start_time`` (the adapter offsets each track instead).

A drop-frame timeline is marked ``metadata["dubline"]["drop_frame"] = True`` so that record
timecodes are shown and typed the way the editor's timeline counts them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import InvalidInputError, MediaNotFoundError

#: Timeline file suffix -> OTIO adapter, and the PyPI package that provides each plug-in adapter.
ADAPTERS_BY_SUFFIX = {".otio": "otio_json", ".json": "otio_json", ".xml": "fcp_xml", ".edl": "cmx_3600"}
ADAPTER_PACKAGES = {"fcp_xml": "otio-fcp-adapter", "cmx_3600": "otio-cmx3600-adapter"}
#: Namespace of what dubline writes into OTIO metadata.
METADATA_KEY = "dubline"
FCP_METADATA_KEY = "fcp_xml"

_EDL_TIMECODE = re.compile(r"\b(\d{2})[:;](\d{2})[:;](\d{2})[:;.,](\d{2})\b")
_EDL_EVENT = re.compile(r"^\s*\d+\s")
_EDL_M2 = re.compile(r"^\s*M2\s", re.IGNORECASE)
_EDL_FCM = re.compile(r"^\s*FCM:\s*(.*?)\s*$", re.IGNORECASE)


class MissingAdapterError(InvalidInputError):
    """The timeline's format needs an OTIO adapter plug-in that is not installed."""

    status_code = "FAILED_PRECONDITION"


def read_timeline(path: Path, adapter: str | None = None, edl_rate: Fraction | None = None) -> otio.schema.Timeline:
    """Read ``path`` with the adapter its suffix names (or ``adapter``).

    ``otio_json`` ships with OpenTimelineIO; ``fcp_xml`` (Final Cut Pro 7 / Premiere / Resolve XML)
    and ``cmx_3600`` (EDL) are plug-ins: a missing one raises ``MissingAdapterError`` naming the
    package to install. EDLs carry no frame rate, so ``edl_rate`` is required for them.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(f"timeline {path} does not exist")
    name = adapter or ADAPTERS_BY_SUFFIX.get(path.suffix.lower())
    if name is None:
        raise InvalidInputError(
            f"cannot tell the format of {path.name} from its suffix; use .otio, .xml (FCP 7 XML) or .edl, or pass --adapter"
        )
    available = {a.name for a in otio.plugins.ActiveManifest().adapters}
    if name not in available:
        package = ADAPTER_PACKAGES.get(name)
        hint = f"pip install {package}" if package else f"installed adapters: {', '.join(sorted(available))}"
        raise MissingAdapterError(f"reading {path.name} needs the OTIO adapter {name!r}, which is not installed ({hint})")
    if name == "cmx_3600" and edl_rate is None:
        raise InvalidInputError(f"{path.name} is an EDL, which has no frame rate: pass --edl-rate (e.g. 25 or 23.976)")
    try:
        if name == "fcp_xml":
            result = _read_fcp_xml(path)
        elif name == "cmx_3600":
            result = _read_edl(path, timing.parse_rate(edl_rate))
        else:
            result = otio.adapters.read_from_file(str(path), adapter_name=name)
    except InvalidInputError:
        raise
    except Exception as error:  # the adapters raise anything from ValueError to OTIO's own errors
        raise InvalidInputError(f"cannot read {path.name} as {name}: {error}") from error
    return _single_timeline(result, path)


def is_drop_frame(timeline: otio.schema.Timeline) -> bool:
    """Whether the timeline's record timecode counts drop-frame (as its reader found it)."""
    return bool(timeline.metadata.get(METADATA_KEY, {}).get("drop_frame", False))


def _mark_drop_frame(timeline: otio.schema.Timeline) -> None:
    marks = dict(timeline.metadata.get(METADATA_KEY, {}))
    marks["drop_frame"] = True
    timeline.metadata[METADATA_KEY] = marks


def _single_timeline(result: Any, path: Path) -> otio.schema.Timeline:
    if isinstance(result, otio.schema.Timeline):
        return result
    timelines = list(result.find_children(descended_from_type=otio.schema.Timeline)) if hasattr(result, "find_children") else []
    if len(timelines) == 1:
        return timelines[0]
    names = ", ".join(repr(t.name) for t in timelines) or "none"
    raise InvalidInputError(f"{path.name} holds {len(timelines)} timelines ({names}); export just one")


# ------------------------------------------------------------------------------------- FCP 7 XML


def _read_fcp_xml(path: Path) -> Any:
    module = otio.adapters.from_name("fcp_xml").module()
    tree = ElementTree.fromstring(path.read_bytes())
    sequences = _nest_reading_parser(module)(tree).top_level_sequences()
    if not sequences:
        raise InvalidInputError(f"{path.name} holds no <sequence>; export a sequence as Final Cut Pro XML")
    for timeline in sequences:
        _apply_fcp_enabled(timeline)
        if _fcp_drop_frame(timeline):
            _mark_drop_frame(timeline)
    if len(sequences) == 1:
        return sequences[0]
    return otio.schema.SerializableCollection(name="Sequences", children=sequences)


def _nest_reading_parser(module: Any) -> type:
    class NestReadingParser(module.FCP7XMLParser):
        """The adapter's parser, reading a clipitem's nested ``<sequence>`` into tracks.

        otio-fcp-adapter 1.0.0 hands the ``<sequence>`` element to ``stack_for_element``, which looks
        for ``<video>``/``<audio>`` directly under it and finds none (they are under ``<media>``).
        """

        def __init__(self, element_tree: Any) -> None:
            super().__init__(element_tree)
            # An id names the element that defines it in full. Premiere defines a nest once and
            # refers to it by id elsewhere, and the reference can come first in the file.
            for element in element_tree.iter():
                element_id = element.attrib.get("id")
                if element_id and len(element) and element_id not in self._id_map:
                    self._id_map[element_id] = element

        def clip_for_element(self, clipitem_element: Any, item_range: Any, start_offset: Any, context: Any) -> Any:
            item = super().clip_for_element(clipitem_element, item_range, start_offset, context)
            name = clipitem_element.find("./name")
            if isinstance(item, otio.schema.Stack) and name is not None and name.text:
                item.name = name.text  # the nest as the timeline shows it (the adapter leaves it unnamed)
            return item

        def stack_for_element(self, element: Any, context: Any) -> otio.schema.Stack:
            if element.tag != "sequence":
                return super().stack_for_element(element, context)
            media = self._derefed_element(element.find("./media"))
            name_element = element.find("./name")
            name = name_element.text if name_element is not None and name_element.text else ""
            if media is None:
                return otio.schema.Stack(name=name)  # the survey names it as a nest it cannot see into
            stack = super().stack_for_element(media, context.context_pushing_element(element))
            stack.name = name
            return stack

    return NestReadingParser


def _disabled_in_fcp(item: Any) -> bool:
    enabled = item.metadata.get(FCP_METADATA_KEY, {}).get("enabled")
    return isinstance(enabled, str) and enabled.strip().lower() == "false"


def _apply_fcp_enabled(timeline: otio.schema.Timeline) -> None:
    for item in timeline.tracks.find_children():
        if isinstance(item, otio.core.Item) and _disabled_in_fcp(item):
            item.enabled = False


def _fcp_drop_frame(timeline: otio.schema.Timeline) -> bool:
    timecode = timeline.metadata.get(FCP_METADATA_KEY, {}).get("timecode", {})
    display = timecode.get("displayformat") if hasattr(timecode, "get") else None
    return isinstance(display, str) and display.strip().upper() == "DF"


# ------------------------------------------------------------------------------------------- EDL


def _read_edl(path: Path, rate: Fraction) -> otio.schema.Timeline:
    module = otio.adapters.from_name("cmx_3600").module()
    text, drop_frame = _edl_timecodes_as_read(path.read_text(encoding="utf-8", errors="replace"), rate, path)
    timeline = _speed_reading_parser(module)(text, rate=float(rate)).timeline
    _normalise_record_offsets(timeline, rate)
    if drop_frame:
        _mark_drop_frame(timeline)
    return timeline


def _edl_timecodes_as_read(text: str, rate: Fraction, path: Path) -> tuple[str, bool]:
    """The EDL with event timecodes spelled as OTIO must read them: ``HH:MM:SS;FF`` under
    ``FCM: DROP FRAME`` (the adapter takes the mode from the separator alone), and M2 lines' source
    timecode with colons (the adapter's M2 pattern only matches those). Also: whether the first
    event is drop-frame."""
    lines, mode, first_event_drop = [], "", None
    for line in text.splitlines():
        fcm = _EDL_FCM.match(line)
        if fcm:
            mode = fcm.group(1).upper()
        elif _EDL_EVENT.match(line):
            # FCM: DROP FRAME, or no FCM and the events say so themselves (HH:MM:SS;FF)
            drop = ("DROP" in mode and "NON" not in mode) or (not mode and ";" in line)
            if drop and not timing.is_drop_frame_rate(rate):
                raise InvalidInputError(
                    f"{path.name} says FCM: DROP FRAME, which exists at 29.97 and 59.94 fps only: pass --edl-rate 29.97 or 59.94"
                )
            if first_event_drop is None:
                first_event_drop = drop
            if drop:
                line = _EDL_TIMECODE.sub(r"\1:\2:\3;\4", line)
        elif _EDL_M2.match(line):
            line = _EDL_TIMECODE.sub(r"\1:\2:\3:\4", line)
        lines.append(line)
    return "\n".join(lines) + "\n", bool(first_event_drop)


def _speed_reading_parser(module: Any) -> type:
    class SpeedReadingParser(module.EDLParser):
        """The adapter's parser, keeping an M2 / FREEZE FRAME even where source and record durations
        agree (the adapter only turns them into time effects where they differ)."""

        def add_clip(self, line: str, comments: list[str], rate: float = 24, transition_line: str | None = None) -> None:
            lengths = {name: len(track) for name, track in self.tracks_by_name.items()}
            super().add_clip(line, comments, rate=rate, transition_line=transition_line)
            effect = _edl_time_effect(module, module.CommentHandler(comments).handled, rate)
            if effect is None:
                return
            for name, track in self.tracks_by_name.items():
                if len(track) > lengths.get(name, 0):
                    clip = track[len(track) - 1]
                    if not any(isinstance(e, otio.schema.TimeEffect) for e in clip.effects):
                        clip.effects.append(effect.clone())

    return SpeedReadingParser


def _edl_time_effect(module: Any, handled: dict, rate: float) -> otio.schema.TimeEffect | None:
    if "freeze_frame" in handled:
        return otio.schema.FreezeFrame()
    motion = handled.get("motion_effect")
    if motion is None:
        return None
    match = module.SPEED_EFFECT_RE.match(motion)
    try:
        speed = float(match.group("speed")) if match else None
    except ValueError:
        speed = None
    if speed is None:
        return otio.schema.LinearTimeWarp(name=f"M2 {motion}")  # a speed line we cannot read is still one
    if speed == 0:
        return otio.schema.FreezeFrame()
    if abs(speed - rate) < 1e-6:
        return None  # M2 at the EDL's own rate: normal speed
    return otio.schema.LinearTimeWarp(time_scalar=speed / rate)


def _normalise_record_offsets(timeline: otio.schema.Timeline, rate: Fraction) -> None:
    """The EDL reader places events at record timecode by giving each track a negative
    ``source_range`` start (and a duration that leaves out that lead). Turn that into
    ``global_start_time`` = the first event's record time plus leading gaps, which every other
    reader and host understands. An EDL that starts at 00:00:00:00 gets that as its start."""
    offsets = {}
    for track in timeline.tracks:
        if track.source_range is not None and track.source_range.start_time.value < 0:
            offsets[id(track)] = -track.source_range.start_time
    if timeline.global_start_time is not None:
        return
    if not offsets:
        timeline.global_start_time = otio.opentime.RationalTime(0, float(rate))
        return
    start = min(offsets.values(), key=lambda t: t.to_seconds())
    timeline.global_start_time = start
    for track in timeline.tracks:
        lead = offsets.get(id(track))
        if lead is None:
            continue
        track.source_range = None
        extra = lead - start
        if extra.value > 0:
            track.insert(0, otio.schema.Gap(duration=extra))
