"""Incremental re-render (``pipeline.incremental``), fast: a synthetic clip, the fake analysis and
the fake backend with ``tint`` (its patch colour follows the dub's target aperture, and its
``frame_keys`` say so), the real speech, composite and media stages. A span rendered again with a
locally edited dub draws only the rows whose keys changed (plus the deflicker's tail) and copies
every other row from the previous patch, coded picture for coded picture."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from dubline.core import timing
from dubline.pipeline import RenderRequest, render
from dubline.pipeline import incremental
from dubline.stages import media
from dubline.stages.backends.retrieval import incremental as retrieval_incremental
from dubline.stages.backends.retrieval.select import KEEP_OWN, UNPINNED, SelectionTargets
from fakes import FakeAnalyses, register_fake_backend, write_clip

RATE = 25
FRAMES = 50


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)


def _dub(path: Path, silence: tuple[float, float] | None = None) -> Path:
    samples = _speech(FRAMES / RATE)
    if silence is not None:
        samples[int(silence[0] * 16000) : int(silence[1] * 16000)] = 0.0
    return media.write_audio(media.AudioClip(samples, 16000), path)


def _request(clip: Path, dub: Path, out: Path, **changes) -> RenderRequest:
    fields = dict(video=clip, audio=dub, span=f"0-{FRAMES}", out=out, codec="ffv1", matte=out.with_name(out.stem + ".matte.mkv"),
                  backend="fake", backend_options={"tint": "true"}, overwrite=True)
    fields.update(changes)
    return RenderRequest(**fields)


def _frames(path: Path) -> list[np.ndarray]:
    info = media.probe(path)
    return [f.image for f in media.read_span(path, timing.frames_to_range(0, info.video.frame_count, info.video.rate))]


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(video=0) if packet.size]


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mkv", frames=FRAMES)


def _first_render(clip: Path, tmp_path: Path, **changes):
    dub = _dub(tmp_path / "dub_a.wav")
    first = render(_request(clip, dub, tmp_path / "patch.mkv", **changes), analyses=FakeAnalyses(),
                   cache_root=tmp_path / "cache")
    return first, _frames(first.out), _packets(first.out), _frames(first.matte) if first.matte else None


def test_an_edit_of_the_dub_redraws_only_its_frames_and_copies_the_rest(clip: Path, tmp_path: Path) -> None:
    first, before, before_packets, before_matte = _first_render(clip, tmp_path)
    assert (first.frames_reused, first.frames_rendered) == (0, FRAMES)

    edited = _dub(tmp_path / "dub_b.wav", silence=(0.8, 1.2))
    request = _request(clip, edited, tmp_path / "patch.mkv")  # the same output: read, then replaced
    again = render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert 0 < again.frames_rendered < FRAMES and again.frames_reused == FRAMES - again.frames_rendered
    assert again.frames_written == FRAMES and again.frames_patched == first.frames_patched
    after, after_packets, after_matte = _frames(again.out), _packets(again.out), _frames(again.matte)

    # A fresh render of the edited dub (no previous render) says which rows must differ.
    fresh = render(_request(clip, edited, tmp_path / "fresh.mkv"), analyses=FakeAnalyses(),
                   cache_root=tmp_path / "other-cache")
    fresh_frames = _frames(fresh.out)
    differs = [row for row in range(FRAMES) if not np.array_equal(fresh_frames[row], before[row])]
    assert differs, "the edit should change some frames"
    copied = [row for row in range(FRAMES) if after_packets[row] == before_packets[row]]
    assert len(copied) >= again.frames_reused
    for row in range(FRAMES):
        if row in differs:
            # Drawn again as a full render draws it, but for the deflicker's memory of the frames
            # before the warm-up (WARMUP_FRAMES): at most one code value on a few pixels.
            difference = np.abs(after[row].astype(int) - fresh_frames[row].astype(int))
            assert difference.max() <= 1 and np.count_nonzero(difference) < 0.01 * difference.size
        if row in copied:
            np.testing.assert_array_equal(after[row], before[row])
            np.testing.assert_array_equal(after_matte[row], before_matte[row])
    assert set(differs).isdisjoint(copied)
    rendered_rows = set(range(FRAMES)) - set(copied)
    assert rendered_rows <= set(range(min(differs), min(FRAMES, max(differs) + incremental.DEFLICKER_TAIL + 1)))
    assert media.probe(again.out).video.start_timecode == media.probe(first.out).video.start_timecode


def test_the_same_dub_again_copies_every_frame(clip: Path, tmp_path: Path) -> None:
    first, before, before_packets, _ = _first_render(clip, tmp_path)
    again = render(_request(clip, tmp_path / "dub_a.wav", tmp_path / "copy.mkv"), analyses=FakeAnalyses(),
                   cache_root=tmp_path / "cache")
    assert (again.frames_reused, again.frames_rendered, again.frames_warmup) == (FRAMES, 0, 0)
    assert _packets(again.out) == before_packets
    assert again.passthrough == first.passthrough and again.run_starts == first.run_starts


def test_passthrough_rows_keep_their_reasons_when_copied(clip: Path, tmp_path: Path) -> None:
    options = {"tint": "true", "passthrough": "3:occluded,40:occluded"}
    first, *_ = _first_render(clip, tmp_path, backend_options=options)
    again = render(_request(clip, _dub(tmp_path / "dub_b.wav", silence=(0.8, 1.2)), tmp_path / "patch.mkv",
                            backend_options=options), analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert again.frames_reused > 0
    assert again.passthrough == first.passthrough == {"occluded": 2}


def test_a_changed_previous_patch_is_never_copied_from(clip: Path, tmp_path: Path) -> None:
    first, *_ = _first_render(clip, tmp_path)
    os.utime(first.out, ns=(1, 1))  # not the file dubline wrote (any more)
    again = render(_request(clip, tmp_path / "dub_a.wav", tmp_path / "patch.mkv"), analyses=FakeAnalyses(),
                   cache_root=tmp_path / "cache")
    assert again.frames_reused == 0 and again.frames_rendered == FRAMES
    assert any("changed or removed" in warning for warning in again.warnings)


def test_h264_patches_are_drawn_in_full(clip: Path, tmp_path: Path) -> None:
    dub = _dub(tmp_path / "dub_a.wav")
    request = _request(clip, dub, tmp_path / "patch.mov", codec="h264", matte=None)
    render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    again = render(request, analyses=FakeAnalyses(), cache_root=tmp_path / "cache")
    assert again.frames_reused == 0 and any("h264 frames are drawn in full" in w for w in again.warnings)


def test_reuse_plan_draws_the_tail_and_warms_up_before() -> None:
    keys = [str(row) for row in range(40)]
    record = incremental.RenderRecord(keys, [None] * 40, [], None, "ffv1", "/nonexistent", (0, 0, 0), (8, 8, 3), "uint8")
    new = list(keys)
    new[20] = "changed"
    plan = incremental.plan_reuse(record, new, "ffv1", None, None)
    assert plan.note  # the previous patch does not exist: nothing copied
    record.out_stat = incremental.file_stat(__file__)
    record.out = __file__
    plan = incremental.plan_reuse(record, new, "ffv1", None, None)
    written = np.flatnonzero(plan.write)
    assert written.tolist() == list(range(20, 21 + incremental.DEFLICKER_TAIL))
    warm = np.flatnonzero(plan.compute & ~plan.write)
    assert warm.tolist() == list(range(20 - incremental.WARMUP_FRAMES, 20))
    assert plan.reused == 40 - len(written)


def _targets(aperture: np.ndarray) -> SelectionTargets:
    count = len(aperture)
    return SelectionTargets(aperture=aperture, width=np.full(count, 0.5), closure=np.zeros(count),
                            voiced=np.ones(count), pose=np.zeros((count, 3)), luma=np.full(count, 100.0),
                            own_aperture=np.full(count, 0.1))


class _Clip:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.info = media.MediaInfo.__new__(media.MediaInfo)


class _Job:
    def __init__(self, previous, library, samples: np.ndarray) -> None:
        self.previous, self.library, self.span = previous, library, (0, 60)
        self.dub_audio = media.AudioClip(samples, 16000)
        self.source = type("Source", (), {"info": type("Info", (), {"video": type("Video", (), {"rate": RATE})})})


def test_retrieval_keeps_its_choices_where_the_dub_did_not_change(tmp_path: Path) -> None:
    count = 60
    aperture = np.linspace(0.1, 0.3, count)
    rows_clip, rows_frame = np.zeros(100, np.int64), np.arange(100)
    library = [_Clip(tmp_path / "source.mov")]
    selection = np.r_[np.arange(10, 40), np.full(5, KEEP_OWN), np.arange(50, 75)]
    samples = _speech(count / RATE)
    pins = retrieval_incremental.pins(_Job(None, library, samples), _targets(aperture), selection, rows_clip,
                                      rows_frame, "s")

    edited_samples = samples.copy()
    per_frame = 16000 // RATE
    edited_samples[30 * per_frame : 35 * per_frame] = 0.0  # frames 30-34 of the dub
    edited = aperture + 0.05  # a recogniser may move targets anywhere: only the samples decide
    targets, pinned = retrieval_incremental.kept(_Job(pins, library, edited_samples), _targets(edited), rows_clip,
                                                 rows_frame, "s")
    context, margin = retrieval_incremental.AUDIO_CONTEXT, retrieval_incremental.SELECTION_MARGIN
    changed = list(range(30 - context, 35 + context))
    fresh = np.flatnonzero(pinned == UNPINNED)
    assert fresh.tolist() == list(range(changed[0] - margin, changed[-1] + margin + 1))
    kept_rows = np.setdiff1d(np.arange(count), fresh)
    np.testing.assert_array_equal(pinned[kept_rows], selection[kept_rows])
    unchanged = np.setdiff1d(np.arange(count), changed)
    np.testing.assert_array_equal(targets.aperture[unchanged], aperture[unchanged])  # the previous, exactly
    np.testing.assert_array_equal(targets.aperture[changed], edited[changed])

    _, none = retrieval_incremental.kept(_Job(pins, library, edited_samples), _targets(edited), rows_clip, rows_frame,
                                         "other settings")
    assert none is None


def test_retrieval_pins_of_a_span_shorter_than_the_margin(tmp_path: Path) -> None:
    count = 5
    library = [_Clip(tmp_path / "source.mov")]
    samples = _speech(count / RATE)
    job = _Job(None, library, samples)
    job.span = (0, count)
    pins = retrieval_incremental.pins(job, _targets(np.full(count, 0.2)), np.arange(count), np.zeros(10, np.int64),
                                      np.arange(10), "s")
    job.previous, job.dub_audio = pins, media.AudioClip(np.zeros_like(samples), 16000)
    _, pinned = retrieval_incremental.kept(job, _targets(np.full(count, 0.2)), np.zeros(10, np.int64), np.arange(10), "s")
    assert pinned is not None and len(pinned) == count and (pinned == UNPINNED).all()


@pytest.mark.slow
def test_retrieval_re_render_of_an_edited_dub_is_local(shared_media: Path, tmp_path: Path) -> None:
    """The real retrieval backend on speaker_a: 4 s span, the dub's 1.6-2.2 s replaced by other
    words; the second render copies rows away from the edit, bit for bit."""
    clip = media.read_audio(shared_media / "dub_en_16k.wav", None, 16000, True)
    samples = clip.samples[: 4 * 16000].astype(np.float32)
    dub = media.write_audio(media.AudioClip(samples, 16000), tmp_path / "dub.wav")
    edited_samples = samples.copy()
    edited_samples[int(1.6 * 16000) : int(2.2 * 16000)] = clip.samples[int(5.0 * 16000) : int(5.6 * 16000)]
    edited = media.write_audio(media.AudioClip(edited_samples, 16000), tmp_path / "edited.wav")

    def request(audio: Path) -> RenderRequest:
        return RenderRequest(video=shared_media / "speaker_a.mp4", audio=audio, span="0-100", out=tmp_path / "patch.mov",
                             codec="prores", overwrite=True)

    first = render(request(dub), cache_root=tmp_path / "cache")
    before = _packets(first.out)
    again = render(request(edited), cache_root=tmp_path / "cache")
    after = _packets(again.out)
    assert first.frames_reused == 0 and again.frames_reused > 40
    assert again.frames_rendered + again.frames_reused == 100
    copied = [row for row in range(100) if after[row] == before[row]]
    assert len(copied) >= again.frames_reused
    drawn = sorted(set(range(100)) - set(copied))
    # The edit is rows 40-54; selection may re-choose SELECTION_MARGIN rows around what changed in
    # the dub's targets (which a phone recogniser can move a little beyond the edit).
    assert drawn and 20 <= drawn[0] and drawn[-1] < 80
    assert again.frames_patched + sum(again.passthrough.values()) == 100
