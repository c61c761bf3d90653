"""A ZeroMQ socket driven by the asyncio loop's reader, without a Future per message.

Theory of operation: a ZeroMQ socket exposes an *edge-triggered* file descriptor that becomes
readable when the socket's state may have changed. ``Channel`` registers that FD with
``loop.add_reader``; on each wake-up it drains every waiting message with non-blocking receives
until EAGAIN (bounded per wake-up so one busy peer cannot starve the loop), hands each message
to a callback, and retries any sends that hit the high-water mark. Because any send or receive
may consume the edge, every send made outside the reader callback re-checks ``ZMQ_EVENTS`` and
schedules a drain when input is waiting. The owner's ``on_idle`` (where it flushes what a
message produced) runs right after each message, before the next ``ZMQ_EVENTS`` check, which
then both looks for more input and re-arms the edge after those sends: each ``ZMQ_EVENTS`` read
is a system call (libzmq polls the socket's mailbox), and a lone request answered at once costs
two of them instead of three. Sends that would block are queued in order and flushed
when the socket becomes writable; ``wait_writable`` lets producers wait for that (backpressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket

from zmsg.errors import ChannelClosed
from zmsg.transport.sockopt import POLLIN as _POLLIN, POLLOUT as _POLLOUT, events as _events, rcvmore as _rcvmore

__all__ = ["Channel", "ChannelClosed", "MAX_MESSAGES_PER_WAKEUP"]

log = logging.getLogger("zmsg.transport")

MAX_MESSAGES_PER_WAKEUP = 4096
_RETRY_BLOCKED_SEND = 0.1  # seconds between re-tries of a send that hit the high-water mark
_RETRY_PEER_BACKLOG = 0.01  # seconds between re-tries of messages for a peer that is not reading
MAX_PEER_BACKLOG = 1000  # messages kept for one such peer; older ones are dropped (and counted)
# A plain int, as sockopt.POLLIN and POLLOUT are: pyzmq's constants are enum flags.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
# pyzmq's Socket methods below its Python layer (which adds keyword handling to send and enum
# flag arithmetic to send_multipart, ~1.7 us per two-frame message): same calls, same semantics.
_send = _BackendSocket.send


def _size(frames: list[Any]) -> int:
    # The identity frame (frames[0]) is not counted: it is a few bytes and not a reply.
    return sum(len(frame) for frame in frames[1:])


class Channel:
    """One non-blocking ZeroMQ socket on the event loop."""

    __slots__ = (
        "_loop",
        "sock",
        "_fd",
        "_on_message",
        "_outq",
        "_writable_waiters",
        "_closed",
        "_drain_scheduled",
        "name",
        "callback_errors",
        "unroutable",
        "on_idle",
        "_backlogs",
        "_backlog_timer",
        "_backlog_bytes",
        "dropped",
        "_copy_frames",
        "inspect",
        "_paused",
        "_in_drain",
    )

    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_message: Callable[[list[Any]], None] | None,
        *,
        name: str = "channel",
        loop: asyncio.AbstractEventLoop | None = None,
        copy_frames: int | None = None,
    ) -> None:
        """``copy_frames``: receive only the first N frames of each message as ``bytes`` and the
        rest as ``zmq.Frame`` buffers, without copying them (None: copy every frame). For owners
        whose protocol puts only large bodies after the first frames: a body is then decoded
        straight from ZeroMQ's buffer, saving a copy and a large allocation per body."""
        self._loop = loop or asyncio.get_running_loop()
        self._copy_frames = copy_frames
        self.sock = sock
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]  # always an int for FD
        self._on_message = on_message
        self._outq: deque[list[Any]] = deque()
        self._writable_waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._drain_scheduled = False
        self.name = name
        self.callback_errors = 0
        self.unroutable = 0
        # Called after each drain of the socket: where owners flush what the drain produced.
        self.on_idle: Callable[[], None] | None = None
        # ROUTER only: messages for peers whose pipe is full, kept apart so that one peer that
        # stops reading never delays messages to the others.
        self._backlogs: dict[bytes, deque[list[Any]]] = {}
        self._backlog_timer: asyncio.TimerHandle | None = None
        # Bytes of each backlog: what zmsg holds for a peer beyond ZeroMQ's own queue (SNDHWM
        # messages), so that the owner can hold each peer to a budget in bytes.
        self._backlog_bytes: dict[bytes, int] = {}
        self.dropped = 0
        # When set, messages are received with their ZeroMQ metadata and shown to ``inspect``
        # (its last frame) first; a False answer discards the message. Off by default: the
        # metadata costs a Frame object per message (used after a CURVE allow-list reload).
        self.inspect: Callable[[zmq.Frame], bool] | None = None
        self._paused = False
        # True while _on_ready's loop runs: sends made then skip their own ZMQ_EVENTS check,
        # since the loop makes one right after (see the module docstring).
        self._in_drain = False
        self._loop.add_reader(self._fd, self._on_ready)
        # The FD may already be signalled (messages queued before we registered).
        self._schedule_drain()

    # -- receiving -------------------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and not self._closed:
            self._drain_scheduled = True
            self._loop.call_soon(self._on_ready)

    def _on_ready(self) -> None:
        self._drain_scheduled = False
        if self._closed or self._paused:
            return
        sock = self.sock
        try:
            if self._outq:
                self._flush_queue()
            on_message = self._on_message
            on_idle = self.on_idle
            recv = sock.recv
            copy_frames = self._copy_frames
            self._in_drain = True
            try:
                for _ in range(MAX_MESSAGES_PER_WAKEUP):
                    # Asking ZMQ_EVENTS first is cheaper than ending every drain with a zmq.Again
                    # exception, and reading it re-arms the edge-triggered FD just the same; it
                    # also stands for the check each send below would otherwise make.
                    if not _events(sock) & _POLLIN:
                        break
                    try:
                        if self.inspect is None:
                            # recv_multipart's loop, inline, choosing per frame whether to copy.
                            frames: list[Any] = [recv(_NOBLOCK)]
                            while _rcvmore(sock):
                                frames.append(recv(_NOBLOCK, copy=copy_frames is None or len(frames) < copy_frames))
                        else:
                            raw = sock.recv_multipart(_NOBLOCK, copy=False)
                            if not self.inspect(raw[-1]):
                                continue
                            frames = [frame.bytes for frame in raw]
                    except zmq.Again:
                        break
                    if on_message is None:
                        continue
                    try:
                        on_message(frames)
                    except Exception:
                        # One bad message must never kill the reader: log, count, keep going.
                        self.callback_errors += 1
                        log.exception("%s: message handler failed", self.name)
                    if on_idle is not None:
                        self._idle(on_idle)
                    if self._closed:
                        return
                    if self._paused:
                        break
                else:
                    # Budget used up with input still waiting: continue on a later iteration.
                    self._schedule_drain()
            finally:
                self._in_drain = False
            sent = False
            if self._backlogs:
                # A peer's pipe drained below its low-water mark: libzmq told the socket, which
                # woke this reader (ZMQ_EVENTS above processed it), so send now rather than at
                # the next timer tick; a peer that still is not reading costs one EAGAIN.
                try:
                    self._send_backlogs()
                except ChannelClosed:
                    return
                sent = True
            if self._outq and _events(sock) & _POLLOUT:
                self._flush_queue()
                sent = True
            if sent and not self._drain_scheduled and _events(sock) & _POLLIN:
                self._schedule_drain()  # those sends came after the loop's last check
        except zmq.ZMQError as exc:
            if self._closed or exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
                return
            log.error("%s: socket error: %s", self.name, exc)

    def _idle(self, on_idle: Callable[[], None]) -> None:
        try:
            on_idle()
        except ChannelClosed:
            raise
        except Exception:
            self.callback_errors += 1
            log.exception("%s: flushing after a message failed", self.name)

    def pause(self) -> None:
        """Stop reading: messages wait in ZeroMQ's queue (up to RCVHWM), then push back on the
        senders through TCP. Sends are unaffected."""
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._schedule_drain()  # the FD's edge may have fired while paused

    @property
    def paused(self) -> bool:
        return self._paused

    def drain(self) -> None:
        """Handle every message already waiting on the socket now (used before closing it)."""
        for _ in range(1000):  # bounded: a peer still sending must not keep us here forever
            self._on_ready()
            if self._closed or not (_events(self.sock) & _POLLIN):
                return

    # -- sending ---------------------------------------------------------------------------

    def send(self, frames: list[Any]) -> None:
        """Send one message now, or queue it in order if the socket would block."""
        if self._closed:
            raise ChannelClosed(f"{self.name} is closed")
        if self._outq:
            self._outq.append(frames)
            return
        if not self._try_send(frames):
            self._outq.append(frames)
        # Sending may have consumed the FD's edge: look for input that would otherwise sleep.
        if not self._in_drain and not self._drain_scheduled and _events(self.sock) & _POLLIN:
            self._schedule_drain()

    def send_to(self, peer: bytes, frames: list[Any]) -> None:
        """ROUTER: send one message to ``peer`` (``frames[0]`` is its identity).

        If that peer's pipe is full (it is not reading), the message waits in the peer's own
        backlog, re-tried every few milliseconds; ``backlog_bytes(peer)`` tells its size, which
        the owner holds to a budget (the service stops taking that peer's requests). Past
        MAX_PEER_BACKLOG messages the oldest are dropped and counted in ``dropped`` (that peer's
        requests then time out at the caller).
        """
        if self._closed:
            raise ChannelClosed(f"{self.name} is closed")
        backlog = self._backlogs.get(peer)
        if backlog is not None:
            if len(backlog) >= MAX_PEER_BACKLOG:
                self._backlog_bytes[peer] -= _size(backlog.popleft())
                self.dropped += 1
            backlog.append(frames)
            self._backlog_bytes[peer] += _size(frames)
            return
        if not self._try_send(frames):
            self._backlogs[peer] = deque([frames])
            self._backlog_bytes[peer] = _size(frames)
            self._arm_backlog_retry()
        if not self._in_drain and not self._drain_scheduled and _events(self.sock) & _POLLIN:
            self._schedule_drain()

    def backlog_bytes(self, peer: bytes) -> int:
        """Bytes of messages waiting in ``peer``'s backlog (0 when its pipe is not full)."""
        return self._backlog_bytes.get(peer, 0)

    def _arm_backlog_retry(self) -> None:
        if self._backlog_timer is None and not self._closed:
            self._backlog_timer = self._loop.call_later(_RETRY_PEER_BACKLOG, self._retry_backlogs)

    def _send_backlogs(self) -> None:
        for peer, backlog in list(self._backlogs.items()):
            while backlog and self._try_send(backlog[0]):
                self._backlog_bytes[peer] -= _size(backlog.popleft())
            if not backlog:
                del self._backlogs[peer]
                del self._backlog_bytes[peer]

    def _retry_backlogs(self) -> None:
        self._backlog_timer = None
        if self._closed:
            return
        try:
            self._send_backlogs()
        except ChannelClosed:
            return
        if self._backlogs:
            self._arm_backlog_retry()
        if not self._drain_scheduled and _events(self.sock) & _POLLIN:
            self._schedule_drain()

    @property
    def backlogged(self) -> int:
        """Messages waiting for peers that are not reading (ROUTER)."""
        return sum(len(b) for b in self._backlogs.values())

    @property
    def backlogged_bytes(self) -> int:
        """Bytes waiting for peers that are not reading (ROUTER)."""
        return sum(self._backlog_bytes.values())

    def _try_send(self, frames: list[Any]) -> bool:
        sock = self.sock
        try:
            # Copying sends: pyzmq's zero-copy frames (an object and a GC-thread round trip per
            # frame) measured slower here than one memcpy, for small and large (1 MiB) frames.
            last = len(frames) - 1
            if last:
                # libzmq checks the high-water mark on a message's first frame only, so once it
                # is taken the rest are too (a multipart message is queued whole or not at all).
                _send(sock, frames[0], _SNDMORE_NOBLOCK)
                for index in range(1, last):
                    _send(sock, frames[index], _SNDMORE_NOBLOCK)
            _send(sock, frames[last], _NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                # ROUTER_MANDATORY: the peer this reply is for has gone away.
                self.unroutable += 1
                return True
            raise ChannelClosed(f"{self.name}: {exc}") from None

    def _flush_queue(self) -> None:
        outq = self._outq
        while outq:
            if not self._try_send(outq[0]):
                return
            outq.popleft()
        waiters, self._writable_waiters = self._writable_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @property
    def queued(self) -> int:
        """Messages waiting for the socket to become writable."""
        return len(self._outq)

    async def wait_writable(self) -> None:
        """Wait until every queued message has been handed to ZeroMQ (backpressure)."""
        while self._outq and not self._closed:
            fut = self._loop.create_future()
            self._writable_waiters.append(fut)
            # ZMQ_EVENTS may already say writable without the FD firing again.
            self._schedule_drain()
            # Re-try now and then as well: a peer's pipe that went away (heartbeat timeout) or came
            # back can change writability without an edge we would see while blocked here.
            await asyncio.wait([fut], timeout=_RETRY_BLOCKED_SEND)
        if self._closed and self._outq:
            raise ChannelClosed(f"{self.name} closed with {len(self._outq)} message(s) unsent")

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, linger_ms: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._backlog_timer is not None:
            self._backlog_timer.cancel()
            self._backlog_timer = None
        try:
            self._loop.remove_reader(self._fd)
        except (RuntimeError, ValueError, OSError):  # loop already closed
            pass
        self.sock.close(linger=linger_ms)
        for fut in self._writable_waiters:
            if not fut.done():
                fut.set_exception(ChannelClosed(f"{self.name} is closed"))
        self._writable_waiters = []
