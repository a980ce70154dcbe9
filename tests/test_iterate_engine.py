"""Issue 18 through the engine (fast: fake analysis and backend in an in-process engine): a 50-frame
render's progress events carry at least one decodable JPEG of a patched frame, small and upright;
the done event carries the render's flags (the markers) and the contact sheet it wrote."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from dubline.core import timing
from dubline.stages import media
from dubline_client import EngineClient, frames_span, render_spec
from fakes import write_clip

NO_FACE = frozenset(range(30, 34))


def _frames(path: Path, first: int, end: int) -> list[np.ndarray]:
    return [f.image for f in media.read_span(path, timing.frames_to_range(first, end, Fraction(25)))]


@pytest.fixture()
def engine(fake_engine):
    return fake_engine(no_face_frames=NO_FACE)


def test_progress_events_carry_pictures_and_done_carries_the_markers(engine: EngineClient, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mkv", frames=60, width=640, height=360, rate=Fraction(25))
    t = np.arange(16000 * 2) / 16000
    dub = media.write_audio(media.AudioClip((0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000),
                            tmp_path / "dub.wav")
    spec = render_spec(str(clip), str(dub), frames_span(5, 55, 25), str(tmp_path / "patch.mkv"), backend="fake",
                       codec="ffv1", otio=str(tmp_path / "patch.otio"), sheet=str(tmp_path / "sheet.png"))
    events = list(engine.render(spec))
    assert events[-1].WhichOneof("event") == "done", events[-1]
    patch = _frames(tmp_path / "patch.mkv", 0, 50)
    source = _frames(clip, 5, 55)
    pictures = [e.progress for e in events if e.WhichOneof("event") == "progress" and e.progress.preview_jpeg]
    assert pictures, "no progress event carried a picture"
    for progress in pictures:
        image = cv2.imdecode(np.frombuffer(progress.preview_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (180, 320, 3)  # 640x360 made 320 wide
        assert 0 <= progress.preview_frame < 50 and progress.preview_frame + 5 not in NO_FACE
        # it shows the patched frame (the fake's flat mouth over the noise), not the source frame
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(int)
        row = progress.preview_frame
        changed = np.abs(patch[row].astype(int) - source[row]).max(axis=2) > 40
        region = cv2.resize(changed.astype(np.uint8), (320, 180), interpolation=cv2.INTER_AREA) > 0

        def distance(frames: list[np.ndarray]) -> float:
            small = cv2.resize(frames[row], (320, 180), interpolation=cv2.INTER_AREA).astype(int)
            return float(np.abs(small - rgb)[region].mean())

        assert region.mean() > 0.02 and distance(patch) < 0.5 * distance(source)

    done = events[-1].done
    assert [(f.first, f.end, f.kind, f.note, f.label) for f in done.flags] == [
        (25, 29, "passthrough", "no face", "frames 30-33: no face")]
    assert "frames 30-33: no face" in done.otio_json  # the marker on the patch clip
    assert done.sheet == str(tmp_path / "sheet.png") and cv2.imread(done.sheet) is not None
