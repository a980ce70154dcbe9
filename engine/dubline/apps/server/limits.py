"""The engine's memory bound for what clients send: one budget of request bytes in flight.

Every request body the engine holds — a frame-socket message (its size is declared in the header,
reserved before a byte of the body is read) or a gRPC message (the largest a call may bring,
``max_message_bytes``, reserved before it is received, then shrunk to its real size) — and every
answer until it is sent is counted against one ``PayloadBudget``. When the budget is spent a new request waits a moment for others to
finish, then gets RESOURCE_EXHAUSTED without being read, so N clients that each declare the
largest allowed body (and then stall) cannot grow the engine past the budget; the engine stays
SERVING for everyone else. Frame-socket connections also have read deadlines (frame_socket.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import grpc

from dubline.core.errors import EngineBusyError, InvalidInputError

#: Default budget: a few of the largest frames (4096x2304 float RGBA, ~150 MB each) at once.
DEFAULT_PAYLOAD_BUDGET_BYTES = 1024 * 1024**2
#: How long a request waits for budget before RESOURCE_EXHAUSTED (others' reads take milliseconds).
DEFAULT_BUDGET_WAIT_S = 5.0
#: Health probes carry no payload and must answer even when the budget is spent.
EXEMPT_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


class PayloadBudget:
    """Bytes of request payloads in flight across every connection, at most ``limit``."""

    def __init__(self, limit: int = DEFAULT_PAYLOAD_BUDGET_BYTES, wait_s: float = DEFAULT_BUDGET_WAIT_S) -> None:
        if limit <= 0:
            raise InvalidInputError(f"the payload budget must be positive, got {limit} bytes")
        self.limit = limit
        self.wait_s = wait_s
        self._used = 0
        self._peak = 0
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        with self._changed:
            return self._used

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at once (the figure the RSS cap is checked with)."""
        with self._changed:
            return self._peak

    def reserve(self, count: int, what: str) -> int:
        """Reserve ``count`` bytes (waiting up to ``wait_s`` for them); EngineBusyError naming
        ``what`` when they do not come free. Returns ``count`` for ``release``."""
        if count > self.limit:
            raise EngineBusyError(f"{what} of {count:,} bytes is larger than the engine's payload budget ({self.limit:,})")
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while self._used + count > self.limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EngineBusyError(
                        f"the engine is holding {self._used:,} bytes of other requests (budget {self.limit:,});"
                        f" {what} of {count:,} bytes was refused unread: try again shortly"
                    )
                self._changed.wait(remaining)
            self._used += count
            self._peak = max(self._peak, self._used)
        return count

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is reserved (answers release when gRPC has sent them, a moment
        after the client has them); False if that takes longer than ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._used == 0, timeout)

    def release(self, count: int) -> None:
        with self._changed:
            self._used -= count
            assert self._used >= 0, "payload budget released more than it reserved"
            self._changed.notify_all()


class PayloadBudgetInterceptor(grpc.ServerInterceptor):
    """Counts each gRPC request message against the budget while its call runs.

    gRPC receives a unary request before the method's code runs, so the handler is served as a
    request-streaming one (the same bytes on the wire): it reserves the largest message a call may
    carry, *then* receives it, shrinks the reservation to the message's size, and releases it when
    the call ends. A call that finds no budget is refused before its message is read.
    """

    def __init__(self, budget: PayloadBudget, max_message_bytes: int) -> None:
        self.budget = budget
        self.max_message_bytes = max_message_bytes

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler_call_details.method in EXEMPT_METHODS:
            return handler
        method = handler_call_details.method
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer,
            )
        return grpc.stream_unary_rpc_method_handler(
            self._unary(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer,
        )

    def _receive(self, requests: Iterator[Any], context: grpc.ServicerContext, method: str) -> tuple[Any, int]:
        try:
            held = self.budget.reserve(self.max_message_bytes, f"a {method.rsplit('/', 1)[-1]} request")
        except EngineBusyError as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        try:
            request = next(requests, None)
        except BaseException:
            self.budget.release(held)
            raise
        if request is None:
            self.budget.release(held)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request message")
        size = request.ByteSize()
        self.budget.release(held - size)  # keep what the message really holds until the call ends
        return request, size

    def _unary(self, behaviour: Callable, method: str) -> Callable:
        def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            request, held = self._receive(requests, context, method)
            try:
                response = behaviour(request, context)
            finally:
                self.budget.release(held)
            # The answer (a frame: up to ~190 MB) counts too, until gRPC has sent it.
            try:
                sent = self.budget.reserve(response.ByteSize(), f"the {method.rsplit('/', 1)[-1]} answer")
            except EngineBusyError as error:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
            if not context.add_callback(lambda: self.budget.release(sent)):
                self.budget.release(sent)
            return response

        return call

    def _streaming(self, behaviour: Callable, method: str) -> Callable:
        def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            request, held = self._receive(requests, context, method)
            try:
                yield from behaviour(request, context)
            finally:
                self.budget.release(held)

        return call
