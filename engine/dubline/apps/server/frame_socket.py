"""The OpenFX bridge's frame socket: the one-frame RPC over a small binary protocol.

The OFX plug-in runs inside Resolve, Nuke, Natron...; linking gRPC C++ (and abseil, protobuf) into
it would clash with the libraries those hosts ship. So the engine also serves ``RenderFrame`` over a
unix socket or a loopback TCP port, as length-prefixed little-endian messages the plug-in writes
with plain C. docs/OFX.md documents every byte; ``frame_protocol`` reads and writes them.
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
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from dubline_client import frames_span, image_message, pb, rational, render_spec

from dubline.apps.server.limits import PayloadBudget
from dubline.apps.server.security import (
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

from dubline.apps.server.frame_protocol import (
    IDLE_TIMEOUT_S,
    KIND_CAPABILITIES_REQUEST,
    KIND_FRAME_REQUEST,
    MAX_CONNECTIONS,
    MESSAGE_DEADLINE_S,
    STATUS_ERROR,
    STATUS_OF,
    FrameAnswer,
    FrameRequest,
    ProtocolError,
    answer_parts,
    decode_request,
    encode_answer,
    encode_capabilities,
    receive_message,
)

log = logging.getLogger(__name__)


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
            STATUS_OF[response.status], response.frame_index, response.progress.done, response.progress.total,
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
