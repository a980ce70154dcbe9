"""Reading audio: sample-accurate spans at any rate and layout, on the video's clock; WAV writing."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Mapping

import av
import numpy as np
import opentimelineio as otio

from dubline.core.errors import (
    InvalidRangeError,
    InvalidRateError,
    MediaDecodeError,
    NoStreamError,
)
from dubline.core.paths import publish
from dubline.stages.media.container import check_input, open_input
from dubline.stages.media.probe import layout_name
from dubline.stages.media.types import AudioClip
from dubline.stages.media.write import check_output


def read_audio(
    path: str | Path,
    span: otio.opentime.TimeRange | tuple[float, float] | None = None,
    rate: int = 16000,
    mono: bool = True,
) -> AudioClip:
    """Samples of ``span`` (a TimeRange, ``(t0, t1)`` seconds, or None for all of it) from the
    first audio stream, resampled to ``rate`` float32, exactly ``round((t1 - t0) * rate)``
    samples long: zeros pad any part of the span the file does not cover."""
    if not isinstance(rate, int) or rate <= 0:
        raise InvalidRateError(f"sample rate {rate!r} must be a positive integer")
    path = check_input(path)
    with open_input(path) as container:
        if not container.streams.audio:
            raise NoStreamError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        origin = _clock_origin(container, stream)
        t0, t1 = _audio_bounds(span, stream, container, path)
        total = math.floor((t1 - t0) * rate + Fraction(1, 2))
        channels = stream.codec_context.channels
        layout = stream.codec_context.layout.name if channels > 2 else layout_name(channels)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        start_seconds = origin + t0
        if t0 > 0:
            # A little earlier than needed: seeking audio lands on packet boundaries.
            container.seek(math.floor((start_seconds - Fraction(1, 10)) / stream.time_base), stream=stream)
        chunks: list[np.ndarray] = []
        first_time: Fraction | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                frame_time = Fraction(frame.pts) * stream.time_base
                if frame_time > origin + t1:
                    break
                if first_time is None:
                    first_time = frame_time
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except av.error.FFmpegError as error:
            raise MediaDecodeError(f"{path}: audio decoding failed ({error})") from error
    decoded = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    # Place the decoded run on the span's sample grid: pad or cut its head, then its tail.
    offset = 0 if first_time is None else math.floor((first_time - start_seconds) * rate + Fraction(1, 2))
    if offset > 0:
        decoded = np.concatenate([np.zeros((channels, offset), np.float32), decoded], axis=1)
    else:
        decoded = decoded[:, -offset:]
    samples = np.zeros((channels, total), np.float32)
    usable = min(total, decoded.shape[1])
    samples[:, :usable] = decoded[:, :usable]
    # Mono is the plain mean of the channels: swresample's downmix adds them at -3 dB each,
    # which changes the level and can clip.
    return AudioClip(samples.mean(axis=0, dtype=np.float32) if mono else samples, rate)



def _clock_origin(container, audio_stream) -> Fraction:
    """Seconds of the file's clock that count as 0: the video start (else the audio start)."""
    reference = container.streams.video[0] if container.streams.video else audio_stream
    return Fraction(reference.start_time or 0) * reference.time_base


def _audio_bounds(span, stream, container, path: Path) -> tuple[Fraction, Fraction]:
    if span is None:
        t0 = Fraction(0)
        if stream.duration:
            t1 = stream.duration * Fraction(stream.time_base)
        else:
            t1 = Fraction(container.duration or 0, av.time_base)
    elif isinstance(span, otio.opentime.TimeRange):
        t0 = Fraction(span.start_time.value) / Fraction(span.start_time.rate)
        t1 = t0 + Fraction(span.duration.value) / Fraction(span.duration.rate)
    else:
        try:
            t0, t1 = (Fraction(float(value)) for value in span)
        except (TypeError, ValueError):
            raise InvalidRangeError(f"audio span {span!r} is not (start_seconds, end_seconds)") from None
    if t0 < 0 or t1 <= t0:
        raise InvalidRangeError(f"audio span {float(t0):.3f}-{float(t1):.3f} s of {path} is empty, reversed or negative")
    return t0, t1



def write_audio(clip: AudioClip, path: str | Path, overwrite: bool = False,
                inputs: Mapping[str, str | os.PathLike | None] | None = None) -> Path:
    """A 16-bit PCM WAV of ``clip`` (mono or (channels, n)), written atomically like patches."""
    path = check_output(path, overwrite, inputs)
    samples = np.atleast_2d(np.asarray(clip.samples, dtype=np.float32))
    pcm = np.ascontiguousarray((np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16))
    layout = layout_name(pcm.shape[0])
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(temporary), "w", format="wav") as container:
            stream = container.add_stream("pcm_s16le", rate=clip.sample_rate, layout=layout)
            # s16 is interleaved: (1, n * channels)
            frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts = clip.sample_rate, 0
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        publish(temporary, path, overwrite, inputs)
    finally:
        temporary.unlink(missing_ok=True)
    return path

