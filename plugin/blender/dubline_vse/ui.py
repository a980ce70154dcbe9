"""The Sequencer sidebar panel (tab "Dubline")."""

from __future__ import annotations

import bpy

from . import compat, engine, frames, menus, ops, prefs, review
from .props import ACTIVE_STATUSES

_client_problem_cache: dict[str, str] = {}


def _client_problem(context: bpy.types.Context) -> str:
    """Whether the client library imports, checked once per environment path (draw runs often)."""
    path = prefs.site_packages(context)
    if path not in _client_problem_cache:
        _client_problem_cache[path] = engine.client_problem(path)
    return _client_problem_cache[path]


def _alert_lines(layout: bpy.types.UILayout, text: str, icon: str = "ERROR") -> None:
    box = layout.box()
    box.alert = True
    for number, line in enumerate(prefs._wrap(text, 40)):
        box.label(text=line, icon=icon if number == 0 else "BLANK1")


class DUBLINE_PT_panel(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Dubline"
    bl_label = "Dubline"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = compat.sequencer_scene(context)
        settings = scene.dubline
        problem = _client_problem(context)
        if problem:
            _alert_lines(layout, problem)
        row = layout.row()
        row.label(text=f"Engine: {prefs.get(context).address}", icon="LINKED")
        row.operator("dubline.refresh_engine", text="", icon="FILE_REFRESH")
        if not problem:
            # The menus show the engine's answer on a later redraw; asked once per address.
            menus.ask_in_background(engine.load_client(prefs.site_packages(context)), prefs.settings(context))

        strip = ops.active_movie(context)
        box = layout.box()
        box.label(text=f"Clip: {strip.name}" if strip else "Clip: click a movie strip", icon="FILE_MOVIE")
        box.prop(settings, "span_mode")
        if strip is not None:
            try:
                span = ops.resolve_span(scene, strip)
                box.label(text=f"Frames {span.first_timeline}-{span.end_timeline - 1} ({span.frames})")
                box.label(text=f"Source frames {span.first_source}-{span.end_source - 1}")
            except frames.PlanError as error:
                _alert_lines(box, str(error))

        box = layout.box()
        box.prop(settings, "dub_source", expand=True)
        if settings.dub_source == "STRIP" and scene.sequence_editor is not None:
            box.prop_search(settings, "dub_strip", scene.sequence_editor,
                            "strips_all" if hasattr(scene.sequence_editor, "strips_all") else "sequences_all",
                            icon="SOUND")
        else:
            box.prop(settings, "dub_file")

        col = layout.column()
        col.prop(settings, "backend")
        col.prop(settings, "codec")
        col.prop(settings, "patch_folder")

        state = strip.dubline if strip is not None else None
        if state is not None and state.status in ACTIVE_STATUSES:
            compat.progress_bar(layout, state.progress, f"{state.stage or state.status.title()}")
            layout.operator("dubline.cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.4
            row.enabled = not problem
            row.operator("dubline.render", icon="RENDER_ANIMATION")
        if settings.message:
            _alert_lines(layout, settings.message)
        icon = review.preview_icon(state) if state is not None else 0
        if icon:  # the latest patched frame the engine sent: while it works, and after
            box = layout.box()
            box.label(text=f"Patched frame {state.preview_frame}", icon="IMAGE_DATA")
            box.template_icon(icon_value=icon, scale=8.0)
        patch = _patch_of(context, state)
        if patch is not None and patch.dubline.flags:
            box = layout.box()
            box.label(text="Look at (timeline frames):", icon="MARKER_HLT")
            first = int(patch.frame_final_start)
            for flag in patch.dubline.flags:
                box.label(text=review.marker_name(first + flag.first, first + flag.end - 1, flag.note)[len(review.MARKER_PREFIX):],
                          icon="ERROR" if flag.kind in review.QC_KINDS else "INFO")
        elif patch is not None:
            layout.label(text="Nothing to look at: every frame patched", icon="CHECKMARK")
        if state is not None and state.status != "NONE" and state.message:
            if state.status == "FAILED":
                _alert_lines(layout, state.message)
            else:
                for line in prefs._wrap(state.message, 40):
                    layout.label(text=line)


def _patch_of(context: bpy.types.Context, state):
    """The patch strip a finished render of the active strip placed (or the active strip if it is one)."""
    if state is None:
        return None
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor if scene is not None else None
    if editor is None:
        return None
    if state.source_strip:
        return editor.active_strip
    if state.status != "DONE" or not state.patch_strip:
        return None
    return next((s for s in compat.all_strips(editor) if s.name == state.patch_strip), None)


CLASSES = (DUBLINE_PT_panel,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    _client_problem_cache.clear()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
