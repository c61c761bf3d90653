"""Starting, stopping and binding a Service on real sockets."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import zmq

import zmsg
from zmsg.protocol import KIND_REQUEST, BatchBuilder

pytestmark = pytest.mark.anyio


def _service() -> zmsg.Service:
    service = zmsg.Service("life")

    @service.message_pattern("slow")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    return service


async def test_port_zero_reports_the_port_actually_bound() -> None:
    service = _service()
    endpoint = await service.start("tcp://127.0.0.1:0")
    try:
        assert endpoint == service.endpoint and not endpoint.endswith(":0")
        async with zmsg.ClientProxy(service.endpoint) as client:
            assert await client.send("slow", 0) == "done"
    finally:
        await service.stop()


async def test_wildcard_bind_reports_a_connectable_address() -> None:
    service = _service()
    service.insecure = True  # a wildcard is reachable from other hosts: refused without CURVE
    await service.start("tcp://0.0.0.0:0")
    try:
        assert service.endpoint.startswith("tcp://127.0.0.1:")
        async with zmsg.ClientProxy(service.endpoint) as client:
            assert await client.send("slow", 0) == "done"
    finally:
        await service.stop()


async def test_binding_an_endpoint_in_use_is_a_clear_error() -> None:
    first, second = _service(), _service()
    endpoint = await first.start("tcp://127.0.0.1:0")
    try:
        with pytest.raises(zmsg.EndpointError, match="address already in use"):
            await second.start(endpoint)
        assert not second.running
    finally:
        await first.stop()


async def test_stop_finishes_in_flight_requests_and_refuses_new_ones() -> None:
    service = _service()
    endpoint = await service.start("tcp://127.0.0.1:0")
    async with zmsg.ClientProxy(endpoint) as client:
        in_flight = [asyncio.ensure_future(client.send("slow", 0.5)) for _ in range(20)]
        await asyncio.sleep(0.2)
        stopping = asyncio.ensure_future(service.stop(grace=5))
        await asyncio.sleep(0.05)
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("slow", 0)
        assert info.value.error["status"] == 503
        assert await asyncio.gather(*in_flight) == ["done"] * 20
        await stopping


async def test_handlers_cannot_be_added_to_a_running_service() -> None:
    service = _service()
    await service.start()
    try:
        with pytest.raises(RuntimeError, match="before the service starts"):
            service.message_pattern("late")(lambda: None)
    finally:
        await service.stop()


async def test_both_framing_twins_serve_the_same_protocol(serve_process) -> None:
    """A service on the pure-Python twin and one on the compiled module talk to the same client."""
    pure = serve_process("mathsvc:service", env={"ZMSG_NO_EXTENSIONS": "1"})
    compiled = serve_process("mathsvc:service")
    for served, implementation in ((pure, "python"), (compiled, "cython")):
        async with zmsg.ClientProxy(served.endpoint) as client:
            assert (await client.send("$zmsg.info"))["framing"] == implementation
            assert await client.send({"cmd": "sum"}, list(range(100))) == 4950
            big = b"z" * 100_000  # an external-body frame
            assert await client.send("echo", big) == big
            await client.emit("user_created", {"user_id": "u", "email": "e"})
            assert await client.send("events_seen", "user_created") in (0, 1)


async def test_a_client_that_stops_reading_does_not_delay_the_others() -> None:
    """Replies for a peer whose pipe is full wait in that peer's backlog, not in everyone's way."""
    service = zmsg.Service("fair", reply_hwm=1)

    @service.message_pattern("echo")
    def echo(data: bytes) -> bytes:
        return data

    endpoint = await service.start("tcp://127.0.0.1:0")
    stalled = zmq.Context.instance().socket(zmq.DEALER)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.connect(endpoint)
    try:
        blob = msgspec.msgpack.encode(b"x" * 65536)
        for cid in range(1, 301):  # 20 MB of replies it will never read
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, 0, cid, 0, b"echo", blob)
            stalled.send_multipart(batch.take())
        router = service._router
        assert router is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while router.backlogged + router.queued == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert router.backlogged + router.queued > 0, "the stalled client's pipe never filled"
        # Shorter than the heartbeat timeout (3 s) that would eventually drop the stalled peer.
        async with zmsg.ClientProxy(endpoint, timeout=2.5) as client:
            assert await asyncio.gather(*(client.send("echo", b"ok") for _ in range(100))) == [b"ok"] * 100
    finally:
        stalled.close(linger=0)
        await service.stop()
