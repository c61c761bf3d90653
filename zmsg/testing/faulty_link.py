"""``FaultyLink``: a TCP relay a test puts between a client and a service to break the network.

Theory of operation: the link listens on its own address and, for every connection accepted
there, opens one to the target and copies bytes both ways. Each direction of a connection is a
``_Pipe``: a queue of chunks, each due at the time it was read plus the current delay, pumped
into the other side while the link is open. ``freeze()`` stops the pumps but keeps reading, so
the bytes (and a close, which travels in the queue like data) pile up in the link, counted in
``bytes_held``, exactly as if the network had silently swallowed them; ``heal()`` delivers them.
``cut()`` aborts every connection and closes the listeners, so new connections are refused,
until ``heal()`` listens again on the same ports. Reading stops (TCP backpressure) when a side
is not writable or a pipe holds more than ``max_held`` bytes, so a frozen link stays bounded.

What the link covers: a zmsg client makes two connections to a service, requests to its
request endpoint and events to its event endpoint. The client learns the event endpoint from
the ``$zmsg.hello`` reply, keeping the *host* of the request endpoint it dialled and taking only
the *port* from the reply (``zmsg.transport.sockets.events_connect_endpoint``). So:

- ``FaultyLink(target)`` relays requests and replies only. It listens on the target's host (a
  loopback target) and the client's event connection goes straight to the service, untouched.
- ``FaultyLink(target, events=service_events_endpoint)`` relays both. It listens on another
  loopback address of its own, ``127.0.0.N`` (Linux answers on all of 127.0.0.0/8), on a free port
  for requests and on the *same port number as the service's event socket* for events, so the
  address the client derives from the hello reply is the link's. This needs a service whose event
  socket is bound to one address (the default: the host of its request endpoint), not a wildcard.
"""

from __future__ import annotations

import asyncio
import enum
import random
import socket
from collections import deque
from typing import cast

from zmsg.errors import EndpointError

__all__ = ["FaultyLink", "LinkState"]

DEFAULT_MAX_HELD = 4 * 1024 * 1024
"""Bytes a pipe holds (frozen or delayed) before the link stops reading from its source."""
# uvloop's clock and timers count whole milliseconds: a chunk due in d seconds by ``loop.time()``
# may leave up to 1 ms early in real time, and a caller timing it with ``loop.time()`` loses up
# to 1 ms more. Holding each delayed chunk 2 ms longer keeps "at least d" true on either clock.
_CLOCK_SLACK = 0.002


class LinkState(enum.Enum):
    """What the link does with bytes: pass them, hold them, or refuse connections."""

    OPEN = "open"
    FROZEN = "frozen"
    CUT = "cut"
    CLOSED = "closed"


def _split_tcp(endpoint: str) -> tuple[str, int]:
    if not endpoint.startswith("tcp://") or ":" not in endpoint[6:]:
        raise EndpointError(f"FaultyLink relays TCP only: expected 'tcp://HOST:PORT', got {endpoint!r}")
    host, _, port = endpoint[6:].rpartition(":")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise EndpointError(f"FaultyLink needs a concrete port in {endpoint!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket, made synchronously so that ``heal()`` can rebind at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads goes into its outgoing pipe."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out: _Pipe | None = None  # bytes read here, on their way to the other side
        self.into: _Pipe | None = None  # bytes on their way here
        self.writable = True
        self.reading = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        if self.into is not None:
            self.into.pump()

    def data_received(self, data: bytes) -> None:
        assert self.out is not None
        self.out.put(data)

    def eof_received(self) -> bool:
        assert self.out is not None
        self.out.put(None)
        return True  # keep our writing half open until the pipe delivers the close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.out is not None and not self.out.eof_queued:
            self.out.put(None)
        self.conn.side_closed()

    def pause_writing(self) -> None:
        self.writable = False
        if self.into is not None:
            self.into.update_source()

    def resume_writing(self) -> None:
        self.writable = True
        if self.into is not None:
            self.into.update_source()
            self.into.pump()

    def set_reading(self, reading: bool) -> None:
        if reading == self.reading or self.transport is None or self.closed:
            return
        self.reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()


class _Pipe:
    """One direction of one connection: chunks due at ``read time + delay``, delivered in order."""

    def __init__(self, link: FaultyLink, source: _Side, dest: _Side, to_target: bool) -> None:
        self.link = link
        self.source = source
        self.dest = dest
        self.to_target = to_target
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.held = 0
        self.eof_queued = False
        self.timer: asyncio.TimerHandle | None = None

    def put(self, data: bytes | None) -> None:
        if self.eof_queued:
            return
        loop = self.link.loop
        delay = self.link.delay_seconds
        due = loop.time() + (delay + _CLOCK_SLACK if delay else 0.0)
        if self.queue and self.queue[-1][0] > due:
            due = self.queue[-1][0]  # a shorter delay never lets bytes overtake earlier ones
        self.queue.append((due, data))
        if data is None:
            self.eof_queued = True
        else:
            self.held += len(data)
            self.link._held_changed(len(data))
        self.update_source()
        self.pump()

    def pump(self) -> None:
        """Deliver every chunk that is due, unless frozen or the destination is not ready."""
        link = self.link
        transport = self.dest.transport
        if link.state is not LinkState.OPEN or transport is None:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        now = link.loop.time()
        dest = self.dest
        while self.queue and dest.writable:
            due, data = self.queue[0]
            if due > now:
                self.timer = link.loop.call_at(due, self.pump)
                break
            self.queue.popleft()
            if data is None:
                if not dest.closed:
                    transport.close()  # flushes what was written before it
                continue
            self.held -= len(data)
            link._held_changed(-len(data))
            if not dest.closed:
                transport.write(data)
                link._delivered(len(data), self.to_target)
        self.update_source()

    def update_source(self) -> None:
        self.source.set_reading(self.dest.writable and self.held < self.link.max_held)

    def discard(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.link._held_changed(-self.held)
        self.held = 0
        self.queue.clear()


class _Connection:
    """A client's connection accepted by the link, and the one the link opened to the target."""

    def __init__(self, link: FaultyLink, target: tuple[str, int]) -> None:
        self.link = link
        self.client = _Side(self)
        self.target = _Side(self)
        self.to_target = _Pipe(link, self.client, self.target, True)
        self.to_client = _Pipe(link, self.target, self.client, False)
        self.client.out = self.target.into = self.to_target
        self.target.out = self.client.into = self.to_client
        self.task: asyncio.Task[None] | None = None
        self.target_addr = target

    def accepted(self) -> _Side:
        self.task = self.link.loop.create_task(self._dial())
        return self.client

    async def _dial(self) -> None:
        host, port = self.target_addr
        try:
            await self.link.loop.create_connection(lambda: self.target, host, port)
        except OSError:
            self.link.failed_dials += 1
            self.abort()  # the target is down: the client sees its connection drop

    def side_closed(self) -> None:
        if self.client.closed and self.target.closed:
            self.link._connections.discard(self)
            self.to_target.discard()
            self.to_client.discard()
        elif self.link.state is LinkState.CUT:
            self.abort()

    def abort(self) -> None:
        self.link._connections.discard(self)
        self.to_target.discard()
        self.to_client.discard()
        self.client.abort()
        self.target.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class FaultyLink:
    """A TCP relay between a client and a service, with faults a test switches on and off.

    ``async with FaultyLink(service.endpoint) as link:`` then ``ClientProxy(link.endpoint)``.
    Pass ``events=`` the service's event endpoint to relay events too (see the module docstring
    for exactly what each form covers). The link lives on the running event loop.

    Counters (both relays together): ``bytes_to_target`` and ``bytes_to_client`` delivered so
    far, ``bytes_held`` read but not yet delivered (frozen or delayed), ``connections`` accepted,
    ``open_connections`` now, ``failed_dials`` connections the target refused.
    """

    def __init__(self, target_endpoint: str, *, events: str | None = None, max_held: int = DEFAULT_MAX_HELD) -> None:
        self.target_endpoint = target_endpoint
        self._target = _split_tcp(target_endpoint)
        self._events_target = _split_tcp(events) if events is not None else None
        self.max_held = max_held
        self.state = LinkState.CLOSED
        self.delay_seconds = 0.0
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.bytes_held = 0
        self.connections = 0
        self.failed_dials = 0
        self._connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._listen: list[tuple[str, int, tuple[str, int]]] = []  # (host, port, target) per relay
        self._relisten: set[asyncio.Task[None]] = set()
        self.endpoint = ""
        """Where clients connect instead of the target (``tcp://HOST:PORT``)."""
        self.events_endpoint: str | None = None
        """Where the link relays events, when ``events`` was given (else events bypass the link)."""
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the link is not started"
        return self._loop

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> FaultyLink:
        if self.state is not LinkState.CLOSED:
            raise RuntimeError("this FaultyLink is already started")
        self._loop = asyncio.get_running_loop()
        if self._events_target is None:
            host = self._target[0] if _is_loopback(self._target[0]) else "127.0.0.1"
            sock = _listening_socket(host, 0)
            self._listen = [(host, sock.getsockname()[1], self._target)]
            await self._serve(sock, self._target)
        else:
            await self._start_with_events(self._events_target)
        host = self._listen[0][0]
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = f"tcp://{shown}:{self._listen[0][1]}"
        if len(self._listen) > 1:
            self.events_endpoint = f"tcp://{shown}:{self._listen[1][1]}"
        self.state = LinkState.OPEN
        return self

    async def _start_with_events(self, events_target: tuple[str, int]) -> None:
        # Another loopback address, where the service's event port number is free.
        events_port = events_target[1]
        last: OSError | None = None
        for last_octet in random.sample(range(2, 255), 40):
            host = f"127.0.0.{last_octet}"
            try:
                events_sock = _listening_socket(host, events_port)
            except OSError as exc:
                last = exc
                continue
            try:
                sock = _listening_socket(host, 0)
            except OSError:
                events_sock.close()
                raise
            self._listen = [(host, sock.getsockname()[1], self._target), (host, events_port, events_target)]
            await self._serve(sock, self._target)
            await self._serve(events_sock, events_target)
            return
        raise EndpointError(
            f"FaultyLink cannot relay events: port {events_port} is taken on every loopback address tried "
            f"(is the service's event socket bound to a wildcard address?) or 127.0.0.N is not usable here: {last}"
        )

    async def _serve(self, sock: socket.socket, target: tuple[str, int]) -> None:
        def accept() -> _Side:
            conn = _Connection(self, target)
            self._connections.add(conn)
            self.connections += 1
            return conn.accepted()

        try:
            server = await self.loop.create_server(accept, sock=sock)
        except BaseException:
            sock.close()
            raise
        if self.state is LinkState.CUT:  # cut again before this listener was up
            server.close()
        else:
            self._servers.append(server)

    async def close(self) -> None:
        """Close the listeners and every relayed connection."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        for task in self._relisten:
            task.cancel()
        self._relisten.clear()
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        self._abort_all()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks

    async def __aenter__(self) -> FaultyLink:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _abort_all(self) -> None:
        for conn in list(self._connections):
            conn.abort()

    # -- faults ----------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Deliver every chunk read from now on at least ``seconds`` later (a latency, in both
        directions; a round trip through the link then takes at least twice that)."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, not {seconds!r}")
        self.delay_seconds = float(seconds)

    def freeze(self) -> None:
        """Stop delivering without closing anything: to both peers the other has gone silent.

        Bytes (and closes) keep being read and are held until ``heal()``; heartbeats go
        unanswered, so zmsg's dead-peer detection sees a vanished peer.
        """
        self._require_started()
        if self.state is LinkState.OPEN:
            self.state = LinkState.FROZEN

    def cut(self) -> None:
        """Abort every connection (both peers see it reset) and refuse new ones until ``heal()``."""
        self._require_started()
        if self.state is LinkState.CUT:
            return
        self.state = LinkState.CUT
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()  # new connections are refused at once; heal() binds the same ports again
        self._abort_all()

    def heal(self) -> None:
        """Back to a good network: no delay, held bytes delivered now, connections accepted again.

        A cut link listens again on the same ports before this returns (connections made at
        once wait in the listen backlog until the relay picks them up).
        """
        self._require_started()
        was_cut = self.state is LinkState.CUT
        self.state = LinkState.OPEN
        self.delay_seconds = 0.0
        if was_cut:
            for host, port, target in self._listen:
                task = self.loop.create_task(self._serve(_listening_socket(host, port), target))
                self._relisten.add(task)
                task.add_done_callback(self._relisten.discard)
        for conn in list(self._connections):
            for pipe in (conn.to_target, conn.to_client):
                pipe.queue = deque((0.0, data) for _due, data in pipe.queue)
                pipe.pump()

    def _require_started(self) -> None:
        if self.state is LinkState.CLOSED:
            raise RuntimeError("the FaultyLink is not started (use `async with FaultyLink(...)`)")

    # -- counters --------------------------------------------------------------------------

    def _held_changed(self, delta: int) -> None:
        self.bytes_held += delta

    def _delivered(self, count: int, to_target: bool) -> None:
        if to_target:
            self.bytes_to_target += count
        else:
            self.bytes_to_client += count

    def __repr__(self) -> str:
        return (f"<FaultyLink {self.endpoint or '?'} -> {self.target_endpoint} {self.state.value} "
                f"delay={self.delay_seconds:g}s held={self.bytes_held}>")

