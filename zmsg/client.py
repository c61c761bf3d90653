"""``ClientProxy``: ``send`` (request-reply) and ``emit`` (events) to one service.

Theory of operation: requests from every caller are appended to one batch and flushed as a
single ZeroMQ message per loop iteration (or as soon as ``flush_at`` records are waiting, so
two batches overlap on the wire). Each request gets a correlation id and a Future in the
in-flight table; the reader resolves futures straight from the reply batch. Timeouts need no
timer per request: one timer is armed for the earliest deadline and sweeps what has expired.
Events go out on an XPUB socket, batched the same way; ``connect`` first learns each service's
event endpoint (a ``$zmsg.hello`` request) and then waits until every service's subscription has
arrived, so no event emitted after ``connect`` returns can fall into PUB/SUB's slow-joiner gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Sequence
from typing import Any

from zmsg import codec
from zmsg.codec import Pattern, PayloadError, encode_pattern, pattern_repr
from zmsg.errors import (
    FrameError,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
    RpcException,
    ServiceUnavailable,
)
from zmsg.protocol import (
    HELLO_PATTERN,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    BatchBuilder,
    InFlight,
    parse_frames,
)
from zmsg.transport import Channel, connect_dealer, connect_publisher, events_connect_endpoint, validate_endpoint

__all__ = ["ClientProxy", "PendingRequest", "DEFAULT_TIMEOUT", "ClientStats"]

log = logging.getLogger("zmsg.client")

DEFAULT_TIMEOUT = 10.0
"""Seconds a request waits for its reply unless told otherwise: callers never hang forever."""

DEFAULT_FLUSH_AT = 32
_HELLO = HELLO_PATTERN.encode()
_MAX_TTL_MS = 0xFFFFFFFF


class ClientStats:
    """Counters a proxy keeps about what it could not deliver or match."""

    __slots__ = ("timeouts", "malformed_messages", "subscribers")

    def __init__(self) -> None:
        self.timeouts = 0
        self.malformed_messages = 0
        self.subscribers = 0


class PendingRequest:
    """A request that is sent when, and only when, it is awaited (cold, like NestJS's Observable)."""

    __slots__ = ("_client", "pattern", "data", "timeout")

    def __init__(self, client: ClientProxy, pattern: Pattern, data: Any, timeout: float | None) -> None:
        self._client = client
        self.pattern = pattern
        self.data = data
        self.timeout = timeout

    def __await__(self) -> Generator[Any, None, Any]:
        client = self._client
        cid, future = client._submit(self.pattern, self.data, self.timeout)
        try:
            return (yield from future)
        except asyncio.CancelledError:
            client._forget(cid)
            raise

    def __repr__(self) -> str:
        return f"<PendingRequest {self.pattern!r} (not sent until awaited)>"


class ClientProxy:
    """A connection to one service, spread over one or more of its endpoints."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        max_message_size: int = 64 * 1024 * 1024,
        flush_at: int = DEFAULT_FLUSH_AT,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints: list[str] = [validate_endpoint(e) for e in endpoints]
        if not self.endpoints:
            raise ValueError("ClientProxy needs at least one endpoint")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.max_message_size = max_message_size
        self.flush_at = max(1, flush_at)
        self.stats = ClientStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dealer: Channel | None = None
        self._publisher: Channel | None = None
        self._inflight: InFlight[tuple[asyncio.Future[Any], bytes, float]] = InFlight()
        self._requests = BatchBuilder()
        self._events = BatchBuilder()
        self._requests_scheduled = False
        self._events_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        self._connect_lock: asyncio.Lock | None = None
        self._events_ready = False
        self._closed = False
        self.service_name: str | None = None

    # -- public API ------------------------------------------------------------------------

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None) -> PendingRequest:
        """Request-reply: ``await client.send(pattern, data)`` returns the handler's result.

        Raises ``RpcException`` with the service's error object, ``RequestTimeout`` when no reply
        came within ``timeout`` seconds (default: the proxy's), ``ServiceUnavailable`` when the
        proxy is closed underneath it. Nothing is sent until the result is awaited.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return PendingRequest(self, pattern, data, timeout)

    async def emit(self, pattern: Pattern, data: Any = None) -> None:
        """Publish an event to every connected service; returns once the transport accepted it.

        It never waits for handlers. It waits only when the transport pushes back (a slow
        subscriber filled the queue) instead of dropping the event.
        """
        if not self._events_ready:
            await self.connect()
        route = encode_pattern(pattern)
        body = codec.encode(data)
        self._check_size(route, body)
        events = self._events
        events.add(KIND_EVENT, 0, 0, 0, route, body)
        if events.count >= self.flush_at:
            self._flush_events()
        elif not self._events_scheduled:
            self._events_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_events)
        publisher = self._publisher
        if publisher is not None and publisher.queued:
            await publisher.wait_writable()

    async def connect(self) -> None:
        """Open the sockets, learn the services' event endpoints and wait for their subscriptions.

        Raises ``ServiceUnavailable`` when a service does not answer within ``connect_timeout``.
        """
        self._ensure_open()
        if self._events_ready:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._events_ready:
                return
            self._open_requests()
            hellos = await asyncio.gather(*(self._hello(ep) for ep in self.endpoints))
            event_endpoints = sorted({events_connect_endpoint(ep, info["events"]) for ep, info in
                                      zip(self.endpoints, hellos)})
            self.service_name = hellos[0].get("service")
            if self._publisher is None:
                self._publisher = Channel(connect_publisher(event_endpoints), self._on_subscription,
                                          name="client/events")
            await self._wait_subscribers(len(event_endpoints))
            self._events_ready = True

    async def close(self) -> None:
        """Flush queued events, fail what is still in flight, and release every socket."""
        if self._closed:
            return
        self._closed = True
        if self._publisher is not None:
            self._flush_events()
            try:
                await asyncio.wait_for(self._publisher.wait_writable(), timeout=self.timeout)
            except (TimeoutError, ServiceUnavailable):
                log.warning("closing with %d event message(s) the transport did not accept",
                            self._publisher.queued)
            # Linger lets ZeroMQ finish delivering what it has accepted after we are gone.
            self._publisher.close(linger_ms=int(self.timeout * 1000))
            self._publisher = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _cid, (future, route, _t) in self._inflight.drain():
            if not future.done():
                future.set_exception(ServiceUnavailable(f"client closed before {pattern_repr(route)!r} was answered"))
        self._requests = BatchBuilder()
        if self._dealer is not None:
            self._dealer.close(linger_ms=0)
            self._dealer = None

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

    def _open_requests(self) -> None:
        if self._dealer is None:
            self._ensure_open()
            self._loop = asyncio.get_running_loop()
            self._dealer = Channel(connect_dealer(self.endpoints), self._on_reply_message, name="client/requests")

    def _submit(self, pattern: Pattern, data: Any, timeout: float | None) -> tuple[int, asyncio.Future[Any]]:
        if self._dealer is None:
            self._open_requests()
        loop = self._loop
        assert loop is not None
        route = encode_pattern(pattern)
        body = codec.encode(data)
        self._check_size(route, body)
        if timeout is None:
            timeout = self.timeout
        future = loop.create_future()
        inflight = self._inflight
        cid = inflight.new_id()
        deadline = loop.time() + timeout
        if inflight.add(cid, (future, route, timeout), deadline) or deadline < self._timer_when:
            self._arm_timer(deadline)
        requests = self._requests
        ttl_ms = int(timeout * 1000) + 1
        requests.add(KIND_REQUEST, 0, cid, ttl_ms if ttl_ms < _MAX_TTL_MS else 0, route, body)
        if requests.count >= self.flush_at:
            self._flush_requests()
        elif not self._requests_scheduled:
            self._requests_scheduled = True
            loop.call_soon(self._flush_requests)
        return cid, future

    def _check_size(self, route: bytes, body: bytes) -> None:
        if len(body) + len(route) > self.max_message_size:
            raise MessageTooLarge(
                f"message for {pattern_repr(route)!r} is {len(body)} bytes, over max_message_size={self.max_message_size}"
            )

    def _forget(self, cid: int) -> None:
        self._inflight.discard(cid)

    def _flush_requests(self) -> None:
        self._requests_scheduled = False
        if self._requests.count and self._dealer is not None:
            self._dealer.send(self._requests.take())

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
                future.set_exception(_rpc_exception(body))
            else:
                future.set_exception(ProtocolError(f"unexpected record kind {kind} in reply to request {cid}"))

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
        for _cid, (future, route, timeout) in self._inflight.expire(loop.time()):
            if not future.done():
                self.stats.timeouts += 1
                future.set_exception(
                    RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s")
                )
        earliest = self._inflight.earliest_deadline
        if earliest != float("inf"):
            self._arm_timer(earliest)

    # -- events ----------------------------------------------------------------------------

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

    async def _wait_subscribers(self, expected: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        delay = 0.0005
        while self.stats.subscribers < expected:
            if loop.time() >= deadline:
                raise ServiceUnavailable(
                    f"event subscription of {expected - self.stats.subscribers} service(s) did not arrive "
                    f"within {self.connect_timeout:g} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def _hello(self, endpoint: str) -> dict[str, Any]:
        """Ask one endpoint who it is and where it takes events, on a short-lived socket."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_message(frames: list[bytes]) -> None:
            try:
                records = parse_frames(frames, 0)
            except FrameError:
                return
            for kind, _f, _cid, _ttl, _p, body in records:
                if answer.done():
                    return
                if kind == KIND_REPLY:
                    info = codec.decode(body)
                    if isinstance(info, dict) and isinstance(info.get("events"), str):
                        answer.set_result(info)
                        return
                answer.set_exception(ProtocolError(f"{endpoint} did not answer the zmsg handshake"))

        channel = Channel(connect_dealer([endpoint]), on_message, name=f"hello/{endpoint}")
        try:
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, 0, 1, int(self.connect_timeout * 1000), _HELLO, codec.encode(None))
            channel.send(batch.take())
            return await asyncio.wait_for(answer, self.connect_timeout)
        except TimeoutError:
            raise ServiceUnavailable(
                f"no zmsg service answered at {endpoint} within {self.connect_timeout:g} s"
            ) from None
        finally:
            channel.close(linger_ms=0)


def _rpc_exception(body: bytes) -> RpcException:
    try:
        error = codec.decode(body)
    except PayloadError:
        return RpcException({"status": 502, "message": "undecodable error object from the service"})
    if not isinstance(error, (str, dict)):
        error = {"status": 500, "message": str(error)}
    return RpcException(error)
