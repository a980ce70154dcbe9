"""Property groups: the render settings on the scene, a job's state on its strip."""

from __future__ import annotations

import bpy
from bpy.props import (
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import compat, engine, menus, prefs

STATUS_ITEMS = [
    ("NONE", "None", "No render asked for"),
    ("STARTING", "Starting", "Connecting to (or starting) the engine"),
    ("QUEUED", "Queued", "Waiting for the engine"),
    ("PROGRESS", "Rendering", "The engine is rendering"),
    ("DONE", "Done", "The patch is on the timeline"),
    ("FAILED", "Failed", "The render failed; see the message"),
    ("CANCELLED", "Cancelled", "The render was cancelled"),
]
ACTIVE_STATUSES = ("STARTING", "QUEUED", "PROGRESS")



def current_choices(context: bpy.types.Context | None):
    """What the engine at the preferences' address offers (menus.choices_for), None without a client."""
    context = context or bpy.context
    try:
        address = prefs.get(context).address.strip()
        site_packages = prefs.site_packages(context)
    except (KeyError, AttributeError):  # the add-on is being enabled or disabled
        return None
    return menus.choices_for(address, menus.client_for(site_packages, engine.load_client))


def _backend_items(self, context):
    return menus.enum_items(menus.BACKEND, current_choices(context))


def _codec_items(self, context):
    return menus.enum_items(menus.CODEC, current_choices(context))

SPAN_ITEMS = [
    ("AUTO", "Auto", "The preview range when it is on, else two selected markers, else the whole strip"),
    ("PREVIEW", "Preview Range", "The scene's preview range (inclusive) within the active strip"),
    ("MARKERS", "Markers", "From the first to the second selected marker (inclusive) within the active strip"),
    ("STRIP", "Whole Strip", "Every visible frame of the active strip"),
]
DUB_ITEMS = [
    ("STRIP", "Sound Strip", "A sound strip on the timeline, as it plays against the clip"),
    ("FILE", "File", "An audio file that starts at the span's first frame (added as a sound strip)"),
]


class DUBLINE_PG_flag(bpy.types.PropertyGroup):
    """Patch frames [first, end) to look at, and why (the engine's flags; docs/ITERATING.md)."""

    first: IntProperty(name="First", description="Patch frame (0 = the span's first)")
    end: IntProperty(name="End", description="Patch frame after the last")
    kind: StringProperty(name="Kind", description="passthrough, dub_silent, sync, identity, seam or flicker")
    note: StringProperty(name="Note", description="What is wrong, in a few words")


class DUBLINE_PG_strip(bpy.types.PropertyGroup):
    """A dubline job's state, on the source strip (and on the patch strip it produced)."""

    job_key: StringProperty(name="Job Key", description="The add-on's handle of the running job")
    job_id: StringProperty(name="Job", description="The engine's job id")
    status: EnumProperty(name="Status", items=STATUS_ITEMS, default="NONE")
    stage: StringProperty(name="Stage")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(name="Message")
    patch_path: StringProperty(name="Patch", subtype="FILE_PATH")
    patch_strip: StringProperty(name="Patch Strip", description="Name of the strip holding the patch")
    dub_strip: StringProperty(name="Dub Strip", description="Name of the sound strip of the dub")
    source_strip: StringProperty(name="Source Strip", description="On a patch strip: the strip it replaces")
    span_first: IntProperty(name="First Frame", description="Timeline frame the patch starts on")
    span_frames: IntProperty(name="Frames")
    flags: CollectionProperty(type=DUBLINE_PG_flag, name="Flags", description="Frames of the patch to look at")
    preview_image: StringProperty(name="Preview", description="Image holding the latest patched frame the engine sent")
    preview_frame: IntProperty(name="Preview Frame", description="Patch frame the preview shows")


class DUBLINE_PG_scene(bpy.types.PropertyGroup):
    """What the next render uses."""

    dub_source: EnumProperty(name="Dub", items=DUB_ITEMS, default="STRIP")
    dub_strip: StringProperty(name="Dub Strip", description="Sound strip holding the dub")
    dub_file: StringProperty(name="Dub File", subtype="FILE_PATH", description="Audio file of the dub")
    span_mode: EnumProperty(name="Span", items=SPAN_ITEMS, default="AUTO")
    # Items from the engine's Capabilities (menus.py); no default given: unset shows the engine's.
    backend: EnumProperty(name="Backend", items=_backend_items, description="Mouth renderer, as the engine offers them")
    codec: EnumProperty(name="Codec", items=_codec_items, description="Patch codec, as the engine offers them")
    patch_folder: StringProperty(
        name="Patch Folder", subtype="DIR_PATH", default="//dubline/",
        description="Where patches are written (// is the .blend file's folder); existing files are never replaced",
    )
    message: StringProperty(name="Message", description="Why the last Render did not start")


CLASSES = (DUBLINE_PG_flag, DUBLINE_PG_strip, DUBLINE_PG_scene)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    compat.STRIP_TYPE.dubline = PointerProperty(type=DUBLINE_PG_strip)
    bpy.types.Scene.dubline = PointerProperty(type=DUBLINE_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.dubline
    del compat.STRIP_TYPE.dubline
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
