"""The one place that knows Blender's API differences between 3.4 and 5.x.

4.4 renamed ``Sequence`` -> ``Strip`` (``MovieSequence`` -> ``MovieStrip``, ...) and
``SequenceEditor.sequences``/``sequences_all`` -> ``strips``/``strips_all``; 5.0 removed the old
names and ``speed_factor`` (retiming keys, 4.0+, replace it) and lets a workspace show a scene of
its own in the sequencer (``context.sequencer_scene``). ``UILayout.progress`` exists from 4.0.
"""

from __future__ import annotations

import bpy

from . import frames

STRIP_TYPE = getattr(bpy.types, "Strip", None) or bpy.types.Sequence


def sequencer_scene(context: bpy.types.Context) -> bpy.types.Scene | None:
    """The scene the sequencer shows (5.0 workspaces may pin one) or the window's scene."""
    return getattr(context, "sequencer_scene", None) or context.scene


def top_strips(editor: bpy.types.SequenceEditor):
    """The top-level strip collection (has ``new_movie``/``new_sound``)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor: bpy.types.SequenceEditor):
    """Every strip, inside meta strips too."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def children(meta):
    return meta.strips if hasattr(meta, "strips") else meta.sequences


def container_of(editor: bpy.types.SequenceEditor, strip):
    """The collection holding ``strip``: the top level or the meta strip it sits in."""
    top = top_strips(editor)
    if any(s == strip for s in top):
        return top
    for meta in all_strips(editor):
        if meta.type == "META" and any(s == strip for s in children(meta)):
            return children(meta)
    return top


def is_retimed(strip) -> bool:
    """Speed changed: ``speed_factor`` up to 4.x, retiming keys from 4.0."""
    if abs(getattr(strip, "speed_factor", 1.0) - 1.0) > 1e-6:
        return True
    return len(getattr(strip, "retiming_keys", ())) > 0


def movie_timing(strip) -> frames.MovieTiming:
    return frames.MovieTiming(
        name=strip.name,
        frame_start=float(strip.frame_start),
        frame_final_start=int(strip.frame_final_start),
        frame_final_end=int(strip.frame_final_end),
        animation_offset_start=int(strip.animation_offset_start),
        clip_fps=float(strip.fps),
        retimed=is_retimed(strip),
        reversed=bool(strip.use_reverse_frames),
    )


def sound_timing(strip) -> frames.SoundTiming:
    return frames.SoundTiming(
        name=strip.name,
        frame_start=float(strip.frame_start),
        frame_final_start=int(strip.frame_final_start),
        frame_final_end=int(strip.frame_final_end),
        animation_offset_start=int(strip.animation_offset_start),
        sound_offset=float(getattr(strip, "sound_offset", 0.0)),  # 4.1+
        retimed=is_retimed(strip),
    )


def occupants(collection, exclude=None) -> list[frames.Occupant]:
    return [
        frames.Occupant(s.channel, int(s.frame_final_start), int(s.frame_final_end))
        for s in collection
        if exclude is None or s != exclude
    ]


def progress_bar(layout: bpy.types.UILayout, fraction: float, text: str) -> None:
    """A progress bar on 4.0+, a percentage label before."""
    if hasattr(layout, "progress"):
        layout.progress(factor=fraction, type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({fraction * 100:.0f}%)", icon="TIME")


def copy_look(source, target) -> None:
    """Give the patch the source strip's placement in the frame (transform, crop) and colour space,
    so it covers the source exactly."""
    for group in ("transform", "crop"):
        source_group, target_group = getattr(source, group, None), getattr(target, group, None)
        if source_group is None or target_group is None:
            continue
        for prop in source_group.bl_rna.properties:
            if prop.identifier != "rna_type" and not prop.is_readonly and prop.type not in ("POINTER", "COLLECTION"):
                setattr(target_group, prop.identifier, getattr(source_group, prop.identifier))
    try:
        target.colorspace_settings.name = source.colorspace_settings.name
    except (AttributeError, TypeError):
        pass  # a colour space this build does not know keeps Blender's default
