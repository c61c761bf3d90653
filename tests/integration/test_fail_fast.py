"""Fail fast: when every endpoint is known to be down, calls fail at once (ServiceUnavailable)
instead of waiting out their timeout; ``wait_for_ready=True`` keeps waiting for one."""

from __future__ import annotations

import asyncio
import signal

import pytest

import zmsg
from tests.conftest import free_endpoint
from zmsg.client_core import LinkEvent, PeerLink, unavailable

pytestmark = pytest.mark.anyio


def test_the_rule_waits_while_connecting_and_fails_when_all_are_down() -> None:
    a, b = PeerLink("tcp://a:1"), PeerLink("tcp://b:1")
    assert unavailable([a, b]) is None  # fresh: still connecting
    a.on_event(LinkEvent.CONNECT_FAILED)
    assert unavailable([a, b]) is None  # b may still answer
    b.on_event(LinkEvent.CONNECTED)
    assert unavailable([a, b]) is None
    b.on_event(LinkEvent.DISCONNECTED)
    error = unavailable([a, b])
    assert isinstance(error, zmsg.ServiceUnavailable) and "wait_for_ready=True" in str(error)
    b.on_event(LinkEvent.CONNECTED)
    assert unavailable([a, b]) is None
    a.on_event(LinkEvent.AUTH_FAILED)
    b.on_event(LinkEvent.AUTH_FAILED)
    assert isinstance(unavailable([a, b]), zmsg.AuthenticationFailed)


async def test_nothing_listening_fails_fast_unless_asked_to_wait() -> None:
    async with asyncio.timeout(30):  # a RequestTimeout of 60 s would mean no fail fast
        client = zmsg.ClientProxy(free_endpoint(), timeout=60)
        try:
            # The first call waits for the first connection attempt, which is refused.
            with pytest.raises(zmsg.ServiceUnavailable, match="no endpoint is up"):
                await client.send("echo", 1)
            with pytest.raises(zmsg.ServiceUnavailable, match="no endpoint is up"):
                await client.send("echo", 2)
            with pytest.raises(zmsg.ServiceUnavailable, match="the event was not sent"):
                await client.emit("noted", 3)
            with pytest.raises(zmsg.RequestTimeout):
                await client.send("echo", 4, timeout=0.3, wait_for_ready=True)
        finally:
            await client.close()
        patient = zmsg.ClientProxy(free_endpoint(), timeout=0.3, wait_for_ready=True)
        try:
            with pytest.raises(zmsg.RequestTimeout):
                await patient.send("echo", 5)
            with pytest.raises(zmsg.RequestTimeout):
                await patient.send("echo", 6)
        finally:
            await patient.close()


async def test_a_service_that_went_away_fails_fast_and_the_same_proxy_recovers(serve_process) -> None:
    endpoint = free_endpoint()
    served = serve_process("mathsvc:service", "--bind", endpoint)
    loop = asyncio.get_running_loop()
    async with zmsg.ClientProxy(endpoint, timeout=60, heartbeat=0.2) as client:
        assert await client.send("pid") == served.pid
        served.terminate(signal.SIGKILL)
        async with asyncio.timeout(30):
            while True:  # until the monitor has seen the disconnect
                try:
                    await client.send("pid", timeout=0.5, wait_for_ready=True)
                except (zmsg.RequestTimeout, zmsg.ServiceUnavailable):
                    break
            with pytest.raises(zmsg.ServiceUnavailable, match="no endpoint is up"):
                await client.send("pid")
            # A call that asks to wait is answered once the service is back on the endpoint.
            waiting = asyncio.ensure_future(client.send("pid", timeout=30, wait_for_ready=True))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            second = await loop.run_in_executor(None, lambda: serve_process("mathsvc:service", "--bind", endpoint))
            assert await waiting == second.pid
            assert await client.send("pid") == second.pid  # and calls no longer fail fast


def test_the_sync_client_fails_fast_once_it_knows() -> None:
    client = zmsg.SyncClientProxy(free_endpoint(), timeout=1.0)
    try:
        # Its first call waits, unless the refused connect was already reported when it started.
        with pytest.raises((zmsg.RequestTimeout, zmsg.ServiceUnavailable)):
            client.send("echo", 1)
        with pytest.raises(zmsg.ServiceUnavailable, match="no endpoint is up"):
            client.send("echo", 2, timeout=60)
        with pytest.raises(zmsg.RequestTimeout):
            client.send("echo", 3, wait_for_ready=True)
    finally:
        client.close()
    patient = zmsg.SyncClientProxy(free_endpoint(), timeout=0.3, wait_for_ready=True)
    try:
        for _ in range(2):
            with pytest.raises(zmsg.RequestTimeout):
                patient.send("echo", 1)
    finally:
        patient.close()
