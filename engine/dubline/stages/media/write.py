"""Writing patches: atomic, frame-exact clips with timecode and the source's colour tags."""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dubline.core.cpus import codec_threads
from dubline.core.errors import (
    InvalidInputError,
    InvalidRateError,
    OutputExistsError,
    OutputPathError,
)
from dubline.core.paths import check_not_input, check_writable, publish, writing
from dubline.core.timing import parse_rate, timecode_to_frames
from dubline.stages.media.colour import (
    FROM_RGB,
    MATRIX_CODES,
    RANGES,
    apply_colour,
    colour_codes,
)
from dubline.stages.media.edited import coded_picture
from dubline.stages.media.layout import apply_layout, put_alpha
from dubline.stages.media.lazy import Image, LazyImage, OverlaidImage
from dubline.stages.media.probe import layout_name
from dubline.stages.media.remux import INTRA_CODECS, OrderedMuxer, PacketSource, ReusedFrame
from dubline.stages.media.types import (
    AudioClip,
    ColourTags,
    EditedFrame,
    PictureLayout,
    VideoFrame,
    VideoStreamInfo,
)


@dataclass(frozen=True)
class _Codec:
    encoder: str
    #: pixel format per (16-bit frames, alpha): 8-bit frames use the codec's usual format, 16-bit
    #: frames (sources above 8 bits) the codec's deepest: ProRes and DNxHR HQX 10-bit, H.264 High 10,
    #: FFV1 and PNG 16-bit. A missing alpha key means the codec has no alpha.
    formats: dict[tuple[bool, bool], str]
    options: dict[str, str]
    suffixes: tuple[str, ...]
    deep_options: dict[str, str] = field(default_factory=dict)  # replaces options for 16-bit frames
    min_size: tuple[int, int] = (1, 1)
    even_width: bool = False
    even_height: bool = False
    rgb: bool = False  # stores RGB: a YUV matrix / range tag does not apply (FFV1 refuses one)
    codes_fields: bool = False  # can code an interlaced picture field by field
    label: str = ""  # for the bridges' menus (Capabilities)
    description: str = ""

    @property
    def alpha(self) -> bool:
        return any(alpha for _, alpha in self.formats)

    def pix_fmt(self, deep: bool, alpha: bool) -> str:
        return self.formats[(deep, alpha)]


def _same(pix_fmt: str) -> dict[tuple[bool, bool], str]:
    return {(False, False): pix_fmt, (True, False): pix_fmt}


PATCH_CODECS: dict[str, _Codec] = {
    "prores": _Codec("prores_ks", _same("yuv422p10le"), {"profile": "3", "vendor": "apl0"}, (".mov",),
                     even_width=True, codes_fields=True, label="ProRes 422 HQ", description="10-bit 4:2:2"),
    "prores4444": _Codec("prores_ks", {**_same("yuv444p10le"), (False, True): "yuva444p10le", (True, True): "yuva444p10le"},
                         {"profile": "4", "vendor": "apl0"}, (".mov",), codes_fields=True,
                         label="ProRes 4444", description="10-bit 4:4:4, alpha kept"),
    "dnxhr": _Codec("dnxhd", {(False, False): "yuv422p", (True, False): "yuv422p10le"}, {"profile": "dnxhr_hq"},
                    (".mov",), deep_options={"profile": "dnxhr_hqx"}, min_size=(256, 120), even_width=True,
                    label="DNxHR HQ", description="8-bit 4:2:2 (HQX 10-bit for deeper sources)"),
    "h264": _Codec("libx264", {(False, False): "yuv420p", (True, False): "yuv420p10le"}, {"crf": "18", "preset": "medium"},
                   (".mov", ".mp4"), even_width=True, even_height=True, codes_fields=True,
                   label="H.264", description="4:2:0 (High 10 for deeper sources), small files for review"),
    # A key frame per picture: each stands alone, so a re-render can copy it (media.remux).
    "ffv1": _Codec("ffv1", {(False, False): "bgr0", (False, True): "bgra", (True, False): "rgb48le", (True, True): "rgba64le"},
                   {"g": "1"}, (".mkv",), rgb=True, label="FFV1", description="lossless RGB, 8 or 16-bit"),
    "png": _Codec("png", {(False, False): "rgb24", (False, True): "rgba", (True, False): "rgb48be", (True, True): "rgba64be"},
                  {}, (".mov",), rgb=True, label="PNG", description="lossless RGB, 8 or 16-bit, one image per frame"),
}
#: The codec of a render that names none.
DEFAULT_PATCH_CODEC = "prores"
_MUXERS = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska"}


def write_patch(
    frames: Iterable[np.ndarray | VideoFrame | EditedFrame | ReusedFrame],
    path: str | Path,
    codec: str,
    rate: Fraction,
    start_timecode: str | None = None,
    colour_tags: ColourTags | None = None,
    audio: AudioClip | None = None,
    overwrite: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    layout: PictureLayout | None = None,
    reuse: Path | None = None,
) -> Path:
    """Encode ``frames`` (RGB, or RGBA for ``prores4444``, ``ffv1`` and ``png``; uint8, or uint16
    for sources above 8 bits) to ``path`` and return it.

    Codecs: ``prores`` (422 HQ), ``prores4444``, ``dnxhr`` (HQ; HQX 10-bit for uint16 frames),
    ``h264`` (crf 18; High 10 for uint16), ``ffv1`` and ``png`` (lossless; 16-bit for uint16).
    ``colour_tags`` go on the stream and on every coded picture (ProRes carries them in its frame
    header). ``layout`` is the source's: its display matrix, pixel aspect and field order are
    written so the patch overlays the source in an editor (interlaced pictures are coded field by
    field where the codec can: ProRes, H.264). The file is written under a temporary name in the
    same directory and renamed at the end, so an error or a cancel (any exception from the
    frames iterator) never leaves a partial file under ``path``. Odd sizes for codecs that
    subsample chroma raise ``InvalidInputError`` rather than being padded, because a patch
    must overlay its source pixel for pixel. ``inputs`` (what each is -> path) are files the
    patch may never replace, checked before encoding and again before publishing. A
    ``ReusedFrame`` among ``frames`` is copied as coded from the previous patch ``reuse`` (same
    codec and size, an intra-frame codec: ``remux.INTRA_CODECS``), which may be ``path`` itself:
    it is read while the new file is written under its temporary name. An ``EditedFrame`` whose
    source is coded in the patch's pixel format keeps the source's samples outside its edited box.
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
    if reuse is not None and codec not in INTRA_CODECS:
        raise InvalidInputError(f"{codec} frames depend on each other and cannot be copied from {reuse}")
    first_image = first.template() if isinstance(first, ReusedFrame) else _image_of(first, spec, 0)
    height, width = first_image.shape[:2]
    _check_size(width, height, spec, codec)

    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        with writing(path):  # a full, read-only or vanished disk: one error naming the patch
            source = PacketSource(reuse, rate) if reuse is not None else None
            try:
                _encode(temporary, spec, rate, width, height, first, iterator, start_timecode, colour_tags, audio, path,
                        layout, source)
            finally:
                if source is not None:
                    source.close()
            publish(temporary, path, overwrite, inputs)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _image_of(frame: np.ndarray | VideoFrame | EditedFrame | ReusedFrame, spec: _Codec, position: int) -> Image:
    if isinstance(frame, ReusedFrame):
        return frame.template()
    image = frame.image if isinstance(frame, (VideoFrame, EditedFrame)) else frame
    if not isinstance(image, (np.ndarray, LazyImage, OverlaidImage)) or image.dtype not in (np.uint8, np.uint16) \
            or image.ndim != 3:
        raise InvalidInputError(f"frame {position} is not an (H, W, 3) uint8 or uint16 image")
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


def _encode(temporary: Path, spec: _Codec, rate: Fraction, width: int, height: int,
            first: np.ndarray | VideoFrame | EditedFrame | ReusedFrame, rest: Iterator, start_timecode: str | None,
            colour_tags: ColourTags | None, audio: AudioClip | None, final: Path, layout: PictureLayout | None,
            reuse: PacketSource | None) -> None:
    first_image = _image_of(first, spec, 0)
    deep, alpha = first_image.dtype == np.uint16, first_image.shape[2] == 4
    pix_fmt = spec.pix_fmt(deep, alpha)
    with av.open(str(temporary), "w", format=_MUXERS[final.suffix.lower()]) as container:
        stream = container.add_stream(spec.encoder, rate=rate, options=dict(spec.deep_options if deep and spec.deep_options
                                                                            else spec.options))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = codec_threads()
        apply_colour(stream.codec_context, colour_tags, spec.rgb)
        fields = apply_layout(stream, layout, spec.codes_fields) if layout is not None else None
        matrix = MATRIX_CODES.get(colour_tags.matrix) if colour_tags is not None and colour_tags.matrix else None
        tagged_range = colour_tags is not None and colour_tags.range is not None and not spec.rgb
        colour_range = RANGES_CODES[colour_tags.range] if tagged_range else None
        frame_colour = colour_codes(colour_tags, spec.rgb)
        if start_timecode:
            # mov/mp4 turn this into a tmcd track; matroska keeps it as a tag.
            stream.metadata["timecode"] = start_timecode
        audio_writer = _AudioWriter(container, audio) if audio is not None else None
        frame_period = Fraction(1) / rate
        in_format = ("rgba64le" if alpha else "rgb48le") if deep else ("rgba" if alpha else "rgb24")
        reformatter = VideoReformatter()  # one swscale context for every frame
        muxer = OrderedMuxer(container, stream, rate, copying=reuse is not None)
        item, image, position = first, first_image, 0
        while True:
            if isinstance(item, ReusedFrame):
                if reuse is None or item.position != position:
                    raise InvalidInputError(f"frame {position} of {final.name} asks for a frame of no previous patch")
                if (width, height) != (reuse.width, reuse.height):
                    raise InvalidInputError(f"{reuse.path} is {reuse.width}x{reuse.height}, not {width}x{height}")
                muxer.copied(position, reuse.data(position))
            elif image.shape != first_image.shape or image.dtype != first_image.dtype:
                raise InvalidInputError(
                    f"frame {position} is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} {image.dtype}, not"
                    f" {width}x{height}x{first_image.shape[2]} {first_image.dtype} like frame 0"
                )
            else:
                coded = (coded_picture(item, pix_fmt, matrix, colour_range)
                         if isinstance(item, EditedFrame) and not (spec.rgb or alpha) else None)
                _encode_image(stream, muxer, reformatter, image, coded, in_format, pix_fmt, spec, matrix,
                              colour_range, alpha, frame_colour, position, frame_period, fields)
            position += 1
            if audio_writer is not None:
                audio_writer.write_until(position * frame_period)  # keep the streams interleaved
            item = next(rest, None)
            if item is None:
                break
            image = _image_of(item, spec, position)
        for packet in stream.encode():
            muxer.encoded(packet)
        muxer.finish()
        if audio_writer is not None:
            audio_writer.write_until(None)


def _encode_image(stream, muxer: OrderedMuxer, reformatter: VideoReformatter, image: Image,
                  coded: av.VideoFrame | None, in_format: str, pix_fmt: str, spec: _Codec, matrix, colour_range,
                  alpha: bool, frame_colour: dict, position: int, frame_period: Fraction, fields) -> None:
    """Encode one picture: ``coded`` as it is (already in ``pix_fmt``), else ``image`` converted."""
    frame = coded if coded is not None else av.VideoFrame.from_ndarray(np.asarray(image), format=in_format)
    if coded is None and pix_fmt != in_format:
        frame = reformatter.reformat(frame, format=pix_fmt, dst_colorspace=None if spec.rgb else matrix,
                                     dst_color_range=colour_range, interpolation=FROM_RGB)
    if alpha and not spec.rgb:
        put_alpha(frame, image[..., 3])
    for attribute, code in frame_colour.items():
        setattr(frame, attribute, code)
    frame.pts, frame.time_base = position, frame_period
    for packet in stream.encode(fields(frame) if fields is not None else frame):
        muxer.encoded(packet)


RANGES_CODES = {name: code for code, name in RANGES.items()}


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
    if path.is_dir():
        raise OutputPathError(f"output {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite (--overwrite) to replace it")
    check_writable(path)
    return path





class BackgroundWriter:
    """``write_patch`` on its own thread, fed frame by frame: a second clip of the same span (the
    matte) is encoded in the same pass as the patch, so memory stays flat in span length."""

    _END = object()

    def __init__(self, path: Path, codec: str, rate: Fraction, start_timecode: str | None, overwrite: bool = False,
                 inputs: Mapping[str, str | os.PathLike | None] | None = None, colour_tags: ColourTags | None = None,
                 layout: PictureLayout | None = None, reuse: Path | None = None) -> None:
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
                write_patch(frames(), path, codec, rate, start_timecode, colour_tags, overwrite=overwrite, inputs=inputs,
                            layout=layout, reuse=reuse)
            except BaseException as error:  # handed to the caller in close()
                self._error = error
            finally:
                self.busy_seconds = time.perf_counter() - start - waited

        self._thread = threading.Thread(target=run, name=f"writer-{path.name}", daemon=True)
        self._thread.start()

    def put(self, image: np.ndarray | ReusedFrame) -> None:
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


def patch_warnings(video: VideoStreamInfo, codec: str, matte_codec: str | None = None,
                   frames: tuple[int, int] | None = None) -> list[str]:
    """For the render's warnings: how a variable-rate source was conformed over ``frames`` [first,
    end), and what a patch in ``codec`` (and a matte in ``matte_codec``) of it cannot carry; empty
    when the patch overlays the source in every respect."""
    spec = PATCH_CODECS[codec]
    notes = []
    if video.conform is not None and frames is not None:
        first, end = frames
        held, dropped = video.conform.span_counts(first, end)
        notes.append(f"{video.conform.describe(held, dropped)} in frames {first}-{end - 1}"
                     f" (clip: {video.conform.held} held, {video.conform.dropped} dropped)")
    if video.alpha and not spec.alpha:
        notes.append(f"the source's alpha channel is not in the patch ({codec} has none); use --codec prores4444 to keep it")
    coded_depth = 16 if spec.rgb else 10
    if video.bit_depth > coded_depth:
        notes.append(f"the source is {video.bit_depth}-bit; {codec} patches are {coded_depth}-bit (ffv1 and png are 16-bit)")
    if video.layout.interlaced and not (spec.codes_fields or spec.rgb):
        notes.append(f"the source is interlaced ({video.layout.field_order}) but {codec} codes progressive pictures:"
                     " the patch is tagged, not field-coded; prores and h264 code fields")
    if video.layout.sample_aspect_ratio != 1:
        sar = video.layout.sample_aspect_ratio
        for what, name in (("patch", codec), ("matte", matte_codec)):
            if name is not None and ".mkv" in PATCH_CODECS[name].suffixes:
                notes.append(f"the {what} (.mkv) cannot carry the source's pixel aspect {sar.numerator}:{sar.denominator}"
                             " (Matroska's display size is not settable here); use a .mov")
    return notes
