"""zmsg.testing.TestClient agrees with a real ClientProxy over TCP on the same services.

Every assertion below runs twice: against the service in memory (``TestClient``: the real codec,
validation, routing and error mapping, no sockets) and against the same module served by a real
``zmsg serve`` process over loopback TCP (``ClientProxy``). The two must agree.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import pytest

import zmsg
from zmsg.testing import SyncTestClient, TestClient

from ..conftest import SERVICES_DIR, ServedProcess

pytestmark = pytest.mark.anyio


def _load(module: str) -> ModuleType:
    """The service module, imported in this process (fresh: its own Service and state)."""
    spec = importlib.util.spec_from_file_location(f"zmsg_test_{module}", SERVICES_DIR / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


Connect = Callable[[str], Any]


@pytest.fixture(params=["memory", "tcp"])
def connect(request: pytest.FixtureRequest, serve_process: Callable[..., ServedProcess]) -> Connect:
    @asynccontextmanager
    async def factory(module: str) -> AsyncIterator[Any]:
        if request.param == "memory":
            async with TestClient(_load(module).service, timeout=5) as client:
                yield client
        else:
            served = serve_process(f"{module}:service")
            async with zmsg.ClientProxy(served.endpoint, timeout=5) as client:
                yield client

    return factory


async def _eventually(probe: Callable[[], Any], expected: Any) -> Any:
    for _ in range(200):
        value = await probe()
        if value == expected:
            return value
        await asyncio.sleep(0.05)
    return value


async def test_replies_and_errors_are_the_same(connect: Connect) -> None:
    async with connect("usersvc") as users:
        assert await users.send("get_user", {"user_id": 1}) == {"id": 1, "name": "user1"}
        with pytest.raises(zmsg.RpcException) as not_found:
            await users.send("get_user", {"user_id": 7})
        assert not_found.value.error == {"status": 404, "message": "User 7 not found"}
        with pytest.raises(zmsg.RpcException) as internal:
            await users.send("explode", None)
        assert internal.value.error == {"status": 500, "message": "Internal server error"}
        with pytest.raises(zmsg.RpcException) as invalid:
            await users.send("get_user", {"user_id": "seven"})
        assert invalid.value.status == 400 and "user_id" in invalid.value.message
        with pytest.raises(zmsg.RpcException) as unknown:
            await users.send("no_such_pattern", 1)
        assert unknown.value.status == 404 and "no_such_pattern" in unknown.value.message
        whoami = await users.send("whoami")
        assert (whoami["pattern"], whoami["service"]) == ("whoami", "users")


async def test_timeouts_are_request_timeouts_and_cancel_the_handler(connect: Connect) -> None:
    async with connect("mathsvc") as math:
        with pytest.raises(zmsg.RequestTimeout):
            await math.send("sleep_tracked", 30.0, timeout=0.2)
        assert await _eventually(lambda: math.send("cancelled"), [30.0]) == [30.0]
        assert await math.send({"cmd": "sum"}, [1, 2, 3]) == 6
        with pytest.raises(zmsg.MessageTooLarge):
            await math.send("echo", b"x" * (65 * 1024 * 1024))


async def test_events_reach_every_handler_and_failures_stay_at_the_service(connect: Connect) -> None:
    async with connect("usersvc") as users:
        await users.emit("user_created", {"user_id": "u1", "email": "a@b.c"})
        await users.emit("user_created", {"user_id": 5})  # invalid: rejected at the service, not here
        expected = {"welcomed": ["u1"], "audited": ["u1"]}
        assert await _eventually(lambda: users.send("seen"), expected) == expected


def test_sync_test_client_for_synchronous_tests() -> None:
    with SyncTestClient(_load("usersvc").service) as users:
        assert users.send("get_user", {"user_id": 2}) == {"id": 2, "name": "user2"}
        with pytest.raises(zmsg.RpcException):
            users.send("get_user", {"user_id": 7})
        users.emit("user_created", {"user_id": "u9", "email": "e"})
        # emit returned once the handlers had run: their effects are visible at once
        assert users.send("seen") == {"welcomed": ["u9"], "audited": ["u9"]}
    assert not users.service.running


async def test_emit_returns_after_the_handlers_have_finished() -> None:
    module = _load("usersvc")
    async with TestClient(module.service) as users:
        await users.emit("user_created", {"user_id": "now", "email": "e"})
        assert module.controller.audited == ["now"]  # the async handler too, right after emit


async def test_streams_are_the_same(connect: Connect) -> None:
    async with connect("streamsvc") as streams:
        assert [i async for i in streams.stream("count", 5)] == [0, 1, 2, 3, 4]
        assert [i async for i in streams.stream("count_sync", 3)] == [0, 1, 2]
        assert [i async for i in streams.stream("plain", 21)] == [42]  # a plain handler: one item
        got: list[int] = []
        with pytest.raises(zmsg.RpcException) as failed:
            async for item in streams.stream("fail_after", 2):
                got.append(item)
        assert got == [0, 1] and failed.value.error == {"status": 409, "message": "stopped after 2"}
        with pytest.raises(zmsg.RpcException) as crashed:
            async for _ in streams.stream("crash_after", 1):
                pass
        assert crashed.value.error == {"status": 500, "message": "Internal server error"}
        with pytest.raises(zmsg.RpcException) as use_stream:
            await streams.send("count", 3)
        assert use_stream.value.status == 400 and "stream()" in use_stream.value.message


async def test_leaving_a_stream_early_closes_the_generator_within_the_window(connect: Connect) -> None:
    async with connect("streamsvc") as streams:
        async for item in streams.stream("endless", "early"):
            if item == 10:
                break
        progress = await streams.send("progress", "early")
        for _ in range(200):
            if progress["finalized"] == 1:
                break
            await asyncio.sleep(0.05)
            progress = await streams.send("progress", "early")
        assert progress["finalized"] == 1
        assert progress["produced"] <= 11 + 1024 + 1  # never more than the window ahead of the consumer
        with pytest.raises(zmsg.RequestTimeout):
            async for _ in streams.stream("slow_after", {"n": 2, "name": "quiet"}, timeout=0.3):
                pass


def test_sync_test_client_streams() -> None:
    with SyncTestClient(_load("streamsvc").service) as streams:
        assert list(streams.stream("count", 4)) == [0, 1, 2, 3]
        for item in streams.stream("endless_sync", "sync-early"):
            if item == 3:
                break
        assert streams.send("progress", "sync-early")["finalized"] == 1
