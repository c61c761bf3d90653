"""FaultyLink itself: what it relays, and that each fault does what it says, over real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import zmsg
from zmsg.testing import FaultyLink, LinkState

pytestmark = pytest.mark.anyio


async def _eventually(probe: Callable[[], Any], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not probe():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


@pytest.fixture
async def service() -> AsyncIterator[zmsg.Service]:
    svc = zmsg.Service("linked")
    seen: list[int] = []

    @svc.message_pattern("echo")
    def echo(data: object) -> object:
        return data

    @svc.message_pattern("sleep")
    async def sleep(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @svc.event_pattern("tick")
    def tick(n: int) -> None:
        seen.append(n)

    @svc.message_pattern("seen")
    def seen_events() -> list[int]:
        return seen

    svc.seen = seen  # type: ignore[attr-defined]
    await svc.start("tcp://127.0.0.1:0")
    yield svc
    await svc.stop(grace=0.1)


async def test_requests_and_events_both_travel_through_the_link(service: zmsg.Service) -> None:
    async with FaultyLink(service.endpoint, events=service.events_endpoint) as link:
        assert link.events_endpoint is not None
        assert link.events_endpoint.rsplit(":", 1)[1] == service.events_endpoint.rsplit(":", 1)[1]
        async with zmsg.ClientProxy(link.endpoint) as client:
            assert await client.send("echo", "hi") == "hi"
            await client.emit("tick", 1)
            await _eventually(lambda: link.connections == 2)  # the request and the event connection
            before = link.bytes_to_target
            await client.emit("tick", 2)
            assert await _probe_seen(client, [1, 2])
            assert link.bytes_to_target > before  # the event went through the link
            assert link.bytes_to_client > 0


async def _probe_seen(client: zmsg.ClientProxy, expected: list[int]) -> bool:
    for _ in range(2000):
        if await client.send("seen") == expected:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_without_events_only_requests_go_through_the_link(service: zmsg.Service) -> None:
    async with FaultyLink(service.endpoint) as link, zmsg.ClientProxy(link.endpoint) as client:
        assert link.events_endpoint is None
        await client.emit("tick", 7)
        assert await _probe_seen(client, [7])
        assert link.connections == 1  # the event connection went straight to the service


async def test_a_freeze_holds_events_only_when_the_event_connection_is_relayed(service: zmsg.Service) -> None:
    seen: list[int] = service.seen  # type: ignore[attr-defined]
    async with FaultyLink(service.endpoint, events=service.events_endpoint) as link, \
            zmsg.ClientProxy(link.endpoint, heartbeat=None) as client:
        await client.emit("tick", 1)
        await _eventually(lambda: seen == [1])
        link.freeze()
        await client.emit("tick", 2)
        await _eventually(lambda: link.bytes_held > 0)
        assert seen == [1]
        link.heal()
        await _eventually(lambda: seen == [1, 2])
    async with FaultyLink(service.endpoint) as link, zmsg.ClientProxy(link.endpoint, heartbeat=None) as client:
        link.freeze()
        await client.emit("tick", 3)  # straight to the service: the link carries requests only
        await _eventually(lambda: seen == [1, 2, 3])
        assert link.bytes_held == 0


async def test_a_frozen_link_holds_the_bytes_and_heal_delivers_them(service: zmsg.Service) -> None:
    async with FaultyLink(service.endpoint) as link, zmsg.ClientProxy(link.endpoint, heartbeat=None) as client:
        assert await client.send("echo", 0) == 0
        link.freeze()
        assert link.state is LinkState.FROZEN
        delivered = link.bytes_to_target
        pending = asyncio.ensure_future(client.send("echo", "x" * 1000))
        await _eventually(lambda: link.bytes_held > 1000)
        assert link.bytes_to_target == delivered and not pending.done()
        link.heal()
        assert await pending == "x" * 1000
        assert link.bytes_held == 0 and link.bytes_to_target > delivered + 1000


async def test_delay_holds_each_direction_for_at_least_the_delay(service: zmsg.Service) -> None:
    async with FaultyLink(service.endpoint) as link, zmsg.ClientProxy(link.endpoint) as client:
        assert await client.send("echo", 0) == 0
        link.delay(0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = asyncio.ensure_future(client.send("echo", 1))
        await _eventually(lambda: link.bytes_held > 0)
        assert await pending == 1
        # The request and its reply each waited in the link: a lower bound, whatever the machine's speed.
        assert loop.time() - started >= 0.6
        link.heal()
        assert link.delay_seconds == 0


async def test_cut_fails_requests_in_flight_and_refuses_connections_until_heal(service: zmsg.Service) -> None:
    async with FaultyLink(service.endpoint) as link, zmsg.ClientProxy(link.endpoint, timeout=30) as client:
        pending = asyncio.ensure_future(client.send("sleep", 10))
        await _eventually(lambda: link.bytes_to_target > 0 and link.bytes_held == 0 and client.in_flight == 1)
        link.cut()
        with pytest.raises(zmsg.ServiceUnavailable, match="lost"):
            await asyncio.wait_for(pending, 20)
        host, port = link.endpoint[6:].rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            await _connect(host, int(port))
        link.heal()
        await _connect(host, int(port))  # listening again on the same port
        assert await client.send("echo", "back", timeout=20, wait_for_ready=True) == "back"  # reconnecting


async def _connect(host: str, port: int) -> None:
    _reader, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()


async def test_a_target_that_is_down_drops_the_client_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    async with FaultyLink(f"tcp://127.0.0.1:{port}") as link:
        reader, writer = await asyncio.open_connection(*link.endpoint[6:].rsplit(":", 1))
        assert await reader.read() == b""  # closed (or reset) by the link
        writer.close()
        await _eventually(lambda: link.failed_dials == 1 and link.open_connections == 0)


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(zmsg.EndpointError):
        FaultyLink("ipc:///tmp/x")
    link = FaultyLink("tcp://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="not started"):
        link.freeze()
    with pytest.raises(ValueError):
        link.delay(-1)


