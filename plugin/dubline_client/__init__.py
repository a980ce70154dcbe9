"""Client of the dubline engine (gRPC ``dubline.v1``) for the editor bridges and ``dubline submit``.

Needs only grpcio and protobuf: no torch, no engine import, so it loads inside Blender, Resolve's
script host or any other Python 3.11 tool. Messages are the generated ``pb`` classes::

    from dubline_client import EngineClient, pb, render_spec, frames_span

    with EngineClient("unix:/tmp/dubline.sock") as engine:
        spec = render_spec("/media/a.mov", "/media/dub.wav", frames_span(120, 245, 25), "/media/patch.mov")
        for event in engine.render(spec):
            ...
"""

from dubline_client.client import (
    DEFAULT_MAX_MESSAGE_BYTES,
    EngineClient,
    EngineError,
    frames_span,
    image_message,
    rational,
    render_spec,
    text_span,
)
from dubline_client._generated.dubline.v1 import engine_pb2 as pb

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EngineClient",
    "EngineError",
    "frames_span",
    "image_message",
    "pb",
    "rational",
    "render_spec",
    "text_span",
]
