"""The frame socket's wire format (docs/OFX.md, byte by byte): messages the OFX plug-in writes with
plain C, and their readers and writers on the engine side.

Every message is a header (magic, version, kind, body length) and a body: a frame request or answer,
or a capabilities request or answer. Readers are bounded: a body's declared size is checked against
``MAX_BODY_BYTES`` and reserved in the engine's ``PayloadBudget`` before it is read, and a message
must arrive whole within its deadline.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from dubline_client import image_message, pb

from dubline.apps.server.limits import PayloadBudget
from dubline.apps.server.security import (
    MAX_PATH_LENGTH,
)
from dubline.core.errors import (
    InvalidInputError,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MAGIC = b"DBLF"
VERSION = 1
KIND_FRAME_REQUEST = 1
KIND_FRAME_ANSWER = 2
KIND_CAPABILITIES_REQUEST = 3
KIND_CAPABILITIES_ANSWER = 4

STATUS_ERROR = 0
STATUS_READY = 1
STATUS_NOT_READY = 2
STATUS_OUTSIDE_SPAN = 3
STATUS_OF = {
    pb.FRAME_STATUS_READY: STATUS_READY,
    pb.FRAME_STATUS_NOT_READY: STATUS_NOT_READY,
    pb.FRAME_STATUS_OUTSIDE_SPAN: STATUS_OUTSIDE_SPAN,
}

HEADER = struct.Struct("<4sHHQ")  # magic, version, kind, body length
_REQUEST_FIXED = struct.Struct("<qqqqiiBBBBII")  # frame, span first/end, audio offset, output/format/bottom_up, w, h
_ANSWER_FIXED = struct.Struct("<BBBBqqq")  # status, 3 reserved, frame index, progress done/total
_IMAGE_HEAD = struct.Struct("<BBHIIQ")  # format, bottom_up, reserved, width, height, byte count
_BACKEND_FLAGS = struct.Struct("<BBH")  # weights present, prefers GPU, reserved
PIXEL_BYTES = {pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_RGBA_F32: 16}
MAX_TEXT_BYTES = MAX_PATH_LENGTH * 4  # UTF-8 of a path of MAX_PATH_LENGTH characters
MAX_BODY_BYTES = 4096 * 2304 * 16 + (1 << 20)  # one DCI-4K float RGBA frame + the fields
#: Seconds a dub may be offset by (about 11 days): beyond it the number is damage, not an edit.
MAX_AUDIO_OFFSET_S = 1_000_000
#: A message must arrive whole this long after its first byte (a local 150 MB body takes < 1 s).
MESSAGE_DEADLINE_S = 10.0
#: A connection may wait this long for its next message (the plug-in opens one per render).
IDLE_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 64
_READ_CHUNK = 1 << 20


class ProtocolError(InvalidInputError):
    """A message that does not follow docs/OFX.md; the connection is answered and closed."""


@dataclass
class FrameRequest:
    """One decoded FRAME_REQUEST (see docs/OFX.md for the byte layout)."""

    frame: int
    span_first: int
    span_end: int
    audio_offset: Fraction
    output: int
    pixel_format: int
    bottom_up: bool
    width: int
    height: int
    video: str
    audio: str
    backend: str
    speaker: str
    pixels: bytes


def _text(body: memoryview, at: int, field: str) -> tuple[str, int]:
    if at + 4 > len(body):
        raise ProtocolError(f"message ends before the length of {field}")
    (length,) = struct.unpack_from("<I", body, at)
    if length > MAX_TEXT_BYTES or at + 4 + length > len(body):
        raise ProtocolError(f"message field {field} claims {length} bytes (at most {MAX_TEXT_BYTES}, within the message)")
    try:
        return bytes(body[at + 4 : at + 4 + length]).decode("utf-8"), at + 4 + length
    except UnicodeDecodeError as error:
        raise ProtocolError(f"message field {field} is not UTF-8: {error}") from None


def decode_request(body: bytes | bytearray) -> FrameRequest:
    """A FRAME_REQUEST body; ProtocolError naming the field that is wrong."""
    view = memoryview(body)
    if len(view) < _REQUEST_FIXED.size:
        raise ProtocolError(f"frame request is {len(view)} bytes; its fixed part alone is {_REQUEST_FIXED.size}")
    (frame, first, end, offset_value, offset_num, offset_den, output, fmt, bottom_up, _reserved,
     width, height) = _REQUEST_FIXED.unpack_from(view, 0)
    if offset_num <= 0 or offset_den <= 0:
        raise ProtocolError(f"audio offset rate {offset_num}/{offset_den} must be positive")
    audio_offset = Fraction(offset_value) * offset_den / offset_num
    if abs(audio_offset) > MAX_AUDIO_OFFSET_S:
        raise ProtocolError(f"audio offset {float(audio_offset):.3g} s is beyond ±{MAX_AUDIO_OFFSET_S} s")
    if output not in (pb.FRAME_OUTPUT_COMPOSITED, pb.FRAME_OUTPUT_PATCH_AND_MATTE):
        raise ProtocolError(f"output {output} is neither 1 (composited) nor 2 (patch and matte)")
    if fmt not in PIXEL_BYTES:
        raise ProtocolError(f"pixel format {fmt} is neither 1 (RGBA8) nor 2 (RGBA float32)")
    at = _REQUEST_FIXED.size
    video, at = _text(view, at, "video")
    audio, at = _text(view, at, "audio")
    backend, at = _text(view, at, "backend")
    speaker, at = _text(view, at, "speaker")
    if at + 8 > len(view):
        raise ProtocolError("frame request ends before the pixel byte count")
    (count,) = struct.unpack_from("<Q", view, at)
    at += 8
    expected = width * height * PIXEL_BYTES[fmt]
    if count not in (0, expected):
        raise ProtocolError(f"frame request has {count} pixel bytes; {width}x{height} tight rows are {expected} (or 0: no host frame)")
    if at + count != len(view):
        raise ProtocolError(f"frame request is {len(view)} bytes; its fields and pixels make {at + count}")
    return FrameRequest(
        frame, first, end, audio_offset, output, fmt, bool(bottom_up),
        width, height, video, audio, backend, speaker, bytes(view[at:]),
    )


def encode_request(request: FrameRequest) -> bytes:
    """The whole message (header + body) for ``request``; the engine never sends one, tests and
    other clients do."""
    offset = Fraction(request.audio_offset).limit_denominator(1_000_000)
    parts = [_REQUEST_FIXED.pack(
        request.frame, request.span_first, request.span_end, offset.numerator, offset.denominator, 1,
        request.output, request.pixel_format, int(request.bottom_up), 0, request.width, request.height,
    )]
    parts += [_text_bytes(text) for text in (request.video, request.audio, request.backend, request.speaker)]
    parts += [struct.pack("<Q", len(request.pixels)), request.pixels]
    body = b"".join(parts)
    return HEADER.pack(MAGIC, VERSION, KIND_FRAME_REQUEST, len(body)) + body


@dataclass
class FrameAnswer:
    status: int
    frame_index: int = -1
    progress_done: int = 0
    progress_total: int = 0
    code: str = ""  # gRPC status name when status is ERROR
    stage: str = ""
    message: str = ""
    images: tuple[pb.Image, ...] = ()  # the frame, then the matte for PATCH_AND_MATTE


def encode_answer(answer: FrameAnswer) -> bytes:
    return b"".join(answer_parts(answer))


def answer_parts(answer: FrameAnswer) -> list[bytes]:
    """The FRAME_ANSWER message in pieces (header first), so large frames are sent without joining."""
    parts = [_ANSWER_FIXED.pack(answer.status, 0, 0, 0, answer.frame_index, answer.progress_done, answer.progress_total)]
    parts += [_text_bytes(text) for text in (answer.code, answer.stage, answer.message)]
    parts.append(struct.pack("<I", len(answer.images)))
    for image in answer.images:
        pixel = {pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_RGBA_F32: 16, pb.PIXEL_FORMAT_GRAY8: 1, pb.PIXEL_FORMAT_GRAY_F32: 4}[image.format]
        # The engine's images are tight already (image_of); say so rather than trust it silently.
        assert image.row_bytes == image.width * pixel, "frame socket images are sent with tight rows"
        parts += [_IMAGE_HEAD.pack(image.format, int(image.bottom_up), 0, image.width, image.height, len(image.data)), image.data]
    return [HEADER.pack(MAGIC, VERSION, KIND_FRAME_ANSWER, sum(len(p) for p in parts)), *parts]


def _text_bytes(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<I", len(data)) + data


def encode_capabilities_request() -> bytes:
    """A CAPABILITIES_REQUEST: the header alone (tests and other clients send it)."""
    return HEADER.pack(MAGIC, VERSION, KIND_CAPABILITIES_REQUEST, 0)


def encode_capabilities(response: pb.CapabilitiesResponse) -> bytes:
    """The CAPABILITIES_ANSWER message for the Capabilities RPC's ``response`` (the fields the
    plug-in shows: version, default backend, each backend's name, description and readiness)."""
    parts = [_text_bytes(response.version), _text_bytes(response.default_backend), struct.pack("<I", len(response.backends))]
    for backend in response.backends:
        parts += [_text_bytes(backend.name), _text_bytes(backend.description),
                  _BACKEND_FLAGS.pack(int(backend.weights_present), int(backend.prefers_gpu), 0)]
    body = b"".join(parts)
    return HEADER.pack(MAGIC, VERSION, KIND_CAPABILITIES_ANSWER, len(body)) + body


def decode_capabilities(body: bytes) -> pb.CapabilitiesResponse:
    """A CAPABILITIES_ANSWER body as the CapabilitiesResponse fields it carries (tests, Python clients)."""
    view = memoryview(body)
    version, at = _text(view, 0, "version")
    default_backend, at = _text(view, at, "default backend")
    (count,) = struct.unpack_from("<I", view, at)
    at += 4
    response = pb.CapabilitiesResponse(version=version, default_backend=default_backend)
    for index in range(count):
        name, at = _text(view, at, f"backend {index} name")
        description, at = _text(view, at, f"backend {index} description")
        weights_present, prefers_gpu, _reserved = _BACKEND_FLAGS.unpack_from(view, at)
        at += _BACKEND_FLAGS.size
        response.backends.add(name=name, description=description, weights_present=bool(weights_present),
                              prefers_gpu=bool(prefers_gpu))
    return response


def decode_answer(body: bytes) -> FrameAnswer:
    """A FRAME_ANSWER body (used by tests and Python clients)."""
    status, _a, _b, _c, index, done, total = _ANSWER_FIXED.unpack_from(body, 0)
    at = _ANSWER_FIXED.size
    texts = []
    for field in ("code", "stage", "message"):
        (length,) = struct.unpack_from("<I", body, at)
        texts.append(bytes(body[at + 4 : at + 4 + length]).decode("utf-8"))
        at += 4 + length
    (count,) = struct.unpack_from("<I", body, at)
    at += 4
    images = []
    for _ in range(count):
        fmt, bottom_up, _r, width, height, nbytes = _IMAGE_HEAD.unpack_from(body, at)
        at += _IMAGE_HEAD.size
        images.append(image_message(bytes(body[at : at + nbytes]), width, height, fmt, bottom_up=bool(bottom_up)))
        at += nbytes
    return FrameAnswer(status, index, done, total, *texts, images=tuple(images))


def _read_exactly(stream: socket.socket, count: int, deadline: float | None = None) -> bytearray | None:
    """``count`` bytes, or None when the peer closed the connection before the first byte.
    ``deadline`` (``time.monotonic()``) bounds the whole read: ProtocolError when it passes."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError(f"only {got} of {count} bytes arrived in time; the connection is closed")
            stream.settimeout(remaining)
        try:
            n = stream.recv_into(view[got:], count - got)
        except TimeoutError:
            raise ProtocolError(f"only {got} of {count} bytes arrived in time; the connection is closed") from None
        if n == 0:
            if got == 0:
                return None
            raise ProtocolError(f"connection closed after {got} of {count} bytes")
        got += n
    return buffer


def _read_growing(stream: socket.socket, count: int, deadline: float) -> bytearray:
    """``count`` bytes into a buffer that grows as they arrive: a peer that declares a large body
    and stalls costs budget (released at the deadline) but no memory."""
    body = bytearray()
    while len(body) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProtocolError(f"only {len(body)} of {count} bytes arrived in time; the connection is closed")
        stream.settimeout(remaining)
        try:
            chunk = stream.recv(min(count - len(body), _READ_CHUNK))
        except TimeoutError:
            raise ProtocolError(f"only {len(body)} of {count} bytes arrived in time; the connection is closed") from None
        if not chunk:
            raise ProtocolError(f"connection closed after {len(body)} of {count} bytes")
        body += chunk
    return body


def _checked_header(head: bytearray) -> tuple[int, int]:
    magic, version, kind, length = HEADER.unpack(head)
    if magic != MAGIC:
        raise ProtocolError(f"message starts with {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}; this engine speaks {VERSION}")
    if length > MAX_BODY_BYTES:
        raise ProtocolError(f"message body of {length} bytes exceeds {MAX_BODY_BYTES}")
    return kind, length


def read_message(stream: socket.socket) -> tuple[int, bytearray] | None:
    """(kind, body) of the next message, None at a clean end of the connection."""
    head = _read_exactly(stream, HEADER.size)
    if head is None:
        return None
    kind, length = _checked_header(head)
    body = _read_exactly(stream, length) if length else bytearray()
    if body is None:
        raise ProtocolError(f"connection closed before a body of {length} bytes")
    return kind, body


def receive_message(stream: socket.socket, budget: PayloadBudget, idle_timeout_s: float,
                    message_deadline_s: float) -> tuple[int, bytearray] | None:
    """``read_message`` for the engine: the body's declared size is reserved in ``budget`` before
    it is read (the caller releases ``len(body)`` once answered); EngineBusyError, with the body
    unread, when the budget is spent; ProtocolError when a deadline passes."""
    stream.settimeout(idle_timeout_s)
    try:
        first = stream.recv(1)
    except TimeoutError:
        return None  # idle too long: close quietly, the plug-in reconnects per render
    if not first:
        return None
    deadline = time.monotonic() + message_deadline_s
    rest = _read_exactly(stream, HEADER.size - 1, deadline)
    if rest is None:
        raise ProtocolError("connection closed inside a message header")
    kind, length = _checked_header(bytearray(first) + rest)
    held = budget.reserve(length, "a frame request")
    try:
        body = _read_growing(stream, length, deadline)
    except BaseException:
        budget.release(held)
        raise
    return kind, body
