"""Drive the dubline add-on inside a real Blender (the ``bpy`` module or ``blender -b``).

    python run_addon.py -- --scenario render --plugin DIR --media DIR --work DIR --address ADDR --dubline EXE
    blender -b --factory-startup --python-exit-code 1 --python run_addon.py -- (same arguments)

Scenarios: ``render`` (two renders: dub from a sound strip over the preview range, then dub from
a file between two markers; checks the placed strips and the state on the strip; then the Backend
and Codec menus against the engine's Capabilities) and ``errors`` (no dub, a codec the engine no
longer offers, wrong scene rate, engine unreachable, Cancel). Timers do not run in background mode,
so the script calls the add-on's timer callback itself. Any failed check raises (exit status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import bpy  # first: it puts Blender's own script modules (addon_utils) on sys.path

# isort: split
import addon_utils

ACTIVE = ("STARTING", "QUEUED", "PROGRESS")


def arguments() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["render", "errors"], required=True)
    parser.add_argument("--plugin", required=True, help="folder holding the dubline_vse package")
    parser.add_argument("--media", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--dubline", required=True, help="the dubline executable; its environment provides the client")
    return parser.parse_args(argv)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def reraise(error: BaseException) -> None:
    raise error


def setup(args: argparse.Namespace):
    sys.path.insert(0, args.plugin)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("dubline_vse", default_set=True, handle_error=reraise)
    check(hasattr(bpy.types, "DUBLINE_PT_panel") and hasattr(bpy.ops.dubline, "render"), "panel/operators not registered")
    prefs = bpy.context.preferences.addons["dubline_vse"].preferences
    # The client library comes from the dubline executable's environment (found by the add-on).
    prefs.address, prefs.auto_start, prefs.executable = args.address, False, args.dubline
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    editor = scene.sequence_editor_create()
    collection = strips(editor)
    # Source frame 0 sits on timeline frame 100; the first 30 frames are trimmed off.
    clip = collection.new_movie(name="clip", filepath=os.path.join(args.media, "speaker_b.mp4"), channel=2, frame_start=100)
    clip.frame_offset_start = 30
    # Something on channel 3 over the span, so the patch has to go higher.
    blocker = collection.new_sound(name="room tone", filepath=os.path.join(args.media, "dub_en_16k.wav"), channel=3, frame_start=100)
    blocker.mute = True
    collection.new_sound(name="dub", filepath=os.path.join(args.media, "dub_en_48k_stereo.wav"), channel=4, frame_start=120)
    editor.active_strip = clip
    settings = scene.dubline
    settings.patch_folder = os.path.join(args.work, "patches") + os.sep
    settings.codec = "h264"
    return sys.modules["dubline_vse.ops"], scene, editor, clip


def drive(ops, strip, until=lambda state: state.status not in ACTIVE) -> None:
    """Call the timer callback until ``until`` holds (what bpy.app.timers does in the UI). Waits on
    the add-on's state, however long the engine takes; the test's subprocess timeout guards hangs."""
    while not until(strip.dubline):
        ops.tick()
        time.sleep(0.05)
    ops.tick()


def render_scenario(args: argparse.Namespace) -> dict:
    ops, scene, editor, clip = setup(args)
    settings, report = scene.dubline, {"version": list(bpy.app.version)}

    # 1. Dub from the sound strip on channel 4 (it started 20 frames = 0.8 s before the span),
    #    span = preview range 140-149 -> source frames 40-50.
    scene.use_preview_range, scene.frame_preview_start, scene.frame_preview_end = True, 140, 149
    settings.dub_source, settings.dub_strip = "STRIP", "dub"
    count_before = len(strips(editor))
    started = time.monotonic()
    check(bpy.ops.dubline.render() == {"FINISHED"}, "render did not start")
    check(clip.dubline.status == "STARTING" and clip.dubline.job_key, "no job on the strip")
    drive(ops, clip)
    report["first_render_s"] = round(time.monotonic() - started, 2)
    state = clip.dubline
    check(state.status == "DONE", f"first render: {state.status}: {state.message}")
    check(state.job_id != "" and state.job_key == "" and abs(state.progress - 1.0) < 1e-6, "state after done")
    check(state.patch_path.endswith("speaker_b.dub.000040-000050.mov"), f"patch name {state.patch_path}")
    check(os.path.isfile(state.patch_path), "patch file missing")
    patch = strips(editor)[state.patch_strip]
    check(os.path.normpath(bpy.path.abspath(patch.filepath)) == state.patch_path, f"patch strip file {patch.filepath}")
    check(patch.channel == 5, f"patch channel {patch.channel} (2 is the clip, 3 and 4 are busy)")
    check((patch.frame_final_start, patch.frame_final_end, patch.frame_final_duration) == (140, 150, 10),
          f"patch at {patch.frame_final_start}-{patch.frame_final_end}")
    check(patch.dubline.source_strip == "clip" and patch.dubline.status == "DONE", "state on the patch strip")
    check(len(strips(editor)) == count_before + 1, "a dub that is a strip already is not added again")
    check(state.dub_strip == "", "no dub strip recorded for a strip dub")

    # 2. Dub from a file, span between two selected markers 150 and 159 -> source 50-60; channel 5 is
    #    free again after frame 150, so the patch goes there; the dub file becomes a sound strip.
    scene.use_preview_range = False
    for frame in (159, 150):
        scene.timeline_markers.new(f"F_{frame}", frame=frame).select = True
    settings.dub_source, settings.dub_file = "FILE", os.path.join(args.media, "dub_en_16k.wav")
    editor.active_strip = clip
    started = time.monotonic()
    check(bpy.ops.dubline.render() == {"FINISHED"}, "second render did not start")
    drive(ops, clip)
    report["second_render_s"] = round(time.monotonic() - started, 2)
    check(state.status == "DONE", f"second render: {state.status}: {state.message}")
    second = strips(editor)[state.patch_strip]
    check(second.name != patch.name and second.filepath != patch.filepath, "second patch is a new strip and file")
    check((second.channel, second.frame_final_start, second.frame_final_duration) == (5, 150, 10),
          f"second patch ch {second.channel} at {second.frame_final_start} len {second.frame_final_duration}")
    check(state.patch_path.endswith("speaker_b.dub.000050-000060.mov"), f"second patch name {state.patch_path}")
    dub = strips(editor)[state.dub_strip]
    check(dub.type == "SOUND" and int(dub.frame_start) == 150, f"dub strip at {dub.frame_start}")
    check(os.path.normpath(bpy.path.abspath(dub.sound.filepath)) == settings.dub_file, f"dub file {dub.sound.filepath}")
    overlapping = [s.name for s in strips(editor) if s != dub and s.channel == dub.channel
                   and s.frame_final_start < dub.frame_final_end and s.frame_final_end > dub.frame_final_start]
    check(dub.channel > second.channel and not overlapping, f"dub strip on channel {dub.channel} overlaps {overlapping}")
    report["patches"] = [patch.filepath, second.filepath]

    # The menus are the engine's (asked by each render, and by Refresh); the choices made survive.
    check(bpy.ops.dubline.refresh_engine() == {"FINISHED"}, "refresh did not reach the engine")
    client, props = sys.modules["dubline_client"], sys.modules["dubline_vse.props"]
    with client.EngineClient(args.address) as engine:
        offered = engine.capabilities()
    for kind, listed in (("backend", [b.name for b in offered.backends]), ("codec", [c.name for c in offered.patch_codecs])):
        items = getattr(props, f"_{kind}_items")(settings, bpy.context)
        check([item[0] for item in items] == listed, f"{kind} menu {items} is not the engine's {listed}")
        chosen = getattr(settings, kind)
        for name in listed:  # Blender accepts every name the engine offers
            setattr(settings, kind, name)
            check(getattr(settings, kind) == name, f"{kind} {name} not kept")
        setattr(settings, kind, chosen)
    check(settings.codec == "h264" and settings.backend == offered.default_backend, f"{settings.backend} {settings.codec}")
    settings.property_unset("backend")
    check(settings.backend == offered.default_backend, "an unset backend menu shows the engine's default")
    report["menus"] = {"backends": [b.name for b in offered.backends], "codecs": [c.name for c in offered.patch_codecs]}
    addon_utils.disable("dubline_vse", default_set=True)
    return report


def errors_scenario(args: argparse.Namespace) -> dict:
    ops, scene, editor, clip = setup(args)
    settings, report = scene.dubline, {"version": list(bpy.app.version)}

    # No dub chosen: the operator refuses at once and the panel's message says why.
    settings.dub_source, settings.dub_strip = "STRIP", ""
    try:
        bpy.ops.dubline.render()
        raise AssertionError("render started without a dub")
    except RuntimeError as error:
        check("choose the dub" in str(error), f"report: {error}")
    check("choose the dub" in settings.message and clip.dubline.status == "NONE", f"message {settings.message!r}")

    # A codec chosen from an earlier engine's menu that this engine no longer offers: refused before rendering.
    settings.dub_strip = "dub"
    menus, choices = sys.modules["dubline_vse.menus"], sys.modules["dubline_client.choices"]
    prefs = bpy.context.preferences.addons["dubline_vse"].preferences
    without_h264 = tuple(c for c in choices.FALLBACK.codecs if c.name != "h264")
    menus.remember(prefs.address, dataclasses.replace(choices.FALLBACK, codecs=without_h264, from_engine=True))
    check(settings.codec == "", f"a codec the engine does not offer reads {settings.codec!r}")
    try:
        bpy.ops.dubline.render()
        raise AssertionError("render started with a codec the engine does not offer")
    except RuntimeError:
        pass
    check("the codec chosen before is not offered" in settings.message, f"message {settings.message!r}")
    check(bpy.ops.dubline.refresh_engine() == {"FINISHED"}, "refresh did not reach the engine")
    check(settings.codec == "h264", "the engine's own menu brings the choice back")

    # A scene rate that is not the clip's.
    scene.render.fps = 24
    try:
        bpy.ops.dubline.render()
        raise AssertionError("render started at the wrong scene rate")
    except RuntimeError:
        pass
    check("25 fps but the scene runs at 24 fps" in settings.message, f"message {settings.message!r}")
    scene.render.fps = 25

    # Engine unreachable (and not allowed to start one): the job fails with a message on the strip.
    good_address, prefs.address = prefs.address, "unix:" + os.path.join(args.work, "nobody-here.sock")
    check(bpy.ops.dubline.refresh_engine() == {"CANCELLED"}, "refresh claimed an answer from no engine")
    check(settings.codec == "h264", "the fallback menu (no engine answered at this address) keeps the codec")
    check(bpy.ops.dubline.render() == {"FINISHED"}, "render did not start")
    drive(ops, clip)
    check(clip.dubline.status == "FAILED" and "no dubline engine answers" in clip.dubline.message,
          f"unreachable: {clip.dubline.status} {clip.dubline.message!r}")
    report["unreachable_message"] = clip.dubline.message

    # Cancel a render of the whole visible strip as soon as the engine has named the job, on an
    # engine the add-on starts itself because none answers (it stops when the add-on is disabled).
    check(good_address.startswith("unix:"), "the test engine listens on a unix socket")
    prefs.address, prefs.auto_start = "unix:" + os.path.join(args.work, "started-by-addon.sock"), True
    settings.span_mode = "STRIP"
    count_before = len(strips(editor))
    check(bpy.ops.dubline.render() == {"FINISHED"}, "render did not start")
    drive(ops, clip, until=lambda state: state.job_id != "" or state.status not in ACTIVE)
    check(clip.dubline.status in ACTIVE, f"render ended before Cancel: {clip.dubline.status} {clip.dubline.message}")
    started = time.monotonic()
    check(bpy.ops.dubline.cancel() == {"FINISHED"}, "cancel refused")
    drive(ops, clip)
    report["cancel_s"] = round(time.monotonic() - started, 2)
    check(clip.dubline.status == "CANCELLED", f"after cancel: {clip.dubline.status} {clip.dubline.message!r}")
    check(len(strips(editor)) == count_before, "a cancelled render added strips")
    check(not os.path.exists(clip.dubline.patch_path), "a cancelled render left its patch file")
    process = ops._local_engine._process
    check(process is not None and process.poll() is None, "the add-on did not start its own engine")
    addon_utils.disable("dubline_vse", default_set=True)
    check(process.poll() is not None, "the engine the add-on started outlived the add-on")
    return report


def main() -> None:
    args = arguments()
    report = render_scenario(args) if args.scenario == "render" else errors_scenario(args)
    print("DUBLINE_REPORT " + json.dumps(report))


main()
