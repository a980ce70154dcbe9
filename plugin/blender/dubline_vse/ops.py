"""Operators (Render, Cancel) and the main-thread side of the jobs: ``tick`` drains the worker
events (``bpy.app.timers`` calls it; a background script may call it directly, since timers do
not run without an event loop) and puts finished patches on the timeline."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import bpy
from bpy.app.handlers import persistent
from bpy.props import EnumProperty, StringProperty

from . import compat, engine, frames, jobs, menus, prefs, review
from .props import ACTIVE_STATUSES, current_choices

POLL_INTERVAL = 0.2  # seconds between timer calls while jobs run
REFRESH_TIMEOUT = 10.0  # seconds Refresh waits (the UI waits with it; an engine's first answer takes a few)

_runner: jobs.JobRunner | None = None
_local_engine = engine.LocalEngine()


@dataclass(frozen=True)
class _Pending:
    """What the main thread needs when a job finishes, besides the strip's own state."""

    dub_file: str  # added as a sound strip at the span's start; '' when the dub is a strip already


_pending: dict[str, _Pending] = {}


@dataclass(frozen=True)
class Plan:
    strip: object
    span: frames.Span
    order: jobs.RenderOrder
    dub_file_to_add: str


def runner(context: bpy.types.Context) -> jobs.JobRunner:
    """The job runner, created on first use (that is when the client library must import)."""
    global _runner
    if _runner is None:
        _runner = jobs.JobRunner(engine.load_client(prefs.site_packages(context)), _local_engine)
    return _runner


def active_movie(context: bpy.types.Context):
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor if scene else None
    strip = editor.active_strip if editor else None
    return strip if strip is not None and strip.type == "MOVIE" else None


def resolve_span(scene: bpy.types.Scene, strip) -> frames.Span:
    """The span the settings ask for, on ``strip``."""
    timing = compat.movie_timing(strip)
    mode = scene.dubline.span_mode
    selected_markers = [m.frame for m in scene.timeline_markers if m.select]
    if mode == "AUTO":
        mode = "PREVIEW" if scene.use_preview_range else "MARKERS" if len(selected_markers) == 2 else "STRIP"
    if mode == "PREVIEW":
        if not scene.use_preview_range:
            raise frames.PlanError("the preview range is off (View > Range > Set Preview Range)")
        return frames.span_for(timing, scene.frame_preview_start, scene.frame_preview_end)
    if mode == "MARKERS":
        return frames.span_for(timing, *frames.markers_range(selected_markers))
    return frames.span_for(timing)


def _existing_file(path: str, what: str) -> str:
    if not path:
        raise frames.PlanError(f"no {what} is set")
    if not os.path.isfile(path):
        raise frames.PlanError(f"the {what} {path} does not exist")
    return path


def _dub(scene: bpy.types.Scene, span: frames.Span, rate) -> tuple[str, object, str]:
    """(audio path, audio offset, file to add as a sound strip)."""
    settings = scene.dubline
    if settings.dub_source == "FILE":
        if not settings.dub_file:
            raise frames.PlanError("choose the dub: a sound strip, or a file in the Dub File field")
        path = os.path.normpath(_existing_file(bpy.path.abspath(settings.dub_file), "dub file"))
        return path, 0, path
    if not settings.dub_strip:
        raise frames.PlanError("choose the dub: a sound strip on the timeline, or switch Dub to File")
    sound_strip = compat.all_strips(scene.sequence_editor).get(settings.dub_strip)
    if sound_strip is None or sound_strip.type != "SOUND":
        raise frames.PlanError(f"the dub {settings.dub_strip!r} is not a sound strip in this scene")
    sound = sound_strip.sound
    if sound.packed_file is not None:
        raise frames.PlanError(f"the dub {sound_strip.name!r} is packed into the .blend file; unpack it so the engine can read it")
    path = _existing_file(bpy.path.abspath(sound.filepath, library=sound.library), f"sound of strip {sound_strip.name!r}")
    return os.path.normpath(path), frames.dub_offset(compat.sound_timing(sound_strip), span, rate), ""


def make_plan(context: bpy.types.Context) -> Plan:
    """Everything a render needs, or a PlanError that says what to change."""
    scene = compat.sequencer_scene(context)
    if scene is None or scene.sequence_editor is None:
        raise frames.PlanError("the scene has no sequencer strips")
    strip = active_movie(context)
    if strip is None:
        raise frames.PlanError("click a movie strip to make it the active strip: it is the clip to patch")
    if strip.dubline.status in ACTIVE_STATUSES:
        raise frames.PlanError(f"strip {strip.name!r} is rendering already")
    settings = scene.dubline
    choices = current_choices(context)
    for kind, chosen in ((menus.BACKEND, settings.backend), (menus.CODEC, settings.codec)):
        if not chosen:  # the stored choice is not in the menu of the engine asked last
            raise frames.PlanError(f"the {kind} chosen before is not offered by the engine at {prefs.get(context).address};"
                                   f" choose one in the {kind.title()} menu")
    rate = frames.scene_rate(scene.render.fps, scene.render.fps_base)
    frames.check_rates(compat.movie_timing(strip), rate)
    span = resolve_span(scene, strip)
    video = _existing_file(os.path.normpath(bpy.path.abspath(strip.filepath)), f"movie of strip {strip.name!r}")
    audio, offset, dub_file = _dub(scene, span, rate)
    folder = bpy.path.abspath(settings.patch_folder)
    if folder.startswith("//") or not os.path.isabs(folder):
        raise frames.PlanError(f"the patch folder {settings.patch_folder!r} is relative: save the .blend file or choose an absolute folder")
    os.makedirs(folder, exist_ok=True)
    out = frames.patch_path(os.path.normpath(folder), video, span, settings.codec, choices)
    order = jobs.RenderOrder(video=video, audio=audio, span_text=span.text, out=out, backend=settings.backend,
                             codec=settings.codec, audio_offset=offset)
    return Plan(strip=strip, span=span, order=order, dub_file_to_add=dub_file)


def _find_job_strip(key: str):
    for scene in bpy.data.scenes:
        if scene.sequence_editor is None:
            continue
        for strip in compat.all_strips(scene.sequence_editor):
            if strip.dubline.job_key == key:
                return scene, strip
    return None, None


def tick() -> float | None:
    """Apply the worker events on the main thread; the timer's callback."""
    if _runner is None:
        return None
    for event in _runner.drain():
        apply_event(event)
    _redraw_sequencers()
    return POLL_INTERVAL if (_pending or _runner.active()) else None


def apply_event(event: jobs.JobEvent) -> None:
    scene, strip = _find_job_strip(event.key)
    pending = _pending.get(event.key)
    if strip is None:
        if event.kind in jobs.FINAL:
            _pending.pop(event.key, None)
            if event.kind == jobs.DONE:
                _notify("WARNING", f"dubline: the source strip is gone; the patch is at {event.out}")
        return
    state = strip.dubline
    state.job_id = event.job_id or state.job_id
    state.status = event.kind
    if event.kind == jobs.PROGRESS:
        state.stage, state.progress = event.stage, event.fraction
        if event.preview_jpeg:
            review.show_preview(strip, event.preview_jpeg, event.preview_frame)
    elif event.kind in (jobs.STARTING, jobs.QUEUED):
        state.stage, state.message = event.stage, event.message
    elif event.kind == jobs.DONE:
        _place_patch(scene, strip, event, pending)
    elif event.kind == jobs.FAILED:
        state.message = event.message
        _notify("ERROR", f"dubline: {strip.name}: {event.message}")
    elif event.kind == jobs.CANCELLED:
        state.message = "Cancelled"
    if event.kind in jobs.FINAL:
        state.job_key = ""
        _pending.pop(event.key, None)


def _place_patch(scene: bpy.types.Scene, strip, event: jobs.JobEvent, pending: _Pending | None) -> None:
    """The patch on the lowest free channel above the source, its first frame on the span's first
    frame; the dub file (if it came from a file) as a sound strip above it."""
    state = strip.dubline
    state.progress = 1.0
    first = state.span_first
    try:
        collection = compat.container_of(scene.sequence_editor, strip)
        channel = frames.free_channel(compat.occupants(collection), first, first + event.frames, above=strip.channel)
        patch = collection.new_movie(name=f"{strip.name}.dub", filepath=event.out, channel=channel,
                                     frame_start=first, fit_method="ORIGINAL")
        compat.copy_look(strip, patch)
        patch.dubline.status = "DONE"
        patch.dubline.patch_path = event.out
        patch.dubline.source_strip = strip.name
        patch.dubline.span_first, patch.dubline.span_frames = first, event.frames
        state.patch_strip = patch.name
        review.forget_markers(scene, first, first + event.frames)
        review.mark_flags(scene, patch, event.flags)
        problems = []
        if (patch.frame_final_start, patch.frame_final_duration, patch.channel) != (first, event.frames, channel):
            problems.append(
                f"Blender placed the patch at frame {patch.frame_final_start}, {patch.frame_final_duration} frames, channel"
                f" {patch.channel} (expected {first}, {event.frames}, {channel})"
            )
        if pending is not None and pending.dub_file:
            sound = collection.new_sound(name=f"{strip.name}.dub audio", filepath=pending.dub_file,
                                         channel=frames.free_channel(compat.occupants(collection), first, first + event.frames, patch.channel),
                                         frame_start=first)
            # The dub may outlast the span: move it to a channel free over its whole length.
            wanted = frames.free_channel(compat.occupants(collection, exclude=sound), int(sound.frame_final_start),
                                         int(sound.frame_final_end), patch.channel)
            if sound.channel != wanted:
                sound.channel = wanted
            state.dub_strip = sound.name
        if event.message:
            problems.append(event.message)
        state.message = "; ".join(problems) or f"Patch on channel {patch.channel}: {os.path.basename(event.out)}"
        _notify("WARNING" if problems else "INFO", f"dubline: {strip.name}: {state.message}")
    except (RuntimeError, frames.PlanError) as error:
        state.status = "FAILED"
        state.message = f"the patch was written to {event.out} but could not be added: {error}"
        _notify("ERROR", f"dubline: {state.message}")


def _redraw_sequencers() -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def _notify(level: str, message: str) -> None:
    """A report in Blender's status bar and info log, from outside an operator."""
    try:
        bpy.ops.dubline.notify(level=level, message=message)
    except RuntimeError:
        pass  # bpy.ops raises after an ERROR report (it was shown), or there is no context to report in


class DUBLINE_OT_notify(bpy.types.Operator):
    """Show a dubline message in the status bar"""

    bl_idname = "dubline.notify"
    bl_label = "dubline Message"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[(k, k, "") for k in ("INFO", "WARNING", "ERROR")], default="INFO")
    message: StringProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({self.level}, self.message)
        return {"FINISHED"}


class DUBLINE_OT_render(bpy.types.Operator):
    """Render a lip-sync patch for the active movie strip's span and put it on the channel above"""

    bl_idname = "dubline.render"
    bl_label = "Render Patch"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = compat.sequencer_scene(context)
        scene.dubline.message = ""
        try:
            jobs_runner = runner(context)  # loads the client library, which planning uses
            plan = make_plan(context)
        except (frames.PlanError, ImportError) as error:
            scene.dubline.message = str(error)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        key = jobs_runner.submit(plan.order, prefs.settings(context))
        _pending[key] = _Pending(dub_file=plan.dub_file_to_add)
        state = plan.strip.dubline
        state.job_key, state.job_id, state.status = key, "", "STARTING"
        state.stage, state.progress, state.message = "", 0.0, ""
        state.patch_path, state.patch_strip, state.dub_strip = plan.order.out, "", ""
        state.span_first, state.span_frames = plan.span.first_timeline, plan.span.frames
        if not bpy.app.timers.is_registered(tick):
            bpy.app.timers.register(tick, first_interval=POLL_INTERVAL)
        self.report({"INFO"}, f"dubline: rendering {plan.strip.name} frames {plan.span.first_timeline}-"
                              f"{plan.span.end_timeline - 1} (source {plan.span.text})")
        return {"FINISHED"}


class DUBLINE_OT_refresh_engine(bpy.types.Operator):
    """Ask the engine which backends and codecs it offers (the menus show its answer)"""

    bl_idname = "dubline.refresh_engine"
    bl_label = "Ask the Engine"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = prefs.settings(context)
        try:
            client = engine.load_client(prefs.site_packages(context))
        except ImportError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        try:
            choices = menus.ask(client, settings, timeout=REFRESH_TIMEOUT)
        except (client.EngineError, ValueError) as error:
            reason = error.message if isinstance(error, client.EngineError) else str(error)
            self.report({"WARNING"}, f"dubline: no answer from the engine at {settings.address} ({reason}); the menus keep"
                                     " what they showed (a local engine starts with the first render)")
            return {"CANCELLED"}
        self.report({"INFO"}, f"dubline: the engine offers backends {', '.join(choices.backend_names)}"
                              f" and codecs {', '.join(choices.codec_names)}")
        return {"FINISHED"}


class DUBLINE_OT_cancel(bpy.types.Operator):
    """Cancel the active strip's render"""

    bl_idname = "dubline.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        strip = active_movie(context)
        return strip is not None and strip.dubline.status in ACTIVE_STATUSES

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = active_movie(context).dubline
        if _runner is not None and _runner.cancel(state.job_key):
            state.message = "Cancelling..."
        else:
            # No such job in this session (the file was reloaded): nothing runs for this strip.
            state.status, state.message, state.job_key = "CANCELLED", "Cancelled", ""
        return {"FINISHED"}


@persistent
def _mark_interrupted(*_args) -> None:
    """After a file load, a strip saved while rendering has no job behind it any more."""
    for scene in bpy.data.scenes:
        if scene.sequence_editor is None:
            continue
        for strip in compat.all_strips(scene.sequence_editor):
            state = strip.dubline
            if state.status in ACTIVE_STATUSES and state.job_key not in _pending:
                state.status, state.job_key = "FAILED", ""
                state.message = "interrupted: the file was saved while the render ran; render again"


CLASSES = (DUBLINE_OT_notify, DUBLINE_OT_render, DUBLINE_OT_refresh_engine, DUBLINE_OT_cancel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_post.append(_mark_interrupted)
    # Blender does not unregister add-ons when it quits; the engine we started must not outlive it.
    atexit.register(_local_engine.stop)


def unregister() -> None:
    global _runner
    if _mark_interrupted in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_mark_interrupted)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if _runner is not None:
        _runner.shutdown()
        _runner = None
    _local_engine.stop()
    atexit.unregister(_local_engine.stop)
    _pending.clear()
    menus.forget()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
