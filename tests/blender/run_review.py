"""Issue 18 in a real Blender: the pictures while a render works and the markers after it.

    python run_review.py -- --scenario state --plugin DIR --work DIR --address ADDR --dubline EXE --clip F --dub F
    blender -b --factory-startup --python-exit-code 1 --python run_review.py -- (same arguments)
    xvfb-run blender --factory-startup --enable-event-simulate --python run_review.py -- --scenario screenshot ...

The engine (started by the test) renders with the fake backend: span frames without a face pass
through. ``state`` renders, then checks the preview image and the flags, markers and colour tag on
the patch strip, and prints ``DUBLINE_REPORT {json}``. ``screenshot`` (a real window, timers
running) does the same render through Blender's own timers, opens the sequencer's sidebar on the
Dubline tab, saves a screenshot and the sidebar's rectangle; with ``--no-addon`` it sets up the
same scene without the add-on. Any failed check raises (exit status 1).
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--scenario", choices=["state", "screenshot"], required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--dubline", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--dub", required=True)
    parser.add_argument("--no-addon", action="store_true")
    parser.add_argument("--shot", help="screenshot: where to save it (.png)")
    return parser.parse_args(argv)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def reraise(error: BaseException) -> None:
    raise error


def setup(args: argparse.Namespace, addon: bool, empty: bool = True):
    sys.path.insert(0, args.plugin)
    if empty:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    editor = scene.sequence_editor_create()
    clip = strips(editor).new_movie(name="clip", filepath=args.clip, channel=2, frame_start=1)
    strips(editor).new_sound(name="dub", filepath=args.dub, channel=3, frame_start=6)
    editor.active_strip = clip
    scene.frame_start, scene.frame_end = 1, int(clip.frame_final_end) - 1
    if not addon:
        return None, scene, editor, clip
    addon_utils.enable("dubline_vse", default_set=True, handle_error=reraise)
    prefs = bpy.context.preferences.addons["dubline_vse"].preferences
    prefs.address, prefs.auto_start, prefs.executable = args.address, False, args.dubline
    settings = scene.dubline
    # Span: the preview range, timeline 6-55 = source frames 5-55 (50 frames); the dub starts there.
    scene.use_preview_range, scene.frame_preview_start, scene.frame_preview_end = True, 6, 55
    settings.dub_source, settings.dub_strip = "STRIP", "dub"
    settings.patch_folder = os.path.join(args.work, "patches") + os.sep
    check(bpy.ops.dubline.refresh_engine() == {"FINISHED"}, "refresh did not reach the engine")
    settings.backend, settings.codec = "fake", "ffv1"
    return sys.modules["dubline_vse.ops"], scene, editor, clip


def check_review(scene, editor, clip, report: dict) -> None:
    """The preview image and the patch strip's flags, markers and colour tag."""
    state = clip.dubline
    check(state.status == "DONE", f"render: {state.status}: {state.message}")
    image = bpy.data.images.get(state.preview_image)
    check(image is not None, f"no preview image in the add-on's state ({state.preview_image!r})")
    check(tuple(image.size) == (320, 240), f"preview image size {tuple(image.size)}")
    check(0 <= state.preview_frame < 50, f"preview frame {state.preview_frame}")
    patch = strips(editor)[state.patch_strip]
    flags = [(f.first, f.end, f.kind, f.note) for f in patch.dubline.flags]
    markers = sorted((m.frame, m.name) for m in scene.timeline_markers if m.name.startswith("dl "))
    report.update(preview=[state.preview_image, list(image.size), state.preview_frame], flags=flags,
                  markers=markers, color_tag=getattr(patch, "color_tag", None))
    check(flags == [(25, 29, "passthrough", "no face")], f"flags on the patch strip {flags}")
    check(markers == [(31, "dl 31-34: no face")], f"timeline markers {markers}")
    check(getattr(patch, "color_tag", "COLOR_03") == "COLOR_03", f"colour tag {patch.color_tag}")


def state_scenario(args: argparse.Namespace) -> dict:
    ops, scene, editor, clip = setup(args, addon=True)
    report = {"version": list(bpy.app.version)}
    check(bpy.ops.dubline.render() == {"FINISHED"}, "render did not start")
    seen_pictures = 0
    while clip.dubline.status in ACTIVE or clip.dubline.status == "NONE":
        # What bpy.app.timers does in the UI (timers do not run in background mode); the test's
        # subprocess timeout guards a hang.
        ops.tick()
        seen_pictures += bool(clip.dubline.preview_image) and clip.dubline.status in ACTIVE
        time.sleep(0.02)
    ops.tick()
    check_review(scene, editor, clip, report)
    report["ticks_with_picture_while_active"] = seen_pictures
    addon_utils.disable("dubline_vse", default_set=True)
    return report


def screenshot_scenario(args: argparse.Namespace) -> None:
    """Runs from a timer once the window is up; quits Blender when done (exit status 1 on failure)."""
    addon = not args.no_addon
    ops, scene, editor, clip = setup(args, addon=addon, empty=False)
    window = bpy.context.window_manager.windows[0]
    screen = window.screen
    area = max(screen.areas, key=lambda a: a.width * a.height)
    area.type = "SEQUENCE_EDITOR"
    space = area.spaces.active
    space.view_type = "SEQUENCER"
    space.show_region_ui = True
    report: dict = {"version": list(bpy.app.version), "addon": addon}
    steps = {"phase": "render" if addon else "settle", "frames": 0, "tab_tries": 0}
    drawn = {"count": 0}
    if addon:
        panel = bpy.types.DUBLINE_PT_panel
        original = panel.draw

        def counting_draw(self, context):  # records that Blender drew the panel, then draws it
            drawn["count"] += 1
            original(self, context)

        panel.draw = counting_draw
        with bpy.context.temp_override(window=window, area=area) if hasattr(bpy.context, "temp_override") else _nothing():
            check(bpy.ops.dubline.render() == {"FINISHED"}, "render did not start")

    def sidebar():
        return next(r for r in area.regions if r.type == "UI")

    def finish(error: BaseException | None = None) -> None:
        if error is not None:
            import traceback

            traceback.print_exception(error)
        print("DUBLINE_REPORT " + json.dumps(report, default=str), flush=True)
        os._exit(1 if error is not None else 0)

    def step():
        try:
            area.tag_redraw()
            if steps["phase"] == "render":
                if clip.dubline.status in ACTIVE or clip.dubline.status == "NONE":
                    return 0.1  # the add-on's own timer applies the engine's events
                check_review(scene, editor, clip, report)
                steps["phase"] = "tab"
                return 0.2
            if steps["phase"] == "tab":
                region = sidebar()
                if hasattr(region, "active_panel_category"):
                    region.active_panel_category = "Dubline"
                    steps["phase"] = "settle"
                    drawn["count"] = 0
                    return 0.5
                # Blender 3.4 cannot set the tab from Python: Ctrl+Wheel over the sidebar cycles its
                # tabs (as an editor would) until the panel has been drawn since the last turn.
                if steps["tab_tries"] and not steps["tab_tries"] % 2 and drawn["count"]:
                    steps["phase"] = "settle"
                    return 0.5
                if steps["tab_tries"] >= 24:
                    report["tab_never_drawn"] = True
                    steps["phase"] = "settle"
                    return 0.3
                x, y = region.x + region.width // 2, region.y + region.height // 2
                if steps["tab_tries"] % 2:
                    window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
                else:
                    window.event_simulate(type="WHEELDOWNMOUSE", value="PRESS", x=x, y=y, ctrl=True)
                    drawn["count"] = 0
                steps["tab_tries"] += 1
                return 0.4
            if steps["phase"] == "settle":
                steps["frames"] += 1
                if steps["frames"] < 4:
                    return 0.3
                region = sidebar()
                report["region"] = [region.x, region.y, region.width, region.height]
                report["window"] = [window.width, window.height]
                report["panel_draws"] = drawn["count"]
                with bpy.context.temp_override(window=window, area=area):
                    bpy.ops.screen.screenshot(filepath=args.shot)
                check(os.path.isfile(args.shot), "no screenshot written")
                finish()
        except BaseException as error:  # noqa: BLE001 - any failure ends Blender with status 1
            finish(error)
        return None

    bpy.app.timers.register(step, first_interval=1.0)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    args = arguments()
    if args.scenario == "state":
        report = state_scenario(args)
        print("DUBLINE_REPORT " + json.dumps(report, default=str))
    else:
        bpy.context.preferences.view.show_splash = False  # the splash would cover the sequencer and take events
        bpy.app.timers.register(lambda: screenshot_scenario(args), first_interval=0.5)


if __name__ == "__main__":
    main()
