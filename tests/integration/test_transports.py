"""ClientProxy behaves the same whichever transport does its request I/O.

The rest of the suite runs on the default (``transport="auto"``: the loop's own ZMTP for NULL
tcp:// endpoints); these run the behaviours users rely on over both ``asyncio`` and ``libzmq``,
against real ``zmsg serve`` processes: values of every size, errors, streams, a killed service
failing calls at once, and the same proxy working again when it is back.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path

import pytest

import zmsg
from tests.conftest import free_endpoint
from zmsg.transport.security import generate_keypair
from zmsg.transport.zmtp_dealer import ZmtpDealer

pytestmark = pytest.mark.anyio

TRANSPORTS = ["asyncio", "libzmq"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_values_errors_and_streams(serve_process, transport: str) -> None:
    served = serve_process("mathsvc:service")
    async with zmsg.ClientProxy(served.endpoint, timeout=30, transport=transport) as client:
        assert isinstance(client._peers[0].channel, ZmtpDealer) == (transport == "asyncio")
        assert await client.send({"cmd": "sum"}, [2, 3]) == 5
        for size in (0, 100, 40_000, 1_500_000):  # inline, external (>= 32 KiB) and large bodies
            text = "x" * size
            assert await client.send("echo", text) == text
            assert await client.send("blob", size) == b"x" * size
        assert await asyncio.gather(*(client.send({"cmd": "sum"}, [i, i]) for i in range(3000))) == [
            2 * i for i in range(3000)]
        with pytest.raises(zmsg.RpcException, match="No message handler"):
            await client.send("no such pattern")
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("sleep", "not a number")
        assert info.value.status == 400
    streams = serve_process("streamsvc:service")
    async with zmsg.ClientProxy(streams.endpoint, timeout=30, transport=transport) as client:
        assert [item async for item in client.stream("count", 5000)] == list(range(5000))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_killed_service_fails_calls_at_once_and_the_proxy_recovers(serve_process, transport: str) -> None:
    endpoint = free_endpoint()
    served = serve_process("mathsvc:service", "--bind", endpoint)
    async with zmsg.ClientProxy(endpoint, timeout=60, heartbeat=0.2, transport=transport) as client:
        assert await client.send("pid") == served.pid
        in_flight = asyncio.ensure_future(client.send("sleep", 30))
        await asyncio.sleep(0.2)
        served.terminate(signal.SIGKILL)
        async with asyncio.timeout(20):  # far below the 60 s timeout: nothing waited it out
            with pytest.raises(zmsg.ServiceUnavailable):
                await in_flight
            with pytest.raises(zmsg.ServiceUnavailable, match="no endpoint is up"):
                await client.send("pid")
        again = serve_process("mathsvc:service", "--bind", endpoint)
        async with asyncio.timeout(30):
            assert await client.send("pid", wait_for_ready=True) == again.pid


async def test_ipc_endpoints_work_over_the_loops_own_zmtp(serve_process) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{Path(tmp) / 'math.sock'}"
        serve_process("mathsvc:service", "--bind", endpoint)
        async with zmsg.ClientProxy(endpoint, timeout=30, transport="asyncio") as client:
            assert await client.send({"cmd": "sum"}, [20, 22]) == 42


def test_transport_choices_are_checked() -> None:
    with pytest.raises(ValueError, match="transport"):
        zmsg.ClientProxy("tcp://127.0.0.1:1", transport="carrier-pigeon")
    with pytest.raises(ValueError, match="inproc"):
        zmsg.ClientProxy("inproc://x", transport="asyncio")
    keys = generate_keypair()
    with pytest.raises(ValueError, match="CURVE"):
        zmsg.ClientProxy("tcp://127.0.0.1:1", transport="asyncio", security=zmsg.CurveClient.create(keys, keys.public))
    # auto: CURVE keeps libzmq (the loop's ZMTP speaks NULL only)
    assert not zmsg.ClientProxy("tcp://127.0.0.1:1", security=zmsg.CurveClient.create(keys, keys.public))._loop_does_io(
        "tcp://127.0.0.1:1")
