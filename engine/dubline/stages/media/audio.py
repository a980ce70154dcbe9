"""Reading audio: sample-accurate spans at any rate and layout, on the video's clock; WAV writing."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping

import av
import numpy as np
import opentimelineio as otio

from dubline.core.errors import (
    InvalidRangeError,
    InvalidRateError,
    MediaDecodeError,
    NoStreamError,
)
from dubline.core.paths import publish, writing
from dubline.stages.media.container import check_input, open_input
from dubline.stages.media.probe import layout_name
from dubline.stages.media.types import AudioClip
from dubline.stages.media.write import check_output


def read_audio(
    path: str | Path,
    span: otio.opentime.TimeRange | tuple[float, float] | None = None,
    rate: int = 16000,
    mono: bool = True,
    on_damage: Callable[[str], None] | None = None,
) -> AudioClip:
    """Samples of ``span`` (a TimeRange, ``(t0, t1)`` seconds, or None for all of it) from the
    first audio stream, resampled to ``rate`` float32, exactly ``round((t1 - t0) * rate)``
    samples long: zeros pad any part of the span the file does not cover.

    A packet that does not decode raises ``MediaDecodeError``, unless ``on_damage`` is given:
    then the packet plays as silence of its own length (later audio keeps its place), reading
    goes on, and ``on_damage`` gets one message saying how much was lost (analysis of a source's
    own speech degrades instead of failing the render)."""
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
        produced = 0  # samples in chunks
        first_time: Fraction | None = None
        fed_until: Fraction | None = None  # file time where the audio fed to the resampler ends
        damage = _Damage(path, on_damage)
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as error:
                    damage.packet(error, packet, stream.time_base)
                    continue  # the next frame's pts shows the gap, filled with silence below
                past_end = False
                for frame in frames:
                    if frame.pts is None:
                        continue
                    frame_time = Fraction(frame.pts) * stream.time_base
                    if frame_time > origin + t1:
                        past_end = True
                        break
                    if first_time is None:
                        first_time = frame_time
                    elif damage.seen and fed_until is not None and frame_time - fed_until > Fraction(1, 1000):
                        # Silence where packets were lost, so later audio keeps its place. The
                        # resampler is flushed first (its delay line belongs to the audio before).
                        flushed = [out.to_ndarray() for out in resampler.resample(None)]
                        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                        chunks += flushed
                        produced += sum(chunk.shape[1] for chunk in flushed)
                        gap = math.floor((frame_time - first_time) * rate + Fraction(1, 2)) - produced
                        if gap > 0:
                            chunks.append(np.zeros((channels, gap), np.float32))
                            produced += gap
                    fed_until = frame_time + Fraction(frame.samples, frame.sample_rate)
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray())
                        produced += chunks[-1].shape[1]
                if past_end:
                    break
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except av.error.FFmpegError as error:  # the container itself, past this point: the rest is silence
            damage.rest(error)
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        damage.report()
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



class _Damage:
    """Undecodable audio met while reading: raised at once, or counted and reported once."""

    def __init__(self, path: Path, on_damage: Callable[[str], None] | None) -> None:
        self.path, self.on_damage = path, on_damage
        self.packets, self.seconds, self.first_error = 0, Fraction(0), ""
        self.rest_lost = False

    @property
    def seen(self) -> bool:
        return bool(self.packets)

    def packet(self, error: Exception, packet, time_base: Fraction) -> None:
        if self.on_damage is None:
            raise MediaDecodeError(f"{self.path}: audio decoding failed ({error})") from error
        self.packets += 1
        self.seconds += Fraction(packet.duration or 0) * time_base
        self.first_error = self.first_error or str(error)

    def rest(self, error: Exception) -> None:
        if self.on_damage is None:
            raise MediaDecodeError(f"{self.path}: audio decoding failed ({error})") from error
        self.rest_lost = True
        self.first_error = self.first_error or str(error)

    def report(self) -> None:
        if self.on_damage is None or not (self.packets or self.rest_lost):
            return
        lost = f"{self.packets} audio packet(s) ({float(self.seconds):.3f} s)" if self.packets else ""
        rest = "the audio after the damage" if self.rest_lost else ""
        self.on_damage(
            f"{self.path.name}: {' and '.join(filter(None, (lost, rest)))} could not be decoded and"
            f" count as silence ({self.first_error})"
        )


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
        with writing(path):
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

