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
Metadata, typed replies and middleware (plain functions here) follow the same rules too
(zmsg/client_core.py, zmsg/pipeline.py); without middleware a call is the direct path.

``stream()`` returns a plain iterator over a generator handler's items (the rules are
zmsg/stream_core.py's, as for ``ClientProxy``). A stream has its own DEALER to one endpoint,
watched by a socket monitor: its credit records must reach the service that runs it, the
thread may make other calls while iterating, and a lost connection ends it at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self, TypeVar, overload

from zmsg import _framing, codec
from zmsg.client_core import (
    DEFAULTS,
    HELLO_ROUTE,
    RETRYABLE,
    Call,
    EventStamper,
    Hello,
    LinkEvent,
    PeerLink,
    call_timeout,
    check_one_service,
    client_options,
    encode_call,
    malformed_reply,
    merge_metadata,
    no_answer,
    read_hello,
    read_replies,
    reply_decoder,
    reply_value,
    request_ttl_ms,
    resend_after,
    resolve_endpoints,
    retry_attempts,
    retry_delay,
    unavailable,
)
from zmsg.codec import Pattern, pattern_repr
from zmsg.endpoints import events_connect_endpoint
from zmsg.errors import ProtocolError, RequestTimeout, RpcException, ServiceUnavailable
from zmsg.pipeline import SyncMiddleware, check_sync_middleware, run_chain_sync
from zmsg.protocol import EXTERNAL_BODY_THRESHOLD, KIND_CANCEL, KIND_REPLY, KIND_REQUEST, BatchBuilder
from zmsg.stream_core import END, ClientStream, credit_message, open_stream
from zmsg.transport.blocking import BlockingDealer, BlockingPublisher, WatchedDealer, ask_each
from zmsg.transport.security import CurveClient

__all__ = ["SyncClientProxy", "SyncStream"]

log = logging.getLogger("zmsg.client")

_MAX_WAIT_MS = 0x7FFFFFFF  # ZeroMQ's timeouts are C ints (about 24 days)
_MAX_ID = 0xFFFFFFFFFFFFFFFF
_pack_header = _framing.pack_header

T = TypeVar("T")


class _ThreadState:
    """One thread's socket and its correlation-id counter (ids need only be unique per socket)."""

    __slots__ = ("dealer", "next_id", "links", "__weakref__")

    def __init__(self, dealer: BlockingDealer, endpoints: list[str]) -> None:
        self.dealer = dealer
        self.next_id = 0
        self.links = {endpoint: PeerLink(endpoint) for endpoint in endpoints}

    def down(self) -> ServiceUnavailable | None:
        """Apply the socket's connection events; the fail-fast error when every endpoint is down."""
        for name, endpoint in self.dealer.link_events():
            link = self.links.get(endpoint)
            if link is not None:
                link.on_event(LinkEvent(name))
        return unavailable(self.links.values())


class SyncClientProxy:
    """A blocking connection to one service, spread over one or more of its endpoints.

    Safe to share between threads. Raises the same errors as ``ClientProxy``:
    ``RpcException``, ``RequestTimeout``, ``ServiceUnavailable``, ``MessageTooLarge``.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULTS.timeout,
        connect_timeout: float | None = DEFAULTS.connect_timeout,
        emit_timeout: float | None = DEFAULTS.emit_timeout,
        retries: int = DEFAULTS.retries,
        retry_backoff: float = DEFAULTS.retry_backoff,
        max_message_size: int = DEFAULTS.max_message_size,
        heartbeat: float | None = DEFAULTS.heartbeat,
        security: CurveClient | None = None,
        event_hwm: int = DEFAULTS.event_hwm,
        stream_window: int = DEFAULTS.stream_window,
        metadata: Mapping[str, str] | None = DEFAULTS.metadata,
        middleware: Sequence[SyncMiddleware] = (),
        wait_for_ready: bool = DEFAULTS.wait_for_ready,
    ) -> None:
        """The options mean what they mean for ``ClientProxy`` (declared once, with their
        constraints, in ``zmsg.client_core.ClientOptions``); ``max_in_flight`` and ``flush_at``
        do not apply: each thread has one request out at a time. ``middleware`` are plain
        functions ``def mw(call, call_next)``."""
        self.endpoints = resolve_endpoints("SyncClientProxy", endpoints)
        self.options = options = client_options(
            "SyncClientProxy", timeout=timeout, connect_timeout=connect_timeout, emit_timeout=emit_timeout,
            retries=retries, retry_backoff=retry_backoff, max_message_size=max_message_size,
            heartbeat=heartbeat, event_hwm=event_hwm, stream_window=stream_window, metadata=metadata,
            wait_for_ready=wait_for_ready)
        self.timeout = options.timeout
        self.connect_timeout = options.handshake_timeout
        self.emit_timeout = options.emit_wait
        self.retries = options.retries
        self.retry_backoff = options.retry_backoff
        self.max_message_size = options.max_message_size
        self.heartbeat = options.heartbeat
        self.event_hwm = options.event_hwm
        self.stream_window = options.stream_window
        self.metadata = options.metadata
        self._middleware = tuple(check_sync_middleware(mw) for mw in middleware)
        self.wait_for_ready = options.wait_for_ready
        self.security = security
        self.service_name: str | None = None
        self.timeouts = 0
        self.late_replies = 0
        self.retried = 0
        self.resent = 0
        """Requests sent again after the service refused them unrun (429: unread replies)."""
        self.rejected_stream_records = 0
        """Stream records dropped or refused, as ``ClientStats.rejected_stream_records``."""
        self._local = threading.local()
        self._lock = threading.Lock()  # guards the publisher, connect and the socket registry
        # Closes a thread's socket when the thread ends (its thread-local state is collected),
        # or when the proxy is closed, whichever comes first.
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._publisher: BlockingPublisher | None = None
        self._events_ready = False
        self._stamper = EventStamper()
        self._closed = False
        self._next_endpoint = itertools.count()

    # -- public API ------------------------------------------------------------------------

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: None = None, wait_for_ready: bool | None = None) -> Any: ...

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None, response_type: type[T],
             wait_for_ready: bool | None = None) -> T: ...

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None, response_type: Any,
             wait_for_ready: bool | None = None) -> Any: ...

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
             retries: int | None = None, idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: Any = None, wait_for_ready: bool | None = None) -> Any:
        """Request-reply: returns the handler's result, blocking this thread until it arrives.

        Raises ``RpcException`` with the service's error object, ``RequestTimeout`` when no reply
        came within ``timeout`` seconds (default: the proxy's), ``ServiceUnavailable`` when the
        proxy is closed. Retries (``retries``, or the proxy's) apply only to calls declared
        ``idempotent``, as with ``ClientProxy``. ``metadata`` and ``response_type`` as with
        ``ClientProxy.send``. When this thread's socket knows every endpoint to be down it fails
        at once with ``ServiceUnavailable`` unless ``wait_for_ready`` (or the proxy's) asks to
        wait within the timeout (a call already waiting waits out its timeout).
        """
        if self._closed:
            raise ServiceUnavailable("this SyncClientProxy is closed")
        timeout = call_timeout(timeout, self.timeout)
        attempts = retry_attempts(retries, idempotent, self.retries)
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        decoder = None if response_type is None else reply_decoder(response_type)
        wait = self.wait_for_ready if wait_for_ready is None else wait_for_ready
        if self._middleware:
            call = Call("request", pattern, data, metadata)  # type: ignore[arg-type]
            return run_chain_sync(self._middleware, call, lambda: self._send(
                call.pattern, call.data, timeout, attempts, merge_metadata(None, call.metadata), decoder, wait))
        return self._send(pattern, data, timeout, attempts, metadata, decoder, wait)  # type: ignore[arg-type]

    def _send(self, pattern: Pattern, data: Any, timeout: float, attempts: int, metadata: dict[str, str] | None,
              decoder: Any, wait: bool = True) -> Any:
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        attempt = resends = 0
        budget = timeout  # the call's; ``timeout`` below: this send's share of it
        started = time.monotonic()
        while True:
            try:
                return self._request(route, body, timeout, flags, decoder, wait)
            except RpcException as exc:
                # Refused unrun (429, replies piling up): send it again once they are read.
                remaining = budget - (time.monotonic() - started)
                delay = resend_after(exc, resends + 1, remaining)
                if delay is None or self._closed:
                    raise
                resends += 1
                self.resent += 1
                timeout = remaining - delay
                time.sleep(delay)
            except RETRYABLE as exc:
                if attempt >= attempts or self._closed:
                    raise
                attempt += 1
                self.retried += 1
                log.info("retrying %r after %s (attempt %d/%d)", pattern_repr(route), type(exc).__name__,
                         attempt, attempts)
                time.sleep(retry_delay(attempt, self.retry_backoff))
                timeout = budget
                started = time.monotonic()

    def _request(self, route: bytes, body: bytes, timeout: float, flags: int = 0, decoder: Any = None,
                 wait_for_ready: bool = True) -> Any:
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._open_thread_state()
        if not wait_for_ready and (down := state.down()) is not None:
            raise down
        cid = state.next_id = (state.next_id + 1) & _MAX_ID or 1
        ttl_ms = request_ttl_ms(timeout)
        # The request's time budget (ms, rounded up) is also how long this thread's socket waits.
        wait_ms = min(int(timeout * 1000) + 1, _MAX_WAIT_MS)
        dealer = state.dealer
        started = time.monotonic()
        if len(body) < EXTERNAL_BODY_THRESHOLD:
            header = _pack_header(KIND_REQUEST, flags, cid, ttl_ms, len(route), len(body))
            first = dealer.exchange(b"".join((header, route, body)), wait_ms)  # one copy, not two
        else:
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, flags, cid, ttl_ms, route, body)
            dealer.send(batch.take())
            first = dealer.recv_first(timeout)
        return self._await_reply(dealer, first, cid, route, timeout, started, decoder)

    def stream(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
               metadata: Mapping[str, str] | None = None, response_type: Any = None) -> SyncStream:
        """Streaming reply: ``for item in client.stream(pattern, data):``, with the semantics of
        ``ClientProxy.stream`` (per-item ``timeout``, ``metadata``, ``response_type`` per item,
        errors after the items received, early exit cancels at the service). Leaving the loop
        early closes the stream when the iterator is collected; ``with client.stream(...) as
        items:`` or ``items.close()`` does it deterministically. Client middleware does not wrap
        streams."""
        if self._closed:
            raise ServiceUnavailable("this SyncClientProxy is closed")
        timeout = call_timeout(timeout, self.timeout)
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        return SyncStream(self, route, flags, body, timeout, reply_decoder(response_type))

    def emit(self, pattern: Pattern, data: Any = None, *, metadata: Mapping[str, str] | None = None,
             wait_for_ready: bool | None = None) -> None:
        """Publish an event to every connected service; returns once the transport accepted it.

        It never waits for handlers. When a slow subscriber has filled the queue it waits for
        room, up to ``emit_timeout``, then raises ``ServiceUnavailable`` rather than drop it.
        ``metadata`` goes with the event, over the proxy's (the call wins). Fails at once when
        this thread's socket knows every endpoint to be down, unless ``wait_for_ready`` (or the
        proxy's) asks to wait.
        """
        if not (self.wait_for_ready if wait_for_ready is None else wait_for_ready):
            state = getattr(self._local, "state", None)
            if state is not None and (down := state.down()) is not None:
                raise ServiceUnavailable(f"the event was not sent: {down}")
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        if self._middleware:
            call = Call("event", pattern, data, metadata)  # type: ignore[arg-type]
            run_chain_sync(self._middleware, call, lambda: self._emit(call.pattern, call.data,
                                                                      merge_metadata(None, call.metadata)))
            return
        self._emit(pattern, data, metadata)  # type: ignore[arg-type]

    def _emit(self, pattern: Pattern, data: Any, metadata: dict[str, str] | None) -> None:
        if not self._events_ready:
            self.connect()
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        with self._lock:
            publisher = self._publisher
            if self._closed or publisher is None:
                raise ServiceUnavailable("this SyncClientProxy is closed")
            # Numbered under the lock, so in publishing order.
            batch = BatchBuilder()
            self._stamper.stamp(batch, route, body, flags)
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
        batch.add(KIND_REQUEST, 0, 1, request_ttl_ms(self.connect_timeout), HELLO_ROUTE, codec.encode(None))
        answers = ask_each(self.endpoints, batch.take(), self.connect_timeout, heartbeat=self.heartbeat,
                           security=self.security)
        hellos: list[Hello] = []
        for endpoint, frames in zip(self.endpoints, answers, strict=True):
            if frames is None:
                raise no_answer(endpoint, self.connect_timeout)
            hellos.append(_hello_answer(endpoint, frames))
        self.service_name = check_one_service(hellos)
        for hello in hellos:
            self.max_message_size = hello.limit(self.max_message_size)
        return [hello.info for hello in hellos]

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
                self._publisher = BlockingPublisher(event_endpoints, hwm=self.event_hwm, heartbeat=self.heartbeat,
                                                    security=self.security)
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
            state = _ThreadState(dealer, self.endpoints)
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(state, dealer.close))
        self._local.state = state
        return state

    def _await_reply(self, dealer: BlockingDealer, frame: bytes | None, cid: int, route: bytes,
                     timeout: float, started: float, decoder: Any = None) -> Any:
        """Turn the reply to ``cid`` into a result or an exception, skipping stale replies."""
        while True:
            if frame is None:
                self.timeouts += 1
                raise RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s")
            records, fault = read_replies(dealer.whole_message(frame))
            for kind, _flags, reply_id, _ttl, _pattern, body in records:
                if reply_id == cid:
                    return reply_value(kind, cid, body, decoder)
                self.late_replies += 1  # the reply to a request that already timed out
            if fault is not None and fault.correlation_id == cid:
                raise malformed_reply(fault)
            remaining = started + timeout - time.monotonic()
            if remaining <= 0:
                self.timeouts += 1
                raise RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s")
            frame = dealer.recv_first(remaining)


class SyncStream(Iterator[Any]):
    """The items of one stream, for blocking code; cold: the request goes on the first ``next``."""

    __slots__ = ("_client", "_route", "_flags", "_body", "timeout", "_decoder", "_core", "_dealer", "_link", "_done")

    def __init__(self, client: SyncClientProxy, route: bytes, flags: int, body: bytes, timeout: float,
                 decoder: Any) -> None:
        self._client = client
        self._route = route
        self._flags = flags
        self._body = body
        self.timeout = timeout
        self._decoder = decoder
        self._core: ClientStream | None = None
        self._dealer: WatchedDealer | None = None
        self._link: PeerLink | None = None
        self._done = False

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        core = self._core
        if core is None:
            if self._done:
                raise StopIteration
            core = self._open()
        try:
            while not core.ready:
                self._receive(core)
            value, granted = core.take()
        except BaseException:
            self.close()
            raise
        if value is END:
            self.close()
            raise StopIteration
        if granted and self._dealer is not None:
            self._dealer.send(credit_message(core.correlation_id, granted))
        return value

    def _open(self) -> ClientStream:
        client = self._client
        if client._closed:
            raise ServiceUnavailable("this SyncClientProxy is closed")
        endpoints = client.endpoints
        endpoint = endpoints[next(client._next_endpoint) % len(endpoints)]
        dealer = self._dealer = WatchedDealer(endpoint, heartbeat=client.heartbeat, security=client.security)
        self._link = PeerLink(endpoint)  # the async client's connection rules, fed by the monitor
        core = self._core = ClientStream(1, self._route, client.stream_window, self._decoder)  # a private socket
        batch = BatchBuilder()
        open_stream(batch, 1, request_ttl_ms(self.timeout), self._route, self._body, client.stream_window, self._flags)
        try:
            dealer.send(batch.take())
        except BaseException:
            self.close()
            raise
        return core

    def _receive(self, core: ClientStream) -> None:
        """Wait for the next message of the stream (or the end of its connection, or the timeout)."""
        dealer, link = self._dealer, self._link
        assert dealer is not None and link is not None
        deadline = time.monotonic() + self.timeout
        while True:
            frame = dealer.recv_or_event(max(deadline - time.monotonic(), 0.0))
            if frame is not None:
                break
            for name, _endpoint in dealer.link_events():
                failure = link.on_event(LinkEvent(name))
                if failure is not None:  # lost, or refused: nothing more can come
                    core.fail(failure, service_gone=True)
                    return
            if time.monotonic() >= deadline:
                self._client.timeouts += 1
                core.fail(RequestTimeout(f"no item of stream {pattern_repr(self._route)!r} within {self.timeout:g} s"),
                          service_gone=False)
                return
        records, fault = read_replies(dealer.whole_message(frame))
        cid = core.correlation_id
        client = self._client
        for kind, _flags, record_id, ttl, _pattern, body in records:
            if record_id != cid:
                client.late_replies += 1  # not this stream's: nothing else uses its socket
            elif not core.on_record(kind, body, ttl):
                client.rejected_stream_records += 1
        if fault is not None:
            core.fail(malformed_reply(fault), service_gone=False)

    def close(self) -> None:
        """Stop reading: tell the service to stop (its generator is closed) and free the socket."""
        if self._done:
            return
        self._done = True
        core, dealer = self._core, self._dealer
        self._dealer = None
        if dealer is None:
            return
        linger = 0
        if core is not None and core.close():
            batch = BatchBuilder()
            batch.add(KIND_CANCEL, 0, core.correlation_id, 0, b"", b"")
            try:
                dealer.send(batch.take())
                linger = 1000  # let ZeroMQ deliver the cancel after the socket is closed
            except ServiceUnavailable:
                pass
        dealer.close(linger_ms=linger)

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._done:
            try:
                self.close()
            except Exception:  # interpreter exit: the socket goes with the context
                pass


def _hello_answer(endpoint: str, frames: list[bytes]) -> Hello:
    """The service's self-description from its handshake reply, or ProtocolError."""
    records, _fault = read_replies(frames)
    for kind, _f, cid, _ttl, _p, body in records:
        if kind == KIND_REPLY:
            try:
                return read_hello(endpoint, reply_value(kind, cid, body))
            except ProtocolError:
                break
    raise ProtocolError(f"{endpoint} did not answer the zmsg handshake")
