"""The flags of a render (``core.flags.FrameFlag``): from what the render did with each frame and,
when qc ran, from qc's per-frame measures (``QcReport.per_frame``).

Thresholds are deliberately loose: a marker is for a person to look at a few frames, so it must be
rare enough to be read. They are documented in docs/ITERATING.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dubline.core.flags import FrameFlag, group_flags, sorted_flags
from dubline.stages.backends.base import DUB_SILENT_REASON

#: Passthrough reasons (faces.REASONS, the retrieval backend's, the compositor's) in a few words.
PASSTHROUGH_NOTES = {
    "no_face": "no face",
    "too_small": "face too small",
    "turned_away": "face turned away",
    "occluded": "mouth occluded",
}
#: Local sync is flagged below both this (what footage scores with someone else's audio, DESIGN.md)
#: and the span's whole PAC less ``SYNC_DROP``: worse than the clip's own level, and poor outright.
SYNC_FLOOR = 0.1
SYNC_DROP = 0.25
#: Per-frame identity distance above this is drift (same person < 0.6; we want < 0.25).
IDENTITY_DRIFT = 0.4
#: Seam spike: a frame's seam score above this many times the span's median, and above ``SEAM_MIN``.
SEAM_SPIKE = 2.0
SEAM_MIN = 0.5
#: Flicker spike: mouth-region change from the previous frame above this many times the source's.
FLICKER_SPIKE = 3.0
#: Runs of qc flags shorter than this are dropped (one frame of a noisy measure is not a problem).
QC_MIN_FRAMES = 2


def passthrough_note(reason: str) -> tuple[str, str]:
    """(kind, note) of a frame passed through for ``reason``."""
    if reason == DUB_SILENT_REASON:
        return "dub_silent", "dub silent, own mouth kept"
    return "passthrough", PASSTHROUGH_NOTES.get(reason, reason.replace("_", " "))


def render_flags(reasons: Sequence[str | None]) -> list[FrameFlag]:
    """Flags of the frames a render passed through; ``reasons[i]`` is patch frame i's reason (None: patched)."""
    return group_flags([None if reason is None else passthrough_note(reason) for reason in reasons])


def _values(per_frame: Mapping[str, Sequence[Any]], name: str, count: int) -> list[float] | None:
    values = per_frame.get(name)
    if values is None or len(values) != count:
        return None
    return [math.nan if v is None else float(v) for v in values]


def qc_flags(report: Mapping[str, Any]) -> list[FrameFlag]:
    """Flags from a qc report (``QcReport.to_dict()``): weak local sync, identity drift, seam and
    flicker spikes. Nothing when the report has no per-frame arrays (qc without a source)."""
    per_frame = report.get("per_frame") or {}
    count = int(report.get("frames") or 0)
    flags: list[FrameFlag] = []

    local = _values(per_frame, "local_pac", count)
    whole = report.get("pac_sync")
    if local is not None and whole is not None and math.isfinite(whole):
        limit = min(SYNC_FLOOR, whole - SYNC_DROP)
        flags += _runs([v < limit for v in local], ("sync", "weak sync"))
    identity = _values(per_frame, "identity_distance", count)
    if identity is not None:
        flags += _runs([v > IDENTITY_DRIFT for v in identity], ("identity", "identity drift"))
    seam = _values(per_frame, "seam", count)
    if seam is not None:
        finite = sorted(v for v in seam if math.isfinite(v))
        if finite:
            limit = max(SEAM_MIN, SEAM_SPIKE * finite[len(finite) // 2])
            flags += _runs([v > limit for v in seam], ("seam", "seam shows"))
    change = _values(per_frame, "change_ratio", count)
    if change is not None:
        flags += _runs([v > FLICKER_SPIKE for v in change], ("flicker", "flicker"))
    return sorted_flags(flags)


def _runs(hits: Sequence[bool], what: tuple[str, str]) -> list[FrameFlag]:
    return group_flags([what if hit else None for hit in hits], min_frames=QC_MIN_FRAMES)


def flags_of(render: Mapping[str, Any], qc: Mapping[str, Any] | None = None) -> list[FrameFlag]:
    """Every flag of a render's dict (``RenderResult.to_dict()``) and, when given, its qc report's."""
    flags = [FrameFlag.from_dict(f) for f in render.get("flags", [])]
    return sorted_flags(flags + (qc_flags(qc) if qc else []))
