"""The Blender add-on (plugin/blender/dubline_vse): its bpy-free arithmetic and engine handling in
plain Python, and the whole add-on inside real Blenders against a real engine subprocess.

Blenders: the ``bpy`` 5.0 wheel in its own environment (it pins numpy 1.26, the project 2.x):
``$DUBLINE_BPY_PYTHON`` or ``.venv-bpy/bin/python`` in the checkout; and Debian's ``blender``
3.4 on PATH. Each is skipped when absent. No fake ``bpy``: the scripts in tests/blender/ run in
Blender and exit non-zero when a check fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from fractions import Fraction
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
PLUGIN = REPOSITORY / "plugin" / "blender"
SCRIPT = REPOSITORY / "tests" / "blender" / "run_addon.py"
DUBLINE = Path(sys.executable).with_name("dubline")
sys.path.insert(0, str(PLUGIN))

import dubline_client  # noqa: E402
from dubline_vse import (  # noqa: E402  (bpy-free modules of the add-on)
    engine,
    frames,
    jobs,
)


def movie(**changes) -> frames.MovieTiming:
    values = dict(name="clip", frame_start=100.0, frame_final_start=130, frame_final_end=222,
                  animation_offset_start=0, clip_fps=25.0)
    values.update(changes)
    return frames.MovieTiming(**values)


# ---- frame arithmetic ---------------------------------------------------------------------------

def test_span_maps_timeline_frames_to_source_frames_through_trims() -> None:
    clip = movie()  # source frame 0 on timeline frame 100, first 30 frames trimmed
    assert frames.span_for(clip) == frames.Span(130, 222, 30, 122)
    assert frames.span_for(clip, 140, 149) == frames.Span(140, 150, 40, 50)
    assert frames.span_for(clip, 140, 149).text == "40-50"
    # The range is clipped to the visible strip on both sides.
    assert frames.span_for(clip, 90, 135) == frames.Span(130, 136, 30, 36)
    assert frames.span_for(clip, 200, 400) == frames.Span(200, 222, 100, 122)
    # A hold offset (animation_offset_start) shifts which media frame frame_start shows.
    assert frames.span_for(movie(animation_offset_start=3), 140, 149) == frames.Span(140, 150, 43, 53)


def test_span_refuses_what_it_cannot_map() -> None:
    with pytest.raises(frames.PlanError, match="does not overlap"):
        frames.span_for(movie(), 10, 20)
    with pytest.raises(frames.PlanError, match="retimed"):
        frames.span_for(movie(retimed=True))
    with pytest.raises(frames.PlanError, match="reversed"):
        frames.span_for(movie(reversed=True))
    with pytest.raises(frames.PlanError, match="between frames"):
        frames.span_for(movie(frame_start=100.5))


def test_scene_rates_are_exact_and_must_match_the_clip() -> None:
    assert frames.scene_rate(24, 1.0010000467300415) == Fraction(24000, 1001)  # Blender's float32 base
    assert frames.scene_rate(30, 1.001) == Fraction(30000, 1001)
    assert frames.scene_rate(25, 1.0) == 25
    assert frames.scene_rate(50, 2.0) == 25
    frames.check_rates(movie(clip_fps=23.976023976), Fraction(24000, 1001))
    with pytest.raises(frames.PlanError, match="is 25 fps but the scene runs at 24 fps"):
        frames.check_rates(movie(), Fraction(24))
    with pytest.raises(frames.PlanError, match="23.976 fps"):
        frames.check_rates(movie(clip_fps=24.0), Fraction(24000, 1001))


def test_markers_and_dub_offset() -> None:
    assert frames.markers_range([159, 150]) == (150, 159)
    with pytest.raises(frames.PlanError, match="exactly two markers"):
        frames.markers_range([150])
    span = frames.Span(140, 150, 40, 50)
    sound = frames.SoundTiming("dub", frame_start=120.0, frame_final_start=120, frame_final_end=245, animation_offset_start=0)
    assert frames.dub_offset(sound, span, Fraction(25)) == Fraction(4, 5)
    # A sound starting after the span plays silence first: a negative offset.
    later = frames.SoundTiming("dub", 150.0, 150, 200, 0)
    assert frames.dub_offset(later, span, Fraction(25)) == Fraction(-2, 5)
    trimmed = frames.SoundTiming("dub", 120.0, 125, 245, 5, sound_offset=0.25)
    assert frames.dub_offset(trimmed, span, Fraction(25)) == Fraction(4, 5) + Fraction(1, 5) + Fraction(1, 4)
    with pytest.raises(frames.PlanError, match="retimed"):
        frames.dub_offset(frames.SoundTiming("dub", 120.0, 120, 245, 0, retimed=True), span, Fraction(25))


def test_free_channel_is_the_lowest_clear_one_above() -> None:
    strips = [frames.Occupant(2, 100, 222), frames.Occupant(3, 100, 300), frames.Occupant(4, 145, 146),
              frames.Occupant(5, 150, 160)]
    assert frames.free_channel(strips, 140, 150, above=2) == 5  # 5 starts where the span ends
    assert frames.free_channel(strips, 140, 151, above=2) == 6
    assert frames.free_channel(strips, 300, 310, above=2) == 3
    with pytest.raises(frames.PlanError, match="no free channel"):
        frames.free_channel([frames.Occupant(c, 0, 10) for c in range(1, 129)], 0, 10, above=1)


def test_patch_path_never_names_an_existing_file(tmp_path: Path) -> None:
    span = frames.Span(140, 150, 40, 50)
    first = frames.patch_path(str(tmp_path), "/media/speaker_b.mp4", span, "prores")
    assert first == str(tmp_path / "speaker_b.dub.000040-000050.mov")
    Path(first).write_bytes(b"x")
    assert frames.patch_path(str(tmp_path), "/media/speaker_b.mp4", span, "h264") == str(tmp_path / "speaker_b.dub.000040-000050.2.mov")
    with pytest.raises(frames.PlanError, match="not an absolute path"):
        frames.patch_path("patches", "/media/a.mp4", span, "prores")


# ---- engine discovery and the local engine -------------------------------------------------------

def test_client_environment_is_found_from_the_dubline_executable(tmp_path: Path) -> None:
    if not DUBLINE.exists():
        pytest.skip("no dubline executable beside this Python")
    assert Path(engine.site_packages_of(str(DUBLINE))) == Path(sysconfig.get_paths()["purelib"])
    assert engine.site_packages_of(str(tmp_path / "bin" / "dubline")) == ""
    assert engine.is_local("unix:/tmp/x.sock") and engine.is_local("127.0.0.1:50917") and engine.is_local("[::1]:5")
    assert not engine.is_local("10.0.0.7:50917")


def test_settings_reach_an_engine_on_another_machine_over_tls(tls_engine: str, certificate) -> None:
    from conftest import TLS_ENGINE_TOKEN

    settings = engine.EngineSettings(address=tls_engine, token=TLS_ENGINE_TOKEN, tls_ca=str(certificate[0]))
    assert engine._serving(dubline_client, settings, timeout=10)
    with settings.client(dubline_client, 10) as client:
        assert client.capabilities().api == "dubline.v1"
    # Without the authority the add-on cannot talk to it (and never sends the token in clear).
    with pytest.raises(dubline_client.EngineError, match="in clear"):
        engine.EngineSettings(address=tls_engine.replace("127.0.0.1", "localhost.invalid"),
                              token=TLS_ENGINE_TOKEN).client(dubline_client, 5)


def test_local_engine_refuses_clearly_without_starting(tmp_path: Path) -> None:
    address = f"unix:{tmp_path}/none.sock"
    local = engine.LocalEngine()
    with pytest.raises(engine.EngineUnavailable, match="turn on 'Start a local engine'"):
        local.ensure(dubline_client, engine.EngineSettings(address=address, auto_start=False))
    with pytest.raises(engine.EngineUnavailable, match="executable 'no-such-dubline' is not found"):
        local.ensure(dubline_client, engine.EngineSettings(address=address, executable="no-such-dubline"))
    with pytest.raises(engine.EngineUnavailable, match="only a local address"):
        local.ensure(dubline_client, engine.EngineSettings(address="192.0.2.1:9", executable=str(DUBLINE)))
    assert not local.running


@pytest.mark.slow
def test_local_engine_starts_when_none_answers_and_stops(tmp_path: Path, monkeypatch) -> None:
    if not DUBLINE.exists():
        pytest.skip("no dubline executable beside this Python")
    monkeypatch.setenv("DUBLINE_CACHE", str(tmp_path / "cache"))
    settings = engine.EngineSettings(address=f"unix:{tmp_path}/auto.sock", executable=str(DUBLINE),
                                     token="a-token-of-sixteen-plus", start_timeout=60)
    local = engine.LocalEngine()
    local.ensure(dubline_client, settings)
    try:
        assert local.running
        with dubline_client.EngineClient(settings.address, token=settings.token, timeout=10) as client:
            assert client.capabilities().api == "dubline.v1"  # the token reached the engine
        with dubline_client.EngineClient(settings.address, timeout=10) as client:
            with pytest.raises(dubline_client.EngineError, match="UNAUTHENTICATED"):
                client.capabilities()
        process = local._process
        local.ensure(dubline_client, settings)  # answers now: no second engine
        assert local._process is process
    finally:
        local.stop()
    assert not local.running and process.returncode is not None


# ---- the job runner against a real engine -----------------------------------------------------------

@pytest.fixture(scope="module")
def engine_address(tmp_path_factory) -> str:
    """One real engine subprocess for this module (its own cache, on a unix socket)."""
    if not DUBLINE.exists():
        pytest.skip("no dubline executable beside this Python")
    work = tmp_path_factory.mktemp("engine")
    address = f"unix:{work}/engine.sock"
    log = open(work / "engine.log", "w")
    process = subprocess.Popen([str(DUBLINE), "serve", "--listen", address, "--cache", str(work / "cache")],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        with dubline_client.EngineClient(address) as client:
            client.wait_until_ready(60)
        yield address
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.mark.slow
def test_runner_reports_an_engine_error_as_a_failed_event(engine_address: str, tmp_path: Path) -> None:
    runner = jobs.JobRunner(dubline_client)
    order = jobs.RenderOrder(video=str(tmp_path / "missing.mp4"), audio=str(tmp_path / "missing.wav"),
                             span_text="0-10", out=str(tmp_path / "patch.mov"))
    key = runner.submit(order, engine.EngineSettings(address=engine_address, auto_start=False))
    events: list[jobs.JobEvent] = []
    deadline = time.monotonic() + 30
    while not any(e.kind in jobs.FINAL for e in events) and time.monotonic() < deadline:
        events += runner.drain()
        time.sleep(0.05)
    assert [e.key for e in events] == [key] * len(events)
    assert events[0].kind == jobs.STARTING and events[-1].kind == jobs.FAILED
    assert "missing.mp4" in events[-1].message
    assert runner.active() == []
    runner.shutdown()


# ---- the add-on in real Blenders ----------------------------------------------------------------------

def _bpy_python() -> str | None:
    candidate = os.environ.get("DUBLINE_BPY_PYTHON") or str(REPOSITORY / ".venv-bpy" / "bin" / "python")
    return candidate if Path(candidate).exists() else None


BLENDERS = {
    "bpy-5.0": lambda: [_bpy_python(), str(SCRIPT)] if _bpy_python() else None,
    "blender": lambda: [shutil.which("blender"), "-b", "--factory-startup", "--python-exit-code", "1",
                        "--python", str(SCRIPT)] if shutil.which("blender") else None,
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["render", "errors"])
@pytest.mark.parametrize("blender", list(BLENDERS))
def test_addon_in_blender(blender: str, scenario: str, engine_address: str, shared_media: Path, tmp_path: Path) -> None:
    command = BLENDERS[blender]()
    if command is None:
        pytest.skip(f"{blender} is not installed (see tests/test_blender_addon.py)")
    command += ["--", "--scenario", scenario, "--plugin", str(PLUGIN), "--media", str(shared_media),
                "--work", str(tmp_path), "--address", engine_address, "--dubline", str(DUBLINE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)  # a hang guard, not a target
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    reports = [line for line in result.stdout.splitlines() if line.startswith("DUBLINE_REPORT ")]
    assert reports, output[-4000:]
    report = json.loads(reports[-1].split(" ", 1)[1])
    expected_major = 5 if blender == "bpy-5.0" else None
    assert expected_major is None or report["version"][0] == expected_major


_EXTENSION_CHECK = """
import bpy, addon_utils
name = "bl_ext.user_default.dubline_vse"
assert bpy.ops.extensions.package_install_files(filepath={zip!r}, repo="user_default", enable_on_install=True) == {{"FINISHED"}}
assert bpy.context.preferences.addons[name].preferences.address == "127.0.0.1:50917"
strip = bpy.context.scene.sequence_editor_create().strips.new_movie("c", {movie!r}, 1, 1)
assert strip.dubline.status == "NONE" and hasattr(bpy.types, "DUBLINE_PT_panel")
addon_utils.disable(name, default_set=True)
assert not hasattr(bpy.types, "DUBLINE_PT_panel")
print("EXTENSION_OK")
"""


@pytest.mark.slow
def test_extension_builds_installs_and_enables_in_blender_5(shared_media: Path, tmp_path: Path) -> None:
    """The 4.2+ extension path: Blender's own `extension build`, then install into a throwaway
    user folder; the add-on registers under its extension name (bl_ext.<repo>.dubline_vse)."""
    python = _bpy_python()
    if python is None:
        pytest.skip("bpy-5.0 is not installed (see tests/test_blender_addon.py)")
    tool = subprocess.run([python, "-c", "import bpy, addon_utils, os; print(os.path.join(os.path.dirname(addon_utils.__file__),"
                           " '..', 'addons_core', 'bl_pkg', 'cli', 'blender_ext.py'))"], capture_output=True, text=True, check=True)
    build = subprocess.run([python, tool.stdout.strip(), "build", "--source-dir", str(PLUGIN / "dubline_vse"),
                            "--output-dir", str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    script = _EXTENSION_CHECK.format(zip=str(tmp_path / "dubline_vse-0.1.0.zip"), movie=str(shared_media / "speaker_b.mp4"))
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")})
    assert result.returncode == 0 and "EXTENSION_OK" in result.stdout, (result.stdout + result.stderr)[-3000:]


# ---- the Backend and Codec menus come from the engine -------------------------------------------------

def test_menus_show_the_client_fallback_until_an_engine_answers() -> None:
    from dubline_vse import menus

    menus.forget()
    fallback = menus.choices_for("unix:/nobody/answers.sock", dubline_client)
    assert fallback is dubline_client.choices.FALLBACK and not fallback.from_engine
    backends = menus.enum_items(menus.BACKEND, fallback)
    assert [(name, number) for name, _, _, number in backends] == [("retrieval", 0)]
    codecs = {name: (description, number) for name, _, description, number in menus.enum_items(menus.CODEC, fallback)}
    assert codecs["prores"][1] == 0 and codecs["ffv1"][0].endswith(".mkv") and "h264" in codecs
    assert menus.enum_items(menus.BACKEND, None) == [menus.NO_CLIENT_ITEM]


def test_menus_are_the_engines_with_numbers_that_follow_names(extra_backend: str, in_process_engine: str) -> None:
    from dubline_vse import menus

    menus.forget()
    settings = engine.EngineSettings(address=in_process_engine, auto_start=False)
    choices = menus.ask(dubline_client, settings)
    assert choices.from_engine and menus.choices_for(in_process_engine, dubline_client) is choices
    with dubline_client.EngineClient(in_process_engine) as client:
        offered = client.capabilities()
    items = menus.enum_items(menus.BACKEND, choices)
    assert [item[0] for item in items] == [b.name for b in offered.backends] and extra_backend in choices.backend_names
    numbers = {name: number for name, _, _, number in items}
    assert numbers[offered.default_backend] == 0 and len(set(numbers.values())) == len(numbers)
    # The number depends on the name alone: a choice stored by Blender survives reordering and additions.
    assert numbers[extra_backend] == menus.item_number(extra_backend, False) != 0
    assert [item[0] for item in menus.enum_items(menus.CODEC, choices)] == [c.name for c in offered.patch_codecs]
    # Patch names take the suffix the engine writes each codec into.
    span = frames.Span(140, 150, 40, 50)
    assert frames.patch_path("/tmp", "/media/a.mp4", span, "ffv1", choices).endswith(".mkv")
    with pytest.raises(frames.PlanError, match="unknown patch codec 'mpeg2'; the engine offers prores"):
        frames.patch_path("/tmp", "/media/a.mp4", span, "mpeg2", choices)
    menus.forget()


def test_each_render_refreshes_the_menus(extra_backend: str, in_process_engine: str, tmp_path: Path) -> None:
    from dubline_vse import menus

    menus.forget()
    runner = jobs.JobRunner(dubline_client)
    order = jobs.RenderOrder(video=str(tmp_path / "missing.mp4"), audio=str(tmp_path / "missing.wav"),
                             span_text="0-10", out=str(tmp_path / "patch.mov"))
    runner.submit(order, engine.EngineSettings(address=in_process_engine, auto_start=False))
    events: list[jobs.JobEvent] = []
    deadline = time.monotonic() + 30
    while not any(e.kind in jobs.FINAL for e in events) and time.monotonic() < deadline:
        events += runner.drain()
        time.sleep(0.05)
    assert events and events[-1].kind == jobs.FAILED  # the render fails (no such files), the engine was asked first
    assert extra_backend in menus.choices_for(in_process_engine, dubline_client).backend_names
    runner.shutdown()
    menus.forget()
