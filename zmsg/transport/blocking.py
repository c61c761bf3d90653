"""Blocking ZeroMQ sockets for callers without an event loop (``zmsg.SyncClientProxy``).

Theory of operation: a synchronous caller waits on the socket itself, exactly as raw blocking
pyzmq does, so a request costs one ``send`` and one ``recv`` and nothing else: no background
thread, no loop, no queue. Timeouts are ZeroMQ's own (``RCVTIMEO``/``SNDTIMEO``), set only when
they change. A ZeroMQ socket must not be used by two threads at once, so the owner gives each
thread its own ``BlockingDealer`` and guards the one ``BlockingPublisher`` with a lock. Like the
rest of the transport, this module moves frames and knows nothing of records or patterns.
A ``WatchedDealer`` (one endpoint, for long-lived streams) also reads its socket monitor while
it waits, so a service that dies mid-stream is reported at once, not after the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket
from zmq.utils.monitor import parse_monitor_message

from zmsg.defaults import DEFAULT_HEARTBEAT, DEFAULT_HWM
from zmsg.errors import ServiceUnavailable
from zmsg.transport.monitor import EVENT_NAMES, WATCHED_EVENTS
from zmsg.transport.sockets import (
    Security,
    connect_all,
    connect_dealer,
    connect_publisher,
    subscription_change,
)
from zmsg.transport.sockopt import POLLIN, events, rcvmore

__all__ = ["BlockingDealer", "WatchedDealer", "BlockingPublisher", "ask_each"]

_NO_TIMEOUT = -1
# The backend's send, as Channel uses it: pyzmq's ``send_multipart`` checks every frame's type in
# Python first (about 2.5 us per two-frame 64 KiB message here).
_send = _BackendSocket.send
_SNDMORE = int(zmq.SNDMORE)


def _send_message(sock: zmq.Socket[Any], frames: Sequence[Any]) -> None:
    """Send one message, frame by frame through the backend, copying as Channel does: pyzmq's
    zero-copy frames over 64 KiB release their buffer through its garbage-collector thread,
    which costs more than the copy. libzmq applies the high-water mark (and ``SNDTIMEO``) to a
    message's first frame only, so a message is queued whole or not at all."""
    last = len(frames) - 1
    for index in range(last):
        _send(sock, frames[index], _SNDMORE)
    _send(sock, frames[last])


def _ms(timeout: float) -> int:
    """Seconds to ZeroMQ's whole milliseconds, never 0 (0 would mean "do not wait at all")."""
    return min(max(1, int(timeout * 1000 + 0.999)), 0x7FFFFFFF)  # a C int in ZeroMQ


class BlockingDealer:
    """A DEALER owned by one thread: send a message, wait for the next one with a timeout."""

    __slots__ = ("sock", "_rcvtimeo", "_monitor", "__weakref__")

    def __init__(self, endpoints: list[str], *, heartbeat: float | None = DEFAULT_HEARTBEAT,
                 security: Security | None = None) -> None:
        self.sock: zmq.Socket[Any] = connect_dealer(endpoints, heartbeat=heartbeat, security=security, connect=False)
        # Monitor first, connect second (no event before anyone listens); read without blocking
        # by ``link_events`` when the owner wants to know which endpoints are up.
        self._monitor: zmq.Socket[Any] = self.sock.get_monitor_socket(WATCHED_EVENTS)
        try:
            connect_all(self.sock, endpoints)
        except BaseException:
            self._monitor.close(linger=0)
            raise
        self._rcvtimeo = _NO_TIMEOUT

    def link_events(self) -> list[tuple[str, str]]:
        """Connection events since the last call, as (``EVENT_NAMES`` name, endpoint)."""
        found: list[tuple[str, str]] = []
        monitor = self._monitor
        try:
            # Every fail-fast request asks: a ZMQ_EVENTS read is 0.65 us, ``poll(0)`` (a Poller
            # built per call) 2.6 us.
            while events(monitor) & POLLIN:
                message = parse_monitor_message(monitor.recv_multipart())
                name = EVENT_NAMES.get(int(message["event"]))
                raw: Any = message["endpoint"]
                if name is not None:
                    found.append((name, raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)))
        except zmq.ZMQError:
            pass
        return found

    def send(self, frames: Sequence[Any]) -> None:
        try:
            _send_message(self.sock, frames)
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot send: {exc.strerror}") from None

    def exchange(self, frame: bytes, timeout_ms: int) -> bytes | None:
        """Send a one-frame message, then wait up to ``timeout_ms`` for the next message's first
        frame (None on timeout). One call for the round trip keeps a blocking request as cheap
        as raw pyzmq's ``send`` + ``recv``.
        """
        sock = self.sock
        if timeout_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo = timeout_ms
        try:
            sock.send(frame)
            reply: bytes = sock.recv()
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot exchange: {exc.strerror}") from None
        return reply

    def recv_first(self, timeout: float) -> bytes | None:
        """The first frame of the next message, or None when none arrived within ``timeout`` s.

        Large bodies travel as frames of their own: ``whole_message`` adds them.
        """
        timeout_ms = _ms(timeout)
        sock = self.sock
        if timeout_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo = timeout_ms
        try:
            frame: bytes = sock.recv()
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot receive: {exc.strerror}") from None
        return frame

    def whole_message(self, first: bytes) -> Sequence[Any]:
        """``first`` (from ``recv_first``, ``exchange`` or ``recv_or_event``) and the frames that
        follow it in its message: large bodies, as ``zmq.Frame`` buffers decoded without a copy.

        Asking ZeroMQ whether more frames follow is one flag read (0.1 us); parsing the first
        frame alone and catching the fault a missing body frame raises cost 1.5 us and a second
        parse per large reply.
        """
        sock = self.sock
        if not rcvmore(sock):
            return (first,)
        frames: list[Any] = [first]
        try:
            while True:
                frames.append(sock.recv(copy=False))
                if not rcvmore(sock):
                    return frames
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot receive: {exc.strerror}") from None

    def close(self, linger_ms: int = 0) -> None:
        """``linger_ms``: how long ZeroMQ may keep delivering what was sent (a stream's cancel)."""
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self.sock.close(linger=linger_ms)


class WatchedDealer(BlockingDealer):
    """A DEALER to one endpoint whose waits also end when a connection event arrives (a long-lived
    stream must hear at once that its service went away, not at its timeout)."""

    __slots__ = ("_poller",)

    def __init__(self, endpoint: str, *, heartbeat: float | None = DEFAULT_HEARTBEAT,
                 security: Security | None = None) -> None:
        super().__init__([endpoint], heartbeat=heartbeat, security=security)
        self._poller = zmq.Poller()
        self._poller.register(self.sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def recv_or_event(self, timeout: float) -> bytes | None:
        """The first frame of the next message, or None when ``timeout`` s passed or a connection
        event is waiting first (read those with ``link_events``)."""
        sock = self.sock
        try:
            try:
                frame: bytes = sock.recv(zmq.NOBLOCK)
                return frame
            except zmq.Again:
                pass
            if sock in dict(self._poller.poll(_ms(timeout))):
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                    return frame
                except zmq.Again:
                    pass
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot receive: {exc.strerror}") from None
        return None


class BlockingPublisher:
    """An XPUB that can wait for its subscribers and push back instead of dropping events."""

    __slots__ = ("sock", "subscribers")

    def __init__(self, endpoints: list[str], *, hwm: int = DEFAULT_HWM, heartbeat: float | None = DEFAULT_HEARTBEAT,
                 security: Security | None = None) -> None:
        self.sock: zmq.Socket[Any] = connect_publisher(endpoints, hwm=hwm, heartbeat=heartbeat, security=security)
        self.subscribers = 0

    def wait_subscribers(self, expected: int, timeout: float) -> bool:
        """Count subscription messages until ``expected`` peers subscribed; False on timeout.

        The XPUB is verbose, so every subscriber that connects announces itself once (first
        byte 1; 0 is an unsubscription). Until then an event could fall into PUB/SUB's
        slow-joiner gap, so the caller waits here before publishing anything.
        """
        sock = self.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        remaining_ms = _ms(timeout)
        deadline = time.monotonic() + timeout
        while self.subscribers < expected:
            if not poller.poll(remaining_ms):
                return False
            while True:
                try:
                    msg = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.subscribers += subscription_change(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and self.subscribers < expected:
                return False
            remaining_ms = _ms(remaining)
        return True

    def send(self, frames: Sequence[Any], timeout: float) -> bool:
        """Hand one message to ZeroMQ; False when a full queue did not drain within ``timeout``."""
        sock = self.sock
        sock.setsockopt(zmq.SNDTIMEO, _ms(timeout))
        try:
            _send_message(sock, frames)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            raise ServiceUnavailable(f"cannot publish: {exc.strerror}") from None
        return True

    def close(self, linger_ms: int) -> None:
        # Linger lets ZeroMQ finish delivering what it accepted after we are gone.
        self.sock.close(linger=linger_ms)


def ask_each(
    endpoints: list[str],
    frames: Sequence[Any],
    timeout: float,
    *,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    security: Security | None = None,
) -> list[list[bytes] | None]:
    """Send ``frames`` to every endpoint on its own short-lived DEALER, in parallel.

    Returns each endpoint's first answer, or None where none came within ``timeout`` seconds.
    A DEALER connected to several endpoints would round-robin, so a per-endpoint question (the
    handshake) needs one socket per endpoint.
    """
    dealers: list[zmq.Socket[Any]] = []
    answers: list[list[bytes] | None] = [None] * len(endpoints)
    try:
        dealers.extend(connect_dealer([endpoint], heartbeat=heartbeat, security=security) for endpoint in endpoints)
        poller = zmq.Poller()
        for sock in dealers:
            sock.send_multipart(frames)
            poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        waiting = len(dealers)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for sock, _event in poller.poll(_ms(remaining)):
                index = dealers.index(sock)
                answers[index] = sock.recv_multipart(zmq.NOBLOCK)
                poller.unregister(sock)
                waiting -= 1
    except zmq.ZMQError as exc:
        raise ServiceUnavailable(f"handshake failed: {exc.strerror}") from None
    finally:
        for sock in dealers:
            sock.close(linger=0)
    return answers
