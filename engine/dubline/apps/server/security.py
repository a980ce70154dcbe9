"""Who may talk to the engine and which files a request may name.

- Listening: a unix socket or a loopback address by default; any other address needs a token
  and TLS (``--tls-cert``/``--tls-key``): the token is only ever accepted over TLS or locally.
- Token: ``authorization: Bearer <token>`` metadata on every call (health checks excepted, so
  orchestrators can probe), checked in constant time by a server interceptor; a refused call is
  answered before its request message is read.
- Media roots: every path in a request must resolve (symlinks followed, ``..`` collapsed) inside
  one of the configured roots; with no roots configured, any absolute path is allowed (local use).
  The refusal for a path outside the roots is the same whether or not the file exists.
- Model paths a client names (a backend option such as wav2lip's ``checkpoint``): a bare name is a
  file in the engine's own model directory; an absolute path must be inside a media root.
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

        def deny(requests: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata 'authorization: Bearer <token>')")

        # Request-streaming, so the refusal goes out without the (maybe huge) request being read.
        self._deny = grpc.stream_unary_rpc_method_handler(deny)

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
        if self.roots and not self.inside(resolved):
            # The same words whether or not the file exists; where a link inside a root points
            # outside, only that it does (not where to).
            how = " through a symlink" if self.inside(Path(os.path.normpath(path))) else ""
            raise AccessDeniedError(
                f"{field} {raw} leads outside the engine's media roots{how} ({', '.join(map(str, self.roots))})"
            )
        return resolved

    def inside(self, path: Path) -> bool:
        """True when ``path`` (already resolved) is under one of the roots."""
        return any(path.is_relative_to(root) for root in self.roots)

    def check_model(self, raw: str, field: str, model_dir: Path) -> Path:
        """A model file a client names: a relative name is a file in the engine's ``model_dir``
        (and must stay inside it); an absolute path is checked like any other request path, and
        with media roots configured must be inside one of them."""
        if not raw or len(raw) > MAX_PATH_LENGTH or "\x00" in raw:
            raise InvalidInputError(f"{field} is not a usable path")
        if Path(raw).is_absolute():
            resolved = self.check(raw, field)
            assert resolved is not None
            return resolved
        directory = Path(os.path.realpath(model_dir))
        resolved = Path(os.path.realpath(directory / raw))
        if not resolved.is_relative_to(directory):
            raise AccessDeniedError(f"{field} {raw} leads outside the engine's model directory")
        return resolved


def read_tls(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """(private key, certificate chain) PEM bytes for ``--tls-key`` / ``--tls-cert``."""
    pems = []
    for flag, path in (("--tls-key", key), ("--tls-cert", cert)):
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise InvalidInputError(f"{flag} {path}: {error.strerror}") from error
        if b"-----BEGIN" not in data:
            raise InvalidInputError(f"{flag} {path} is not a PEM file")
        pems.append(data)
    return pems[0], pems[1]


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
