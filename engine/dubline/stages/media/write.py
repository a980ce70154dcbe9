"""Writing patches: atomic, frame-exact clips with timecode and the source's colour tags."""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dubline.core.errors import (
    InvalidInputError,
    InvalidRateError,
    OutputExistsError,
    OutputPathError,
)
from dubline.core.paths import check_not_input
from dubline.core.timing import parse_rate, timecode_to_frames
from dubline.stages.media.colour import FROM_RGB, MATRIX_CODES, apply_colour
from dubline.stages.media.probe import layout_name
from dubline.stages.media.types import AudioClip, ColourTags, VideoFrame


@dataclass(frozen=True)
class _Codec:
    encoder: str
    pix_fmt: str
    options: dict[str, str]
    suffixes: tuple[str, ...]
    alpha: bool = False
    min_size: tuple[int, int] = (1, 1)
    even_width: bool = False
    even_height: bool = False
    rgb: bool = False  # stores RGB: a YUV matrix / range tag does not apply (FFV1 refuses one)
    label: str = ""  # for the bridges' menus (Capabilities)
    description: str = ""


PATCH_CODECS: dict[str, _Codec] = {
    "prores": _Codec("prores_ks", "yuv422p10le", {"profile": "3", "vendor": "apl0"}, (".mov",), even_width=True,
                     label="ProRes 422 HQ", description="10-bit 4:2:2"),
    "prores4444": _Codec("prores_ks", "yuva444p10le", {"profile": "4", "vendor": "apl0"}, (".mov",), alpha=True,
                         label="ProRes 4444", description="10-bit 4:4:4 with alpha"),
    "dnxhr": _Codec("dnxhd", "yuv422p", {"profile": "dnxhr_hq"}, (".mov",), min_size=(256, 120), even_width=True,
                    label="DNxHR HQ", description="8-bit 4:2:2"),
    "h264": _Codec("libx264", "yuv420p", {"crf": "18", "preset": "medium"}, (".mov", ".mp4"), even_width=True, even_height=True,
                   label="H.264", description="8-bit 4:2:0, small files for review"),
    "ffv1": _Codec("ffv1", "bgr0", {}, (".mkv",), rgb=True, label="FFV1", description="lossless 8-bit RGB"),
    "png": _Codec("png", "rgb24", {}, (".mov",), rgb=True, label="PNG", description="lossless 8-bit RGB, one image per frame"),
}
#: The codec of a render that names none.
DEFAULT_PATCH_CODEC = "prores"
_MUXERS = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska"}


def write_patch(
    frames: Iterable[np.ndarray | VideoFrame],
    path: str | Path,
    codec: str,
    rate: Fraction,
    start_timecode: str | None = None,
    colour_tags: ColourTags | None = None,
    audio: AudioClip | None = None,
    overwrite: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Encode ``frames`` (RGB, or RGBA for ``prores4444``) to ``path`` and return it.

    Codecs: ``prores`` (422 HQ), ``prores4444``, ``dnxhr`` (HQ), ``h264`` (crf 18), ``ffv1``
    and ``png`` (lossless, for tests). The file is written under a temporary name in the
    same directory and renamed at the end, so an error or a cancel (any exception from the
    frames iterator) never leaves a partial file under ``path``. Odd sizes for codecs that
    subsample chroma raise ``InvalidInputError`` rather than being padded, because a patch
    must overlay its source pixel for pixel. ``inputs`` (what each is -> path) are files the
    patch may never replace, checked before encoding and again before publishing.
    """
    path = Path(path)
    if codec not in PATCH_CODECS:
        raise InvalidInputError(f"unknown patch codec {codec!r}; choose one of {', '.join(PATCH_CODECS)}")
    spec = PATCH_CODECS[codec]
    if path.suffix.lower() not in spec.suffixes:
        raise InvalidInputError(f"{codec} patches go in {' or '.join(spec.suffixes)} files, not {path.name}")
    rate = parse_rate(rate)
    if start_timecode is not None:
        timecode_to_frames(start_timecode, rate)  # reject a malformed timecode before any work
    check_output(path, overwrite, inputs)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InvalidInputError(f"no frames to write to {path}")
    first_image = _image_of(first, spec, 0)
    height, width = first_image.shape[:2]
    _check_size(width, height, spec, codec)

    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        _encode(temporary, spec, rate, width, height, first_image, iterator, start_timecode, colour_tags, audio, path)
        publish(temporary, path, overwrite, inputs)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _image_of(frame: np.ndarray | VideoFrame, spec: _Codec, position: int) -> np.ndarray:
    image = frame.image if isinstance(frame, VideoFrame) else frame
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInputError(f"frame {position} is not an (H, W, 3) uint8 image")
    channels = image.shape[2]
    if channels not in ((3, 4) if spec.alpha else (3,)):
        raise InvalidInputError(
            f"frame {position} has {channels} channels; expected RGB{' or RGBA' if spec.alpha else ''}"
        )
    return image


def _check_size(width: int, height: int, spec: _Codec, codec: str) -> None:
    min_width, min_height = spec.min_size
    if width < min_width or height < min_height:
        raise InvalidInputError(f"{codec} needs frames of at least {min_width}x{min_height}, got {width}x{height}")
    if (spec.even_width and width % 2) or (spec.even_height and height % 2):
        raise InvalidInputError(
            f"{codec} subsamples chroma and needs even {'width and height' if spec.even_height else 'width'},"
            f" got {width}x{height}; use ffv1 or png, or crop the span's frames"
        )


def _encode(temporary: Path, spec: _Codec, rate: Fraction, width: int, height: int, first_image: np.ndarray,
            rest: Iterator, start_timecode: str | None, colour_tags: ColourTags | None,
            audio: AudioClip | None, final: Path) -> None:
    with av.open(str(temporary), "w", format=_MUXERS[final.suffix.lower()]) as container:
        stream = container.add_stream(spec.encoder, rate=rate, options=dict(spec.options))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.thread_type = "AUTO"
        apply_colour(stream.codec_context, colour_tags, spec.rgb)
        matrix = MATRIX_CODES.get(colour_tags.matrix) if colour_tags is not None and colour_tags.matrix else None
        if start_timecode:
            # mov/mp4 turn this into a tmcd track; matroska keeps it as a tag.
            stream.metadata["timecode"] = start_timecode
        audio_writer = _AudioWriter(container, audio) if audio is not None else None
        frame_period = Fraction(1) / rate
        reformatter = VideoReformatter()  # one swscale context for every frame
        image, position = first_image, 0
        while True:
            if image.shape[:2] != (height, width):
                raise InvalidInputError(
                    f"frame {position} is {image.shape[1]}x{image.shape[0]}, not {width}x{height} like frame 0"
                )
            frame = av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4 else "rgb24")
            if not spec.rgb:
                frame = reformatter.reformat(frame, format=spec.pix_fmt, dst_colorspace=matrix, interpolation=FROM_RGB)
            frame.pts, frame.time_base = position, frame_period
            for packet in stream.encode(frame):
                container.mux(packet)
            position += 1
            if audio_writer is not None:
                audio_writer.write_until(position * frame_period)  # keep the streams interleaved
            following = next(rest, None)
            if following is None:
                break
            image = _image_of(following, spec, position)
        for packet in stream.encode():
            container.mux(packet)
        if audio_writer is not None:
            audio_writer.write_until(None)



class _AudioWriter:
    """Encodes an AudioClip as PCM s16 alongside the video, a slice per video frame."""

    def __init__(self, container, clip: AudioClip) -> None:
        samples = clip.samples if clip.samples.ndim == 2 else clip.samples[np.newaxis]
        if samples.dtype != np.float32 or samples.shape[0] not in (1, 2):
            raise InvalidInputError("patch audio must be float32 mono (n,) or stereo (2, n)")
        if clip.sample_rate <= 0:
            raise InvalidRateError(f"patch audio sample rate {clip.sample_rate} must be positive")
        self._container = container
        self._rate = clip.sample_rate
        self._pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        self._layout = layout_name(samples.shape[0])
        self._stream = container.add_stream("pcm_s16le", rate=clip.sample_rate, layout=self._layout)
        self._written = 0

    def write_until(self, seconds: Fraction | None) -> None:
        """Encode the samples up to ``seconds`` (all of them, and flush, when None)."""
        total = self._pcm.shape[1]
        stop = total if seconds is None else min(total, math.floor(seconds * self._rate))
        if stop > self._written:
            chunk = np.ascontiguousarray(self._pcm[:, self._written : stop].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=self._layout)
            frame.sample_rate = self._rate
            frame.pts, frame.time_base = self._written, Fraction(1, self._rate)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self._written = stop
        if seconds is None:
            for packet in self._stream.encode():
                self._container.mux(packet)


def check_output(
    path: str | Path, overwrite: bool = False, inputs: Mapping[str, str | os.PathLike | None] | None = None
) -> Path:
    """Fail before any work when ``path`` could not be published at the end, or names an input."""
    path = Path(path)
    if inputs:
        check_not_input(path, inputs)
    if not path.parent.is_dir():
        raise OutputPathError(f"output directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite (--overwrite) to replace it")
    return path



def publish(temporary: Path, path: Path, overwrite: bool, inputs: Mapping[str, str | os.PathLike | None] | None) -> None:
    if inputs:
        check_not_input(path, inputs)  # again: the path may have become a link to an input meanwhile
    if overwrite:
        os.replace(temporary, path)
        return
    # A hard link fails if `path` appeared meanwhile, so a concurrent file is never clobbered.
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while writing; pass overwrite to replace it") from None
    except OSError:
        if path.exists():
            raise OutputExistsError(f"{path} appeared while writing; pass overwrite to replace it") from None
        os.replace(temporary, path)
        return
    temporary.unlink()


class BackgroundWriter:
    """``write_patch`` on its own thread, fed frame by frame: a second clip of the same span (the
    matte) is encoded in the same pass as the patch, so memory stays flat in span length."""

    _END = object()

    def __init__(self, path: Path, codec: str, rate: Fraction, start_timecode: str | None, overwrite: bool = False,
                 inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self.path = path
        #: Seconds the writer spent encoding (not waiting for frames); final once ``close`` returns.
        self.busy_seconds = 0.0
        waited = 0.0

        def frames() -> Iterator[np.ndarray]:
            nonlocal waited
            while True:
                start = time.perf_counter()
                item = self._queue.get()
                waited += time.perf_counter() - start
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        def run() -> None:
            start = time.perf_counter()
            try:
                write_patch(frames(), path, codec, rate, start_timecode, None, overwrite=overwrite, inputs=inputs)
            except BaseException as error:  # handed to the caller in close()
                self._error = error
            finally:
                self.busy_seconds = time.perf_counter() - start - waited

        self._thread = threading.Thread(target=run, name=f"writer-{path.name}", daemon=True)
        self._thread.start()

    def put(self, image: np.ndarray) -> None:
        self._put(image)

    def _put(self, item: object) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self, error: BaseException | None = None) -> None:
        """Finish the file, or (given the error that stopped the caller) abandon it."""
        self._put(error if error is not None else self._END)
        self._thread.join()
        if error is None and self._error is not None:
            raise self._error
