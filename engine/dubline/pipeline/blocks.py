"""Analysing a source block by block, and reading back what was analysed.

A block is ``detect_every`` consecutive frames starting at a face-detection anchor
(``pipeline.budget``). Analysing one stores, per frame, the face detections (``faces.detect``
cache), a small grey thumbnail (lighting costs) and the clip's own speech (analysed per block with
``SPEECH_MARGIN_S`` of context on each side), and then marks the block done. Every result of a block
depends only on the file and the block, so nothing is analysed twice and the order in which spans
asked for blocks does not change what is stored.

Work is spread over ``workers`` threads by runs of consecutive blocks (at most ``CHUNK_BLOCKS``
each); each run decodes on its own background thread. dlib's HOG search, its landmark fit, the
decoder and OpenCV release the GIL, so two workers use two cores.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from dubline.core import timing
from dubline.core.cache import FrameCache
from dubline.core.errors import MediaError
from dubline.core.prefetch import prefetched
from dubline.core.progress import CancelToken, ProgressSink
from dubline.pipeline.budget import AnalysisPlan, block_runs
from dubline.stages import media
from dubline.stages.faces import (
    FaceDetection,
    FaceTrackParams,
    detect_frames,
    detection_cache,
)
from dubline.stages.speech import SpeechParams, SpeechTrack, analyse_speech
from dubline.stages.speech.phones import SAMPLE_RATE, PhoneSegment

#: Lower-face brightness thumbnails: small enough to keep for every frame of a long source.
THUMB_WIDTH = 64
#: Bump when a thumbnail's pixels change for the same width. 3: of the analysis view (upright,
#: square pixels, 8-bit) on the conform grid, from every few pixels, then grey.
THUMB_VERSION = 3
#: Context analysed on each side of a block's own audio (speech detection and phones need it).
SPEECH_MARGIN_S = Fraction(1, 4)
#: Bump when a block's stored speech changes for the same parameters. 2: damaged audio noted.
OWN_SPEECH_VERSION = 2
#: Most blocks one worker analyses in one go (a long run is split so workers share it; a short
#: plan is split finer, about two chunks per worker, so no worker idles while another has a long
#: run; each chunk costs one seek).
CHUNK_BLOCKS = 8
STAGE = "analyse"


@dataclass
class BlockSpeech:
    """The clip's own speech over one block's frames (times in seconds of the file)."""

    phones: list[PhoneSegment]
    speech_segments: list[tuple[float, float]]
    arrays: dict[str, np.ndarray]  # SpeechTrack's per-frame arrays over the block's frames
    #: what was wrong with the file's audio around this block ("" when nothing)
    warning: str = ""
    #: False when the audio could not be read at all (the arrays are silence)
    audible: bool = True


_PER_FRAME = ("phone", "viseme", "voice_activity", "speech_probability", "openness", "width", "rounding", "closure")


@dataclass
class SourceCaches:
    """The per-frame and per-block caches of one source file."""

    detections: FrameCache
    thumbs: FrameCache
    speech: FrameCache  # by block number
    done: FrameCache  # by block number: every result of the block is stored

    @classmethod
    def of(cls, fingerprint: str, face_params: FaceTrackParams, rate: Fraction, root: Path | None,
           speech_params: SpeechParams = SpeechParams()) -> SourceCaches:
        block = face_params.detect_every
        thumb_key = {"width": THUMB_WIDTH, "version": THUMB_VERSION}
        speech_key = {"block": block, "rate": str(rate), "margin": str(SPEECH_MARGIN_S),
                      "version": OWN_SPEECH_VERSION, "params": asdict(speech_params)}
        done_key = {"faces": face_params.detection_key(), "thumbs": thumb_key, "speech": speech_key}
        return cls(
            detections=detection_cache(fingerprint, face_params, root),
            thumbs=FrameCache("thumbs", fingerprint, thumb_key, root),
            speech=FrameCache("speech.own", fingerprint, speech_key, root),
            done=FrameCache("analysis.blocks", fingerprint, done_key, root),
        )


def done_blocks(caches: SourceCaches, block_count: int) -> set[int]:
    """Blocks whose every result is stored."""
    return set(caches.done.get_many(range(block_count)))


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A grey ``THUMB_WIDTH``-wide copy. Shrunk from every few pixels (a 1080p frame averaged whole
    costs 5 ms; what the thumbnail is for, a region's mean brightness, does not need every pixel),
    then made grey."""
    height, width = image.shape[:2]
    step = max(1, width // (4 * THUMB_WIDTH))
    size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
    sample = np.ascontiguousarray(image[::step, ::step])
    return cv2.cvtColor(cv2.resize(sample, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


class _Tally:
    """Progress and timings gathered from the workers."""

    def __init__(self, total: int, progress: ProgressSink) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def advance(self, frames: int) -> None:
        with self._lock:
            self.done += frames
            self.progress(STAGE, self.done, self.total)

    def add(self, name: str, value: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + value


def _timed_frames(frames: Iterable[media.VideoFrame], tally: _Tally, thumbs: dict[int, np.ndarray]) -> Iterator[media.VideoFrame]:
    """Decode (timed, on the prefetch thread) and keep a thumbnail of each frame."""
    iterator = iter(frames)
    while True:
        started = time.perf_counter()
        frame = next(iterator, None)
        if frame is None:
            return
        thumbs[frame.index] = thumbnail(frame.image)
        tally.add("decode", time.perf_counter() - started)
        yield frame


def _speech_piece(track: SpeechTrack, rows: slice, offset_s: float, start_s: float, end_s: float) -> BlockSpeech:
    """The part of a speech track (analysed from ``offset_s`` in the file) over one block."""
    phones = [
        PhoneSegment(p.phone, p.start_s + offset_s, p.end_s + offset_s)
        for p in track.phones
        if start_s <= (p.start_s + p.end_s) / 2 + offset_s < end_s
    ]
    segments = [
        (max(s + offset_s, start_s), min(e + offset_s, end_s))
        for s, e in track.speech_segments
        if e + offset_s > start_s and s + offset_s < end_s
    ]
    return BlockSpeech(phones, segments, {name: np.asarray(getattr(track, name))[rows].copy() for name in _PER_FRAME})


def _silence(frames: int, warning: str) -> BlockSpeech:
    arrays = {name: np.full(frames, np.nan, np.float32) for name in _PER_FRAME}
    arrays.update(phone=np.full(frames, ""), viseme=np.full(frames, ""), voice_activity=np.zeros(frames, np.float32),
                  speech_probability=np.zeros(frames, np.float32))
    return BlockSpeech([], [], arrays, warning, audible=False)


def _own_speech(path: Path, info: media.MediaInfo, plan: AnalysisPlan, blocks: list[int]) -> dict[int, BlockSpeech]:
    """The own speech of consecutive ``blocks``, each analysed with its margin of context.

    The render needs the source's audio for nothing else, so damaged audio degrades this analysis
    (silence where it is damaged, or none at all) with a warning instead of failing the render."""
    rate = info.video.rate
    margin = math.ceil(SPEECH_MARGIN_S * rate)
    count = plan.frame_count
    first = max(0, plan.block_range(blocks[0])[0] - margin)
    end = min(count, plan.block_range(blocks[-1])[1] + margin)
    damage: list[str] = []
    try:
        audio = media.read_audio(path, timing.frames_to_range(first, end, rate), rate=SAMPLE_RATE, mono=True,
                                 on_damage=damage.append)
    except MediaError as error:
        warning = (f"the audio of {path.name} could not be read ({error}); the speaker is found and calibrated"
                   " without it")
        return {block: _silence(len(range(*plan.block_range(block))), warning) for block in blocks}

    def sample(frame: int) -> int:
        return round((frame - first) / rate * SAMPLE_RATE)

    pieces = {}
    for block in blocks:
        block_first, block_end = plan.block_range(block)
        pad_first, pad_end = max(0, block_first - margin), min(count, block_end + margin)
        clip = media.AudioClip(audio.samples[sample(pad_first) : sample(pad_end)], SAMPLE_RATE)
        track = analyse_speech(clip, rate=rate, frame_count=pad_end - pad_first, cache=False)
        pieces[block] = _speech_piece(
            track, slice(block_first - pad_first, block_end - pad_first), float(pad_first / rate),
            float(block_first / rate), float(block_end / rate),
        )
        pieces[block].warning = "; ".join(damage)
    return pieces


def _analyse_chunk(path: Path, info: media.MediaInfo, plan: AnalysisPlan, blocks: list[int], caches: SourceCaches,
                   params: FaceTrackParams, tally: _Tally, cancel: CancelToken | None) -> None:
    first, end = plan.block_range(blocks[0])[0], plan.block_range(blocks[-1])[1]
    thumbs: dict[int, np.ndarray] = {}
    span = timing.frames_to_range(first, end, info.video.rate)
    view = media.FrameView.of(info.video)  # faces and thumbnails are of the analysis view
    frames = prefetched(_timed_frames(view.analysis_frames(media.read_span(path, span, exact_colour=False)), tally,
                                      thumbs))
    started = time.perf_counter()
    face_timings: dict[str, float] = {}
    reported = 0

    def report(stage: str, done: int, total: int) -> None:
        nonlocal reported
        tally.advance(done - reported)
        reported = done

    try:
        detect_frames(frames, frame_count=end - first, params=params, cache=caches.detections, progress=report,
                      cancel=cancel, timings=face_timings)
    finally:  # a cancelled chunk keeps what it computed
        frames.close()
        caches.thumbs.put_many(thumbs)
    tally.add("faces", time.perf_counter() - started)
    for name, value in face_timings.items():
        tally.add(name, value)
    if info.audio:
        started = time.perf_counter()
        caches.speech.put_many(_own_speech(path, info, plan, blocks))
        tally.add("speech", time.perf_counter() - started)
    caches.done.put_many({block: True for block in blocks})


def analyse_blocks(path: Path, info: media.MediaInfo, plan: AnalysisPlan, blocks: Iterable[int], caches: SourceCaches,
                   params: FaceTrackParams, workers: int, progress: ProgressSink,
                   cancel: CancelToken | None) -> dict[str, float]:
    """Analyse ``blocks`` (and store everything); returns seconds spent per part, summed over the
    workers (``decode`` includes the colour conversion and thumbnails, on the prefetch threads;
    ``faces`` includes waiting for frames; ``faces.detected``/``faces.tracked`` are the face
    stage's own time, with ``.frames`` counts)."""
    blocks = list(blocks)
    size = max(1, min(CHUNK_BLOCKS, -(-len(blocks) // (2 * max(1, workers)))))
    chunks: list[list[int]] = []
    for first, end in block_runs(blocks):
        for start in range(first, end, size):
            chunks.append(list(range(start, min(end, start + size))))
    if not chunks:
        return {}
    total = sum(plan.block_range(c[-1])[1] - plan.block_range(c[0])[0] for c in chunks)
    tally = _Tally(total, progress)
    progress(STAGE, 0, total)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chunks))), thread_name_prefix="dubline-analyse") as pool:
        futures = [pool.submit(_analyse_chunk, path, info, plan, chunk, caches, params, tally, cancel) for chunk in chunks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return tally.seconds


@dataclass
class StoredResults:
    """What the caches hold for a set of analysed frames."""

    detections: dict[int, list[FaceDetection]]
    thumbs: dict[int, np.ndarray]
    speech: dict[int, BlockSpeech]  # by block


def load_results(caches: SourceCaches, plan: AnalysisPlan, blocks: Iterable[int], with_speech: bool) -> StoredResults:
    blocks = sorted(blocks)
    frames = [frame for block in blocks for frame in range(*plan.block_range(block))]
    return StoredResults(
        caches.detections.get_many(frames),
        caches.thumbs.get_many(frames),
        caches.speech.get_many(blocks) if with_speech else {},
    )


def whole_file_speech(pieces: dict[int, BlockSpeech], plan: AnalysisPlan, rate: Fraction) -> SpeechTrack:
    """One SpeechTrack over every frame of the file from the analysed blocks' pieces. Frames of
    blocks not analysed have no voice (activity 0) and NaN mouth targets: only
    ``ClipAnalysis.analysed`` frames mean anything."""
    count = plan.frame_count
    arrays: dict[str, np.ndarray] = {
        "phone": np.full(count, "", dtype=object),
        "viseme": np.full(count, "", dtype=object),
        "voice_activity": np.zeros(count, np.float32),
        "speech_probability": np.zeros(count, np.float32),
    }
    for name in ("openness", "width", "rounding", "closure"):
        arrays[name] = np.full(count, np.nan, np.float32)
    phones: list[PhoneSegment] = []
    segments: list[tuple[float, float]] = []
    phone_index = np.full(count, -1, np.int32)
    for block in sorted(pieces):
        piece = pieces[block]
        first, end = plan.block_range(block)
        for name in _PER_FRAME:
            arrays[name][first:end] = piece.arrays[name]
        centres = (np.arange(first, end) + 0.5) / float(rate)
        for offset, phone in enumerate(piece.phones):
            inside = (centres >= phone.start_s) & (centres < phone.end_s)
            phone_index[first:end][inside] = len(phones) + offset
        phones.extend(piece.phones)
        segments.extend(piece.speech_segments)
    arrays["phone"], arrays["viseme"] = arrays["phone"].astype(str), arrays["viseme"].astype(str)
    return SpeechTrack(
        rate=rate, frame_count=count, audio_duration_s=float(count / rate), phones=phones, speech_segments=segments,
        phone_index=phone_index, **arrays,
    )
