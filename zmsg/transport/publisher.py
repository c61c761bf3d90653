"""The client's event socket: an XPUB on the loop that knows who is subscribed.

Theory of operation: the XPUB is *verboser* (see sockets.connect_publisher), so every
subscriber that connects announces itself with one subscription message, and every one that
leaves (its connection dropped, or a heartbeat timed out) with an unsubscription that libzmq
generates. Counting them tells how many services would receive an event sent now (and, for
services with instance topics, exactly which instances are subscribed); waiting for
the count is waiting on those messages (a future woken by the reader), not polling. Like the
rest of the transport it moves frames: what an event record is, it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import zmq

from zmsg.defaults import DEFAULT_HWM
from zmsg.protocol import read_subscription
from zmsg.transport.channel import Channel
from zmsg.transport.sockets import Security, connect_publisher, subscription_change

__all__ = ["Publisher"]


class Publisher:
    """An XPUB connected to services' event endpoints, counting their live subscriptions."""

    __slots__ = ("channel", "subscribers", "endpoints", "instances", "_instance_pipes", "_changed")

    def __init__(self, endpoints: Iterable[str], *, hwm: int = DEFAULT_HWM, heartbeat: float | None = None,
                 security: Security | None = None, name: str = "client/events") -> None:
        self.endpoints = set(endpoints)
        self.subscribers = 0
        self.instances: set[str] = set()
        """Instance ids whose topic is subscribed now (events addressed to them are delivered)."""
        self._instance_pipes: dict[str, int] = {}  # a reconnecting instance may join before its old pipe left
        self._changed: list[asyncio.Future[None]] = []
        sock = connect_publisher(sorted(self.endpoints), hwm=hwm, heartbeat=heartbeat, security=security)
        self.channel = Channel(sock, self._on_subscription, name=name)

    def _on_subscription(self, frames: list[bytes]) -> None:
        self.subscribers += subscription_change(frames[0])
        change = read_subscription(frames[0])
        if change is not None and (instance := change[1]) is not None:
            joined = change[0]
            pipes = self._instance_pipes.get(instance, 0) + (1 if joined else -1)
            if pipes > 0:
                self._instance_pipes[instance] = pipes
                self.instances.add(instance)
            else:
                self._instance_pipes.pop(instance, None)
                self.instances.discard(instance)
        waiters, self._changed = self._changed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_subscribers(self, expected: int, timeout: float) -> bool:
        """Wait until ``expected`` services are subscribed; False when ``timeout`` passed first."""
        if self.subscribers >= expected:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.subscribers < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = loop.create_future()
            self._changed.append(waiter)
            # A subscription may already be waiting on the socket without a new edge on its FD.
            self.channel.drain()
            if waiter.done():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return True

    async def wait_change(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the next subscription or unsubscription."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._changed.append(waiter)
        self.channel.drain()
        if not waiter.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)

    def retarget(self, wanted: set[str]) -> None:
        """Connect to the event endpoints in ``wanted`` and drop the others (services moved)."""
        sock = self.channel.sock
        for gone in self.endpoints - wanted:
            with contextlib.suppress(zmq.ZMQError):  # already gone
                sock.disconnect(gone)
        for new in sorted(wanted - self.endpoints):
            sock.connect(new)
        self.endpoints = set(wanted)

    def send(self, frames: list[Any]) -> None:
        self.channel.send(frames)

    @property
    def queued(self) -> int:
        """Messages the transport has not accepted yet (a subscriber's queue is full)."""
        return self.channel.queued

    async def wait_writable(self) -> None:
        await self.channel.wait_writable()

    def close(self, linger_ms: int) -> None:
        # Linger lets ZeroMQ finish delivering what it has accepted after we are gone.
        self.channel.close(linger_ms=linger_ms)
        for waiter in self._changed:
            if not waiter.done():
                waiter.cancel()
        self._changed = []
