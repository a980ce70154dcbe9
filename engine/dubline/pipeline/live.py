"""``render_live``: a span rendered for the one-frame RPC, the frame asked for first.

An OpenFX host asks for the frame under its playhead, and the editor waits for that frame, not for
the span. So the engine's renders for the one-frame RPC prepare the span like any render
(``render.prepare_span``), then composite the asked frame first and the rest behind it: on to the
span's end (the frames a host plays next), then from the span's start up to the asked frame. Every
frame lands in ``LiveFrames`` (memory) the moment it is composited, so the engine can answer it while
the rest renders; the patch and matte files are written from memory at the end.

The composite's temporal deflicker (stages.composite) carries each frame's state to the next, so the
frames after the asked one come out as in a sequential render; it starts afresh at the asked frame,
as it does at a span's first frame and after every passed-through frame, so the few frames after it
can differ from ``render``'s by that low-frequency correction of a level or two inside the matte.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice
from pathlib import Path

import numpy as np

from dubline.core import timing
from dubline.core.prefetch import prefetched
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.pipeline.analysis import AnalysisProvider
from dubline.pipeline.render import (
    PreparedSpan,
    RenderResult,
    Tally,
    passthrough_warning,
    prepare_span,
    probe_span,
    span_start_timecode,
)
from dubline.pipeline.request import RenderRequest
from dubline.stages import media
from dubline.stages.composite import CompositeParams, TemporalDeflicker, paste


@dataclass
class LiveFrames:
    """A span's patch and matte frames as they are rendered; ``ready[i]`` once frame ``first + i`` is in."""

    first: int
    rate: Fraction
    patch: np.ndarray  # (T, H, W, 3) as stored: uint8, or uint16 for a deeper source
    matte: np.ndarray  # (T, H, W) uint8, 255 = patch
    ready: np.ndarray = field(init=False)  # (T,) bool
    order: list[int] = field(default_factory=list)  # frame indices in the order they became ready
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def __post_init__(self) -> None:
        self.ready = np.zeros(len(self.patch), dtype=bool)

    def put(self, index: int, image: np.ndarray, matte: np.ndarray) -> None:
        local = index - self.first
        self.patch[local] = image
        self.matte[local] = matte
        with self._changed:
            self.ready[local] = True  # after the pixels: a reader that sees it ready sees them
            self.order.append(index)
            self._changed.notify_all()

    def wait_for(self, index: int, timeout: float | None = None) -> bool:
        """Block until frame ``index`` is in (tests, benchmarks); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: bool(self.ready[index - self.first]), timeout)


def shown_first_order(first: int, end: int, shown: int) -> list[tuple[int, int]]:
    """The span [first, end) as ranges in render order: ``shown`` alone, the rest to the end, then
    the start up to ``shown``."""
    shown = min(max(shown, first), end - 1)
    ranges = [(shown, shown + 1), (shown + 1, end), (first, shown)]
    return [(a, b) for a, b in ranges if b > a]


def _frames_in_order(path: Path, rate: Fraction, ranges: list[tuple[int, int]],
                     ahead: Iterator[media.VideoFrame]) -> Iterator[tuple[bool, Iterable[media.VideoFrame]]]:
    """(follows the previous range, its frames) per range. The first two ranges come from ``ahead``,
    one read already decoding: the asked frame alone (so the backend hands it over without waiting
    for a chunk of frames), then what follows it."""
    yield False, islice(ahead, ranges[0][1] - ranges[0][0])
    rest = ranges[1:]
    if rest and rest[0][0] == ranges[0][1]:
        yield True, ahead
        rest = rest[1:]
    for first, end in rest:
        yield False, media.read_span(path, timing.frames_to_range(first, end, rate))


def _matte_grey(matte: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(matte, 0.0, 1.0) * 255).astype(np.uint8)


def render_live(
    request: RenderRequest,
    shown: int,
    on_start: Callable[[LiveFrames], None],
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    cache_root: Path | None = None,
    analyses: AnalysisProvider | None = None,
) -> RenderResult:
    """Render ``request``'s span frame ``shown`` first (see the module docstring). ``on_start``
    gets the ``LiveFrames`` before the first frame is rendered; the patch (and matte, when the
    request names one) are written at the end, as ``render`` writes them."""
    started = time.perf_counter()
    span = probe_span(request)
    order = shown_first_order(span.first, span.end, shown)
    head_end = order[1][1] if len(order) > 1 and order[1][0] == order[0][1] else order[0][1]
    # Decode the asked frame while the dub is analysed and the backend plans.
    ahead = prefetched(media.read_span(request.video, timing.frames_to_range(order[0][0], head_end, span.video.rate)),
                       depth=2, name="dubline-live-read").start()
    try:
        prepared = prepare_span(request, progress, cancel, cache_root, analyses)
        return _render_in_order(request, prepared, order, ahead, on_start, progress, cancel, started)
    finally:
        ahead.close()


def _render_in_order(request: RenderRequest, prepared: PreparedSpan, order: list[tuple[int, int]],
                     ahead: Iterator[media.VideoFrame], on_start: Callable[[LiveFrames], None],
                     progress: ProgressSink, cancel: CancelToken | None, started: float) -> RenderResult:
    span, job, clock = prepared.span, prepared.job, prepared.clock
    video = span.video
    depth = np.uint8 if video.bit_depth <= 8 else np.uint16
    live = LiveFrames(span.first, video.rate, np.zeros((span.frame_count, video.height, video.width, 3), depth),
                      np.zeros((span.frame_count, video.height, video.width), np.uint8))
    on_start(live)
    tally = Tally()
    params = CompositeParams()
    deflicker = TemporalDeflicker()
    with clock.stage("render"):
        for follows, frames in _frames_in_order(request.video, video.rate, order, ahead):
            if not follows:
                deflicker = TemporalDeflicker()  # carried along consecutive frames, fresh after a jump
            for frame, mouth in prepared.backend.patches(job, prepared.plan, frames):
                if cancel is not None:
                    cancel.check()
                result = paste(frame.image, mouth.image, mouth.matte_landmarks, params, deflicker)
                if mouth.image is None or result.passthrough_reason:
                    tally.add(mouth.reason or result.passthrough_reason or "passthrough")
                else:
                    tally.add(None)
                live.put(frame.index, result.frame, _matte_grey(result.matte))
                if len(live.order) == 1:  # seconds from the call to the asked frame being in
                    clock.seconds["first_frame"] = time.perf_counter() - started
                progress("render", len(live.order), span.frame_count)
    timecode = span_start_timecode(span.info, span.first)
    with clock.stage("encode"):
        media.write_patch(iter(live.patch), request.out, request.codec, video.rate, start_timecode=timecode,
                          colour_tags=video.colour, overwrite=request.overwrite, inputs=request.inputs(),
                          layout=video.layout)
        if request.matte is not None:
            greys = (np.dstack([m, m, m]) for m in live.matte)
            media.write_patch(greys, request.matte, request.matte_codec, video.rate, start_timecode=timecode,
                              colour_tags=video.colour, overwrite=request.overwrite, inputs=request.inputs(),
                              layout=video.layout)
    warnings = prepared.warnings
    if tally.passthrough:
        warnings.append(passthrough_warning(tally.passthrough))
    return RenderResult(
        out=request.out, matte=request.matte, otio_path=None, frames_written=span.frame_count,
        span=(span.first, span.end), start_timecode=timecode, backend=request.backend,
        stage_seconds=clock.seconds, warnings=warnings, frames_patched=tally.patched, passthrough=tally.passthrough,
        analysis=prepared.analysis,
    )
