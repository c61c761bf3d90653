"""A DEALER's connection to one ROUTER, spoken in ZMTP by the event loop itself.

Why: with libzmq every message crosses threads twice per direction. A send wakes libzmq's I/O
thread, which writes to TCP; a reply is read by that thread, which then wakes the loop through
the socket's mailbox. On a machine with few cores those wake-ups are most of a round trip: with
one request in flight, a client doing its own TCP I/O on the loop answered 1.05x-1.5x as many
requests per second as blocking pyzmq (benches/RESULTS.md). ``ZmtpDealer`` is that client side:
one TCP (or IPC) connection, ZMTP 3.1 with the NULL mechanism (``zmsg.zmtp``), reconnecting by
itself, with ZMTP heartbeats, reporting the same connection events as ``SocketMonitor`` so the
proxy's link state (fail fast, reconnect, hello refresh) works unchanged.

Semantics kept from libzmq's DEALER as zmsg configures it: messages sent while not connected
wait and go out, in order, once the handshake is done; a lost connection loses what was
unsent (the owner fails those requests on the DISCONNECTED event, as it does with libzmq);
a connection attempt that fails is retried every ``reconnect_interval``, each attempt bounded
by three heartbeats. Not covered: CURVE (the proxy keeps libzmq for it), other socket types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from zmsg.endpoints import native_endpoint
from zmsg.errors import ChannelClosed, EndpointError
from zmsg.transport.monitor import AUTH_FAILED, CONNECT_FAILED, CONNECTED, DISCONNECTED, PROTOCOL_FAILED
from zmsg.zmtp import (
    Reader,
    ZmtpError,
    greeting,
    message_chunks,
    parse_properties,
    ping_command,
    pong_command,
    ready_command,
)

__all__ = ["ZmtpDealer"]

log = logging.getLogger("zmsg.transport")

RECONNECT_INTERVAL = 0.1  # seconds, as libzmq's ZMQ_RECONNECT_IVL default
_CONNECT_TIMEOUT = 10.0  # an attempt's bound without heartbeats


class ZmtpDealer:
    """One connection to a ROUTER: ``send(frames)``, and ``on_message(frames)`` per message.

    ``on_event(event, endpoint)`` gets ``zmsg.transport.monitor``'s events: CONNECTED once the
    handshake is done, DISCONNECTED when a connection that was up is lost (closed, reset, silent
    past three heartbeats, or broken ZMTP), CONNECT_FAILED for each attempt that did not get
    that far, AUTH_FAILED when the peer refused the handshake (a ZAP denial, or a service that
    wants CURVE), PROTOCOL_FAILED when the peer is not a ZeroMQ ROUTER.
    """

    def __init__(self, endpoint: str, on_message: Callable[[list[Any]], None],
                 on_event: Callable[[int, str], None], *, name: str = "zmtp-dealer",
                 heartbeat: float | None = None, max_message_size: int = -1,
                 reconnect_interval: float = RECONNECT_INTERVAL) -> None:
        target = native_endpoint(endpoint)
        if target is None:
            raise EndpointError(f"{endpoint!r} cannot be reached without libzmq (tcp:// and ipc:// only)")
        self.endpoint = endpoint
        self.name = name
        self._target = target
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._on_event = on_event
        self._heartbeat = heartbeat
        self._max_message_size = max_message_size
        self._reconnect_interval = reconnect_interval
        # Set once a connection's handshake is done, cleared as soon as it is being dropped:
        # while set, messages go straight to it.
        self._transport: asyncio.Transport | None = None
        # The connection being made or up (its handshake may not be done): what close() ends.
        self._connection: asyncio.Transport | None = None
        self._pending: list[list[Any]] = []  # sent before the handshake was done
        self._closed = False
        self._attempt: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self.callback_errors = 0
        self._dial()

    # -- connecting --------------------------------------------------------------------------

    def _dial(self) -> None:
        self._retry = None
        if not self._closed:
            self._attempt = self._loop.create_task(self._connect(), name=f"{self.name}/connect")

    async def _connect(self) -> None:
        kind, host, port = self._target
        timeout = 3 * self._heartbeat if self._heartbeat else _CONNECT_TIMEOUT
        try:
            if kind == "tcp":
                coro = self._loop.create_connection(lambda: _Protocol(self), host, port)
            else:
                coro = self._loop.create_unix_connection(lambda: _Protocol(self), host)
            await asyncio.wait_for(coro, timeout)
        except (OSError, TimeoutError):
            self._attempt = None
            self._event(CONNECT_FAILED)
            self._schedule_retry()
            return
        self._attempt = None

    def _schedule_retry(self) -> None:
        if not self._closed and self._retry is None and self._attempt is None:
            self._retry = self._loop.call_later(self._reconnect_interval, self._dial)

    def _event(self, event: int) -> None:
        try:
            self._on_event(int(event), self.endpoint)
        except Exception:
            self.callback_errors += 1
            log.exception("%s: connection event handler failed", self.name)

    # -- called by the protocol ------------------------------------------------------------

    def _connection_made(self, transport: asyncio.Transport) -> bool:
        """A TCP connection is up; False when this dealer was closed meanwhile (it is dropped)."""
        if self._closed:
            transport.abort()
            return False
        self._connection = transport
        return True

    def _handshake_done(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        pending, self._pending = self._pending, []
        for frames in pending:
            transport.writelines(message_chunks(frames))
        self._event(CONNECTED)

    def _deliver(self, frames: list[Any]) -> None:
        try:
            self._on_message(frames)
        except Exception:
            # One bad message must never kill the reader: log, count, keep going.
            self.callback_errors += 1
            log.exception("%s: message handler failed", self.name)

    def _stop_writing(self) -> None:
        """The connection is being dropped: sends from now on wait for the next one."""
        self._transport = None

    def _lost(self, was_ready: bool, failure: ZmtpError | None) -> None:
        self._transport = self._connection = None
        if self._closed:
            return
        if was_ready:
            # What was not written is gone with the connection, and so is what was sent while it
            # was being dropped: the owner fails all of those requests on this event, so none
            # may reach the service later (libzmq would have delivered those after reconnecting).
            self._pending = []
            self._event(DISCONNECTED)
        elif failure is not None:
            self._event(AUTH_FAILED if failure.auth else PROTOCOL_FAILED)
        else:
            self._event(CONNECT_FAILED)
        # uvloop may run the whole short life of a connection before the attempt's await
        # returns: that attempt is over either way.
        self._attempt = None
        self._schedule_retry()

    # -- the owner's side ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, frames: list[Any]) -> None:
        """Send one message (frames: bytes-like); it waits, in order, while not connected."""
        if self._closed:
            raise ChannelClosed(f"{self.name} is closed")
        transport = self._transport
        if transport is not None:
            transport.writelines(message_chunks(frames))
        else:
            self._pending.append(frames)

    def close(self, linger_ms: int = 0) -> None:
        """Close the connection; with ``linger_ms`` what is already written gets that long to go."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None
        # The connection, whether or not its handshake is done (one the peer never answers must
        # not stay open), is ended; linger only applies to one that took messages.
        transport, self._connection = self._connection, None
        ready, self._transport = self._transport is not None, None
        if transport is None:
            return
        if ready and linger_ms > 0 and transport.get_write_buffer_size():
            transport.close()  # flushes what is buffered, then closes
            self._loop.call_later(linger_ms / 1000, transport.abort)
        else:
            transport.abort()


class _Protocol(asyncio.BufferedProtocol):
    """One TCP connection's ZMTP: greeting and READY, then frames, PING/PONG."""

    def __init__(self, owner: ZmtpDealer) -> None:
        self._owner = owner
        self._reader = Reader(owner._max_message_size)
        self._transport: asyncio.Transport | None = None
        self._ready = False
        self._failure: ZmtpError | None = None
        self._heard = True  # something came in since the last heartbeat tick
        self._silent_ticks = 0
        self._ticker: asyncio.TimerHandle | None = None
        self._deliver = owner._deliver

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports.
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._owner._connection_made(transport):
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Requests are small and latency-bound: never wait to coalesce them (asyncio and
            # uvloop set this already; libzmq does too).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Both at once (NULL has nothing to negotiate): the handshake costs one round trip.
        transport.write(greeting() + ready_command(b"DEALER"))
        if self._owner._heartbeat:
            self._ticker = self._owner._loop.call_later(self._owner._heartbeat, self._tick)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._heard = True
        reader = self._reader
        items = reader.received(nbytes)
        deliver = self._deliver
        for item in items:
            if item[0] == "message":
                if self._ready:
                    deliver(item[1])
                else:
                    self._fail(ZmtpError("a message arrived before the handshake's READY"))
                    return
            elif not self._command(item[1], item[2]):
                return
        if reader.failure is not None:
            self._fail(reader.failure)

    def _command(self, name: bytes, data: bytes) -> bool:
        transport = self._transport
        if transport is None:
            return False
        if name == b"READY" and not self._ready:
            try:
                socket_type = parse_properties(data).get(b"socket-type", b"")
            except ZmtpError as exc:
                self._fail(exc)
                return False
            if socket_type not in (b"ROUTER", b"DEALER"):
                self._fail(ZmtpError(f"the peer is a {socket_type.decode('ascii', 'replace') or 'untyped'} "
                                     "socket, not a ROUTER"))
                return False
            self._ready = True
            self._owner._handshake_done(transport)
        elif name == b"ERROR":
            reason = data[1:1 + data[0]].decode("utf-8", "replace") if data else ""
            self._fail(ZmtpError(f"the peer refused the connection: {reason or 'no reason given'}",
                                 auth=not self._ready))
            return False
        elif name == b"PING":
            transport.write(pong_command(data[2:18]))
        elif not self._ready:
            self._fail(ZmtpError(f"unexpected {name.decode('ascii', 'replace')} command during the handshake"))
            return False
        # PONG and unknown commands after the handshake: nothing to do (RFC 37 says ignore).
        return True

    def _tick(self) -> None:
        owner = self._owner
        transport = self._transport
        if transport is None or owner._heartbeat is None:
            return
        if self._heard:
            self._heard = False
            self._silent_ticks = 0
        else:
            self._silent_ticks += 1
            if self._silent_ticks >= 3:
                log.info("%s: %s silent for three heartbeats: dropping the connection", owner.name, owner.endpoint)
                owner._stop_writing()
                transport.abort()
                return
        transport.write(ping_command(3 * owner._heartbeat))
        self._ticker = owner._loop.call_later(owner._heartbeat, self._tick)

    def _fail(self, failure: ZmtpError) -> None:
        log.warning("%s: %s: %s", self._owner.name, self._owner.endpoint, failure)
        self._failure = failure
        self._owner._stop_writing()
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._transport = None
        was_ready, self._ready = self._ready, False
        self._owner._lost(was_ready, self._failure)
