"""``ClientProxy``: ``send`` (request-reply) and ``emit`` (events) to one service.

Theory of operation: the proxy keeps one DEALER per service endpoint (a *peer*) and spreads
requests over the peers that are up, round-robin. Requests queued for a peer during one loop
iteration are flushed as a single ZeroMQ message (or as soon as ``flush_at`` records wait, so two
batches overlap on the wire). Each request has a correlation id and a Future in the in-flight
table; the reader resolves futures straight from the reply batch. Timeouts need no timer per
request: one timer is armed for the earliest deadline and sweeps what has expired; a request
that times out or whose caller is cancelled is cancelled at the service too (a cancel record).

Each peer's socket is monitored: when its connection drops (closed, killed, or silent past the
heartbeat timeout) the requests in flight on it fail at once with ``ServiceUnavailable`` instead
of waiting out their timeouts, and ZeroMQ reconnects by itself when the service comes back.

Events go out on one XPUB connected to every service's event endpoint, learnt with a
``$zmsg.hello`` request. The XPUB reports each subscriber joining and leaving, so ``emit`` only
sends when every service is subscribed; otherwise it waits (bounded) for them to come back and
raises rather than let PUB/SUB drop the event silently. Events carry the emitter's id and a
sequence number so services can detect and count what they missed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from zmsg import codec
from zmsg.codec import Pattern, PayloadError, encode_pattern, pattern_repr
from zmsg.errors import (
    AuthenticationFailed,
    FrameError,
    ProtocolError,
    RequestTimeout,
    ServiceUnavailable,
)
from zmsg.protocol import (
    FLUSH_EXTERNAL_BYTES,
    HELLO_PATTERN,
    KIND_CANCEL,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    BatchBuilder,
    InFlight,
    parse_frames,
)
from zmsg.transport import Channel, connect_dealer, connect_publisher, events_connect_endpoint, validate_endpoint
from zmsg.transport.monitor import (
    AUTH_FAILED,
    CONNECT_FAILED,
    CONNECTED,
    DISCONNECTED,
    PROTOCOL_FAILED,
    SocketMonitor,
)
from zmsg.transport.security import CurveClient
from zmsg.transport.sockets import DEFAULT_HEARTBEAT, DEFAULT_HWM, connect_all

__all__ = ["ClientProxy", "PendingRequest", "DEFAULT_TIMEOUT", "ClientStats", "resolve_client_options"]

log = logging.getLogger("zmsg.client")

DEFAULT_TIMEOUT = 10.0
"""Seconds a request waits for its reply unless told otherwise: callers never hang forever."""

DEFAULT_FLUSH_AT = 32
DEFAULT_MAX_IN_FLIGHT = 100_000
_HELLO = HELLO_PATTERN.encode()
_MAX_TTL_MS = 0xFFFFFFFF
_RETRYABLE = (RequestTimeout, ServiceUnavailable)


class _Accepted:
    """What ``emit`` returns when the event is already queued: awaiting it finishes at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_ACCEPTED = _Accepted()


class ClientStats:
    """Counters a proxy keeps about what it could not deliver or match."""

    __slots__ = ("timeouts", "malformed_messages", "subscribers", "disconnects", "retries", "events_emitted",
                 "emit_waits")

    def __init__(self) -> None:
        self.timeouts = 0
        self.malformed_messages = 0
        self.subscribers = 0
        self.disconnects = 0
        self.retries = 0
        self.events_emitted = 0
        self.emit_waits = 0


class _Peer:
    """One endpoint of the service: its DEALER, its pending batch and its connection state."""

    __slots__ = ("endpoint", "channel", "monitor", "batch", "up", "reconnected", "events_endpoint", "failure")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.channel: Channel | None = None
        self.monitor: SocketMonitor | None = None
        self.batch = BatchBuilder()
        self.up: bool | None = None  # None: no connection confirmed or refused yet
        self.reconnected = False  # came back after a drop: its event endpoint may have moved
        self.events_endpoint: str | None = None
        self.failure: ServiceUnavailable | None = None


_Waiter = tuple[asyncio.Future[Any], bytes, float, _Peer]


class PendingRequest:
    """A request that is sent when, and only when, it is awaited (cold, like NestJS's Observable)."""

    __slots__ = ("_client", "pattern", "data", "timeout", "retries")

    def __init__(self, client: ClientProxy, pattern: Pattern, data: Any, timeout: float | None, retries: int) -> None:
        self._client = client
        self.pattern = pattern
        self.data = data
        self.timeout = timeout
        self.retries = retries

    def __await__(self) -> Generator[Any, None, Any]:
        client = self._client
        if client._closed:
            raise ServiceUnavailable("this ClientProxy is closed")
        if client._slot_waiters or len(client._inflight) >= client.max_in_flight:
            yield from client._wait_for_slot(self.timeout).__await__()
        attempt = 0
        while True:
            cid, future, peer = client._submit(self.pattern, self.data, self.timeout, None)
            try:
                return (yield from future)
            except asyncio.CancelledError:
                client._cancel(cid, peer)
                raise
            except _RETRYABLE as exc:
                if attempt >= self.retries or client._closed:
                    raise
                attempt += 1
                client.stats.retries += 1
                delay = random.uniform(0, min(client.retry_backoff * 2 ** attempt, 2.0))  # full jitter
                log.info("retrying %r after %s (attempt %d/%d)", self.pattern, type(exc).__name__, attempt, self.retries)
                yield from asyncio.sleep(delay).__await__()

    def __repr__(self) -> str:
        return f"<PendingRequest {self.pattern!r} (not sent until awaited)>"


def resolve_client_options(
    owner: str, endpoints: str | Sequence[str], timeout: float,
    connect_timeout: float | None, emit_timeout: float | None,
) -> tuple[list[str], float, float, float]:
    """Validate what every client takes (ClientProxy and SyncClientProxy alike): the endpoints,
    and the timeouts, the handshake and emit ones defaulting to the request timeout."""
    listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    valid = [validate_endpoint(e) for e in listed]
    if not valid:
        raise ValueError(f"{owner} needs at least one endpoint")
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout), ("emit_timeout", emit_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return (valid, float(timeout), float(timeout if connect_timeout is None else connect_timeout),
            float(timeout if emit_timeout is None else emit_timeout))


class ClientProxy:
    """A connection to one service, spread over one or more of its endpoints."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        emit_timeout: float | None = None,
        retries: int = 0,
        retry_backoff: float = 0.05,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_message_size: int = 64 * 1024 * 1024,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        security: CurveClient | None = None,
        event_hwm: int = DEFAULT_HWM,
        flush_at: int = DEFAULT_FLUSH_AT,
    ) -> None:
        """
        ``timeout``: default seconds per request; ``connect_timeout``: for the handshake
        (default: ``timeout``); ``emit_timeout``: longest an ``emit`` waits for backpressure or a
        missing subscriber before raising (default: ``timeout``); ``retries`` / ``retry_backoff``:
        for calls declared idempotent; ``max_in_flight``: callers beyond it wait for a slot;
        ``max_message_size``: larger payloads raise ``MessageTooLarge`` before anything is sent
        (lowered to the service's own limit once connected); ``heartbeat``: ZMTP heartbeat
        interval, a silent peer is dropped after three; ``security``: a ``CurveClient``;
        ``event_hwm``: event messages queued per subscriber before ``emit`` waits.
        """
        self.endpoints, self.timeout, self.connect_timeout, self.emit_timeout = resolve_client_options(
            "ClientProxy", endpoints, timeout, connect_timeout, emit_timeout)
        if retries < 0 or max_in_flight < 1:
            raise ValueError("retries must be >= 0 and max_in_flight >= 1")
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.max_in_flight = max_in_flight
        self.max_message_size = max_message_size
        self.heartbeat = heartbeat
        self.security = security
        self.flush_at = max(1, flush_at)
        self.event_hwm = event_hwm
        self.stats = ClientStats()
        self.service_name: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers = [_Peer(e) for e in self.endpoints]
        self._rr = 0
        self._dirty: list[_Peer] = []
        self._flush_scheduled = False
        self._inflight: InFlight[_Waiter] = InFlight()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        self._publisher: Channel | None = None
        self._events = BatchBuilder()
        self._events_scheduled = False
        self._events_ready = False
        self._emitter_id = random.randrange(1, 0xFFFFFFFF)
        self._event_seq = 0
        self._subscribed: set[str] = set()
        self._connect_lock: asyncio.Lock | None = None
        self._opened = False
        self._closed = False

    # -- public API ------------------------------------------------------------------------

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
             retries: int | None = None, idempotent: bool = False) -> PendingRequest:
        """Request-reply: ``await client.send(pattern, data)`` returns the handler's result.

        Raises ``RpcException`` with the service's error object, ``RequestTimeout`` when no reply
        came within ``timeout`` seconds (default: the proxy's), ``ServiceUnavailable`` when the
        connection dropped with the request in flight. Nothing is sent until it is awaited.
        Retries (``retries``, or the proxy's) apply only to calls declared ``idempotent``: a
        retried request may run twice, so zmsg never retries anything else.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if retries and not idempotent:
            raise ValueError("retries need idempotent=True: a retried request may run twice at the service")
        attempts = (self.retries if retries is None else retries) if idempotent else 0
        return PendingRequest(self, pattern, data, timeout, attempts)

    def emit(self, pattern: Pattern, data: Any = None) -> Awaitable[None]:
        """Publish an event to every connected service; await it: it completes once the transport
        has accepted the event.

        It never waits for handlers. It waits only when the transport pushes back (a slow
        subscriber filled its queue) or a service is momentarily unsubscribed (restarting), and
        raises ``ServiceUnavailable`` after ``emit_timeout`` rather than drop the event. Like
        NestJS's ``emit``, it is hot: when the proxy is connected and nothing pushes back, the event
        is queued during the call, and awaiting costs nothing more (no coroutine per event).
        """
        route = encode_pattern(pattern)
        body = codec.encode(data)
        if len(body) + len(route) > self.max_message_size:
            self._check_size(route, body)
        if not self._events_ready or self.stats.subscribers < len(self._subscribed):
            return self._emit_when_subscribed(route, body)
        self._queue_event(route, body)
        publisher = self._publisher
        if publisher is not None and publisher.queued:
            return self._wait_event_accepted(publisher)
        return _ACCEPTED

    async def _emit_when_subscribed(self, route: bytes, body: bytes) -> None:
        await self._ensure_subscribers(self.emit_timeout, "the event was not sent")
        self._queue_event(route, body)
        publisher = self._publisher
        if publisher is not None and publisher.queued:
            await self._wait_event_accepted(publisher)

    def _queue_event(self, route: bytes, body: bytes) -> None:
        self._event_seq += 1
        self.stats.events_emitted += 1
        events = self._events
        events.add(KIND_EVENT, 0, self._event_seq, self._emitter_id, route, body)
        if events.count >= self.flush_at:
            self._flush_events()
        elif not self._events_scheduled:
            self._events_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_events)

    async def _wait_event_accepted(self, publisher: Channel) -> None:
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
        await self._ensure_subscribers(self.connect_timeout, "")

    async def close(self) -> None:
        """Flush queued events, fail what is still in flight, and release every socket."""
        if self._closed:
            return
        self._closed = True
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
        for _cid, (future, route, _t, _p) in self._inflight.drain():
            if not future.done():
                future.set_exception(ServiceUnavailable(f"client closed before {pattern_repr(route)!r} was answered"))
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_exception(ServiceUnavailable("client closed"))
        for peer in self._peers:
            if peer.monitor is not None:
                peer.monitor.close()
                peer.monitor = None
            if peer.channel is not None:
                peer.channel.close(linger_ms=0)
                peer.channel = None
            peer.batch = BatchBuilder()

    async def __aenter__(self) -> ClientProxy:
        await self.connect()
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
            sock = connect_dealer([peer.endpoint], heartbeat=self.heartbeat, security=self.security, connect=False)
            peer.channel = Channel(sock, self._on_reply_message, name=f"client/{peer.endpoint}")
            # Monitor first, connect second: a fast handshake must not happen before we listen.
            peer.monitor = SocketMonitor(sock, functools.partial(self._on_peer_event, peer),
                                         name=f"client/{peer.endpoint}")
            connect_all(sock, [peer.endpoint])
        self._opened = True

    def _pick_peer(self) -> _Peer:
        """Round-robin over connected endpoints; else over those not known to be down; else any
        (ZeroMQ queues for an endpoint until it connects, and the request's timeout bounds it)."""
        peers = self._peers
        count = len(peers)
        fallback: _Peer | None = None
        for _ in range(count):
            self._rr = (self._rr + 1) % count
            peer = peers[self._rr]
            if peer.up:
                return peer
            if fallback is None and peer.up is None:
                fallback = peer
        return fallback if fallback is not None else peers[self._rr]

    def _submit(self, pattern: Pattern | bytes, data: Any, timeout: float | None,
                peer: _Peer | None) -> tuple[int, asyncio.Future[Any], _Peer]:
        if not self._opened:
            self._open()
        loop = self._loop
        assert loop is not None
        route = pattern if type(pattern) is bytes else encode_pattern(pattern)  # type: ignore[arg-type]
        body = codec.encode(data)
        self._check_size(route, body)
        if timeout is None:
            timeout = self.timeout
        if peer is None:
            peer = self._peers[0] if len(self._peers) == 1 else self._pick_peer()
        future = loop.create_future()
        if peer.failure is not None:
            future.set_exception(peer.failure)
            return 0, future, peer
        inflight = self._inflight
        cid = inflight.new_id()
        deadline = loop.time() + timeout
        if inflight.add(cid, (future, route, timeout, peer), deadline) or deadline < self._timer_when:
            self._arm_timer(deadline)
        ttl_ms = int(timeout * 1000) + 1
        batch = peer.batch
        batch.add(KIND_REQUEST, 0, cid, ttl_ms if ttl_ms < _MAX_TTL_MS else 0, route, body)
        if batch.count >= self.flush_at or batch.external_bytes >= FLUSH_EXTERNAL_BYTES:
            self._flush_peer(peer)
        else:
            if batch.count == 1:
                self._dirty.append(peer)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush_requests)
        return cid, future, peer

    def _check_size(self, route: bytes, body: bytes) -> None:
        if len(body) + len(route) > self.max_message_size:
            raise codec.too_large(route, body, self.max_message_size)

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
        if peer.batch.count == 1:
            self._dirty.append(peer)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_requests)

    async def _wait_for_slot(self, timeout: float | None) -> None:
        """Backpressure for callers: wait until fewer than ``max_in_flight`` requests are out."""
        loop = asyncio.get_running_loop()
        while len(self._inflight) >= self.max_in_flight:
            waiter = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self.timeout if timeout is None else timeout)
            except TimeoutError:
                raise RequestTimeout(f"no request slot freed within {timeout or self.timeout:g} s "
                                     f"(max_in_flight={self.max_in_flight})") from None

    def _release_slots(self) -> None:
        waiters = self._slot_waiters
        free = self.max_in_flight - len(self._inflight)
        while waiters and free > 0:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _on_reply_message(self, frames: list[bytes]) -> None:
        try:
            records = parse_frames(frames, 0)
        except FrameError as exc:
            self.stats.malformed_messages += 1
            log.warning("dropped a malformed reply message: %s", exc)
            records = exc.records
        resolve = self._inflight.resolve
        for kind, _flags, cid, _ttl, _pattern, body in records:
            waiter = resolve(cid)
            if waiter is None:
                continue
            future = waiter[0]
            if future.done():
                continue
            if kind == KIND_REPLY:
                try:
                    future.set_result(codec.decode(body))
                except PayloadError as exc:
                    future.set_exception(ProtocolError(f"undecodable reply: {exc}"))
            elif kind == KIND_ERROR:
                future.set_exception(codec.rpc_exception(body))
            else:
                future.set_exception(ProtocolError(f"unexpected record kind {kind} in reply to request {cid}"))
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
        for cid, (future, route, timeout, peer) in self._inflight.expire(loop.time()):
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
        if event == CONNECTED:
            peer.up = True
            peer.failure = None
        elif event == DISCONNECTED:
            if peer.up is not False:
                self.stats.disconnects += 1
            peer.up = False
            peer.reconnected = True
            self._fail_peer(peer, ServiceUnavailable(f"connection to {peer.endpoint} lost with the request in flight"))
        elif event == CONNECT_FAILED:
            if peer.up is None:
                peer.up = False  # never reached: route around it until it connects
        elif event in (AUTH_FAILED, PROTOCOL_FAILED):
            peer.up = False
            reason = ("refused this client's CURVE credentials" if event == AUTH_FAILED
                      else "failed the security handshake (is CURVE configured on both sides?)")
            peer.failure = AuthenticationFailed(f"{peer.endpoint} {reason}")
            self._fail_peer(peer, peer.failure)

    def _fail_peer(self, peer: _Peer, error: ServiceUnavailable) -> None:
        """Fail now every request in flight on ``peer``: its reply can no longer come."""
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
            stale = [p for p in self._peers if p.events_endpoint is None or p.reconnected]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            if stale:
                await self._learn_event_endpoints(stale, timeout, consequence)
            await self._wait_subscribers(max(deadline - loop.time(), 0.001), consequence)
            self._events_ready = True

    async def _learn_event_endpoints(self, peers: list[_Peer], timeout: float, consequence: str) -> None:
        infos = await asyncio.gather(*(self._hello(p, timeout, consequence) for p in peers))
        wanted: set[str] = set()
        for peer, info in zip(peers, infos, strict=True):
            self.service_name = info.get("service", self.service_name)
            limit = info.get("max_message_size")
            if isinstance(limit, int) and 0 < limit < self.max_message_size:
                self.max_message_size = limit  # fail fast here rather than be disconnected there
            peer.events_endpoint = events_connect_endpoint(peer.endpoint, info["events"])
            peer.reconnected = False
        wanted = {p.events_endpoint for p in self._peers if p.events_endpoint is not None}
        if self._publisher is None:
            sock = connect_publisher(sorted(wanted), hwm=self.event_hwm, heartbeat=self.heartbeat,
                                     security=self.security)
            self._publisher = Channel(sock, self._on_subscription, name="client/events")
        else:
            sock = self._publisher.sock
            for gone in self._subscribed - wanted:
                try:
                    sock.disconnect(gone)
                except Exception:  # already gone
                    pass
            for new in sorted(wanted - self._subscribed):
                sock.connect(new)
        self._subscribed = wanted

    async def _hello(self, peer: _Peer, timeout: float, consequence: str) -> dict[str, Any]:
        """Ask one endpoint who it is and where it takes events."""
        cid, future, _ = self._submit(_HELLO, None, timeout, peer)
        try:
            info = await future
        except RequestTimeout:
            raise ServiceUnavailable(
                f"no zmsg service answered at {peer.endpoint} within {timeout:g} s"
                + (f"; {consequence}" if consequence else "")
            ) from None
        if not isinstance(info, dict) or not isinstance(info.get("events"), str):
            raise ProtocolError(f"{peer.endpoint} did not answer the zmsg handshake")
        return info

    def _flush_events(self) -> None:
        self._events_scheduled = False
        if self._events.count and self._publisher is not None:
            self._publisher.send(self._events.take())

    def _on_subscription(self, frames: list[bytes]) -> None:
        msg = frames[0]
        if msg[:1] == b"\x01":
            self.stats.subscribers += 1
        elif msg[:1] == b"\x00":
            self.stats.subscribers -= 1

    async def _wait_subscribers(self, timeout: float, consequence: str) -> None:
        expected = len(self._subscribed)
        if self.stats.subscribers >= expected:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.0005
        while self.stats.subscribers < expected:
            if loop.time() >= deadline:
                raise ServiceUnavailable(
                    f"{expected - self.stats.subscribers} of {expected} service(s) not subscribed to events "
                    f"within {timeout:g} s" + (f"; {consequence}" if consequence else "")
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
