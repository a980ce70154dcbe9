"""What the editor sees of a render besides the patch: the latest patched frame while it works, and
where the finished patch needs a look (the engine's flags) as timeline markers, a colour tag on
the patch strip and a list in the panel. Main thread only (it touches Blender data)."""

from __future__ import annotations

import hashlib
import os
import tempfile

import bpy

#: Colour tag of a patch strip by its worst flag: red where qc measured a problem, yellow where the
#: source shows through, green when nothing needs a look (dub-silent frames alone are fine).
QC_KINDS = ("sync", "identity", "seam", "flicker")
TAG_PROBLEM, TAG_PASSTHROUGH, TAG_CLEAN = "COLOR_01", "COLOR_03", "COLOR_04"
#: Timeline markers the add-on adds start with this, so a later render can take its own away.
MARKER_PREFIX = "dl "


def _preview_file(strip_name: str) -> str:
    folder = os.path.join(tempfile.gettempdir(), "dubline-previews")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, hashlib.sha1(strip_name.encode()).hexdigest()[:16] + ".jpg")


def show_preview(strip, jpeg: bytes, frame: int) -> None:
    """Put the engine's picture of patch frame ``frame`` into the strip's preview image."""
    state = strip.dubline
    path = _preview_file(strip.name)
    with open(path, "wb") as handle:
        handle.write(jpeg)
    image = bpy.data.images.get(state.preview_image) if state.preview_image else None
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = f"dubline preview {strip.name}"
        state.preview_image = image.name
    else:
        image.filepath = path
        image.reload()
    if hasattr(image, "preview_ensure"):
        image.preview_ensure()
        image.preview.reload()
    state.preview_frame = frame


def preview_icon(state) -> int:
    """The icon id the panel draws the preview with (0: none yet)."""
    image = bpy.data.images.get(state.preview_image) if state.preview_image else None
    if image is None:
        return 0
    preview = image.preview_ensure() if hasattr(image, "preview_ensure") else image.preview
    preview = preview or image.preview
    return preview.icon_id if preview is not None else 0


def colour_tag(flags) -> str:
    kinds = {kind for _, _, kind, _ in flags}
    if kinds & set(QC_KINDS):
        return TAG_PROBLEM
    return TAG_PASSTHROUGH if "passthrough" in kinds else TAG_CLEAN


def marker_name(first_frame: int, last_frame: int, note: str) -> str:
    frames = f"{first_frame}" if first_frame == last_frame else f"{first_frame}-{last_frame}"
    return f"{MARKER_PREFIX}{frames}: {note}"[:63]  # Blender's marker names hold 63 bytes


def mark_flags(scene: bpy.types.Scene, patch, flags) -> None:
    """The flags on the patch strip's state, its colour tag, and one timeline marker at the first
    frame of each flag saying which timeline frames and what ("dl 130-137: no face")."""
    state = patch.dubline
    state.flags.clear()
    first = int(patch.frame_final_start)
    for begin, end, kind, note in flags:
        item = state.flags.add()
        item.first, item.end, item.kind, item.note = int(begin), int(end), kind, note
        scene.timeline_markers.new(marker_name(first + begin, first + end - 1, note), frame=first + begin)
    if hasattr(patch, "color_tag"):
        patch.color_tag = colour_tag(flags)


def forget_markers(scene: bpy.types.Scene, start: int, end: int) -> None:
    """Remove the add-on's markers on timeline frames [start, end) (a new patch replaces the old's)."""
    for marker in list(scene.timeline_markers):
        if marker.name.startswith(MARKER_PREFIX) and start <= marker.frame < end:
            scene.timeline_markers.remove(marker)
