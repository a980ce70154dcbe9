"""Frame flags: runs of a patch's frames an editor should look at, and why, in a few words.

A render knows per frame whether it passed the frame through and why; qc knows where sync, identity,
seam or flicker went wrong. Both become ``FrameFlag`` ranges, which the timeline writers (OTIO
markers, the engine's done event, the editor bridges) lay on the patch clip. Frames are patch
frames: 0 is the span's first frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The kinds of flag, and what each means (docs/ITERATING.md says the same for editors).
KINDS = {
    "passthrough": "the frame is the source's own: no usable face or mouth there",
    "dub_silent": "the dub is silent and the speaker's own resting mouth was kept",
    "sync": "the mouth follows the dub worse here than over the span",
    "identity": "the face looks less like the speaker here",
    "seam": "the matte's edge shows more than elsewhere",
    "flicker": "the mouth region changes from frame to frame much more than the source's",
}


@dataclass(frozen=True)
class FrameFlag:
    """Patch frames [first, end) share one problem: ``kind`` (one of ``KINDS``) and ``note``."""

    first: int
    end: int
    kind: str
    note: str

    def label(self, offset: int = 0) -> str:
        """``"frames 12-19: no face"``; ``offset`` turns patch frames into source (or record) frames."""
        first, last = self.first + offset, self.end - 1 + offset
        frames = f"frame {first}" if first == last else f"frames {first}-{last}"
        return f"{frames}: {self.note}"

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "end": self.end, "kind": self.kind, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameFlag:
        return cls(int(data["first"]), int(data["end"]), str(data["kind"]), str(data["note"]))


def group_flags(per_frame: Sequence[tuple[str, str] | None], min_frames: int = 1) -> list[FrameFlag]:
    """Consecutive frames with the same ``(kind, note)`` as one flag each (None: nothing to say);
    runs shorter than ``min_frames`` are dropped (a one-frame wobble of a measure is noise)."""
    flags: list[FrameFlag] = []
    start = 0
    for index in range(1, len(per_frame) + 1):
        if index < len(per_frame) and per_frame[index] == per_frame[start]:
            continue
        value = per_frame[start]
        if value is not None and index - start >= min_frames:
            flags.append(FrameFlag(start, index, *value))
        start = index
    return flags


def sorted_flags(flags: Iterable[FrameFlag]) -> list[FrameFlag]:
    """Flags in frame order (then kind), duplicates dropped."""
    return sorted(set(flags), key=lambda f: (f.first, f.end, f.kind, f.note))
