"""Connection events of a socket (connected, lost, handshake refused), delivered on the loop.

ZeroMQ hides connections behind its sockets; its monitor reports them on an inproc PAIR socket.
``SocketMonitor`` reads that on the event loop like any other ``Channel`` and turns each event
into a callback ``(event, endpoint)``. This is how a client learns, without waiting for its
timeouts, that a service went away (including a heartbeat timeout, when a peer vanished without
closing) or refused its CURVE credentials.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from zmsg.transport.channel import Channel

__all__ = [
    "SocketMonitor",
    "CONNECTED",
    "DISCONNECTED",
    "CONNECT_FAILED",
    "AUTH_FAILED",
    "PROTOCOL_FAILED",
    "WATCHED_EVENTS",
    "AcceptMonitor",
    "EVENT_NAMES",
]

CONNECTED = zmq.EVENT_HANDSHAKE_SUCCEEDED
DISCONNECTED = zmq.EVENT_DISCONNECTED
CONNECT_FAILED = zmq.EVENT_CONNECT_RETRIED  # an attempt failed (refused, unreachable); ZeroMQ retries
AUTH_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH
PROTOCOL_FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
EVENT_NAMES = {
    int(CONNECTED): "connected",
    int(DISCONNECTED): "disconnected",
    int(CONNECT_FAILED): "connect-failed",
    int(AUTH_FAILED): "auth-failed",
    int(PROTOCOL_FAILED): "protocol-failed",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "protocol-failed",
}
"""Watched events by name (the values of ``zmsg.client_core.LinkEvent``)."""
WATCHED_EVENTS = (
    CONNECTED | DISCONNECTED | CONNECT_FAILED | AUTH_FAILED | PROTOCOL_FAILED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class SocketMonitor:
    """Calls ``on_event(event, endpoint)`` for each watched connection event of ``sock``."""

    def __init__(self, sock: zmq.Socket[Any], on_event: Callable[[int, str], None], *, name: str) -> None:
        self._sock = sock
        self._on_event = on_event
        self._pair = sock.get_monitor_socket(WATCHED_EVENTS)
        self._channel = Channel(self._pair, self._on_message, name=f"{name}/monitor")

    def _on_message(self, frames: list[bytes]) -> None:
        message = parse_monitor_message(frames)
        raw: Any = message["endpoint"]
        endpoint = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        self._on_event(int(message["event"]), endpoint)

    def close(self) -> None:
        """Stop monitoring; call before closing the monitored socket."""
        if self._channel.closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._channel.close(linger_ms=0)


class AcceptMonitor:
    """Calls ``on_failed(errno)`` each time a listening socket could not accept a connection.

    The usual cause is running out of file descriptors (EMFILE): libzmq then leaves the
    connection waiting in the kernel's backlog and retries, so nothing crashes, but nothing
    would say why new clients hang either; the service logs it from here.
    """

    def __init__(self, sock: zmq.Socket[Any], on_failed: Callable[[int], None], *, name: str) -> None:
        self._sock = sock
        self._on_failed = on_failed
        self._pair = sock.get_monitor_socket(zmq.EVENT_ACCEPT_FAILED)
        self._channel = Channel(self._pair, self._on_message, name=f"{name}/accept-monitor")

    def _on_message(self, frames: list[bytes]) -> None:
        message = parse_monitor_message(frames)
        self._on_failed(int(message["value"]))

    def close(self) -> None:
        if self._channel.closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._channel.close(linger_ms=0)
