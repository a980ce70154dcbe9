"""The threaded frame loop (decode -> backend -> composite -> encode on threads with bounded queues):
the same frames as the one-thread loop, per-stage timings, and an error raised in any stage's
thread surfacing once with nothing half-written and no thread left running. Fast tier: synthetic
clips, the fake analysis and fake backend of ``fakes.py``."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fakes import FakeAnalyses, FakeBackendError, register_fake_backend, write_clip

from dubline.core import timing
from dubline.core.errors import CancelledError, MediaDecodeError
from dubline.core.progress import CancelToken
from dubline.pipeline import RenderRequest, render
from dubline.pipeline.frameloop import FrameLoop, StageClock
from dubline.stages import media

render_module = importlib.import_module("dubline.pipeline.render")  # the module (the package exports the function)
LOOP_STAGES = ("decode", "backend", "composite", "matte", "encode")


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


@pytest.fixture()
def thread_errors(monkeypatch) -> list[BaseException]:
    """Exceptions that escaped any thread (none may: the loop hands them to the caller)."""
    escaped: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    return escaped


def _dub(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    samples = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return media.write_audio(media.AudioClip(samples, 16000), path)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mkv", frames=24, width=128, height=128)


def _request(clip: Path, tmp_path: Path, name: str = "patch", **changes) -> RenderRequest:
    dub = tmp_path / "dub.wav"
    if not dub.exists():
        _dub(dub, 1.0)
    fields = dict(video=clip, audio=dub, span="1-23", out=tmp_path / f"{name}.mkv", codec="ffv1",
                  matte=tmp_path / f"{name}_matte.mkv", backend="fake",
                  backend_options={"passthrough": "4:occluded,5:occluded"})
    fields.update(changes)
    return RenderRequest(**fields)


def _frames(path: Path) -> list[np.ndarray]:
    info = media.probe(path)
    return [f.image for f in media.read_span(path, timing.frames_to_range(0, info.video.frame_count, info.video.rate))]


def _loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("render-", "writer-"))]


def test_threaded_loop_writes_the_frames_of_the_one_thread_loop(clip: Path, tmp_path: Path, thread_errors) -> None:
    analyses = FakeAnalyses(no_face_frames=frozenset({9}))
    threaded = render(_request(clip, tmp_path, "threaded"), analyses=analyses, cache_root=tmp_path / "cache")
    inline = render(_request(clip, tmp_path, "inline"), analyses=analyses, cache_root=tmp_path / "cache",
                    pipelined=False)
    assert threaded.frames_patched == inline.frames_patched == 19
    assert threaded.passthrough == inline.passthrough == {"occluded": 2, "no_face": 1}
    for ours, reference in ((threaded.out, inline.out), (threaded.matte, inline.matte)):
        got, expected = _frames(ours), _frames(reference)
        assert len(got) == len(expected) == 22
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    # the patch really differs from the source (a comparison of two untouched copies proves nothing)
    assert not np.array_equal(_frames(threaded.out)[0], _frames(clip)[1])
    assert _loop_threads() == [] and thread_errors == []


@pytest.mark.parametrize("pipelined", [True, False])
def test_stage_seconds_and_shares(clip: Path, tmp_path: Path, pipelined: bool) -> None:
    result = render(_request(clip, tmp_path), analyses=FakeAnalyses(), cache_root=tmp_path / "cache",
                    pipelined=pipelined)
    seconds = result.stage_seconds
    assert {f"render.{stage}" for stage in LOOP_STAGES} <= set(seconds)
    assert all(seconds[f"render.{stage}"] > 0 for stage in LOOP_STAGES)  # each stage did work here
    shares = result.to_dict()["loop_shares"]
    assert set(shares) == set(LOOP_STAGES)
    wall = seconds["render_and_encode"]
    for stage in LOOP_STAGES:
        assert shares[stage] == pytest.approx(seconds[f"render.{stage}"] / wall, abs=1e-3)
    if not pipelined:  # one thread (but the matte's own writer): busy times are parts of the wall time
        assert sum(seconds[f"render.{stage}"] for stage in LOOP_STAGES if stage != "matte") <= wall * 1.001


@pytest.mark.parametrize("budget, threaded", [("1", False), (None, True)])
def test_the_loop_runs_on_threads_only_with_more_than_one_cpu(clip: Path, tmp_path: Path, monkeypatch,
                                                              budget: str | None, threaded: bool) -> None:
    # A batch worker kept to one CPU runs its stages one after the other; a machine of its own overlaps them.
    from conftest import set_cpu_budget

    render_module = importlib.import_module("dubline.pipeline.render")
    set_cpu_budget(monkeypatch, budget, needs_cores=True)
    loops = []

    def recording_loop(clock, threaded):
        loops.append(threaded)
        return FrameLoop(clock, threaded=threaded)

    monkeypatch.setattr(render_module, "FrameLoop", recording_loop)
    render(_request(clip, tmp_path), analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert loops == [threaded]


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture()
def two_blas_threads() -> Iterator[None]:
    with threadpool_limits(2, user_api="blas"):
        if _blas_threads() != {2}:
            pytest.skip("BLAS cannot run two threads here")
        yield


def test_the_frame_loop_runs_blas_on_one_thread_and_restores_it(clip: Path, tmp_path: Path, monkeypatch,
                                                                 two_blas_threads) -> None:
    seen: list[set[int]] = []
    composite = render_module._composite_stage

    def watched(*args, **kwargs):
        seen.append(_blas_threads())
        yield from composite(*args, **kwargs)

    monkeypatch.setattr(render_module, "_composite_stage", watched)
    render(_request(clip, tmp_path), analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert seen == [{1}]
    assert _blas_threads() == {2}


def test_overlapping_frame_loops_restore_blas_threads_when_the_last_ends(two_blas_threads) -> None:
    loops = render_module.ONE_BLAS_THREAD
    with loops:
        with loops:  # a second render's loop, on another thread in the engine
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}  # the first loop still runs
    assert _blas_threads() == {2}


def test_without_a_matte_the_matte_stage_is_zero(clip: Path, tmp_path: Path) -> None:
    result = render(_request(clip, tmp_path, matte=None), analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert result.stage_seconds["render.matte"] == 0.0 and result.stage_seconds["render.composite"] > 0


def _fail_decode(monkeypatch, after: int) -> list[BaseException]:
    raised: list[BaseException] = []
    real = media.read_span

    def read_span(path, span, **options) -> Iterator[media.VideoFrame]:
        frames = real(path, span, **options)

        def failing() -> Iterator[media.VideoFrame]:
            with closing(frames):  # closing the generator closes the file
                for count, frame in enumerate(frames):
                    if count == after:
                        raised.append(MediaDecodeError(f"{path}: decoding failed (test)"))
                        raise raised[-1]
                    yield frame
        return failing()

    monkeypatch.setattr(media, "read_span", read_span)
    return raised


def _fail_composite(monkeypatch, after: int) -> list[BaseException]:
    raised: list[BaseException] = []
    real = render_module.paste

    def paste(*args, **kwargs):
        if len(raised) == 0 and paste.calls == after:
            raised.append(ValueError("compositor failed (test)"))
            raise raised[-1]
        paste.calls += 1
        return real(*args, **kwargs)

    paste.calls = 0
    monkeypatch.setattr(render_module, "paste", paste)
    return raised


def _fail_encode(monkeypatch, after: int) -> list[BaseException]:
    raised: list[BaseException] = []
    real = media.write_patch

    def write_patch(frames, path, *args, **kwargs):
        def failing():
            for count, frame in enumerate(frames):
                if count == after:
                    raised.append(OSError(28, "No space left on device (test)"))
                    raise raised[-1]
                yield frame
        return real(failing(), path, *args, **kwargs)

    monkeypatch.setattr(media, "write_patch", write_patch)
    return raised


@pytest.mark.parametrize("pipelined", [True, False])
@pytest.mark.parametrize("stage", ["decode", "backend", "composite", "encode"])
def test_an_error_in_any_stage_surfaces_once_and_leaves_nothing(clip: Path, tmp_path: Path, monkeypatch,
                                                                thread_errors, stage: str, pipelined: bool) -> None:
    options = {}
    raised: list[BaseException] = []
    if stage == "decode":
        raised = _fail_decode(monkeypatch, after=6)
        expected = MediaDecodeError
    elif stage == "backend":
        options = {"fail_at": "7"}
        expected = FakeBackendError
    elif stage == "composite":
        raised = _fail_composite(monkeypatch, after=7)
        expected = ValueError
    else:
        raised = _fail_encode(monkeypatch, after=7)
        expected = OSError
    request = _request(clip, tmp_path, backend_options=options)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(expected) as caught:
        render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache", pipelined=pipelined)
    surfaced = caught.value
    if raised:
        # The error itself, raised once (an OS error while writing arrives as the one-line
        # OutputWriteError made from it).
        surfaced = caught.value if caught.value is raised[0] else caught.value.__cause__
        assert len(raised) == 1 and surfaced is raised[0]
    assert "test" in str(surfaced) or stage == "backend"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == [n for n in before if n != "cache"]
    assert _loop_threads() == [] and thread_errors == []


def test_cancel_while_stages_are_blocked_on_full_queues(clip: Path, tmp_path: Path, thread_errors) -> None:
    token = CancelToken()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "render" and done == 1:
            token.cancel()

    with pytest.raises(CancelledError):
        render(_request(clip, tmp_path), progress=progress, cancel=token, analyses=FakeAnalyses(),
               cache_root=tmp_path / "cache")
    assert not (tmp_path / "patch.mkv").exists() and not (tmp_path / "patch_matte.mkv").exists()
    assert _loop_threads() == [] and thread_errors == []


def test_frame_loop_stops_a_producer_the_consumer_abandoned() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def endless(_: Iterator[None]) -> Iterator[int]:
        try:
            count = 0
            while True:
                produced.append(count)
                yield count
                count += 1
        finally:
            closed.set()

    with FrameLoop(StageClock()) as loop:
        items = loop.stage("endless", endless, (), depth=2)
        assert [next(items) for _ in range(3)] == [0, 1, 2]
    assert closed.is_set()  # the generator was closed in its own thread
    assert len(produced) <= 3 + 2 + 1  # bounded: what was taken, the queue, and one in hand
    assert _loop_threads() == []
