"""The live first frame: the engine's one-frame renders composite the asked frame first and answer
each frame as soon as it is in, not when the whole span is (fast: synthetic clips, the fake
analysis and backend of ``fakes.py``). Ordered by events, never by the clock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dubline.pipeline import RenderRequest, render
from dubline.pipeline.live import render_live, shown_first_order
from dubline_client import frames_span, pb, rational, render_spec
from fakes import BACKEND as FAKE
from fakes import (
    FakeAnalyses,
    all_frames,
    register_fake_backend,
    speech_dub,
    write_clip,
)


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def test_render_order_starts_at_the_asked_frame():
    assert shown_first_order(10, 20, 14) == [(14, 15), (15, 20), (10, 14)]
    assert shown_first_order(10, 20, 10) == [(10, 11), (11, 20)]
    assert shown_first_order(10, 20, 19) == [(19, 20), (10, 19)]
    assert shown_first_order(10, 20, 3) == [(10, 11), (11, 20)]  # outside: from the span's start


def test_live_render_shows_the_asked_frame_first_and_writes_what_render_writes(tmp_path: Path):
    clip = write_clip(tmp_path / "clip.mkv", frames=12)
    dub = speech_dub(tmp_path / "dub.wav", 0.4)
    request = RenderRequest(video=clip, audio=dub, span="1-11", out=tmp_path / "live.mkv", codec="ffv1",
                            matte=tmp_path / "live.matte.mkv", backend="fake")
    seen: list[object] = []
    live = render_live(request, 6, seen.append, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    frames = seen[0]
    assert frames.order == [6, 7, 8, 9, 10, 1, 2, 3, 4, 5] and frames.ready.all()
    assert live.span == (1, 11) and live.frames_written == 10 and live.frames_patched == 10

    def rendered(first: int, end: int, name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        result = render(RenderRequest(video=clip, audio=dub, span=f"{first}-{end}", out=tmp_path / f"{name}.mkv",
                                      codec="ffv1", matte=tmp_path / f"{name}.matte.mkv", backend="fake"),
                        analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
        return all_frames(result.out), all_frames(result.matte)

    patch, matte = all_frames(live.out), all_frames(live.matte)
    whole, whole_matte = rendered(1, 11, "whole")
    # Before the asked frame the live render is the sequential one; from it on, a render starting there.
    for row in range(5):
        np.testing.assert_array_equal(patch[row], whole[row])
        np.testing.assert_array_equal(matte[row], whole_matte[row])
    tail, _ = rendered(6, 11, "tail")
    for row in range(5):
        np.testing.assert_array_equal(patch[5 + row], tail[row])
    np.testing.assert_array_equal(frames.patch, np.stack(patch))  # the files are the frames served


class _Gated:
    """The fake backend, held before it yields one chosen frame until ``release``."""

    def __init__(self, monkeypatch, hold_before: int) -> None:
        self.release = threading.Event()
        self.waiting = threading.Event()
        real = type(FAKE).patches

        def patches(backend, job, plan, frames):
            for frame, mouth in real(backend, job, plan, frames):
                if frame.index == hold_before:
                    self.waiting.set()
                    assert self.release.wait(60)
                yield frame, mouth

        monkeypatch.setattr(type(FAKE), "patches", patches)


def _ask(servicer, spec: pb.RenderSpec, frame: int) -> pb.RenderFrameResponse:
    return servicer.render_frame(pb.RenderFrameRequest(time=rational(frame, 25), clip=spec))


def _until_ready(servicer, spec: pb.RenderSpec, frame: int) -> pb.RenderFrameResponse:
    deadline = time.monotonic() + 60  # a guard against hanging, not a measurement
    while True:
        answer = _ask(servicer, spec, frame)
        if answer.status != pb.FRAME_STATUS_NOT_READY:
            return answer
        assert time.monotonic() < deadline, answer.message
        time.sleep(0.02)


@pytest.fixture()
def servicer(tmp_path: Path):
    from dubline.apps.server.jobs import JobQueue
    from dubline.apps.server.security import MediaRoots
    from dubline.apps.server.servicer import EngineConfig, EngineServicer

    jobs = JobQueue(max_workers=2)
    engine = EngineServicer(EngineConfig(MediaRoots([]), tmp_path / "cache", tmp_path / "work"), jobs)
    engine.analyses = FakeAnalyses()
    yield engine
    jobs.shutdown(5)


def test_render_frame_answers_the_asked_frame_before_the_span_is_done(servicer, tmp_path: Path, monkeypatch):
    gate = _Gated(monkeypatch, hold_before=7)  # the render stops just after frame 6, the asked one
    clip = write_clip(tmp_path / "clip.mkv", frames=12)
    spec = render_spec(str(clip), str(speech_dub(tmp_path / "dub.wav", 0.4)), frames_span(2, 10, 25), "", backend="fake")
    first = _ask(servicer, spec, 6)
    assert first.status in (pb.FRAME_STATUS_NOT_READY, pb.FRAME_STATUS_READY)
    answer = _until_ready(servicer, spec, 6)
    assert answer.status == pb.FRAME_STATUS_READY and answer.frame_index == 6 and answer.job_id == first.job_id
    assert gate.waiting.is_set()
    job = servicer.jobs.get(first.job_id)
    assert not job.state.finished  # the span is still rendering: frame 6 was answered on its own
    for other in (3, 8):  # not rendered yet: the host shows its source meanwhile
        assert _ask(servicer, spec, other).status == pb.FRAME_STATUS_NOT_READY
    assert _ask(servicer, spec, 11).status == pb.FRAME_STATUS_OUTSIDE_SPAN
    early = np.frombuffer(answer.image.data, np.uint8).copy()
    gate.release.set()
    assert job.wait(60) and job.error is None
    for frame in range(2, 10):
        assert _ask(servicer, spec, frame).status == pb.FRAME_STATUS_READY
    final = _ask(servicer, spec, 6)
    assert np.array_equal(np.frombuffer(final.image.data, np.uint8), early)  # what was shown early stays
    patch = all_frames(Path(job.result.out))
    np.testing.assert_array_equal(patch[4], early.reshape(patch[4].shape[0], patch[4].shape[1], 4)[..., :3])
