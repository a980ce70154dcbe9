"""Build and run the engine's gRPC server: the Engine service, health, reflection, auth, limits."""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Iterable

import grpc
from dubline_client import DEFAULT_MAX_MESSAGE_BYTES, pb
from dubline_client._generated.dubline.v1 import engine_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dubline.apps.batch import WorkerRecipe
from dubline.apps.server.extend import IdleExtender
from dubline.apps.server.frame_protocol import MAX_BODY_BYTES as FRAME_SOCKET_MAX_BODY
from dubline.apps.server.frame_socket import FrameSocketServer
from dubline.apps.server.jobs import JobQueue
from dubline.apps.server.limits import (
    DEFAULT_PAYLOAD_BUDGET_BYTES,
    PayloadBudget,
    PayloadBudgetInterceptor,
)
from dubline.apps.server.security import (
    MediaRoots,
    TokenInterceptor,
    parse_listen,
    remove_stale_socket,
)
from dubline.apps.server.servicer import EngineConfig, EngineServicer
from dubline.core.errors import InvalidInputError
from dubline.pipeline import AnalysisBudget

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Engine"].full_name
#: gRPC threads: every streaming render holds one while its job runs, so keep many more than jobs.
RPC_THREADS = 32
#: A client that vanished (laptop closed, cable pulled) is found by a keepalive ping unanswered
#: for KEEPALIVE_TIMEOUT_SECONDS, sent after KEEPALIVE_SECONDS of silence, and its connection is
#: closed (its calls cancelled); a connection with no call open is closed after IDLE_CONNECTION_SECONDS.
KEEPALIVE_SECONDS = 60
KEEPALIVE_TIMEOUT_SECONDS = 20
IDLE_CONNECTION_SECONDS = 300


class EngineServer:
    """A started-or-not engine: ``start()``, ``stop(grace)`` (drains running jobs), ``wait()``."""

    def __init__(self, grpc_server: grpc.Server, servicer: EngineServicer, health_servicer: health.HealthServicer,
                 unix_path: Path | None, frame_socket: FrameSocketServer | None = None,
                 payload_budget: PayloadBudget | None = None, idle: IdleExtender | None = None) -> None:
        self.grpc_server = grpc_server
        self.payload_budget = payload_budget  # request bytes in flight (limits.py)
        self.servicer = servicer
        self._health = health_servicer
        self._unix_path = unix_path
        self.frame_socket = frame_socket  # the OpenFX bridge's listener (docs/OFX.md), when asked for
        self.idle = idle  # analyses the rest of rendered clips while no job runs

    @property
    def jobs(self) -> JobQueue:
        return self.servicer.jobs

    def start(self) -> None:
        self.grpc_server.start()
        if self.frame_socket is not None:
            self.frame_socket.start()
        if self.idle is not None:
            self.idle.start()
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = 30.0) -> None:
        """Stop taking calls, let running jobs finish within ``grace`` seconds, then cancel the rest."""
        self._health.enter_graceful_shutdown()
        if self.frame_socket is not None:
            self.frame_socket.stop()
        if self.idle is not None:
            self.idle.stop()
        stopped = self.grpc_server.stop(grace)
        self.jobs.shutdown(grace)
        stopped.wait()
        if self._unix_path is not None:
            self._unix_path.unlink(missing_ok=True)

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()



def create_server(
    address: str,
    *,
    media_roots: Iterable[Path] = (),
    token: str | None = None,
    max_workers: int = 2,
    max_queued: int = 32,
    cache_root: Path | None = None,
    work_dir: Path | None = None,
    max_analyses: int = 8,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    frame_socket: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
    payload_budget_bytes: int = DEFAULT_PAYLOAD_BUDGET_BYTES,
    batch_recipe: WorkerRecipe | None = None,
    analysis_budget: AnalysisBudget = AnalysisBudget(),
    idle_analysis: bool = True,
    idle_connection_seconds: float = IDLE_CONNECTION_SECONDS,
) -> tuple[EngineServer, int]:
    """An engine bound to ``address`` (``HOST:PORT``, port 0 picks one, or ``unix:PATH``), not yet
    started. Returns it and the bound TCP port (0 for a unix socket).

    A non-loopback address needs ``token`` and ``tls`` ((private key, certificate chain) PEM
    bytes, ``security.read_tls``): the token is only accepted over TLS or on this machine.
    ``frame_socket`` (``unix:PATH`` or a loopback ``HOST:PORT``) also serves the one-frame RPC to
    the OpenFX plug-in over the protocol of docs/OFX.md. Request payloads in flight, gRPC and
    frame socket together, stay within ``payload_budget_bytes`` (limits.py).
    ``batch_recipe`` sets up the workers of ``RenderBatch`` (default: the standard backends and
    analyses).
    ``analysis_budget`` is what a render analyses of its source before it starts; with
    ``idle_analysis`` the engine analyses the rest of rendered clips while no job runs.
    Connections with no call open are closed after ``idle_connection_seconds``; vanished clients
    are found by keepalive pings.
    """
    listen = parse_listen(address)
    if not listen.local and not token:
        raise InvalidInputError(
            f"--listen {address} is reachable from other machines: give --token-file (a bearer token) "
            "and --tls-cert/--tls-key, or listen on a unix socket or loopback address"
        )
    if not listen.local and tls is None:
        raise InvalidInputError(
            f"--listen {address} is reachable from other machines: the token would cross the network in clear;"
            " give --tls-cert and --tls-key (or use an SSH tunnel to a loopback engine)"
        )
    if tls is not None and listen.unix_path is not None:
        raise InvalidInputError("--tls-cert/--tls-key are for a TCP address; a unix socket is local already")
    roots = MediaRoots(media_roots)
    if not roots.roots:
        log.info("no --media-root: requests may name any path this user can read and write")
    if work_dir is None:
        work_dir = Path(tempfile.gettempdir()) / f"dubline-engine-{os.getuid()}"
    config = EngineConfig(
        media_roots=roots, cache_root=cache_root, work_dir=work_dir, max_analyses=max_analyses,
        max_message_bytes=max_message_bytes, batch_recipe=batch_recipe,
        analysis_budget=analysis_budget,
    )
    servicer = EngineServicer(config, JobQueue(max_workers=max_workers, max_queued=max_queued))
    largest = max(max_message_bytes, FRAME_SOCKET_MAX_BODY)
    if payload_budget_bytes < largest:
        raise InvalidInputError(
            f"the payload budget ({payload_budget_bytes / 1024**2:.0f} MB) must hold at least one of the largest"
            f" messages ({largest / 1024**2:.0f} MB)"
        )
    budget = PayloadBudget(payload_budget_bytes)
    # Token first: a call without it is refused before it takes budget or has its message read.
    interceptors = [TokenInterceptor(token)] if token else []
    interceptors.append(PayloadBudgetInterceptor(budget, max_message_bytes))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=RPC_THREADS, thread_name_prefix="dubline-rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_connection_idle_ms", int(idle_connection_seconds * 1000)),
        ],
        maximum_concurrent_rpcs=RPC_THREADS - 2,
    )
    pb_grpc.add_EngineServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    if listen.unix_path is not None and listen.unix_path.is_socket():
        remove_stale_socket(listen.unix_path)
    if tls is not None:
        try:
            credentials = grpc.ssl_server_credentials([tls])
            port = server.add_secure_port(listen.target, credentials)
        except RuntimeError as error:  # grpc's words for a key that does not match its certificate
            raise InvalidInputError(f"--tls-cert/--tls-key cannot be used: {error}") from None
    else:
        port = server.add_insecure_port(listen.target)
    if listen.unix_path is None and port == 0:
        raise InvalidInputError(f"cannot listen on {address} (address in use or not available)")
    frames_listener = FrameSocketServer(frame_socket, servicer, budget=budget) if frame_socket else None
    idle = IdleExtender(servicer.analyses, servicer.jobs) if idle_analysis else None
    engine = EngineServer(server, servicer, health_servicer, listen.unix_path, frames_listener, budget, idle)
    return engine, (port if listen.unix_path is None else 0)
