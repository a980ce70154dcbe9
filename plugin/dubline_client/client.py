"""``EngineClient``: one channel to a dubline engine, with typed errors and message builders."""

from __future__ import annotations

import ipaddress
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import grpc

from dubline_client._generated.dubline.v1 import engine_pb2 as pb
from dubline_client._generated.dubline.v1 import engine_pb2_grpc as pb_grpc

#: Large enough for the largest frame the engine takes (4096x2304 RGBA float32) with a float matte.
DEFAULT_MAX_MESSAGE_BYTES = 4096 * 2304 * 20 + (1 << 20)
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_STATES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class EngineError(Exception):
    """A failed call: ``code`` is the gRPC status name (``INVALID_ARGUMENT``, ``UNAVAILABLE``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "EngineError":
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code.name if code is not None else "UNKNOWN", details or "")


def _pem(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise EngineError("INVALID_ARGUMENT", f"cannot read the TLS certificate authority {source}: {error.strerror}") from None


def _target(address: str) -> str:
    """``unix:PATH`` / ``unix:///PATH`` / ``HOST:PORT`` -> a gRPC channel target."""
    if address.startswith("unix://"):
        return address
    if address.startswith("unix:"):
        return "unix:" + address[len("unix:") :]
    return address


def is_local_address(address: str) -> bool:
    """A unix socket or a loopback ``HOST:PORT``: where a token may travel without TLS."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rational(value: int | Fraction, rate: int | Fraction = 1) -> pb.RationalTime:
    """``value`` ticks at ``rate`` per second (rate 24000/1001 for 23.976); a Fraction of seconds
    with the default rate 1 becomes value/rate exactly."""
    rate = Fraction(rate)
    value = Fraction(value)
    if value.denominator != 1:
        # Seconds given as a fraction: express them as ticks of 1/denominator second.
        rate, value = rate * value.denominator, value * value.denominator
    return pb.RationalTime(value=int(value), rate_num=rate.numerator, rate_den=rate.denominator)


def frames_span(first: int, end: int, rate: int | Fraction) -> pb.Span:
    """Source frames [first, end) at the clip's ``rate``."""
    return pb.Span(range=pb.TimeRange(start=rational(first, rate), duration=rational(end - first, rate)))


def text_span(text: str) -> pb.Span:
    """A span in the CLI's syntax (``120-245``, timecodes, ``4.8s-9.8s``)."""
    return pb.Span(text=text)


def render_spec(
    video: str,
    audio: str,
    span: pb.Span | str,
    out: str = "",
    *,
    backend: str = "",
    codec: str = "",
    matte: str = "",
    otio: str = "",
    audio_offset: pb.RationalTime | Fraction | int = 0,
    speaker: str = "",
    expression: str = "as-source",
    library: Sequence[str] = (),
    overwrite: bool = False,
    with_audio: bool = False,
    length_policy: str = "pad_or_trim",
    backend_options: Mapping[str, str] | None = None,
    sheet: str = "",
) -> pb.RenderSpec:
    """A RenderSpec with the CLI's defaults (an empty backend or codec: the engine's default, see
    ``dubline_client.choices``). Paths are on the engine's machine, absolute."""
    if not isinstance(audio_offset, pb.RationalTime):
        audio_offset = rational(Fraction(audio_offset))
    return pb.RenderSpec(
        video=str(video),
        audio=str(audio),
        span=text_span(span) if isinstance(span, str) else span,
        out=str(out),
        backend=backend,
        codec=codec,
        matte=str(matte),
        otio=str(otio),
        audio_offset=audio_offset,
        speaker=speaker,
        expression=expression,
        library=[str(p) for p in library],
        overwrite=overwrite,
        with_audio=with_audio,
        length_policy=length_policy,
        backend_options=dict(backend_options or {}),
        sheet=str(sheet),
    )


def batch_request(
    *,
    timeline: str = "",
    job_list: str = "",
    out: str = "",
    patch_dir: str = "",
    report_dir: str = "",
    dub_tracks: Sequence[str] = (),
    workers: int = 0,
    ray_address: str = "",
    in_process: bool = False,
    cross_shot_library: bool = False,
    overwrite: bool = False,
    qc: bool = False,
    defaults: pb.RenderSpec | None = None,
) -> pb.BatchRequest:
    """A BatchRequest: "dub the whole timeline" (``timeline`` with the dub on an audio track, and
    ``out``, the .otio the engine writes with the patches on top) or a ``job_list``. ``defaults``:
    a RenderSpec whose backend, codec, expression, length policy and backend options apply to
    shots that do not say (its paths are ignored)."""
    if bool(timeline) == bool(job_list):
        raise ValueError("give exactly one of timeline and job_list")
    request = pb.BatchRequest(
        out=str(out), patch_dir=str(patch_dir), report_dir=str(report_dir), dub_tracks=list(dub_tracks),
        workers=workers, ray_address=ray_address, in_process=in_process, cross_shot_library=cross_shot_library,
        overwrite=overwrite, qc=qc,
    )
    if timeline:
        request.timeline = str(timeline)
    else:
        request.job_list = str(job_list)
    if defaults is not None:
        request.defaults.CopyFrom(defaults)
    return request


def image_message(
    data: bytes, width: int, height: int, format: int = pb.PIXEL_FORMAT_RGBA8,
    row_bytes: int | None = None, bottom_up: bool = False,
) -> pb.Image:
    """An Image from raw pixel rows (RGBA8: 4 bytes/pixel; RGBA_F32: 16)."""
    pixel = {pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_RGBA_F32: 16, pb.PIXEL_FORMAT_GRAY8: 1, pb.PIXEL_FORMAT_GRAY_F32: 4}
    row_bytes = width * pixel[format] if row_bytes is None else row_bytes
    return pb.Image(width=width, height=height, row_bytes=row_bytes, format=format, bottom_up=bottom_up, data=bytes(data))


class EngineClient:
    """A connection to one engine. Every call raises ``EngineError`` on failure.

    ``token`` is sent as ``authorization: Bearer <token>`` (required by engines listening beyond
    loopback). ``timeout`` is the default deadline in seconds of unary calls; renders have none
    unless given (a render may take minutes).

    ``tls_ca`` (a PEM file path or its bytes) connects over TLS, trusting that certificate
    authority (or the self-signed certificate itself); ``tls_server_name`` overrides the name the
    certificate must carry when the address is an IP. A token is never sent in clear beyond this
    machine: without ``tls_ca`` it is refused for a non-loopback address.
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls_ca: str | Path | bytes | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        if token and tls_ca is None and not is_local_address(address):
            raise EngineError(
                "FAILED_PRECONDITION",
                f"refusing to send the engine token to {address} in clear: give the engine's TLS certificate"
                " authority (tls_ca / --tls-ca), or reach the engine through a loopback tunnel",
            )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls_ca is None:
            self._channel = grpc.insecure_channel(_target(address), options=options)
        else:
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca))
            self._channel = grpc.secure_channel(_target(address), credentials, options=options)
        self._stub = pb_grpc.EngineStub(self._channel)
        self._health = self._channel.unary_unary(
            _HEALTH_CHECK, request_serializer=lambda _: b"", response_deserializer=lambda raw: raw
        )

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout: float | None):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise EngineError.from_rpc(error) from None

    def health(self, timeout: float | None = None) -> str:
        """The standard health check of the whole server: ``SERVING``, ``NOT_SERVING``, ..."""
        raw = self._call(self._health, None, timeout)
        # grpc.health.v1.HealthCheckResponse is one enum field (tag 1, varint): decoded by hand so
        # the client needs no grpcio-health-checking. An empty message means status 0 (UNKNOWN).
        status = raw[1] if len(raw) >= 2 and raw[0] == 0x08 else 0
        return _HEALTH_STATES.get(status, str(status))

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (an engine just started takes a moment)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise EngineError("UNAVAILABLE", f"no engine answered at {self.address} within {timeout:g}s") from None

    def capabilities(self, timeout: float | None = None) -> pb.CapabilitiesResponse:
        return self._call(self._stub.Capabilities, pb.CapabilitiesRequest(), timeout)

    def analyse(self, video: str, speaker: str = "", timeout: float | None = None) -> pb.AnalyseResponse:
        """Warm the engine's cache for ``video``; blocks until analysed (give a long timeout)."""
        return self._call(self._stub.Analyse, pb.AnalyseRequest(video=str(video), speaker=speaker), timeout)

    def render(self, spec: pb.RenderSpec, timeout: float | None = None) -> Iterator[pb.RenderEvent]:
        """Queue a render and yield its events (queued, progress..., done or error).

        Closing the iterator early (or the deadline passing) cancels the job on the engine.
        """
        return self._stream(self._stub.Render, pb.RenderRequest(spec=spec), timeout)

    def render_and_wait(self, spec: pb.RenderSpec, on_event=None, timeout: float | None = None) -> pb.RenderDone:
        """Render and return the ``done`` event; ``EngineError`` for an ``error`` event."""
        return _done_of(self.render(spec, timeout=timeout), on_event, "render")

    def render_batch(self, request: pb.BatchRequest, timeout: float | None = None) -> Iterator[pb.BatchEvent]:
        """Start a batch and yield its events: planned, each shot's (started, running, retry, done,
        skipped, failed, cancelled), then done. Closing the iterator early stops the batch
        (finished shots are kept)."""
        return self._stream(self._stub.RenderBatch, request, timeout)

    def render_batch_and_wait(self, request: pb.BatchRequest, on_event=None, timeout: float | None = None) -> pb.BatchDone:
        """Run a batch and return its ``done`` event; ``EngineError`` for an ``error`` event."""
        return _done_of(self.render_batch(request, timeout=timeout), on_event, "batch")

    def _stream(self, method, request, timeout: float | None) -> Iterator:
        """The events of a server-streaming call; closing the iterator cancels the call."""
        try:
            call = method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise EngineError.from_rpc(error) from None
        try:
            for event in call:
                yield event
        except grpc.RpcError as error:
            raise EngineError.from_rpc(error) from None
        finally:
            call.cancel()

    def cancel(self, job_id: str, timeout: float | None = None) -> pb.JobStatus:
        return self._call(self._stub.Cancel, pb.JobRequest(job_id=job_id), timeout)

    def get_job(self, job_id: str, timeout: float | None = None) -> pb.JobStatus:
        return self._call(self._stub.GetJob, pb.JobRequest(job_id=job_id), timeout)

    def list_jobs(self, timeout: float | None = None) -> list[pb.JobStatus]:
        return list(self._call(self._stub.ListJobs, pb.ListJobsRequest(), timeout).jobs)

    def render_frame(
        self,
        time: pb.RationalTime,
        *,
        job_id: str | None = None,
        clip: pb.RenderSpec | None = None,
        source_frame: pb.Image | None = None,
        output: int = pb.FRAME_OUTPUT_COMPOSITED,
        format: int = pb.PIXEL_FORMAT_RGBA8,
        timeout: float | None = None,
    ) -> pb.RenderFrameResponse:
        """One frame of a finished job or of a clip key (``NOT_READY`` while the engine renders it)."""
        if (job_id is None) == (clip is None):
            raise ValueError("give exactly one of job_id and clip")
        request = pb.RenderFrameRequest(time=time, output=output, format=format)
        if job_id is not None:
            request.job_id = job_id
        else:
            request.clip.CopyFrom(clip)
        if source_frame is not None:
            request.source_frame.CopyFrom(source_frame)
        return self._call(self._stub.RenderFrame, request, timeout)


def _done_of(events: Iterator, on_event, what: str):
    """The ``done`` of a stream of events (each shown to ``on_event``); ``EngineError`` for an
    ``error`` event or a stream that ends without either."""
    for event in events:
        if on_event is not None:
            on_event(event)
        kind = event.WhichOneof("event")
        if kind == "done":
            return event.done
        if kind == "error":
            raise EngineError(event.error.code, event.error.message)
    raise EngineError("UNAVAILABLE", f"the engine ended the {what} stream without a result")
