"""``SyncClientProxy``: ``send`` and ``emit`` for synchronous code (Django, Flask, scripts).

Theory of operation: no event loop and no helper thread. Each calling thread gets its own
blocking DEALER (ZeroMQ sockets are not thread-safe, and a private socket needs no lock), sends
one request record and waits on the socket for the reply with ZeroMQ's receive timeout, so a
call costs what raw blocking pyzmq costs plus encoding. A reply whose correlation id is not the
awaited one belongs to an earlier request that timed out: it is dropped and counted. Events go
out on one XPUB shared by all threads behind a lock; ``connect`` first does the same
``$zmsg.hello`` handshake as ``ClientProxy`` and waits for every service's subscription, so no
event emitted after it returns falls into PUB/SUB's slow-joiner gap. Records, codec and errors
are the async client's: both speak the same wire protocol and raise the same exceptions.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Self

from zmsg import _framing, codec
from zmsg.client import DEFAULT_TIMEOUT, resolve_client_options
from zmsg.codec import Pattern, PayloadError, encode_pattern, pattern_repr
from zmsg.errors import FrameError, ProtocolError, RequestTimeout, ServiceUnavailable
from zmsg.protocol import (
    EXTERNAL_BODY_THRESHOLD,
    HELLO_PATTERN,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    BatchBuilder,
    parse_frames,
)
from zmsg.transport import events_connect_endpoint
from zmsg.transport.blocking import BlockingDealer, BlockingPublisher, ask_each
from zmsg.transport.security import CurveClient
from zmsg.transport.sockets import DEFAULT_HEARTBEAT

__all__ = ["SyncClientProxy"]

_HELLO = HELLO_PATTERN.encode()
_MAX_TTL_MS = 0xFFFFFFFF
_MAX_WAIT_MS = 0x7FFFFFFF  # ZeroMQ's timeouts are C ints (about 24 days)
_MAX_ID = 0xFFFFFFFFFFFFFFFF
_pack_header = _framing.pack_header


class _ThreadState:
    """One thread's socket and its correlation-id counter (ids need only be unique per socket)."""

    __slots__ = ("dealer", "next_id", "__weakref__")

    def __init__(self, dealer: BlockingDealer) -> None:
        self.dealer = dealer
        self.next_id = 0


class SyncClientProxy:
    """A blocking connection to one service, spread over one or more of its endpoints.

    Safe to share between threads. Raises the same errors as ``ClientProxy``:
    ``RpcException``, ``RequestTimeout``, ``ServiceUnavailable``, ``MessageTooLarge``.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        emit_timeout: float | None = None,
        max_message_size: int = 64 * 1024 * 1024,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        security: CurveClient | None = None,
    ) -> None:
        self.endpoints, self.timeout, self.connect_timeout, self.emit_timeout = resolve_client_options(
            "SyncClientProxy", endpoints, timeout, connect_timeout, emit_timeout)
        self.heartbeat = heartbeat
        self.security = security
        self.max_message_size = max_message_size
        self.service_name: str | None = None
        self.timeouts = 0
        self.late_replies = 0
        self._local = threading.local()
        self._lock = threading.Lock()  # guards the publisher, connect and the socket registry
        # Closes a thread's socket when the thread ends (its thread-local state is collected),
        # or when the proxy is closed, whichever comes first.
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._publisher: BlockingPublisher | None = None
        self._events_ready = False
        self._emitter_id = random.randrange(1, 0xFFFFFFFF)
        self._event_seq = 0
        self._closed = False

    # -- public API ------------------------------------------------------------------------

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None) -> Any:
        """Request-reply: returns the handler's result, blocking this thread until it arrives.

        Raises ``RpcException`` with the service's error object, ``RequestTimeout`` when no reply
        came within ``timeout`` seconds (default: the proxy's), ``ServiceUnavailable`` when the
        proxy is closed.
        """
        if self._closed:
            raise ServiceUnavailable("this SyncClientProxy is closed")
        if timeout is None:
            timeout = self.timeout
        elif not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._open_thread_state()
        route = encode_pattern(pattern)
        body = codec.encode(data)
        if len(body) + len(route) > self.max_message_size:
            raise codec.too_large(route, body, self.max_message_size)
        cid = state.next_id = (state.next_id + 1) & _MAX_ID or 1
        # The request's time budget (ms, rounded up) is also how long this thread's socket waits.
        wait_ms = int(timeout * 1000) + 1
        ttl_ms = wait_ms if wait_ms < _MAX_TTL_MS else 0
        if wait_ms > _MAX_WAIT_MS:
            wait_ms = _MAX_WAIT_MS
        dealer = state.dealer
        started = time.monotonic()
        if len(body) < EXTERNAL_BODY_THRESHOLD:
            header = _pack_header(KIND_REQUEST, 0, cid, ttl_ms, len(route), len(body))
            first = dealer.exchange(header + route + body, wait_ms)
        else:
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, 0, cid, ttl_ms, route, body)
            dealer.send(batch.take())
            first = dealer.recv_first(timeout)
        return self._await_reply(dealer, first, cid, route, timeout, started)

    def emit(self, pattern: Pattern, data: Any = None) -> None:
        """Publish an event to every connected service; returns once the transport accepted it.

        It never waits for handlers. When a slow subscriber has filled the queue it waits for
        room, up to ``emit_timeout``, then raises ``ServiceUnavailable`` rather than drop it.
        """
        if not self._events_ready:
            self.connect()
        route = encode_pattern(pattern)
        body = codec.encode(data)
        if len(body) + len(route) > self.max_message_size:
            raise codec.too_large(route, body, self.max_message_size)
        with self._lock:
            publisher = self._publisher
            if self._closed or publisher is None:
                raise ServiceUnavailable("this SyncClientProxy is closed")
            # As ClientProxy does: (sequence, emitter id) in the id and ttl fields let a service
            # count events lost in transit; numbered under the lock, so in publishing order.
            self._event_seq += 1
            batch = BatchBuilder()
            batch.add(KIND_EVENT, 0, self._event_seq, self._emitter_id, route, body)
            if not publisher.send(batch.take(), self.emit_timeout):
                raise ServiceUnavailable(
                    f"event {pattern_repr(route)!r} was not accepted within {self.emit_timeout:g} s "
                    "(subscribers are not keeping up)"
                )

    def handshake(self) -> list[dict[str, Any]]:
        """Ask every endpoint who it is (``$zmsg.hello``): one answer per endpoint, in order.

        Raises ``ServiceUnavailable`` naming the endpoint that did not answer within
        ``connect_timeout``: the way to tell "nothing is there" from "the request timed out".
        """
        if self._closed:
            raise ServiceUnavailable("this SyncClientProxy is closed")
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, 1, int(self.connect_timeout * 1000) + 1, _HELLO, codec.encode(None))
        answers = ask_each(self.endpoints, batch.take(), self.connect_timeout, heartbeat=self.heartbeat,
                           security=self.security)
        hellos: list[dict[str, Any]] = []
        for endpoint, frames in zip(self.endpoints, answers, strict=True):
            if frames is None:
                raise ServiceUnavailable(
                    f"no zmsg service answered at {endpoint} within {self.connect_timeout:g} s"
                )
            hellos.append(_hello_answer(endpoint, frames))
        self.service_name = hellos[0].get("service")
        return hellos

    def connect(self) -> None:
        """Do the handshake, open the event socket and wait for every service's subscription.

        Raises ``ServiceUnavailable`` when a service does not answer within ``connect_timeout``.
        ``send`` does not need it (sockets open on first use); ``emit`` calls it when needed.
        """
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("this SyncClientProxy is closed")
            if self._events_ready:
                return
            hellos = self.handshake()
            pairs = zip(self.endpoints, hellos, strict=True)
            event_endpoints = sorted({events_connect_endpoint(ep, info["events"]) for ep, info in pairs})
            if self._publisher is None:
                self._publisher = BlockingPublisher(event_endpoints, heartbeat=self.heartbeat, security=self.security)
            if not self._publisher.wait_subscribers(len(event_endpoints), self.connect_timeout):
                missing = len(event_endpoints) - self._publisher.subscribers
                raise ServiceUnavailable(
                    f"event subscription of {missing} service(s) did not arrive "
                    f"within {self.connect_timeout:g} s"
                )
            self._events_ready = True

    def close(self) -> None:
        """Release every socket (queued events get up to ``timeout`` to be delivered).

        Call it when no thread is in the middle of a call: a ZeroMQ socket cannot be closed
        safely under a thread that is using it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._publisher is not None:
                self._publisher.close(linger_ms=int(self.timeout * 1000))
                self._publisher = None
            for finalizer in self._finalizers:
                finalizer()  # a no-op for a thread that already ended
            self._finalizers = []
        self._local = threading.local()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SyncClientProxy {', '.join(self.endpoints)} ({state})>"

    # -- internals -------------------------------------------------------------------------

    def _open_thread_state(self) -> _ThreadState:
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("this SyncClientProxy is closed")
            dealer = BlockingDealer(self.endpoints, heartbeat=self.heartbeat, security=self.security)
            state = _ThreadState(dealer)
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(state, dealer.close))
        self._local.state = state
        return state

    def _await_reply(self, dealer: BlockingDealer, frame: bytes | None, cid: int, route: bytes,
                     timeout: float, started: float) -> Any:
        """Turn the reply to ``cid`` into a result or an exception, skipping stale replies."""
        while True:
            if frame is None:
                self.timeouts += 1
                raise RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s")
            try:
                records = parse_frames((frame,), 0)
            except FrameError:
                # Large bodies travel as extra frames: only now is it worth asking for them.
                records = self._parse_whole(dealer, frame, cid, route)
            for kind, _flags, reply_id, _ttl, _pattern, body in records:
                if reply_id != cid:
                    self.late_replies += 1  # the reply to a request that already timed out
                    continue
                if kind == KIND_REPLY:
                    try:
                        return codec.decode(body)
                    except PayloadError as exc:
                        raise ProtocolError(f"undecodable reply: {exc}") from None
                if kind == KIND_ERROR:
                    raise codec.rpc_exception(body)
                raise ProtocolError(f"unexpected record kind {kind} in reply to request {cid}")
            remaining = started + timeout - time.monotonic()
            if remaining <= 0:
                self.timeouts += 1
                raise RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s")
            frame = dealer.recv_first(remaining)

    @staticmethod
    def _parse_whole(dealer: BlockingDealer, first: bytes, cid: int, route: bytes) -> list[Any]:
        frames = [first, *dealer.recv_rest()]
        try:
            return parse_frames(frames, 0)
        except FrameError as exc:
            if exc.correlation_id == cid and not any(r[2] == cid for r in exc.records):
                raise ProtocolError(f"malformed reply to {pattern_repr(route)!r}: {exc}") from None
            return exc.records  # what parsed before the fault; a malformed rest is dropped


def _hello_answer(endpoint: str, frames: list[bytes]) -> dict[str, Any]:
    """The service's self-description from its handshake reply, or ProtocolError."""
    try:
        records = parse_frames(frames, 0)
    except FrameError:
        records = []
    for kind, _f, _cid, _ttl, _p, body in records:
        if kind == KIND_REPLY:
            try:
                info = codec.decode(body)
            except PayloadError:
                break
            if isinstance(info, dict) and isinstance(info.get("events"), str):
                return info
    raise ProtocolError(f"{endpoint} did not answer the zmsg handshake")
