"""Span-proportional analysis: which frames a render analyses (fast), and on real footage that no
frame is analysed twice, by later renders or by the engine's idle extension (slow)."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dubline.core.errors import InvalidInputError
from dubline.pipeline import (
    WHOLE_FILE,
    AnalysisBudget,
    DiskAnalyses,
    ResidentAnalyses,
    RenderRequest,
    plan_analysis,
    render,
)
from dubline.pipeline.analysis import plan_for
from dubline.pipeline.budget import block_runs
from dubline.stages import media
from dubline.stages.faces import SpeakerHint, stage
from fakes import register_fake_backend, write_clip

RATE = Fraction(25)
BLOCK = 24


# ---------------------------------------------------------------------------------------------
# Planning (no media)


def _frames(plan, blocks) -> set[int]:
    return {f for b in blocks for f in range(*plan.block_range(b))}


def test_plan_is_the_span_a_window_and_runs_spread_over_the_file():
    ten_minutes = 15000
    plan = plan_analysis(ten_minutes, RATE, BLOCK, (7600, 7625), AnalysisBudget())
    # The span and 1 s (25 frames) either side, in whole blocks.
    assert set(range(7575, 7650)) <= _frames(plan, plan.span_blocks)
    assert len(plan.span_blocks) == 4 and not set(plan.span_blocks) & set(plan.library_blocks)
    # 6 s of library (150 frames: 7 blocks), as 1-block runs spread over the whole file.
    assert len(plan.library_blocks) == 7 and len(block_runs(plan.library_blocks)) == 7
    starts = np.array(plan.library_blocks) * BLOCK
    assert starts.min() < 0.15 * ten_minutes and starts.max() > 0.85 * ten_minutes
    assert np.diff(starts).min() > 0.5 * ten_minutes / 7
    assert plan.frame_count_planned() == 11 * BLOCK  # a 25-frame span of a 10-minute take: 264 frames


def test_library_stays_put_whatever_the_span():
    """Renders of different spans share their library runs (so they share the cache); a run only
    steps aside when a span's window takes its place."""
    far_apart = [plan_analysis(15000, RATE, BLOCK, span, AnalysisBudget()) for span in ((100, 125), (9000, 9100))]
    assert far_apart[0].library_blocks == far_apart[1].library_blocks
    taken = far_apart[0].library_blocks[3]
    crossing = plan_analysis(15000, RATE, BLOCK, (taken * BLOCK, taken * BLOCK + 10), AnalysisBudget())
    moved = set(far_apart[0].library_blocks) ^ set(crossing.library_blocks)
    assert len(crossing.library_blocks) == 7 and len(moved) == 2  # only that run moved, next to the window
    assert set(crossing.library_blocks) - set(far_apart[0].library_blocks) == {max(crossing.span_blocks) + 1}


def test_short_files_and_all_analyse_every_block():
    short = plan_analysis(250, RATE, BLOCK, (100, 125), AnalysisBudget())  # 10 s: less than span + library
    assert short.blocks == tuple(range(11))
    whole = plan_analysis(15000, RATE, BLOCK, (100, 125), WHOLE_FILE)
    assert whole.blocks == tuple(range(625)) and whole.frame_count_planned() == 15000
    library_only = plan_analysis(15000, RATE, BLOCK, None, AnalysisBudget())
    assert library_only.span_blocks == () and len(library_only.library_blocks) == 7


def test_runs_of_several_blocks_and_a_budget_in_frames():
    plan = plan_analysis(15000, RATE, BLOCK, (500, 510), AnalysisBudget(library=240, window=0, run=72))
    runs = block_runs(plan.library_blocks)
    assert [end - first for first, end in runs] == [3, 3, 3, 1]  # 240 frames = 10 blocks in runs of 3
    assert plan.span_blocks == (20, 21)  # frames 500-510 with no window: blocks 20 and 21 (480-528)


def test_runs_start_just_after_keyframes():
    """Reading a run decodes from the keyframe before it: each run starts at the first block after
    a keyframe, so less than one block is decoded and thrown away."""
    asked: list[int] = []

    def keyframes(indices):
        asked.extend(indices)
        return [index - index % 250 for index in indices]  # a keyframe every 10 s

    plan = plan_analysis(15000, RATE, BLOCK, (7600, 7625), AnalysisBudget(), keyframes=keyframes)
    unaligned = plan_analysis(15000, RATE, BLOCK, (7600, 7625), AnalysisBudget())
    assert len(asked) == 7
    for block, wanted in zip(plan.library_blocks, unaligned.library_blocks):
        keyframe = wanted * BLOCK - wanted * BLOCK % 250
        assert block == -(-keyframe // BLOCK) and 0 <= block * BLOCK - keyframe < BLOCK


def test_budget_text():
    assert AnalysisBudget.parse("6s") == AnalysisBudget()
    assert AnalysisBudget.parse("all") == WHOLE_FILE
    assert AnalysisBudget.parse("150,window=2s,run=48") == AnalysisBudget(library=150, window=Fraction(2), run=48)
    assert AnalysisBudget.parse(AnalysisBudget(library=Fraction(5, 2)).describe()) == AnalysisBudget(library=Fraction(5, 2))
    for bad in ("", "six", "-3s", "all,window=1s", "6s,span=2s"):
        with pytest.raises(InvalidInputError):
            AnalysisBudget.parse(bad)


def test_a_speaker_hint_frame_is_always_analysed(tmp_path):
    clip = write_clip(tmp_path / "clip.mkv", frames=200, width=64, height=64)
    info = media.probe(clip)
    budget = AnalysisBudget(library=0, window=0)
    plan = plan_for(clip, info, (10, 20), budget, speaker=SpeakerHint(frame_index=150, point=(5.0, 5.0)))
    assert 150 // BLOCK in plan.blocks and set(plan.blocks) == {0, 150 // BLOCK}


# ---------------------------------------------------------------------------------------------
# Real footage: nothing analysed twice


class _Count:
    """Frames the face stage analyses (whole-frame searches and tracked frames), from any thread."""

    def __init__(self, monkeypatch) -> None:
        self.frames = 0
        self._lock = threading.Lock()
        for name in ("detect_frame", "track_frame"):
            monkeypatch.setattr(stage, name, self._counted(getattr(stage, name)))

    def _counted(self, function):
        def counted(*args, **kwargs):
            with self._lock:
                self.frames += 1
            return function(*args, **kwargs)

        return counted

    def take(self) -> int:
        with self._lock:
            frames, self.frames = self.frames, 0
        return frames


SMALL = AnalysisBudget(library=BLOCK, window=0, run=BLOCK)  # the span's blocks and one library block


@pytest.mark.slow
def test_later_renders_analyse_no_frame_twice(shared_media: Path, tmp_path, monkeypatch):
    register_fake_backend(monkeypatch)
    count = _Count(monkeypatch)
    video, dub = shared_media / "speaker_b.mp4", shared_media / "dub_en_16k.wav"
    analyses = DiskAnalyses(tmp_path / "cache", budget=SMALL)

    def render_span(first: int, end: int, name: str):
        request = RenderRequest(video=video, audio=dub, span=f"{first}-{end}", out=tmp_path / name, codec="ffv1",
                                backend="fake", overwrite=True)
        return render(request, analyses=analyses)

    first = render_span(30, 40, "a.mkv")
    plan = plan_for(video, media.probe(video), (30, 40), SMALL)
    assert count.take() == plan.frame_count_planned() == first.analysis["frames_analysed"] == 2 * BLOCK
    again = render_span(30, 40, "b.mkv")
    assert count.take() == 0 and again.analysis["frames_analysed"] == 0
    # Another span: only its own block is new (block 4, frames 96-120); the library block is shared,
    # and the first span's block joins the library.
    other = render_span(100, 110, "c.mkv")
    assert count.take() == other.analysis["frames_analysed"] == BLOCK
    assert other.analysis["frames_known"] == 3 * BLOCK

    analysis = analyses.analyse(video, None, span=(100, 110))
    assert count.take() == 0
    known = analysis.analysed
    assert set(np.flatnonzero(analysis.faces.reason == "unanalysed")) == set(np.flatnonzero(~known))
    assert analysis.faces.usable[known].mean() > 0.9 and not analysis.faces.present[~known].any()
    assert np.isnan(analysis.lower_face_luma[~known]).all()
    assert (analysis.own_speech.voice_activity[~known] == 0).all()
    assert analysis.calibration.frames_used <= known.sum()


@pytest.mark.slow
def test_resident_extension_covers_the_clip_once(shared_media: Path, tmp_path, monkeypatch):
    count = _Count(monkeypatch)
    video = shared_media / "speaker_b.mp4"
    analyses = ResidentAnalyses(2, tmp_path / "cache", budget=SMALL)
    first = analyses.analyse(video, None, span=(30, 40))
    analysed = count.take()
    assert analysed == first.analysed.sum() == 2 * BLOCK and analyses.pending() == [(video, None)]
    remaining = analyses.extend(video, None, max_blocks=2)
    assert remaining == 6 - 2 - 2 and count.take() == 2 * BLOCK
    while analyses.extend(video, None, max_blocks=2):
        pass
    assert count.take() == 122 - 4 * BLOCK and analyses.pending() == []  # every frame once in all
    whole = analyses.analyse(video, None, span=(30, 40))
    assert whole.analysed.all() and count.take() == 0
    # The resident analysis now equals one made of the whole file at once (same blocks, same results).
    direct = DiskAnalyses(tmp_path / "cache", budget=WHOLE_FILE).analyse(video, None)
    assert count.take() == 0
    np.testing.assert_array_equal(whole.faces.landmarks, direct.faces.landmarks)


@pytest.mark.slow
def test_an_idle_engine_extends_rendered_clips_and_yields_to_jobs(shared_media: Path, tmp_path, monkeypatch):
    """After a render the engine analyses the rest of the clip at the lowest priority; a job that
    arrives meanwhile pauses it (the batch in hand is cancelled) and it resumes when the queue is
    empty. Every frame is analysed once in all. Ordered by events, not by the clock."""
    import os

    from dubline.apps.server.extend import IdleExtender
    from dubline.apps.server.jobs import JobQueue

    video = shared_media / "speaker_b.mp4"
    log: list[str] = []  # "idle" / "job" per analysed frame, "job2 start" / "job2 end"
    lock = threading.Lock()
    hold, entered, gate = threading.Event(), threading.Event(), threading.Event()

    def recorded(function):
        def call(*args, **kwargs):
            idle = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 19
            with lock:
                log.append("idle" if idle else "job")
            if idle and hold.is_set() and not entered.is_set():
                entered.set()
                gate.wait(60)
            return function(*args, **kwargs)

        return call

    for name in ("detect_frame", "track_frame"):
        monkeypatch.setattr(stage, name, recorded(getattr(stage, name)))
    jobs = JobQueue(max_workers=1)
    analyses = ResidentAnalyses(2, tmp_path / "cache", budget=SMALL)
    idle = IdleExtender(analyses, jobs, batch_blocks=1)
    try:
        jobs.submit("render", lambda progress, cancel: analyses.analyse(video, None, progress, cancel, span=(30, 40))).wait()
        assert log == ["job"] * 2 * BLOCK
        hold.set()
        idle.start()
        assert entered.wait(60)  # the extension is analysing a frame (and holds there)
        started = threading.Event()

        def second(progress, cancel):
            with lock:
                log.append("job2 start")
            started.set()
            result = analyses.analyse(video, None, progress, cancel, span=(100, 110))
            with lock:
                log.append("job2 end")
            return result

        job = jobs.submit("render", second)
        assert started.wait(60)
        gate.set()
        job.wait()
        assert job.error is None
        assert idle.finished.wait(120)
    finally:
        idle.stop()
        jobs.shutdown(5)
    during = log[log.index("job2 start") + 1 : log.index("job2 end")]
    assert set(during) <= {"job"}, "the idle analysis went on while a job ran"
    after = log[log.index("job2 end") + 1 :]
    assert "idle" in after and "job" not in after
    assert log.count("idle") + log.count("job") == 122  # each frame once: cancelled work was kept
    assert analyses.pending() == [] and idle.batches >= 1
    whole = analyses.analyse(video, None, span=(30, 40))
    assert whole.analysed.all()
