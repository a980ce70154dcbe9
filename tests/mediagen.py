"""Synthesise test media in code (PyAV), so exactness is checked by content, not by trust.

Every video frame carries its index as a 16-bit bar code of big black/white blocks (a 4x4
grid covering the frame) that survives lossy codecs, chroma subsampling and RGB<->YUV
round trips; ``decode_index`` reads it back from pixels. Audio carries a known sample
pattern (``audio_pattern``) so sample alignment can be checked value by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

GRID_COLUMNS = 4
GRID_ROWS = 4
BITS = GRID_COLUMNS * GRID_ROWS
DARK = 40
BRIGHT = 215


def _block_slices(width: int, height: int, bit: int) -> tuple[slice, slice]:
    row, column = divmod(bit, GRID_COLUMNS)
    y0, y1 = row * height // GRID_ROWS, (row + 1) * height // GRID_ROWS
    x0, x1 = column * width // GRID_COLUMNS, (column + 1) * width // GRID_COLUMNS
    return slice(y0, y1), slice(x0, x1)


def pattern_luma(index: int, width: int, height: int) -> np.ndarray:
    """(H, W) uint8 plane whose blocks spell ``index`` in binary (bit 0 top-left)."""
    if not 0 <= index < 2**BITS:
        raise ValueError(f"index {index} does not fit in {BITS} bits")
    plane = np.full((height, width), DARK, np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            rows, columns = _block_slices(width, height, bit)
            plane[rows, columns] = BRIGHT
    return plane


def pattern_image(index: int, width: int, height: int, alpha: bool = False) -> np.ndarray:
    """RGB (or RGBA with a gradient alpha) uint8 frame carrying ``index``."""
    luma = pattern_luma(index, width, height)
    channels = [luma, luma, luma]
    if alpha:
        channels.append(np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1)))
    return np.stack(channels, axis=-1)


def decode_index(image: np.ndarray) -> int:
    """Read the index back from an RGB(A) or grey frame (centre of each block, thresholded)."""
    grey = image[..., :3].mean(axis=-1) if image.ndim == 3 else image.astype(np.float64)
    height, width = grey.shape
    index = 0
    for bit in range(BITS):
        rows, columns = _block_slices(width, height, bit)
        block = grey[rows, columns]
        h, w = block.shape
        centre = block[h // 4 : h - h // 4, w // 4 : w - w // 4]
        if centre.mean() > (DARK + BRIGHT) / 2:
            index |= 1 << bit
    return index


@dataclass(frozen=True)
class VideoSpec:
    """How to encode a synthetic clip. ``pts`` (in ``time_base`` units) makes it variable-rate."""

    codec: str = "libx264"
    rate: Fraction = Fraction(25)
    frames: int = 30
    width: int = 64
    height: int = 48
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)
    timecode: str | None = None
    pts: Sequence[int] | None = None
    time_base: Fraction | None = None
    first_index: int = 0
    colour: dict[str, int] = field(default_factory=dict)  # codec-context colour fields


# Encoder settings per codec name used by the tests: small GOPs so spans cross GOP
# boundaries, B-frames where the codec has them.
CODEC_DEFAULTS: dict[str, dict] = {
    "h264": dict(codec="libx264", pix_fmt="yuv420p", options={"g": "6", "bf": "2", "crf": "20", "preset": "veryfast"}),
    "hevc": dict(codec="libx265", pix_fmt="yuv420p", options={"x265-params": "keyint=6:min-keyint=6:bframes=2:log-level=error"}),
    "mpeg4": dict(codec="mpeg4", pix_fmt="yuv420p", options={"g": "6", "bf": "2", "qscale": "4"}),
    "prores": dict(codec="prores_ks", pix_fmt="yuv422p10le", options={"profile": "3"}),
    "dnxhr": dict(codec="dnxhd", pix_fmt="yuv422p", options={"profile": "dnxhr_hq"}, width=256, height=128),
    "mjpeg": dict(codec="mjpeg", pix_fmt="yuvj420p", options={"q:v": "4"}),
}


def spec_for(name: str, **overrides) -> VideoSpec:
    """A VideoSpec for one of ``CODEC_DEFAULTS`` with overrides (rate, frames, ...)."""
    settings = dict(CODEC_DEFAULTS[name])
    settings.update(overrides)
    return VideoSpec(**settings)


def make_video(path: Path, spec: VideoSpec, audio: "AudioSpec | None" = None) -> Path:
    """Encode ``spec.frames`` pattern frames to ``path`` (container from the suffix)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(spec.codec, rate=spec.rate, options=dict(spec.options))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
        for name, value in spec.colour.items():
            setattr(stream.codec_context, name, value)
        if spec.time_base is not None:
            stream.codec_context.time_base = spec.time_base
            stream.time_base = spec.time_base
        if spec.timecode:
            stream.metadata["timecode"] = spec.timecode
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(audio.pcm_codec, rate=audio.rate, layout=_layout(audio.channels))
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(
                pattern_image(spec.first_index + i, spec.width, spec.height), format="rgb24"
            )
            if spec.pts is not None:
                frame.pts = spec.pts[i]
                frame.time_base = spec.time_base
            else:
                frame.pts = i
                frame.time_base = Fraction(1) / spec.rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _encode_audio(container, audio_stream, audio)
    return path


@dataclass(frozen=True)
class AudioSpec:
    rate: int = 48000
    channels: int = 2
    sample_format: str = "s16"  # s16 | s24 | flt | fltp
    seconds: float = 1.0
    codec: str | None = None  # default: the PCM codec matching sample_format
    tone_hz: float | None = None  # None: the sawtooth index pattern; else a sine

    @property
    def pcm_codec(self) -> str:
        return self.codec or {"s16": "pcm_s16le", "s24": "pcm_s24le", "flt": "pcm_f32le", "fltp": "pcm_f32le"}[
            self.sample_format
        ]


def audio_pattern(sample_indices: np.ndarray, channel: int, rate: int, tone_hz: float | None = None) -> np.ndarray:
    """The value of sample ``n`` on ``channel``: a sawtooth that identifies its position to the
    sample (period 4000 samples, offset and inverted per channel), or the same sine at
    ``tone_hz`` on every channel (for resampling checks)."""
    n = np.asarray(sample_indices, dtype=np.float64)
    if tone_hz is not None:
        return (0.5 * np.sin(2 * np.pi * tone_hz * n / rate)).astype(np.float32)
    sign = 1.0 if channel % 2 == 0 else -1.0
    return (sign * (((n + 1000 * channel) % 4000) / 4000.0 - 0.5) * 0.8).astype(np.float32)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def _encode_audio(container, stream, spec: AudioSpec) -> None:
    context = stream.codec_context
    # Frames are built as float; PyAV's resampler reaches the encoder's own sample format.
    resampler = av.AudioResampler(format=context.format.name, layout=context.layout.name, rate=context.sample_rate)
    total = round(spec.seconds * spec.rate)
    chunk = 1024
    for start in range(0, total, chunk):
        indices = np.arange(start, min(start + chunk, total))
        planar = np.stack([audio_pattern(indices, c, spec.rate, spec.tone_hz) for c in range(spec.channels)])
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=_layout(spec.channels))
        frame.sample_rate = spec.rate
        frame.pts = start
        frame.time_base = Fraction(1, spec.rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for converted in resampler.resample(None):
        for packet in stream.encode(converted):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_audio(path: Path, spec: AudioSpec) -> Path:
    """Write a PCM WAV (or another audio container by suffix) carrying ``audio_pattern``."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(spec.pcm_codec, rate=spec.rate, layout=_layout(spec.channels))
        if spec.pcm_codec.startswith("pcm_s24"):
            stream.codec_context.format = "s32"  # 24-bit PCM is carried in s32 frames
        _encode_audio(container, stream, spec)
    return path


def truncate(source: Path, target: Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``source``'s bytes to ``target`` (a truncated file)."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * fraction)])
    return Path(target)


def excerpt(source: Path, target: Path, frames: int, scale: int = 2) -> Path:
    """The first ``frames`` video frames of ``source`` at 1/``scale`` size (H.264) with its audio
    over the same time (AAC): small, so the few renders that analyse it stay quick."""
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        video_in, audio_in = src.streams.video[0], src.streams.audio[0]
        rate = video_in.average_rate
        video_out = dst.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "veryfast", "g": "10"})
        width, height = video_in.width // scale // 2 * 2, video_in.height // scale // 2 * 2
        video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
        audio_out = dst.add_stream("aac", rate=audio_in.codec_context.sample_rate, layout="stereo")
        seconds = Fraction(frames) / Fraction(rate)
        for index, frame in enumerate(src.decode(video_in)):
            if index >= frames:
                break
            out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24", width=width, height=height), format="rgb24")
            out.pts, out.time_base = index, 1 / Fraction(rate)
            for packet in video_out.encode(out):
                dst.mux(packet)
        for packet in video_out.encode():
            dst.mux(packet)
        src.seek(0)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=audio_in.codec_context.sample_rate)
        for frame in src.decode(audio_in):
            if frame.time is not None and frame.time >= seconds:
                break
            frame.pts = None
            for converted in resampler.resample(frame):
                for packet in audio_out.encode(converted):
                    dst.mux(packet)
        for packet in audio_out.encode():
            dst.mux(packet)
    return target
