"""Issue 18 in real Blenders (tests/blender/run_review.py): the add-on keeps the engine's latest
picture of the render in its state, and puts the render's flags on the patch strip (its state, a
colour tag, timeline markers); and the Dubline panel as an editor sees it, in Debian's Blender with
a real window under Xvfb, screenshotted beside the same scene without the add-on.

The engine runs in this process with the fake analysis and backend (span frames 30-33 have no
face), so the render takes seconds. Screenshots are kept under ``$DUBLINE_TEST_ARTIFACTS``
(default tests/artifacts/, ignored by git)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAnalyses, register_fake_backend, write_clip

from dubline.stages import media

REPOSITORY = Path(__file__).resolve().parents[1]
PLUGIN = REPOSITORY / "plugin" / "blender"
SCRIPT = REPOSITORY / "tests" / "blender" / "run_review.py"
DUBLINE = Path(sys.executable).with_name("dubline")
NO_FACE = frozenset(range(30, 34))
ARTIFACTS = Path(os.environ.get("DUBLINE_TEST_ARTIFACTS", REPOSITORY / "tests" / "artifacts"))


@pytest.fixture()
def scene_files(tmp_path: Path) -> dict[str, Path]:
    clip = write_clip(tmp_path / "clip.mkv", frames=60, width=320, height=240, rate=Fraction(25))
    t = np.arange(int(16000 * 2.4)) / 16000
    dub = media.write_audio(media.AudioClip((0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000),
                            tmp_path / "dub.wav")
    return {"clip": clip, "dub": dub}


@pytest.fixture()
def fake_engine(tmp_path: Path, monkeypatch) -> str:
    from dubline.apps.server import servicer
    from dubline.apps.server.app import create_server

    register_fake_backend(monkeypatch)
    monkeypatch.setattr(servicer, "ResidentAnalyses", lambda *args, **kwargs: FakeAnalyses(no_face_frames=NO_FACE))
    address = f"unix:{tmp_path / 'engine.sock'}"
    server, _ = create_server(address, cache_root=tmp_path / "cache", work_dir=tmp_path / "work")
    server.start()
    yield address
    server.stop(1)


def _bpy_python() -> str | None:
    candidate = os.environ.get("DUBLINE_BPY_PYTHON") or str(REPOSITORY / ".venv-bpy" / "bin" / "python")
    return candidate if Path(candidate).exists() else None


def _arguments(scenario: str, address: str, files: dict[str, Path], work: Path) -> list[str]:
    return ["--", "--scenario", scenario, "--plugin", str(PLUGIN), "--work", str(work), "--address", address,
            "--dubline", str(DUBLINE), "--clip", str(files["clip"]), "--dub", str(files["dub"])]


def _report(result: subprocess.CompletedProcess) -> dict:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    reports = [line for line in result.stdout.splitlines() if line.startswith("DUBLINE_REPORT ")]
    assert reports, output[-5000:]
    return json.loads(reports[-1].split(" ", 1)[1])


BLENDERS = {
    "bpy-5.0": lambda: [_bpy_python(), str(SCRIPT)] if _bpy_python() else None,
    "blender": lambda: [shutil.which("blender"), "-b", "--factory-startup", "--python-exit-code", "1",
                        "--python", str(SCRIPT)] if shutil.which("blender") else None,
}


@pytest.mark.slow
@pytest.mark.parametrize("blender", list(BLENDERS))
def test_preview_and_markers_reach_the_addon_state(blender: str, fake_engine: str, scene_files, tmp_path: Path) -> None:
    command = BLENDERS[blender]()
    if command is None or not DUBLINE.exists():
        pytest.skip(f"{blender} or the dubline executable is not installed")
    result = subprocess.run(command + _arguments("state", fake_engine, scene_files, tmp_path),
                            capture_output=True, text=True, timeout=600)  # a hang guard, not a target
    report = _report(result)
    # The checks ran inside Blender; the report says what it found.
    assert report["flags"] == [[25, 29, "passthrough", "no face"]]
    assert report["markers"] == [[31, "dl 31-34: no face"]]
    assert report["preview"][1] == [320, 240]


def _screenshot(address: str, files, work: Path, shot: Path, addon: bool) -> dict:
    command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", shutil.which("blender"), "--factory-startup",
               "--enable-event-simulate", "--python", str(SCRIPT)]
    command += _arguments("screenshot", address, files, work) + ["--shot", str(shot)] + ([] if addon else ["--no-addon"])
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)  # a hang guard
    return _report(result)


@pytest.mark.slow
def test_the_panel_as_an_editor_sees_it(fake_engine: str, scene_files, tmp_path: Path) -> None:
    if not (shutil.which("blender") and shutil.which("xvfb-run")) or not DUBLINE.exists():
        pytest.skip("needs Debian's blender, xvfb-run and the dubline executable")
    import cv2

    shots = {}
    for addon in (True, False):
        shot = tmp_path / f"sequencer-{'addon' if addon else 'plain'}.png"
        report = _screenshot(fake_engine, scene_files, tmp_path / ("with" if addon else "without"), shot, addon)
        (tmp_path / ("with" if addon else "without")).mkdir(exist_ok=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        image = cv2.imread(str(shot))
        assert image is not None, f"unreadable screenshot {shot}"
        x, y, width, height = report["region"]
        window_height = image.shape[0]
        # region coordinates count from the window's bottom left; the picture's rows from its top
        shots[addon] = image[window_height - (y + height): window_height - y, x: x + width]
        if addon:
            assert report["panel_draws"] > 0, report  # Blender drew the Dubline panel before the shot
    with_addon, without = shots[True], shots[False]
    assert with_addon.size and with_addon.std() > 5  # the sidebar is not an empty, flat region
    assert with_addon.shape == without.shape
    changed = np.abs(with_addon.astype(int) - without.astype(int)).max(axis=2) > 30
    assert changed.mean() > 0.02, "the sidebar looks the same without the add-on"
