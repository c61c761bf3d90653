"""``ClientProxy``: ``send`` (request-reply) and ``emit`` (events) to one service.

Theory of operation: the proxy keeps one DEALER per service endpoint (a *peer*) and spreads
requests over the peers that are up, round-robin. Requests queued for a peer during one loop
iteration are flushed as a single ZeroMQ message (or as soon as ``flush_at`` records wait, so two
batches overlap on the wire). Each request has a correlation id and a Future in the in-flight
table; the reader resolves futures straight from the reply batch. Timeouts need no timer per
request: one timer is armed for the earliest deadline and sweeps what has expired; a request
that times out or whose caller is cancelled is cancelled at the service too (a cancel record).

Each peer's connection is watched: when it drops (closed, killed, or silent past the heartbeat
timeout) the requests in flight on it fail at once with ``ServiceUnavailable`` instead of waiting
out their timeouts, and it is dialled again by itself when the service comes back. By default
(``transport="auto"``) the loop speaks ZMTP on each request connection itself
(``transport.zmtp_dealer``, which reports the same connection events as a socket monitor), so a
call costs no thread wake-ups; with CURVE, or ``transport="libzmq"``, a monitored ZeroMQ DEALER.

Events go out on one XPUB connected to every service's event endpoint, learnt with a
``$zmsg.hello`` request. The XPUB reports each subscriber joining and leaving, so ``emit`` only
sends when every service is subscribed; otherwise it waits (bounded) for them to come back and
raises rather than let PUB/SUB drop the event silently. Events carry the emitter's id and a
sequence number so services can detect and count what they missed.

``stream()`` reads a generator handler's items (zmsg/stream_core.py holds the rules): the
reader queues each stream's items on its ``ClientStream`` and wakes the consumer once per
message, not per item; credit goes back every half window consumed, batched with whatever else
is queued for that peer. A stream waits on a timer only while its queue is empty.

Metadata (the proxy's defaults under each call's) travels in a section of the record only when
there is some. Client middleware (``middleware=[...]``) runs around a call only when configured:
without it, awaiting a request is exactly the direct path.

Several instances of one service (the workers of ``zmsg serve --workers``, whose hello lists
them all and which the proxy then connects to as well, or endpoints on several hosts): each
event is addressed to one subscribed instance, round-robin, with a copy to the others only for
their broadcast handlers (``client_core.EventRouter``), numbered per instance. An instance
that drops out is skipped while it is away; when its connection comes back its hello is asked
again (a restarted worker has a new instance id and event port).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Generator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

from zmsg.client_core import (
    DEFAULTS,
    HELLO_ROUTE,
    RETRYABLE,
    Call,
    EventRouter,
    EventStamper,
    Hello,
    InstanceRoute,
    LinkEvent,
    PeerLink,
    PeerState,
    SendWindow,
    call_timeout,
    check_one_service,
    client_options,
    encode_call,
    hello_instance,
    instance_endpoints,
    loop_does_io,
    malformed_reply,
    merge_metadata,
    name_to_resolve,
    no_answer,
    pick_peer,
    read_hello,
    read_replies,
    reply_decoder,
    reply_value,
    request_ttl_ms,
    resend_after,
    resolve_endpoints,
    resolved_endpoints,
    retry_attempts,
    retry_delay,
    send_batch_now,
    unavailable,
)
from zmsg.codec import Pattern, pattern_repr
from zmsg.defaults import DEFAULT_FLUSH_AT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT
from zmsg.endpoints import events_connect_endpoint
from zmsg.errors import RequestTimeout, RpcException, ServiceUnavailable, ZmsgError
from zmsg.pipeline import Middleware, check_middleware, run_chain
from zmsg.protocol import FLAG_SLOW_DOWN, KIND_CANCEL, KIND_REPLY, KIND_REQUEST, BatchBuilder, InFlight
from zmsg.stream_core import END, ClientStream, StreamState, add_credit, open_stream
from zmsg.transport import Channel, connect_dealer
from zmsg.transport.monitor import AUTH_FAILED, CONNECT_FAILED, CONNECTED, DISCONNECTED, PROTOCOL_FAILED, SocketMonitor
from zmsg.transport.publisher import Publisher
from zmsg.transport.security import CurveClient
from zmsg.transport.sockets import connect_all
from zmsg.transport.zmtp_dealer import ZmtpDealer

__all__ = ["ClientProxy", "PendingRequest", "Stream", "DEFAULT_TIMEOUT", "DEFAULT_FLUSH_AT", "DEFAULT_MAX_IN_FLIGHT",
           "ClientStats"]

log = logging.getLogger("zmsg.client")

_LINK_EVENTS: dict[int, LinkEvent] = {
    int(CONNECTED): LinkEvent.CONNECTED,
    int(DISCONNECTED): LinkEvent.DISCONNECTED,
    int(CONNECT_FAILED): LinkEvent.CONNECT_FAILED,
    int(AUTH_FAILED): LinkEvent.AUTH_FAILED,
    int(PROTOCOL_FAILED): LinkEvent.PROTOCOL_FAILED,
}


class _Accepted:
    """What ``emit`` returns when the event is already queued: awaiting it finishes at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_ACCEPTED = _Accepted()


class ClientStats:
    """Counters a proxy keeps about what it could not deliver or match."""

    __slots__ = ("timeouts", "malformed_messages", "disconnects", "retries", "resent", "events_emitted",
                 "emit_waits", "rejected_stream_records", "_window")

    def __init__(self, window: SendWindow | None = None) -> None:
        self.timeouts = 0
        self.malformed_messages = 0
        self.disconnects = 0
        self.retries = 0
        self.resent = 0
        """Requests sent again after the service refused them unrun (429: unread replies)."""
        self.events_emitted = 0
        self.emit_waits = 0
        self.rejected_stream_records = 0
        """Stream records dropped or refused: after the stream was over, beyond its credit, of a
        kind a stream cannot carry (see zmsg.stream_core.ClientStream.on_record)."""
        self._window = window

    @property
    def send_window_cuts(self) -> int:
        """Times the requests this proxy keeps out were halved (``ClientProxy.send_window``): a
        refusal (429 ``not_run``) or a reply marked SLOW_DOWN said its replies were piling up.
        The window counts them; this reads its count."""
        return 0 if self._window is None else self._window.cuts


class _Peer:
    """One endpoint of the service: its DEALER, its pending batch and its link (state)."""

    __slots__ = ("endpoint", "link", "channel", "monitor", "batch", "events_endpoint", "instance")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.link = PeerLink(endpoint)
        self.channel: Channel | ZmtpDealer | None = None
        self.monitor: SocketMonitor | None = None
        self.batch = BatchBuilder()
        self.events_endpoint: str | None = None
        self.instance: tuple[str, frozenset[bytes]] | None = None  # (id, broadcast patterns) from its hello


# future, route, timeout, peer, typed decoder of the reply (None: untyped)
_Waiter = tuple[asyncio.Future[Any], bytes, float, _Peer, Any]

T = TypeVar("T")


class PendingRequest(Generic[T]):
    """A request that is sent when, and only when, it is awaited (cold, like NestJS's Observable).

    Generic in the reply's type: ``send(..., response_type=Invoice)`` is a
    ``PendingRequest[Invoice]``, so ``await`` gives an ``Invoice`` to type checkers too.
    """

    __slots__ = ("_client", "pattern", "data", "timeout", "retries", "metadata", "decoder", "wait_for_ready")

    def __init__(self, client: ClientProxy, pattern: Pattern, data: Any, timeout: float | None, retries: int,
                 metadata: dict[str, str] | None = None, decoder: Any = None, wait_for_ready: bool = False) -> None:
        self._client = client
        self.pattern = pattern
        self.data = data
        self.timeout = timeout
        self.retries = retries
        self.metadata = metadata
        self.decoder = decoder
        self.wait_for_ready = wait_for_ready

    def __await__(self) -> Generator[Any, None, T]:
        client = self._client
        if client._closed:
            raise ServiceUnavailable("this ClientProxy is closed")
        if client._slot_waiters or client._promised or len(client._inflight) >= client._window.limit:
            # client._must_wait(), inlined: this runs on every call
            yield from client._wait_for_slot(self.timeout).__await__()
        attempt = resends = 0
        timeout = self.timeout
        started = time.monotonic()
        while True:
            if not self.wait_for_ready and (down := unavailable(client._links)) is not None:
                future = client._failed(down)  # fail fast: every endpoint is known to be down
                cid, peer = 0, client._peers[0]
            else:
                cid, future, peer = client._submit(self.pattern, self.data, timeout, None, self.metadata,
                                                   self.decoder)
                if not self.wait_for_ready and cid and peer.link.state is not PeerState.UP:
                    # Sent to a peer not (yet) up: fails once every endpoint is known down. One
                    # that is up fails with its own disconnect (_fail_peer) anyway.
                    client._impatient.add(cid)
            try:
                result = yield from future
                client._impatient.discard(cid)
                return result  # type: ignore[no-any-return]
            except asyncio.CancelledError:
                client._impatient.discard(cid)
                client._cancel(cid, peer)
                raise
            except RpcException as exc:
                # Refused unrun (429, replies piling up): send it again once they are read.
                client._impatient.discard(cid)
                budget = call_timeout(self.timeout, client.timeout)
                remaining = budget - (time.monotonic() - started)
                delay = resend_after(exc, resends + 1, remaining)
                if delay is None or client._closed:
                    raise
                client._cut_window(cid)
                resends += 1
                client.stats.resent += 1
                yield from asyncio.sleep(delay).__await__()
                # Behind the callers already waiting: fewer requests out is what the refusal asked for.
                yield from client._wait_for_slot(budget - (time.monotonic() - started)).__await__()
                timeout = budget - (time.monotonic() - started)
            except RETRYABLE as exc:
                client._impatient.discard(cid)
                if attempt >= self.retries or client._closed:
                    raise
                attempt += 1
                client.stats.retries += 1
                timeout = self.timeout
                started = time.monotonic()
                delay = retry_delay(attempt, client.retry_backoff)
                log.info("retrying %r after %s (attempt %d/%d)", self.pattern, type(exc).__name__, attempt, self.retries)
                yield from asyncio.sleep(delay).__await__()

    def __repr__(self) -> str:
        return f"<PendingRequest {self.pattern!r} (not sent until awaited)>"


class _StreamLink:
    """What the reader touches of a stream: its core and the consumer waiting for an item.

    Kept apart from the ``Stream`` the caller holds, so the proxy's table does not keep that
    alive: ``break`` out of ``async for`` drops the last reference, and ``Stream.__del__``
    cancels at the service at once.
    """

    __slots__ = ("core", "peer", "waiter", "stats")

    def __init__(self, core: ClientStream, peer: _Peer, stats: ClientStats) -> None:
        self.core = core
        self.peer = peer
        self.waiter: asyncio.Future[None] | None = None
        self.stats = stats

    def on_record(self, kind: int, body: Any, seq: int) -> None:
        core = self.core
        if not core.on_record(kind, body, seq):
            self.stats.rejected_stream_records += 1
        waiter = self.waiter
        if waiter is not None and core.ready and not waiter.done():
            waiter.set_result(None)

    def lost(self, error: BaseException, service_gone: bool = True) -> None:
        self.core.fail(error, service_gone=service_gone)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Stream(AsyncIterator[Any]):
    """``async for item in client.stream(pattern, data):`` the items of a generator handler.

    Cold like ``send``: the request goes out on the first ``__anext__``. Leaving early (``break``,
    an exception in the loop body, cancellation of the consuming task, ``aclose()``) tells the
    service to stop, which closes the generator there. Raises what ``send`` raises:
    ``RequestTimeout`` when no next item came within the timeout (the service is then told to
    stop), ``RpcException`` after the items already received when the generator raised,
    ``ServiceUnavailable`` when the connection is lost mid-stream.
    """

    __slots__ = ("_client", "pattern", "_route", "_flags", "_body", "timeout", "_decoder", "_link", "_done")

    def __init__(self, client: ClientProxy, pattern: Pattern, route: bytes, flags: int, body: bytes, timeout: float,
                 decoder: Any) -> None:
        self._client = client
        self.pattern = pattern
        self._route = route
        self._flags = flags
        self._body = body
        self.timeout = timeout
        self._decoder = decoder
        self._link: _StreamLink | None = None
        self._done = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        link = self._link
        if link is None:
            if self._done:
                raise StopAsyncIteration
            link = self._link = self._client._open_stream(self._route, self._flags, self._body, self.timeout,
                                                          self._decoder)
        core = link.core
        if not core.ready:
            await self._wait(link)
        try:
            value, granted = core.take()
        except BaseException:
            self._finish()
            raise
        if value is END:
            self._finish()
            raise StopAsyncIteration
        if granted:
            self._client._send_credit(core.correlation_id, link.peer, granted)
        return value

    async def _wait(self, link: _StreamLink) -> None:
        loop = self._client._loop
        assert loop is not None
        waiter = link.waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._on_timeout, link, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            self._finish()  # the consuming task was cancelled: so is the stream, at the service
            raise
        finally:
            timer.cancel()
            link.waiter = None

    def _on_timeout(self, link: _StreamLink, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        self._client.stats.timeouts += 1
        link.lost(RequestTimeout(f"no item of stream {pattern_repr(self._route)!r} within {self.timeout:g} s"),
                  service_gone=False)

    def _finish(self) -> None:
        """The caller is done (ended, failed or left): forget it, and stop the service if needed."""
        if self._done:
            return
        self._done = True
        link = self._link
        if link is None:
            return
        client = self._client
        cid = link.core.correlation_id
        client._streams.pop(cid, None)
        if link.core.close():
            client._send_cancel(cid, link.peer)

    async def aclose(self) -> None:
        """Stop reading: the service closes the generator (its ``finally`` runs)."""
        self._finish()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._finish()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the last reference at once (no aclose() call).
        if not self._done and self._link is not None:
            try:
                self._finish()
            except Exception:  # the loop may already be closed at interpreter exit
                pass

    def __repr__(self) -> str:
        state = "done" if self._done else "open" if self._link is not None else "not started"
        return f"<Stream {self.pattern!r} ({state})>"


class _ChainedRequest(PendingRequest[T]):
    """What ``send`` returns on a proxy with middleware: awaiting it runs the chain, whose
    ``call_next`` awaits a plain ``PendingRequest`` (so a proxy without middleware pays nothing)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, T]:
        if self._client._closed:
            raise ServiceUnavailable("this ClientProxy is closed")
        return (yield from self._client._through_middleware(self).__await__())  # type: ignore[no-any-return]


class ClientProxy:
    """A connection to one service, spread over one or more of its endpoints."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULTS.timeout,
        connect_timeout: float | None = DEFAULTS.connect_timeout,
        emit_timeout: float | None = DEFAULTS.emit_timeout,
        retries: int = DEFAULTS.retries,
        retry_backoff: float = DEFAULTS.retry_backoff,
        max_in_flight: int = DEFAULTS.max_in_flight,
        max_message_size: int = DEFAULTS.max_message_size,
        heartbeat: float | None = DEFAULTS.heartbeat,
        security: CurveClient | None = None,
        event_hwm: int = DEFAULTS.event_hwm,
        flush_at: int = DEFAULTS.flush_at,
        stream_window: int = DEFAULTS.stream_window,
        metadata: Mapping[str, str] | None = DEFAULTS.metadata,
        middleware: Sequence[Middleware] = (),
        wait_for_ready: bool = DEFAULTS.wait_for_ready,
        transport: str = DEFAULTS.transport,
    ) -> None:
        """
        ``timeout``: default seconds per request; ``connect_timeout``: for the handshake
        (default: ``timeout``); ``emit_timeout``: longest an ``emit`` waits for backpressure or a
        missing subscriber before raising (default: ``timeout``); ``retries`` / ``retry_backoff``:
        for calls declared idempotent; ``max_in_flight``: callers beyond it wait for a slot, in
        turn (fewer, ``send_window``, for a while after the service said replies pile up);
        ``max_message_size``: larger payloads raise ``MessageTooLarge`` before anything is sent
        (lowered to the service's own limit once connected); ``heartbeat``: ZMTP heartbeat
        interval, a silent peer is dropped after three; ``security``: a ``CurveClient``;
        ``event_hwm``: event messages queued per subscriber before ``emit`` waits;
        ``flush_at``: queued records that make a batch go at once; ``stream_window``: items a
        service may send ahead of a stream's consumer (credit); ``metadata``: sent with every
        request and event, under each call's own; ``middleware``: ``async def mw(call,
        call_next)`` run around every call, outermost first; ``wait_for_ready``: when every
        endpoint is known to be down, wait for one (within the timeout) instead of failing at
        once with ``ServiceUnavailable`` (also per call); ``transport``: "auto" (the loop speaks
        ZMTP itself over tcp:// and ipc:// without CURVE, libzmq otherwise), "asyncio" or
        "libzmq". Options are declared, with their constraints, in
        ``zmsg.client_core.ClientOptions``.
        """
        self.endpoints = resolve_endpoints("ClientProxy", endpoints)
        self.options = options = client_options(
            "ClientProxy", timeout=timeout, connect_timeout=connect_timeout, emit_timeout=emit_timeout,
            retries=retries, retry_backoff=retry_backoff, max_in_flight=max_in_flight,
            max_message_size=max_message_size, heartbeat=heartbeat, event_hwm=event_hwm, flush_at=flush_at,
            stream_window=stream_window, metadata=metadata, wait_for_ready=wait_for_ready, transport=transport)
        # Plain attributes: the hot path reads them on every call.
        self.timeout = options.timeout
        self.connect_timeout = options.handshake_timeout
        self.emit_timeout = options.emit_wait
        self.retries = options.retries
        self.retry_backoff = options.retry_backoff
        self._window = SendWindow(options.max_in_flight)
        self.max_message_size = options.max_message_size
        self.heartbeat = options.heartbeat
        self.flush_at = options.flush_at
        self.event_hwm = options.event_hwm
        self.stream_window = options.stream_window
        self.metadata = options.metadata
        self._middleware = tuple(check_middleware(mw) for mw in middleware)
        self.wait_for_ready = options.wait_for_ready
        self.security = security
        for endpoint in self.endpoints:
            loop_does_io(options.transport, security is not None, endpoint)  # refuses what cannot be
        self.stats = ClientStats(self._window)
        self._impatient: set[int] = set()  # requests in flight that fail once every endpoint is down
        self.service_name: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers = [_Peer(e) for e in self.endpoints]
        self._links = [p.link for p in self._peers]
        self._rr = 0
        self._dirty: list[_Peer] = []
        self._flush_scheduled = False
        self._inflight: InFlight[_Waiter] = InFlight()
        self._streams: dict[int, _StreamLink] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._promised = 0  # slots freed for woken waiters that have not sent yet
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        self._publisher: Publisher | None = None
        self._events = BatchBuilder()
        self._events_scheduled = False
        self._events_ready = False
        self._stamper = EventStamper()
        self._router = EventRouter(self._stamper.emitter_id)
        self._addressing = False  # every endpoint named its instance: address each event to one
        self._routed_dirty: list[InstanceRoute] = []
        self._refreshing: set[asyncio.Task[None]] = set()
        self._connect_lock: asyncio.Lock | None = None
        self._opened = False
        self._closed = False

    # -- public API ------------------------------------------------------------------------

    @property
    def max_in_flight(self) -> int:
        """Requests out at once before callers wait for a slot (the option)."""
        return self._window.ceiling

    @property
    def send_window(self) -> int:
        """Requests out at once now: ``max_in_flight``, or fewer after a service said this
        client's replies are piling up (a reply marked SLOW_DOWN past half its budget, a 429
        ``not_run`` refusal past all of it), growing back as replies come (``SendWindow``)."""
        return self._window.limit

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: None = None, wait_for_ready: bool | None = None) -> PendingRequest[Any]: ...

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: type[T], wait_for_ready: bool | None = None) -> PendingRequest[T]: ...

    @overload
    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None, retries: int | None = None,
             idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: Any, wait_for_ready: bool | None = None) -> PendingRequest[Any]: ...

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
             retries: int | None = None, idempotent: bool = False, metadata: Mapping[str, str] | None = None,
             response_type: Any = None, wait_for_ready: bool | None = None) -> PendingRequest[Any]:
        """Request-reply: ``await client.send(pattern, data)`` returns the handler's result.

        Raises ``RpcException`` with the service's error object, ``RequestTimeout`` when no reply
        came within ``timeout`` seconds (default: the proxy's), ``ServiceUnavailable`` when the
        connection dropped with the request in flight. Nothing is sent until it is awaited.
        Retries (``retries``, or the proxy's) apply only to calls declared ``idempotent``: a
        retried request may run twice, so zmsg never retries anything else.
        ``metadata`` goes with the request, over the proxy's (the call wins); with
        ``response_type`` (a msgspec Struct, a dataclass, ``list[int]``...) the reply is decoded
        into that type, or ``ReplyValidationError`` names the field that does not match.
        When every endpoint is known to be down it fails at once with ``ServiceUnavailable``,
        unless ``wait_for_ready`` (or the proxy's) asks to wait, within the timeout, for one.
        """
        if timeout is not None:
            call_timeout(timeout, self.timeout)
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        wait = self.wait_for_ready if wait_for_ready is None else wait_for_ready
        request = _ChainedRequest if self._middleware else PendingRequest
        return request(self, pattern, data, timeout, retry_attempts(retries, idempotent, self.retries),
                       metadata, None if response_type is None else reply_decoder(response_type),  # type: ignore[arg-type]
                       wait_for_ready=wait)

    async def _through_middleware(self, request: PendingRequest[Any]) -> Any:
        call = Call("request", request.pattern, request.data, request.metadata)

        def call_next() -> PendingRequest[Any]:
            return PendingRequest(self, call.pattern, call.data, request.timeout, request.retries,
                                  merge_metadata(None, call.metadata), request.decoder,
                                  wait_for_ready=request.wait_for_ready)

        return await run_chain(self._middleware, call, call_next)

    def stream(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
               metadata: Mapping[str, str] | None = None, response_type: Any = None) -> Stream:
        """Streaming reply: ``async for item in client.stream(pattern, data):`` yields each value the
        service's generator handler yields, in order, and ends when it returns.

        ``timeout`` bounds the wait for each next item (default: the proxy's), raising
        ``RequestTimeout``; ``metadata`` goes with the request as for ``send`` (the service's
        middleware sees ``ctx.kind == "stream"``); ``response_type`` decodes each item into that
        type (``ReplyValidationError`` names the field that does not match). The service runs
        ahead by at most ``stream_window`` items. A plain handler's reply is the stream's single
        item. Nothing is sent until the first item is asked for. Client middleware does not
        wrap streams.
        """
        timeout = call_timeout(timeout, self.timeout)
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        return Stream(self, pattern, route, flags, body, timeout, reply_decoder(response_type))

    def emit(self, pattern: Pattern, data: Any = None, *, metadata: Mapping[str, str] | None = None,
             wait_for_ready: bool | None = None) -> Awaitable[None]:
        """Publish an event to every connected service; await it: it completes once the transport
        has accepted the event.

        It never waits for handlers. It waits only when the transport pushes back (a slow
        subscriber filled its queue) or a service is momentarily unsubscribed (restarting), and
        raises ``ServiceUnavailable`` after ``emit_timeout`` rather than drop the event. Like
        NestJS's ``emit``, it is hot: when the proxy is connected and nothing pushes back, the event
        is queued during the call, and awaiting costs nothing more (no coroutine per event).
        ``metadata`` goes with the event, over the proxy's (the call wins). When every endpoint
        is known to be down it raises ``ServiceUnavailable`` at once, unless ``wait_for_ready``
        (or the proxy's) asks to wait for one, within ``emit_timeout``.
        """
        if not (self.wait_for_ready if wait_for_ready is None else wait_for_ready):
            down = unavailable(self._links)
            if down is not None:
                raise ServiceUnavailable(f"the event was not sent: {down}")
        if metadata or self.metadata:
            metadata = merge_metadata(self.metadata, metadata)
        if self._middleware:
            return self._emit_through_middleware(pattern, data, metadata)  # type: ignore[arg-type]
        return self._emit(pattern, data, metadata)  # type: ignore[arg-type]

    def _emit(self, pattern: Pattern, data: Any, metadata: dict[str, str] | None) -> Awaitable[None]:
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        publisher = self._publisher
        if not self._events_ready or publisher is None:
            return self._emit_when_subscribed(route, body, flags)
        if self._addressing:
            grown = self._router.route(route, body, publisher.instances, flags)
            if grown is None:  # no instance (or not one that wants a broadcast copy) subscribed now
                return self._emit_when_subscribed(route, body, flags)
            self._queue_routed(grown)
        elif publisher.subscribers < len(publisher.endpoints):
            return self._emit_when_subscribed(route, body, flags)
        else:
            self._queue_event(route, body, flags)
        if publisher.queued:
            return self._wait_event_accepted(publisher)
        return _ACCEPTED

    async def _emit_through_middleware(self, pattern: Pattern, data: Any, metadata: dict[str, str] | None) -> None:
        call = Call("event", pattern, data, metadata)

        async def call_next() -> None:
            await self._emit(call.pattern, call.data, merge_metadata(None, call.metadata))

        await run_chain(self._middleware, call, call_next)

    async def _emit_when_subscribed(self, route: bytes, body: bytes, flags: int) -> None:
        if not self._events_ready or not self._addressing:
            await self._ensure_subscribers(self.emit_timeout, "the event was not sent")
        if self._addressing:
            await self._emit_addressed(route, body, flags)
        else:
            self._queue_event(route, body, flags)
        publisher = self._publisher
        if publisher is not None and publisher.queued:
            await self._wait_event_accepted(publisher)

    async def _emit_addressed(self, route: bytes, body: bytes, flags: int) -> None:
        """Wait (bounded) until an instance that can take the event is subscribed, then queue it;
        instances that are away are not waited for, unless they asked for a broadcast copy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.emit_timeout
        while True:
            publisher = self._publisher
            if publisher is None:
                raise ServiceUnavailable("this ClientProxy is closed")
            grown = self._router.route(route, body, publisher.instances, flags)
            if grown is not None:
                self._queue_routed(grown)
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServiceUnavailable(
                    f"no instance of service {self.service_name!r} able to take {pattern_repr(route)!r} was "
                    f"subscribed to events within {self.emit_timeout:g} s; the event was not sent")
            self._refresh_stale()
            await publisher.wait_change(min(remaining, 0.25))

    def _queue_routed(self, grown: list[InstanceRoute]) -> None:
        self.stats.events_emitted += 1
        for target in grown:
            count = target.batch.count
            if count >= self.flush_at:
                if self._publisher is not None:
                    self._publisher.send(target.take())
            elif count == 1:
                self._routed_dirty.append(target)
        if not self._events_scheduled:
            self._events_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_events)

    def _queue_event(self, route: bytes, body: bytes, flags: int) -> None:
        self.stats.events_emitted += 1
        events = self._events
        self._stamper.stamp(events, route, body, flags)
        if events.count >= self.flush_at:
            self._flush_events()
        elif not self._events_scheduled:
            self._events_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_events)

    async def _wait_event_accepted(self, publisher: Publisher) -> None:
        self.stats.emit_waits += 1
        try:
            await asyncio.wait_for(publisher.wait_writable(), self.emit_timeout)
        except TimeoutError:
            raise ServiceUnavailable(
                f"event subscribers did not drain their queue within {self.emit_timeout:g} s "
                f"({publisher.queued} message(s) still waiting)"
            ) from None

    async def connect(self) -> None:
        """Open the sockets, learn the services' event endpoints and wait for their subscriptions.

        Raises ``ServiceUnavailable`` (``AuthenticationFailed`` for refused CURVE credentials)
        when a service does not answer within ``connect_timeout``.
        """
        self._ensure_open()
        if not self._opened:
            await self._resolve_names()
        await self._ensure_subscribers(self.connect_timeout, "")

    async def _resolve_names(self) -> None:
        """A host name that resolves to several addresses (a Kubernetes headless service, DNS
        round-robin) is several instances: one peer per address, instead of the first only."""
        loop = asyncio.get_running_loop()
        for peer in list(self._peers):
            target = name_to_resolve(peer.endpoint)
            if target is None:
                continue
            try:
                infos = await loop.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
            except OSError as exc:  # ZeroMQ will retry the name itself; the handshake reports it
                log.info("cannot resolve %s (%s): connecting to the name as given", peer.endpoint, exc)
                continue
            found = resolved_endpoints(target[1], [str(info[4][0]) for info in infos])
            if len(found) < 2:
                continue
            log.info("%s resolves to %d addresses: connecting to each", peer.endpoint, len(found))
            index = self._peers.index(peer)
            known = {p.endpoint for p in self._peers}
            added = [_Peer(e) for e in found if e not in known]
            self._peers[index:index + 1] = added
            self._links[index:index + 1] = [p.link for p in added]
            self.endpoints[index:index + 1] = [p.endpoint for p in added]

    async def close(self) -> None:
        """Flush queued events, fail what is still in flight, and release every socket."""
        if self._closed:
            return
        self._closed = True
        for task in self._refreshing:
            task.cancel()
        if self._publisher is not None:
            self._flush_events()
            try:
                await asyncio.wait_for(self._publisher.wait_writable(), timeout=self.emit_timeout)
            except (TimeoutError, ServiceUnavailable):
                log.warning("closing with %d event message(s) the transport did not accept", self._publisher.queued)
            # Linger lets ZeroMQ finish delivering what it has accepted after we are gone.
            self._publisher.close(linger_ms=int(self.emit_timeout * 1000))
            self._publisher = None

        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _cid, (future, route, _t, _p, _d) in self._inflight.drain():
            if not future.done():
                future.set_exception(ServiceUnavailable(f"client closed before {pattern_repr(route)!r} was answered"))
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_exception(ServiceUnavailable("client closed"))
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if stream.core.state is StreamState.OPEN and stream.peer.channel is not None:
                # The service must not keep a generator suspended for a client that is gone.
                stream.peer.batch.add(KIND_CANCEL, 0, stream.core.correlation_id, 0, b"", b"")
            stream.lost(ServiceUnavailable(f"client closed during stream {pattern_repr(stream.core.route)!r}"))
        for peer in self._peers:
            if peer.monitor is not None:
                peer.monitor.close()
                peer.monitor = None
            if peer.channel is not None:
                linger = 0
                if peer.batch.count:  # the cancels of open streams: let ZeroMQ deliver them
                    self._flush_peer(peer)
                    linger = 1000
                peer.channel.close(linger_ms=linger)
                peer.channel = None
            peer.batch = BatchBuilder()

    async def __aenter__(self) -> ClientProxy:
        try:
            await self.connect()
        except BaseException:  # no __aexit__ will come: release the sockets opened so far
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def late_replies(self) -> int:
        """Replies that arrived for a request already timed out or cancelled (dropped)."""
        return self._inflight.late_replies

    # -- requests --------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise ServiceUnavailable("this ClientProxy is closed")

    def _open(self) -> None:
        self._ensure_open()
        self._loop = asyncio.get_running_loop()
        for peer in self._peers:
            self._open_peer(peer)
        self._opened = True

    def _loop_does_io(self, endpoint: str) -> bool:
        """Whether this peer's requests go over ZmtpDealer (the loop's own TCP) or libzmq."""
        return loop_does_io(self.options.transport, self.security is not None, endpoint)

    def _open_peer(self, peer: _Peer) -> None:
        if self._loop_does_io(peer.endpoint):
            # The loop speaks ZMTP on the TCP connection itself: no I/O-thread wake-ups, and it
            # reports the monitor's connection events, so the link state works alike.
            peer.channel = ZmtpDealer(peer.endpoint, self._on_reply_message,
                                      functools.partial(self._on_peer_event, peer),
                                      name=f"client/{peer.endpoint}", heartbeat=self.heartbeat)
            return
        sock = connect_dealer([peer.endpoint], heartbeat=self.heartbeat, security=self.security, connect=False)
        # Frames after the batch are external bodies: decoded from ZeroMQ's buffers, uncopied.
        peer.channel = Channel(sock, self._on_reply_message, name=f"client/{peer.endpoint}", copy_frames=1)
        # Monitor first, connect second: a fast handshake must not happen before we listen.
        peer.monitor = SocketMonitor(sock, functools.partial(self._on_peer_event, peer),
                                     name=f"client/{peer.endpoint}")
        connect_all(sock, [peer.endpoint])

    def _add_peer(self, peer: _Peer) -> None:
        """An endpoint learnt from a hello (another instance of the service) joins the proxy."""
        self._peers.append(peer)
        self._links.append(peer.link)
        self.endpoints.append(peer.endpoint)
        if self._opened:
            self._open_peer(peer)

    def _pick_peer(self) -> _Peer:
        self._rr = pick_peer(self._links, self._rr)
        return self._peers[self._rr]

    def _submit(self, pattern: Pattern | bytes, data: Any, timeout: float | None, peer: _Peer | None,
                metadata: dict[str, str] | None = None, decoder: Any = None) -> tuple[int, asyncio.Future[Any], _Peer]:
        if not self._opened:
            self._open()
        loop = self._loop
        assert loop is not None
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        if timeout is None:
            timeout = self.timeout
        if peer is None:
            peer = self._peers[0] if len(self._peers) == 1 else self._pick_peer()
        future = loop.create_future()
        if peer.link.failure is not None:
            future.set_exception(peer.link.failure)
            return 0, future, peer
        inflight = self._inflight
        cid = inflight.new_id()
        deadline = loop.time() + timeout
        if inflight.add(cid, (future, route, timeout, peer, decoder), deadline) or deadline < self._timer_when:
            self._arm_timer(deadline)
        batch = peer.batch
        batch.add(KIND_REQUEST, flags, cid, request_ttl_ms(timeout), route, body)
        if send_batch_now(batch.count, len(batch.buf), batch.external_bytes, len(inflight), self.flush_at):
            self._flush_peer(peer)
        else:
            if batch.count == 1:
                self._dirty.append(peer)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush_requests)
        return cid, future, peer

    def _flush_peer(self, peer: _Peer) -> None:
        if peer.batch.count and peer.channel is not None:
            peer.channel.send(peer.batch.take())

    def _flush_requests(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            self._flush_peer(peer)

    def _cancel(self, cid: int, peer: _Peer) -> None:
        """The caller gave up: forget the request and tell the service to stop working on it."""
        if self._inflight.discard(cid) is not None:
            self._send_cancel(cid, peer)
            self._release_slots()

    def _send_cancel(self, cid: int, peer: _Peer) -> None:
        if peer.channel is None or self._closed:
            return
        peer.batch.add(KIND_CANCEL, 0, cid, 0, b"", b"")
        self._queued(peer)

    def _queued(self, peer: _Peer) -> None:
        """Records were added to ``peer``'s batch outside ``_submit``: make sure the batch goes."""
        if peer.batch.count >= self.flush_at:
            self._flush_peer(peer)
            return
        if peer not in self._dirty:
            self._dirty.append(peer)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_requests)

    # -- streams ---------------------------------------------------------------------------

    def _open_stream(self, route: bytes, flags: int, body: bytes, timeout: float, decoder: Any) -> _StreamLink:
        """Send the stream's request and first credit; register it with the reader."""
        self._ensure_open()
        if not self._opened:
            self._open()
        if not self.wait_for_ready and (down := unavailable(self._links)) is not None:
            raise down  # fail fast, as send does: every endpoint is known to be down
        peer = self._peers[0] if len(self._peers) == 1 else self._pick_peer()
        if peer.link.failure is not None:
            raise peer.link.failure
        cid = self._inflight.new_id()
        link = self._streams[cid] = _StreamLink(ClientStream(cid, route, self.stream_window, decoder), peer, self.stats)
        open_stream(peer.batch, cid, request_ttl_ms(timeout), route, body, self.stream_window, flags)
        self._queued(peer)
        return link

    def _send_credit(self, cid: int, peer: _Peer, count: int) -> None:
        if peer.channel is None or self._closed:
            return
        add_credit(peer.batch, cid, count)
        self._queued(peer)

    def _must_wait(self) -> bool:
        return bool(self._slot_waiters or self._promised) or len(self._inflight) >= self._window.limit

    async def _wait_for_slot(self, timeout: float | None) -> None:
        """Backpressure for callers: wait, first come first served, until a slot is ours.

        A freed slot is promised to the caller woken for it (``_promised``) until that caller
        runs and sends: a caller whose reply just came in, running first, would otherwise take
        it, and the woken one would wait again at the back, for ever under load.
        """
        if not self._must_wait():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        got = False
        try:
            await asyncio.wait_for(waiter, self.timeout if timeout is None else timeout)
            got = True
        except TimeoutError:
            raise RequestTimeout(f"no request slot freed within {timeout or self.timeout:g} s "
                                 f"(max_in_flight={self.max_in_flight}, send_window={self.send_window})") from None
        finally:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._promised -= 1  # ours: used now, or passed on below
            if not got:  # timed out or cancelled: a slot promised to us goes to the next caller
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
                self._release_slots()

    def _cut_window(self, cid: int) -> None:
        """Request ``cid`` was refused unrun or answered with FLAG_SLOW_DOWN: this client's
        replies are piling up at the service, so keep fewer out (see ``SendWindow``)."""
        window = self._window
        if window.cut(cid, len(self._inflight), self._inflight.last_id):
            log.debug("replies are piling up at the service: keeping at most %d requests out for now "
                      "(max_in_flight %d)", window.limit, self.max_in_flight)

    def _release_slots(self) -> None:
        waiters = self._slot_waiters
        free = self._window.limit - len(self._inflight) - self._promised
        while waiters and free > 0:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._promised += 1
                free -= 1

    def _on_reply_message(self, frames: list[Any]) -> None:
        records, fault = read_replies(frames)
        resolve = self._inflight.resolve
        streams = self._streams
        window = self._window
        if window.limit < window.ceiling:
            window.replied(sum(1 for record in records if record[0] == KIND_REPLY), self._must_wait())
        for kind, flags, cid, ttl, _pattern, body in records:
            if flags & FLAG_SLOW_DOWN:
                self._cut_window(cid)
            if streams:
                stream = streams.get(cid)
                if stream is not None:
                    stream.on_record(kind, body, ttl)
                    continue
            waiter = resolve(cid)
            if waiter is None:
                continue
            future = waiter[0]
            if future.done():
                continue
            try:
                decoder = waiter[4]
                future.set_result(reply_value(kind, cid, body) if decoder is None
                                  else reply_value(kind, cid, body, decoder))
            except ZmsgError as exc:
                future.set_exception(exc)
        if fault is not None:
            self.stats.malformed_messages += 1
            log.warning("dropped a malformed reply message: %s", fault)
            broken = streams.get(fault.correlation_id) if fault.correlation_id else None
            if broken is not None:
                broken.lost(malformed_reply(fault), service_gone=False)
            waiter = self._inflight.discard(fault.correlation_id) if fault.correlation_id else None
            if waiter is not None and not waiter[0].done():
                waiter[0].set_exception(malformed_reply(fault))
        if self._slot_waiters:
            self._release_slots()

    def _arm_timer(self, deadline: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = float("inf")
        loop = self._loop
        assert loop is not None
        for cid, (future, route, timeout, peer, _decoder) in self._inflight.expire(loop.time()):
            if not future.done():
                self.stats.timeouts += 1
                future.set_exception(RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s"))
            self._send_cancel(cid, peer)
        earliest = self._inflight.earliest_deadline
        if earliest != float("inf"):
            self._arm_timer(earliest)
        if self._slot_waiters:
            self._release_slots()

    # -- connection events -----------------------------------------------------------------

    def _on_peer_event(self, peer: _Peer, event: int, _endpoint: str = "") -> None:
        link_event = _LINK_EVENTS.get(event)
        if link_event is None:
            return
        disconnects = peer.link.disconnects
        failure = peer.link.on_event(link_event)
        self.stats.disconnects += peer.link.disconnects - disconnects
        if failure is not None:
            self._fail_peer(peer, failure)
        if self._impatient and (down := unavailable(self._links)) is not None:
            self._fail_impatient(down)
        if link_event is LinkEvent.CONNECTED and self._addressing and peer.link.hello_stale:
            self._refresh(peer)  # back after a drop: may be a new process (new instance, new event port)

    def _refresh_stale(self) -> None:
        for peer in self._peers:
            if peer.link.hello_stale and peer.link.state is PeerState.UP:
                self._refresh(peer)

    def _refresh(self, peer: _Peer) -> None:
        """Ask ``peer``'s hello again in the background (only one at a time per peer)."""
        if self._closed or self._loop is None or any(t.get_name() == peer.endpoint for t in self._refreshing):
            return
        task = self._loop.create_task(self._refresh_one(peer), name=peer.endpoint)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _refresh_one(self, peer: _Peer) -> None:
        assert self._connect_lock is not None
        try:
            async with self._connect_lock:
                if peer.link.hello_stale and not self._closed:
                    await self._learn_event_endpoints([peer], self.connect_timeout, "")
        except ZmsgError as exc:  # still away: the next reconnect, or the next emit, asks again
            log.info("%s did not answer its hello after reconnecting: %s", peer.endpoint, exc)

    def _failed(self, error: ServiceUnavailable) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(error)
        return future

    def _fail_impatient(self, error: ServiceUnavailable) -> None:
        """Every endpoint is now known down: requests not asked to wait for one fail now."""
        for cid in list(self._impatient):
            waiter = self._inflight.discard(cid)
            if waiter is not None and not waiter[0].done():
                waiter[0].set_exception(error)
        self._impatient.clear()
        if self._slot_waiters:
            self._release_slots()

    def _fail_peer(self, peer: _Peer, error: ServiceUnavailable) -> None:
        """Fail now every request in flight on ``peer``: its reply can no longer come."""
        for stream in [s for s in self._streams.values() if s.peer is peer]:
            stream.lost(error)
        doomed = [cid for cid, waiter in self._inflight.items() if waiter[3] is peer]
        for cid in doomed:
            waiter = self._inflight.discard(cid)
            if waiter is not None and not waiter[0].done():
                waiter[0].set_exception(error)
        if doomed and self._slot_waiters:
            self._release_slots()

    # -- events ----------------------------------------------------------------------------

    async def _ensure_subscribers(self, timeout: float, consequence: str) -> None:
        """Make sure every service is subscribed to our events before one is sent."""
        self._ensure_open()
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if not self._opened:
                self._open()
            stale = [p for p in self._peers if p.events_endpoint is None or p.link.hello_stale]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            if stale:
                await self._learn_event_endpoints(stale, timeout, consequence)
            await self._wait_subscribers(max(deadline - loop.time(), 0.001), consequence)
            self._events_ready = True

    async def _learn_event_endpoints(self, peers: list[_Peer], timeout: float, consequence: str) -> None:
        hellos = list(await asyncio.gather(*(self._hello(p, timeout, consequence) for p in peers)))
        asked = list(peers)
        while True:  # the instances a hello lists (workers of one zmsg serve) join the proxy too
            known = {p.endpoint for p in self._peers}
            new = [_Peer(e) for h in hellos for e in instance_endpoints(h) if e not in known]
            new = list({p.endpoint: p for p in new}.values())
            if not new:
                break
            for peer in new:
                self._add_peer(peer)
            hellos += await asyncio.gather(*(self._hello(p, timeout, consequence) for p in new))
            asked += new
        for peer, hello in zip(asked, hellos, strict=True):
            self.max_message_size = hello.limit(self.max_message_size)
            peer.events_endpoint = events_connect_endpoint(peer.endpoint, hello.events)
            peer.instance = hello_instance(hello)
            peer.link.hello_stale = False
        named = check_one_service([*hellos, *(Hello(p.endpoint, self.service_name, "", None, {})
                                              for p in self._peers if p not in asked)])
        self.service_name = named or self.service_name
        self._addressing = all(p.instance is not None for p in self._peers)
        self._router.set_instances([(p.endpoint, *p.instance) for p in self._peers if p.instance is not None])
        wanted = {p.events_endpoint for p in self._peers if p.events_endpoint is not None}
        if self._publisher is None:
            self._publisher = Publisher(wanted, hwm=self.event_hwm, heartbeat=self.heartbeat, security=self.security)
        else:
            self._publisher.retarget(wanted)

    async def _hello(self, peer: _Peer, timeout: float, consequence: str) -> Hello:
        """Ask one endpoint who it is and where it takes events."""
        _cid, future, _ = self._submit(HELLO_ROUTE, None, timeout, peer)
        try:
            return read_hello(peer.endpoint, await future)
        except RequestTimeout:
            raise no_answer(peer.endpoint, timeout, consequence) from None

    def _flush_events(self) -> None:
        self._events_scheduled = False
        publisher = self._publisher
        if publisher is None:
            return
        if self._events.count:
            publisher.send(self._events.take())
        if self._routed_dirty:
            dirty, self._routed_dirty = self._routed_dirty, []
            for target in dirty:
                if target.batch.count:
                    publisher.send(target.take())

    async def _wait_subscribers(self, timeout: float, consequence: str) -> None:
        publisher = self._publisher
        assert publisher is not None
        expected = len(publisher.endpoints)
        if not await publisher.wait_subscribers(expected, timeout):
            raise ServiceUnavailable(
                f"{expected - publisher.subscribers} of {expected} service(s) not subscribed to events "
                f"within {timeout:g} s" + (f"; {consequence}" if consequence else "")
            )
