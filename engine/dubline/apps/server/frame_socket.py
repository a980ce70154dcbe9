"""The OpenFX bridge's frame socket: the one-frame RPC over a small binary protocol.

The OFX plug-in runs inside Resolve, Nuke, Natron...; linking gRPC C++ (and abseil, protobuf) into
it would clash with the libraries those hosts ship. So the engine also serves ``RenderFrame`` over a
unix socket or a loopback TCP port, as length-prefixed little-endian messages the plug-in writes
with plain C. docs/OFX.md documents every byte; this module is the only engine-side reader/writer.
Besides frames, the plug-in asks which backends the engine offers (a capabilities message answered
from ``EngineServicer.capabilities``, the data of the Capabilities RPC), so no list lives in C.

A request is decoded into the same ``pb.RenderFrameRequest`` the gRPC RPC takes (a clip key: the
engine renders the span once, answers NOT_READY meanwhile, then serves frames from memory) and
answered by ``EngineServicer.render_frame``: no frame logic lives here.

Bounded: a body's declared size is reserved in the engine's ``PayloadBudget`` before it is read
(RESOURCE_EXHAUSTED, connection closed, when the budget is spent); a message must arrive whole
within ``message_deadline_s`` of its first byte and the next one within ``idle_timeout_s``; at most
``max_connections`` connections are served at once.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from dubline_client import frames_span, image_message, pb, rational, render_spec

from dubline.apps.server.limits import PayloadBudget
from dubline.apps.server.security import (
    MAX_PATH_LENGTH,
    parse_listen,
    remove_stale_socket,
)
from dubline.apps.server.status import status_for
from dubline.core.errors import (
    DublineError,
    EngineBusyError,
    InvalidInputError,
    MediaNotFoundError,
)
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND

if TYPE_CHECKING:
    from dubline.apps.server.servicer import EngineServicer

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
_STATUS_OF = {
    pb.FRAME_STATUS_READY: STATUS_READY,
    pb.FRAME_STATUS_NOT_READY: STATUS_NOT_READY,
    pb.FRAME_STATUS_OUTSIDE_SPAN: STATUS_OUTSIDE_SPAN,
}

HEADER = struct.Struct("<4sHHQ")  # magic, version, kind, body length
_REQUEST_FIXED = struct.Struct("<qqqqiiBBBBII")  # frame, span first/end, audio offset, output/format/bottom_up, w, h
_ANSWER_FIXED = struct.Struct("<BBBBqqq")  # status, 3 reserved, frame index, progress done/total
_IMAGE_HEAD = struct.Struct("<BBHIIQ")  # format, bottom_up, reserved, width, height, byte count
_BACKEND_FLAGS = struct.Struct("<BBH")  # weights present, prefers GPU, reserved
_PIXEL_BYTES = {pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_RGBA_F32: 16}
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
    if fmt not in _PIXEL_BYTES:
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
    expected = width * height * _PIXEL_BYTES[fmt]
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


class FrameService:
    """Answers decoded frame requests with the gRPC servicer's own ``render_frame``."""

    def __init__(self, servicer: EngineServicer) -> None:
        self.servicer = servicer
        self._rates: dict[tuple, Fraction] = {}
        self._lock = threading.Lock()

    def _source_rate(self, video: Path) -> Fraction:
        """The source's frame rate (frame indices on the wire become rational times at it)."""

        try:
            stat = video.stat()
        except OSError:
            raise MediaNotFoundError(f"source media {video} does not exist") from None
        key = (video, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._rates:
                return self._rates[key]
        info = media.probe(video)
        if info.video is None:
            raise InvalidInputError(f"source media {video} has no video stream")
        with self._lock:
            self._rates[key] = info.video.rate
        return info.video.rate

    def grpc_request(self, request: FrameRequest) -> pb.RenderFrameRequest:
        """The RenderFrame request the gRPC RPC would get for the same frame."""
        if request.frame < 0:
            raise InvalidInputError(f"frame {request.frame} is negative (check the source frame offset)")
        video = self.servicer.config.media_roots.check(request.video, "video")
        rate = self._source_rate(video)
        spec = render_spec(
            str(video), request.audio, frames_span(request.span_first, request.span_end, rate) if request.span_end > request.span_first
            else f"{request.span_first}-{request.span_end}",  # empty/reversed: the engine's own message
            backend=request.backend or DEFAULT_BACKEND, speaker=request.speaker, audio_offset=request.audio_offset,
        )
        message = pb.RenderFrameRequest(clip=spec, time=rational(request.frame, rate), output=request.output,
                                        format=request.pixel_format)
        if request.pixels:
            message.source_frame.CopyFrom(image_message(
                request.pixels, request.width, request.height, request.pixel_format, bottom_up=request.bottom_up))
        return message

    def answer(self, body: bytes | bytearray) -> FrameAnswer:
        try:
            response = self.servicer.render_frame(self.grpc_request(decode_request(body)))
        except Exception as error:
            return _error_answer(error)
        images = tuple(i for i in (response.image, response.matte) if i.width)
        return FrameAnswer(
            _STATUS_OF[response.status], response.frame_index, response.progress.done, response.progress.total,
            stage=response.progress.stage, message=response.message, images=images,
        )


    def capabilities(self, body: bytes | bytearray) -> list[bytes]:
        """The CAPABILITIES_ANSWER message, or a FRAME_ANSWER with status error when that fails."""
        try:
            if body:
                raise ProtocolError(f"a capabilities request has no body; this one has {len(body)} bytes")
            return [encode_capabilities(self.servicer.capabilities())]
        except Exception as error:
            return answer_parts(_error_answer(error))


def _error_answer(error: Exception) -> FrameAnswer:
    if not isinstance(error, DublineError):
        log.exception("unexpected error answering a frame-socket request")
    code, message = status_for(error)
    return FrameAnswer(STATUS_ERROR, code=code.name, message=message)


class _Handler(socketserver.BaseRequestHandler):
    server: _UnixServer | _TcpServer

    def handle(self) -> None:
        limits: _Limits = self.server.limits  # type: ignore[attr-defined]
        stream: socket.socket = self.request
        if not limits.connections.acquire(blocking=False):
            self._refuse(stream, "RESOURCE_EXHAUSTED", f"the engine serves at most {limits.max_connections} frame-socket connections at once")
            return
        try:
            self._serve(stream, limits)
        finally:
            limits.connections.release()

    def _serve(self, stream: socket.socket, limits: _Limits) -> None:
        service: FrameService = self.server.service  # type: ignore[attr-defined]
        while True:  # several requests may share one connection
            try:
                message = receive_message(stream, limits.budget, limits.idle_timeout_s, limits.message_deadline_s)
            except (ProtocolError, EngineBusyError) as error:
                code = "RESOURCE_EXHAUSTED" if isinstance(error, EngineBusyError) else "INVALID_ARGUMENT"
                self._refuse(stream, code, str(error))  # the stream is out of step now: close it
                return
            except OSError:
                return  # the plug-in gave up (its timeout) and closed
            if message is None:
                return
            kind, body = message
            try:
                if kind == KIND_FRAME_REQUEST:
                    parts = answer_parts(service.answer(body))
                elif kind == KIND_CAPABILITIES_REQUEST:
                    parts = service.capabilities(body)
                else:
                    parts = answer_parts(FrameAnswer(
                        STATUS_ERROR, code="INVALID_ARGUMENT",
                        message=f"message kind {kind} is neither a frame request ({KIND_FRAME_REQUEST}) nor a capabilities "
                                f"request ({KIND_CAPABILITIES_REQUEST})"))
            finally:
                limits.budget.release(len(body))
            size = sum(len(part) for part in parts)
            try:  # the answer counts against the budget until it is sent
                held = limits.budget.reserve(size, "a frame answer")
            except EngineBusyError as error:
                self._refuse(stream, "RESOURCE_EXHAUSTED", str(error))
                return
            try:
                stream.settimeout(limits.message_deadline_s)  # a reader that stalls does not hold us
                for part in parts:
                    stream.sendall(part)
            except OSError:
                return
            finally:
                limits.budget.release(held)

    @staticmethod
    def _refuse(stream: socket.socket, code: str, message: str) -> None:
        try:
            stream.settimeout(1.0)
            stream.sendall(encode_answer(FrameAnswer(STATUS_ERROR, code=code, message=message)))
        except OSError:
            pass


@dataclass
class _Limits:
    budget: PayloadBudget
    idle_timeout_s: float
    message_deadline_s: float
    max_connections: int
    connections: threading.BoundedSemaphore


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def server_bind(self) -> None:
        super().server_bind()
        os.chmod(self.server_address, 0o600)  # only the editor's own user may ask for frames


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FrameSocketServer:
    """The frame socket bound to ``address``; ``start()`` serves in a thread, ``stop()`` closes it."""

    def __init__(self, address: str, servicer: EngineServicer, *, budget: PayloadBudget | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, message_deadline_s: float = MESSAGE_DEADLINE_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        listen = parse_listen(address)
        if not listen.local:
            raise InvalidInputError(
                f"--frame-socket {address}: the frame socket has no token; use unix:PATH or a loopback address")
        self._unix_path = listen.unix_path
        if listen.unix_path is not None:
            if listen.unix_path.is_socket():
                remove_stale_socket(listen.unix_path)
            self._server: socketserver.BaseServer = _UnixServer(str(listen.unix_path), _Handler)
            self.address = f"unix:{listen.unix_path}"
        else:
            host, _, port = address.rpartition(":")
            bare = host[1:-1] if host.startswith("[") else host
            server_class = _TcpServer
            if ":" in bare:
                server_class = type("_Tcp6Server", (_TcpServer,), {"address_family": socket.AF_INET6})
            try:
                self._server = server_class((bare, int(port)), _Handler)
            except OSError as error:
                raise InvalidInputError(f"cannot listen on --frame-socket {address}: {error.strerror}") from None
            bound = self._server.server_address[1]
            self.address = f"{host}:{bound}"
        self._server.service = FrameService(servicer)  # type: ignore[attr-defined]
        self._server.limits = _Limits(  # type: ignore[attr-defined]
            budget or PayloadBudget(), idle_timeout_s, message_deadline_s, max_connections,
            threading.BoundedSemaphore(max_connections),
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="dubline-frame-socket", daemon=True)
        self._thread.start()
        # The plug-in asks for the backends with a short timeout while the artist waits; the first
        # listing imports every backend (seconds), so it is done now rather than on that question.
        threading.Thread(target=self._list_backends, name="dubline-frame-socket-warm", daemon=True).start()

    def _list_backends(self) -> None:
        try:
            self._server.service.servicer.capabilities()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the question itself will report the problem
            log.exception("listing the backends for the frame socket failed")

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        if self._unix_path is not None:
            self._unix_path.unlink(missing_ok=True)
