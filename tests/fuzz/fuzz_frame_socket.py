"""Fuzz the engine's frame-socket parser: ``read_message`` (header, sizes, a peer that stops
early) and ``decode_request`` (the body's fields), on raw bytes.

Invariant: any bytes are either a message/request or a ``ProtocolError`` (a ``DublineError``);
nothing else escapes, nothing hangs, and no body larger than ``MAX_BODY_BYTES`` is allocated.
Run: ``python tests/fuzz/fuzz_frame_socket.py -max_total_time=600``.
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  (sys.path)
import atheris

with atheris.instrument_imports(include=["dubline"]):
    from dubline.apps.server import frame_protocol
    from dubline.core.errors import DublineError


class BytesStream:
    """Just enough of a socket for ``read_message``: ``recv_into`` from fixed bytes, then EOF."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.at, self.chunk = data, 0, max(1, chunk)

    def recv_into(self, view, count: int) -> int:
        n = min(count, self.chunk, len(self.data) - self.at)
        view[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n

    def settimeout(self, seconds: float | None) -> None:
        pass


def check(data: bytes) -> None:
    if not data:
        return
    chunk = data[0] % 64 + 1
    body = data[1:]
    try:
        message = frame_protocol.read_message(BytesStream(body, chunk))
    except DublineError:
        pass
    else:
        if message is not None:
            assert len(message[1]) <= frame_protocol.MAX_BODY_BYTES
    try:
        request = frame_protocol.decode_request(body)
    except DublineError:
        return
    assert len(request.pixels) in (0, request.width * request.height * frame_protocol.PIXEL_BYTES[request.pixel_format])
    # A request that decodes re-encodes to the same fields.
    again = frame_protocol.decode_request(frame_protocol.encode_request(request)[frame_protocol.HEADER.size :])
    assert (again.video, again.audio, again.frame, again.pixels) == (request.video, request.audio, request.frame, request.pixels)


if __name__ == "__main__":
    atheris.Setup(_common.default_flags(sys.argv), check)
    atheris.Fuzz()
