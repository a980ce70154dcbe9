"""Who may talk to the engine and which files a request may name.

- Listening: a unix socket or a loopback address by default; any other address needs a token.
- Token: ``authorization: Bearer <token>`` metadata on every call (health checks excepted, so
  orchestrators can probe), checked in constant time by a server interceptor.
- Media roots: every path in a request must resolve (symlinks followed, ``..`` collapsed) inside
  one of the configured roots; with no roots configured, any absolute path is allowed (local use).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import grpc

from dubline.core.errors import AccessDeniedError, InvalidInputError

MAX_PATH_LENGTH = 4096
UNAUTHENTICATED_EXEMPT = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


@dataclass(frozen=True)
class ListenAddress:
    target: str  # what grpc's add_insecure_port takes
    local: bool  # unix socket or loopback: no token needed
    unix_path: Path | None


def parse_listen(address: str) -> ListenAddress:
    """``unix:PATH`` (or ``unix:///PATH``) or ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    address = address.strip()
    if address.startswith("unix:"):
        raw = address[len("unix:") :]
        raw = raw[2:] if raw.startswith("//") else raw
        if not raw:
            raise InvalidInputError(f"--listen {address!r}: give a socket path, e.g. unix:/tmp/dubline.sock")
        path = Path(raw).expanduser().absolute()
        return ListenAddress(f"unix:{path}", True, path)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidInputError(f"--listen {address!r} is neither unix:PATH nor HOST:PORT")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return ListenAddress(address, _is_loopback(bare), None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def read_token_file(path: Path) -> str:
    """The token in ``path`` (first line, stripped); refuse empty tokens."""
    try:
        lines = Path(path).read_text().strip().splitlines()
    except OSError as error:
        raise InvalidInputError(f"--token-file {path}: {error.strerror}") from error
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise InvalidInputError(f"--token-file {path}: the token must be at least 16 characters")
    return token


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata 'authorization: Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method in UNAUTHENTICATED_EXEMPT:
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return continuation(handler_call_details)
        return self._deny


class MediaRoots:
    """Checks request paths against the configured roots (empty: any absolute path)."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = tuple(Path(r).expanduser().resolve() for r in roots)
        for root in self.roots:
            if not root.is_dir():
                raise InvalidInputError(f"--media-root {root} is not a directory")

    def check(self, raw: str, field: str, *, required: bool = True) -> Path | None:
        """The resolved path of request field ``field``; None when empty and not required."""
        if not raw:
            if required:
                raise InvalidInputError(f"{field} is required")
            return None
        if len(raw) > MAX_PATH_LENGTH or "\x00" in raw:
            raise InvalidInputError(f"{field} is not a usable path ({len(raw)} characters)")
        path = Path(raw)
        if not path.is_absolute():
            raise InvalidInputError(f"{field} {raw!r} must be an absolute path on the engine's machine")
        # strict=False: outputs do not exist yet; their directory's symlinks are still followed.
        resolved = Path(os.path.realpath(path))
        if self.roots and not any(resolved.is_relative_to(root) for root in self.roots):
            shown = f"{raw} (resolves to {resolved})" if str(resolved) != raw else raw
            raise AccessDeniedError(
                f"{field} {shown} is outside the engine's media roots ({', '.join(map(str, self.roots))})"
            )
        return resolved


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by an engine that died; refuse to take over a live one."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise InvalidInputError(f"another engine is already listening on unix:{path}")
