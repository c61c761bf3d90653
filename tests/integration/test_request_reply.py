"""Request-reply semantics over real sockets, against services in their own processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket

import pytest

import zmsg
from zmsg.protocol import EXTERNAL_BODY_THRESHOLD

pytestmark = pytest.mark.anyio


async def test_send_returns_handler_result_sync_and_async(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint, timeout=10) as client:
        assert await client.send({"cmd": "sum"}, [1, 2, 3]) == 6  # sync handler
        assert await client.send("echo", {"a": [1, "x"]}) == {"a": [1, "x"]}  # async handler


async def test_send_is_cold_until_awaited(serve_process) -> None:
    users = serve_process("usersvc:service")
    client = zmsg.ClientProxy(users.endpoint)
    try:
        pending = client.send("get_user", {"user_id": 1})
        await asyncio.sleep(0.3)
        assert client.in_flight == 0
        assert await client.send("calls") == 0, "an un-awaited send reached the service"
        assert await pending == {"id": 1, "name": "user1"}
        assert await client.send("calls") == 1
    finally:
        await client.close()


async def test_thousands_of_concurrent_sends_each_get_their_own_reply(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint, timeout=30) as client:
        payloads = [[random.randrange(1000) for _ in range(5)] for _ in range(5000)]
        results = await asyncio.gather(*(client.send({"cmd": "sum"}, p) for p in payloads))
        assert results == [sum(p) for p in payloads]
        echoes = await asyncio.gather(*(client.send("echo", i) for i in range(3000)))
        assert echoes == list(range(3000))
        assert client.in_flight == 0


async def test_rpc_exception_reaches_the_caller_with_the_same_error(serve_process) -> None:
    users = serve_process("usersvc:service")
    async with zmsg.ClientProxy(users.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("get_user", {"user_id": 7})
        assert info.value.error == {"status": 404, "message": "User 7 not found"}
        assert info.value.status == 404


async def test_other_exceptions_are_a_generic_500_and_logged_by_the_service(serve_process) -> None:
    users = serve_process("usersvc:service")
    async with zmsg.ClientProxy(users.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("explode", 1)
        assert info.value.error == {"status": 500, "message": "Internal server error"}
        assert "secret-internal-detail" not in repr(info.value.error)
    assert users.terminate() == 0
    log = users.output()
    assert "Traceback" in log and "KeyError: 'secret-internal-detail'" in log


async def test_unknown_pattern_fails_at_once_not_by_timeout(math_service) -> None:
    # With a 60 s timeout, a timeout-based failure would blow the test's own time limit.
    async with zmsg.ClientProxy(math_service.endpoint, timeout=60) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("no_such_pattern", 1)
        assert info.value.error["status"] == 404
        assert "no_such_pattern" in info.value.error["message"]


async def test_mismatched_payload_is_a_400_naming_the_field_and_the_handler_never_runs(serve_process) -> None:
    users = serve_process("usersvc:service")
    async with zmsg.ClientProxy(users.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("get_user", {"user_id": "seven"})
        assert info.value.error["status"] == 400
        assert "user_id" in info.value.error["message"]
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("get_user", ["not", "a", "struct"])
        assert info.value.error["status"] == 400
        assert await client.send("calls") == 0


async def test_builtin_types_are_validated_too(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send({"cmd": "sum"}, [1, "two", 3])
        assert info.value.error["status"] == 400 and "$[1]" in info.value.error["message"]


async def test_timeout_raises_and_the_late_reply_is_dropped_and_counted(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint, timeout=10) as client:
        with pytest.raises(zmsg.RequestTimeout) as info:
            await client.send("sleep_sync", 0.6, timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        # A sync handler cannot be cancelled: its late reply arrives while the next request is
        # in flight, and must be dropped, not taken as that request's answer.
        assert await client.send("echo", "mine") == "mine"
        assert client.late_replies == 1
        assert client.stats.timeouts == 1


async def test_default_timeout_is_finite() -> None:
    assert 0 < zmsg.DEFAULT_TIMEOUT < float("inf")
    client = zmsg.ClientProxy("tcp://127.0.0.1:9")  # nothing listens on the discard port
    try:
        with pytest.raises(zmsg.RequestTimeout):
            await client.send("anything", timeout=0.2, wait_for_ready=True)  # else it fails fast
    finally:
        await client.close()


async def test_context_is_injected_when_declared(serve_process) -> None:
    users = serve_process("usersvc:service")
    async with zmsg.ClientProxy(users.endpoint) as client:
        info = await client.send("whoami")
        assert info["pattern"] == "whoami" and info["service"] == "users"
        assert info["cid"] > 0 and len(info["peer"]) > 0


async def test_requests_are_spread_over_several_endpoints(serve_process) -> None:
    a, b = serve_process("mathsvc:service"), serve_process("mathsvc:service")
    async with zmsg.ClientProxy([a.endpoint, b.endpoint]) as client:
        pids = set(await asyncio.gather(*(client.send("pid") for _ in range(200))))
        assert pids == {a.pid, b.pid}


async def test_connecting_is_lazy_on_first_send(math_service) -> None:
    client = zmsg.ClientProxy(math_service.endpoint)
    try:
        assert await client.send({"cmd": "sum"}, [2, 2]) == 4
    finally:
        await client.close()
    with pytest.raises(zmsg.ServiceUnavailable):
        await client.send({"cmd": "sum"}, [1])


async def test_requests_in_flight_fail_clearly_when_the_client_closes(math_service) -> None:
    client = zmsg.ClientProxy(math_service.endpoint)
    task = asyncio.ensure_future(client.send("sleep", 5))
    await asyncio.sleep(0.2)
    await client.close()
    with pytest.raises(zmsg.ServiceUnavailable):
        await task


async def test_an_endpoint_that_is_down_is_routed_around(math_service) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    async with asyncio.timeout(60):
        client = zmsg.ClientProxy([dead, math_service.endpoint], timeout=5)
        try:
            for _ in range(2):  # open the sockets; what the monitor learns routes the rest
                with contextlib.suppress(zmsg.RequestTimeout):
                    await client.send("pid", timeout=0.5)
            await asyncio.sleep(0.3)
            pids = await asyncio.gather(*(client.send("pid") for _ in range(100)))
            assert set(pids) == {math_service.pid}
        finally:
            await client.close()


async def test_large_bodies_received_without_a_copy_decode_like_small_ones(math_service) -> None:
    """Bodies past the external threshold arrive as ZeroMQ buffers on both sides (no copy);
    mixed with small ones in the same batches they still decode to the same values."""
    edge = EXTERNAL_BODY_THRESHOLD
    sizes = [10, 16 * 1024, 100, edge - 8, edge, 64 * 1024 + 3, 1024 * 1024, 0, 200_000]
    payloads = [bytes(range(256)) * (n // 256) + b"z" * (n % 256) for n in sizes]
    async with zmsg.ClientProxy(math_service.endpoint, timeout=30) as client:
        for _ in range(3):
            assert await asyncio.gather(*(client.send("echo", p) for p in payloads)) == payloads
        texts = ["é" * (n // 2) for n in sizes]
        assert [await client.send("echo", t) for t in texts] == texts
        assert await client.send({"cmd": "sum"}, list(range(20_000))) == sum(range(20_000))
