"""Built-in patterns every service answers, a Service hosted inside an app's loop, the registry."""

from __future__ import annotations

import asyncio

import pytest

import zmsg
from zmsg.config import Config

pytestmark = pytest.mark.anyio


def _service() -> tuple[zmsg.Service, asyncio.Event]:
    """A service whose "wait" requests stay in flight until the returned event is set."""
    service = zmsg.Service("hosted", version="2.1.0")
    release = asyncio.Event()

    @service.message_pattern("wait")
    async def wait() -> str:
        await release.wait()
        return "released"

    @service.message_pattern("release")
    def do_release() -> None:
        release.set()

    @service.event_pattern("noted")
    def noted(x: int) -> None:
        pass

    return service, release


async def test_health_and_info_of_a_service_started_in_this_loop() -> None:
    service, _release = _service()
    endpoint = await service.start("tcp://127.0.0.1:0")
    try:
        async with zmsg.ClientProxy(endpoint, timeout=10) as client:
            assert await client.send("$zmsg.health") == {"status": "serving", "service": "hosted"}
            info = await client.send("$zmsg.info")
            assert info["service"] == "hosted" and info["version"] == "2.1.0"
            assert info["zmsg"] == zmsg.__version__ and info["protocol"] == 1
            assert info["message_patterns"] == ["release", "wait"]
            assert info["event_patterns"] == ["noted"]
            assert info["status"] == "serving" and info["in_flight"] == 0
            assert set(info["stats"]) == set(service.stats.as_dict())
    finally:
        await service.stop()


async def test_health_says_draining_while_in_flight_work_finishes() -> None:
    service, release = _service()
    endpoint = await service.start("tcp://127.0.0.1:0")
    async with zmsg.ClientProxy(endpoint, timeout=10) as client:
        waiting = asyncio.ensure_future(client.send("wait"))
        while (await client.send("$zmsg.info"))["in_flight"] == 0:
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(service.stop(grace=30))
        while (await client.send("$zmsg.health"))["status"] != "draining":
            await asyncio.sleep(0.01)
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("release")  # new work is refused while draining...
        assert info.value.status == 503
        assert not waiting.done()
        release.set()  # ...but the request already in flight finishes and is answered
        assert await waiting == "released"
        await stopping


async def test_registry_hands_out_async_clients_by_name() -> None:
    service, _release = _service()
    endpoint = await service.start("tcp://127.0.0.1:0")
    try:
        registry = zmsg.ClientRegistry(Config(environ={"ZMSG_CLIENTS_HOSTED_ENDPOINTS": endpoint}))
        async with registry:
            await registry.connect()
            client = registry.get("hosted")
            assert client is registry.get("HOSTED")
            assert client.service_name == "hosted"
            assert (await client.send("$zmsg.health"))["status"] == "serving"
            sync = registry.get_sync("hosted")
            health = await asyncio.to_thread(sync.send, "$zmsg.health")  # a blocking client, off the loop
            assert health == {"status": "serving", "service": "hosted"}
        assert registry.get("hosted") is not client  # closing cleared the cache: usable again
        await registry.aclose()
    finally:
        await service.stop()
