"""Incremental re-render through the engine (fast: fake analysis and backend in an in-process
engine). A bridge renders the same span again with a revised dub to a new file, as the Blender
add-on does: the engine finds the previous patch from its render record, draws only the frames the
edit changed and copies the rest, and says so in the done event."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from dubline.core import timing
from dubline.stages import media
from dubline_client import EngineClient, frames_span, render_spec
from fakes import write_clip

FRAMES = 50


def _dub(path: Path, silence: tuple[float, float] | None = None) -> Path:
    t = np.arange(int(FRAMES / 25 * 16000)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)
    if silence is not None:
        samples[int(silence[0] * 16000) : int(silence[1] * 16000)] = 0.0
    return media.write_audio(media.AudioClip(samples, 16000), path)


def _frames(path: Path) -> list[np.ndarray]:
    return [f.image for f in media.read_span(path, timing.frames_to_range(0, FRAMES, Fraction(25)))]


@pytest.fixture()
def engine(fake_engine):
    return fake_engine()


def _render(engine: EngineClient, clip: Path, dub: Path, out: Path):
    spec = render_spec(str(clip), str(dub), frames_span(0, FRAMES, 25), str(out), backend="fake", codec="ffv1",
                       backend_options={"tint": "true"})
    events = list(engine.render(spec))
    assert events[-1].WhichOneof("event") == "done", events[-1]
    return events[-1].done


def test_a_revised_dub_through_the_engine_redraws_only_the_edit(engine: EngineClient, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mkv", frames=FRAMES)
    first = _render(engine, clip, _dub(tmp_path / "take1.wav"), tmp_path / "patch_v1.mkv")
    assert (first.qc["reuse.reused"], first.qc["reuse.rendered"]) == (0, FRAMES)

    second = _render(engine, clip, _dub(tmp_path / "take2.wav", silence=(0.8, 1.2)), tmp_path / "patch_v2.mkv")
    reused, rendered = int(second.qc["reuse.reused"]), int(second.qc["reuse.rendered"])
    assert 0 < rendered < FRAMES and reused == FRAMES - rendered

    before, after = _frames(tmp_path / "patch_v1.mkv"), _frames(tmp_path / "patch_v2.mkv")
    changed = [t for t in range(FRAMES) if not np.array_equal(before[t], after[t])]
    assert changed, "the edit changed nothing"
    assert len(changed) <= rendered  # every frame that differs was drawn again; the rest are copies
    # the edit (0.8-1.2 s = frames 20-30) is where the frames changed
    assert min(changed) >= 20 - 6 and max(changed) < 30 + 6 + 2
