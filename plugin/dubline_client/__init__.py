"""Client of the dubline engine (gRPC ``dubline.v1``) for the editor bridges and ``dubline submit``.

Needs only grpcio and protobuf: no torch, no engine import, so it loads inside Blender, Resolve's
script host or any other Python 3.11 tool. Messages are the generated ``pb`` classes::

    from dubline_client import EngineClient, pb, render_spec, frames_span

    with EngineClient("unix:/tmp/dubline.sock") as engine:
        spec = render_spec("/media/a.mov", "/media/dub.wav", frames_span(120, 245, 25), "/media/patch.mov")
        for event in engine.render(spec):
            ...

``dubline_client.timecode`` (exact rates, SMPTE timecode) and ``dubline_client.choices`` (backend
and codec menus from Capabilities) are standard library only. The names below are imported on
first use, so importing those two modules (the engine imports ``timecode`` everywhere) does not
load grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dubline_client._generated.dubline.v1 import engine_pb2 as pb
    from dubline_client.client import (
        DEFAULT_MAX_MESSAGE_BYTES,
        EngineClient,
        EngineError,
        batch_request,
        frames_span,
        image_message,
        rational,
        render_spec,
        text_span,
    )

_LAZY = {
    "DEFAULT_MAX_MESSAGE_BYTES": "dubline_client.client",
    "EngineClient": "dubline_client.client",
    "EngineError": "dubline_client.client",
    "batch_request": "dubline_client.client",
    "frames_span": "dubline_client.client",
    "image_message": "dubline_client.client",
    "rational": "dubline_client.client",
    "render_spec": "dubline_client.client",
    "text_span": "dubline_client.client",
}

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EngineClient",
    "EngineError",
    "batch_request",
    "frames_span",
    "image_message",
    "pb",
    "rational",
    "render_spec",
    "text_span",
]


def __getattr__(name: str) -> Any:
    if name == "pb":
        value: Any = importlib.import_module("dubline_client._generated.dubline.v1.engine_pb2")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'dubline_client' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value
