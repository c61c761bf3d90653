"""In-memory test clients: a service's real pipeline without sockets, ports or threads.

Theory of operation: ``TestClient`` attaches the service to an in-memory request route instead
of a ROUTER socket, then speaks to it in the very records a ``ClientProxy`` sends: requests are
framed with the same ``BatchBuilder`` and handed to the service's own reader
(``Service._on_request_message``), and the reply batches the service flushes come back through
the client core's ``read_replies`` / ``reply_value``, exactly as over TCP. So the codec,
payload validation, routing, error mapping, middleware and exception handlers that run are
the production ones, and a test that passes here passes over a socket (the suite runs the same
assertions both ways). Events go through the service's event reader too; ``emit`` returns once
the handlers it started have finished, so a test can assert on their effects right after it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Self

from zmsg.client_core import (
    DEFAULTS,
    EventStamper,
    call_timeout,
    encode_call,
    merge_metadata,
    read_replies,
    reply_decoder,
    reply_value,
    request_ttl_ms,
)
from zmsg.codec import Pattern, pattern_repr
from zmsg.errors import RequestTimeout, ServiceUnavailable, ZmsgError
from zmsg.protocol import KIND_CANCEL, KIND_REQUEST, BatchBuilder, InFlight
from zmsg.runtime import loop_factory
from zmsg.service import Service
from zmsg.stream_core import END, ClientStream, credit_message, open_stream

__all__ = ["TestClient", "SyncTestClient"]

_IDENTITY = b"\x00zmsg-test-client"


class _MemoryRoute:
    """Stands in for the service's ROUTER channel: replies go straight to the test client."""

    __slots__ = ("on_idle", "unroutable", "dropped", "_deliver", "closed", "inspect")

    def __init__(self, deliver: Callable[[list[Any]], None]) -> None:
        self.on_idle: Callable[[], None] | None = None
        self.unroutable = 0
        self.dropped = 0
        self._deliver = deliver
        self.closed = False
        self.inspect: Any = None  # per-message metadata checks need a socket: unused in memory

    @property
    def queued(self) -> int:
        return 0

    def backlog_bytes(self, peer: bytes) -> int:
        return 0  # replies are delivered at once: nothing ever waits for a client here

    @property
    def backlogged_bytes(self) -> int:
        return 0

    def send_to(self, peer: bytes, frames: list[Any]) -> None:
        if not self.closed:
            self._deliver(frames[1:])

    def close(self, linger_ms: int = 0) -> None:
        self.closed = True


class TestClient:
    """``async with TestClient(service) as client:``: ``send`` and ``emit`` as on ``ClientProxy``,
    with the same results and errors, against ``service`` running in this process's loop."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, service: Service, *, timeout: float = DEFAULTS.timeout,
                 max_message_size: int = DEFAULTS.max_message_size, grace: float = 5.0) -> None:
        self.service = service
        self.timeout = call_timeout(timeout, DEFAULTS.timeout)
        self.max_message_size = max_message_size
        self.grace = grace
        self._inflight: InFlight[tuple[asyncio.Future[Any], Any]] = InFlight()
        self._stamper = EventStamper()
        self._route: _MemoryRoute | None = None
        self._streams: dict[int, _StreamLink] = {}

    async def __aenter__(self) -> Self:
        if self.service.running:
            raise RuntimeError(f"service {self.service.name!r} is already started; a TestClient starts it itself")
        self._route = _MemoryRoute(self._on_replies)
        self.service._attach(self._route, None, f"memory://{self.service.name}", f"memory://{self.service.name}.events")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.service.stop(grace=self.grace)
        for _cid, (future, _decoder) in self._inflight.drain():
            if not future.done():
                future.set_exception(ServiceUnavailable("test client closed"))
        self._route = None

    # -- requests --------------------------------------------------------------------------

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
             metadata: Mapping[str, str] | None = None, response_type: Any = None) -> Awaitable[Any]:
        """Request-reply, as ``ClientProxy.send``: nothing happens until it is awaited."""
        return self._request(pattern, data, call_timeout(timeout, self.timeout), merge_metadata(None, metadata),
                             reply_decoder(response_type))

    async def _request(self, pattern: Pattern, data: Any, timeout: float, metadata: dict[str, str] | None = None,
                       decoder: Any = None) -> Any:
        route, flags, body = encode_call(pattern, data, metadata, self.max_message_size)
        if self._route is None:
            raise ServiceUnavailable("the TestClient is not started: use `async with TestClient(service)`")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        cid = self._inflight.new_id()
        self._inflight.add(cid, (future, decoder), math.inf)  # its timeout is the awaiting task's
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, flags, cid, request_ttl_ms(timeout), route, body)
        self._deliver(batch.take())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no reply to {pattern_repr(route)!r} within {timeout:g} s") from None
        finally:
            if self._inflight.discard(cid) is not None:  # timed out or cancelled: tell the service
                cancel = BatchBuilder()
                cancel.add(KIND_CANCEL, 0, cid, 0, b"", b"")
                self._deliver(cancel.take())

    def _deliver(self, frames: list[Any]) -> None:
        """Hand a request message to the service as its ROUTER reader would."""
        route = self._route
        assert route is not None
        self.service._on_request_message([_IDENTITY, *frames])
        if route.on_idle is not None:
            route.on_idle()

    def _on_replies(self, frames: list[Any]) -> None:
        records, _fault = read_replies(frames)
        for kind, _flags, cid, ttl, _pattern, body in records:
            stream = self._streams.get(cid)
            if stream is not None:
                stream.on_record(kind, body, ttl)
                continue
            waiter = self._inflight.resolve(cid)
            if waiter is None or waiter[0].done():
                continue
            future = waiter[0]
            try:
                future.set_result(reply_value(kind, cid, body, waiter[1]))
            except ZmsgError as exc:
                future.set_exception(exc)

    def stream(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
               metadata: Mapping[str, str] | None = None, response_type: Any = None,
               window: int = DEFAULTS.stream_window) -> AsyncIterator[Any]:
        """``async for item in client.stream(pattern, data):`` as on ``ClientProxy``: the same
        stream records and credit window (zmsg.stream_core), in memory."""
        route, flags, body = encode_call(pattern, data, merge_metadata(None, metadata), self.max_message_size)
        return _MemoryStream(self, route, flags, body, call_timeout(timeout, self.timeout),
                             reply_decoder(response_type), window)

    # -- events ----------------------------------------------------------------------------

    async def emit(self, pattern: Pattern, data: Any = None, *, metadata: Mapping[str, str] | None = None) -> None:
        """Publish an event to the service; returns once every handler it started has finished
        (their failures stay on the service side, logged and counted, as over the network)."""
        route, flags, body = encode_call(pattern, data, merge_metadata(None, metadata), self.max_message_size)
        if self._route is None:
            raise ServiceUnavailable("the TestClient is not started: use `async with TestClient(service)`")
        batch = BatchBuilder()
        self._stamper.stamp(batch, route, body, flags)
        before = set(self.service._tasks)
        self.service._on_event_message(batch.take())
        started = self.service._tasks - before
        if started:
            await asyncio.gather(*started, return_exceptions=True)


class _StreamLink:
    """What the client's table keeps of a stream (not the stream itself, so ``break`` out of
    ``async for`` drops the last reference and ``_MemoryStream.__del__`` cancels it)."""

    __slots__ = ("core", "waiter")

    def __init__(self, core: ClientStream) -> None:
        self.core = core
        self.waiter: asyncio.Future[None] | None = None

    def on_record(self, kind: int, body: Any, seq: int) -> None:
        self.core.on_record(kind, body, seq)
        if self.waiter is not None and self.core.ready and not self.waiter.done():
            self.waiter.set_result(None)


class _MemoryStream:
    """One stream of a ``TestClient``: a third driver of ``stream_core.ClientStream``."""

    __slots__ = ("_client", "_route", "_flags", "_body", "_timeout", "_decoder", "_window", "_link", "_done")

    def __init__(self, client: TestClient, route: bytes, flags: int, body: bytes, timeout: float, decoder: Any,
                 window: int) -> None:
        self._client = client
        self._route, self._flags, self._body = route, flags, body
        self._timeout, self._decoder, self._window = timeout, decoder, window
        self._link: _StreamLink | None = None
        self._done = False

    def __aiter__(self) -> _MemoryStream:
        return self

    async def __anext__(self) -> Any:
        client = self._client
        link = self._link
        if link is None:
            if self._done:
                raise StopAsyncIteration
            if client._route is None:
                raise ServiceUnavailable("the TestClient is not started: use `async with TestClient(service)`")
            cid = client._inflight.new_id()
            link = self._link = client._streams[cid] = _StreamLink(
                ClientStream(cid, self._route, self._window, self._decoder))
            batch = BatchBuilder()
            open_stream(batch, cid, request_ttl_ms(self._timeout), self._route, self._body, self._window, self._flags)
            client._deliver(batch.take())
        core = link.core
        while not core.ready:
            link.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(link.waiter, self._timeout)
            except TimeoutError:
                core.fail(RequestTimeout(f"no item of stream {pattern_repr(self._route)!r} within {self._timeout:g} s"),
                          service_gone=False)
            except BaseException:
                self._finish()
                raise
            finally:
                link.waiter = None
        try:
            value, granted = core.take()
        except BaseException:
            self._finish()
            raise
        if value is END:
            self._finish()
            raise StopAsyncIteration
        if granted and client._route is not None:
            client._deliver(credit_message(core.correlation_id, granted))
        return value

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._link is None:
            return
        core = self._link.core
        client = self._client
        client._streams.pop(core.correlation_id, None)
        if core.close() and client._route is not None:
            cancel = BatchBuilder()
            cancel.add(KIND_CANCEL, 0, core.correlation_id, 0, b"", b"")
            client._deliver(cancel.take())

    async def aclose(self) -> None:
        """Stop reading: the service closes the generator (its ``finally`` runs)."""
        self._finish()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the last reference: stop the service's generator.
        try:
            self._finish()
        except Exception:  # interpreter shutdown, or the service already stopped
            pass


class SyncTestClient:
    """``with SyncTestClient(service) as client:``: the same as ``TestClient`` for synchronous
    tests. It runs its own event loop for the duration of the block (no thread)."""

    __test__ = False

    def __init__(self, service: Service, *, timeout: float = DEFAULTS.timeout,
                 max_message_size: int = DEFAULTS.max_message_size, use_uvloop: bool = False) -> None:
        self._client = TestClient(service, timeout=timeout, max_message_size=max_message_size)
        self._use_uvloop = use_uvloop
        self._runner: asyncio.Runner | None = None

    @property
    def service(self) -> Service:
        return self._client.service

    def __enter__(self) -> Self:
        self._runner = asyncio.Runner(loop_factory=loop_factory(self._use_uvloop))
        self._runner.run(self._client.__aenter__())
        return self

    def __exit__(self, *exc_info: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                runner.run(self._client.__aexit__())
            finally:
                runner.close()

    def _run(self, awaitable: Awaitable[Any]) -> Any:
        if self._runner is None:
            raise ServiceUnavailable("the SyncTestClient is not started: use `with SyncTestClient(service)`")

        async def wrapped() -> Any:
            return await awaitable

        return self._runner.run(wrapped())

    def send(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
             metadata: Mapping[str, str] | None = None, response_type: Any = None) -> Any:
        return self._run(self._client.send(pattern, data, timeout=timeout, metadata=metadata,
                                           response_type=response_type))

    def stream(self, pattern: Pattern, data: Any = None, *, timeout: float | None = None,
               metadata: Mapping[str, str] | None = None, response_type: Any = None) -> Iterator[Any]:
        """A plain iterator over a stream, as ``SyncClientProxy.stream`` returns."""
        stream = self._client.stream(pattern, data, timeout=timeout, metadata=metadata, response_type=response_type)
        assert isinstance(stream, _MemoryStream)
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            stream._finish()

    def emit(self, pattern: Pattern, data: Any = None, *, metadata: Mapping[str, str] | None = None) -> None:
        self._run(self._client.emit(pattern, data, metadata=metadata))
