"""THE mapping of engine errors to gRPC status codes, shared by every RPC and the frame socket."""

from __future__ import annotations

import grpc

from dubline.core.errors import DublineError


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """THE mapping of engine errors to gRPC status codes (each DublineError names its own)."""
    if isinstance(error, DublineError):
        return getattr(grpc.StatusCode, error.status_code, grpc.StatusCode.INTERNAL), str(error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}): {error}"
