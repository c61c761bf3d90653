"""Event semantics: fire-and-forget fan-out, isolated handler failures, no start-up loss."""

from __future__ import annotations

import asyncio

import pytest

import zmsg

pytestmark = pytest.mark.anyio


async def _eventually(probe, expected, timeout: float = 15.0):
    """Poll a service until it reports ``expected`` (events are asynchronous by nature)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value == expected or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_every_handler_of_the_pattern_runs_and_a_failing_one_affects_no_one(serve_process) -> None:
    users = serve_process("usersvc:service")
    async with zmsg.ClientProxy(users.endpoint) as client:
        for i in range(5):
            await client.emit("user_created", {"user_id": f"u{i}", "email": f"u{i}@example.com"})
        expected = {"welcomed": [f"u{i}" for i in range(5)], "audited": [f"u{i}" for i in range(5)]}
        assert await _eventually(lambda: client.send("seen"), expected) == expected
    users.terminate()
    log = users.output()
    assert sum(f"RuntimeError: flaky handler failed on u{i}" in log for i in range(5)) == 5  # logged, each time


async def test_emit_does_not_wait_for_handling(serve_process) -> None:
    math = serve_process("mathsvc:service")
    async with zmsg.ClientProxy(math.endpoint) as client:
        await client.send("sleep", 0.01)  # warm
        # The request channel is busy for 2 s; emitting must still complete immediately.
        busy = asyncio.ensure_future(client.send("sleep", 2.0))
        for _ in range(100):
            await client.emit("user_created", {"user_id": "x", "email": "e"})
        assert not busy.done()
        assert await busy == 2.0


async def test_instances_of_one_service_handle_each_event_once_unless_broadcast(serve_process) -> None:
    a, b = serve_process("mathsvc:service"), serve_process("mathsvc:service")
    async with zmsg.ClientProxy([a.endpoint, b.endpoint]) as fanout:
        for n in range(50):
            await fanout.emit("user_created", {"user_id": "u", "email": "e"})
            await fanout.emit("config_changed", n)  # a broadcast handler: every instance runs it
    async with zmsg.ClientProxy(a.endpoint) as one_a, zmsg.ClientProxy(b.endpoint) as one_b:
        for one in (one_a, one_b):
            assert await _eventually(lambda one=one: one.send("events_seen", "config_changed"), 50) == 50
            assert (await one.send("$zmsg.info"))["stats"]["events_missed"] == 0

        async def handled_once() -> int:
            return await one_a.send("events_seen", "user_created") + await one_b.send("events_seen", "user_created")

        assert await _eventually(handled_once, 50) == 50  # each event once, in all
        assert await one_a.send("events_seen", "user_created") > 0  # spread over both
        assert await one_b.send("events_seen", "user_created") > 0


async def test_one_proxy_is_one_service(serve_process) -> None:
    math, users = serve_process("mathsvc:service"), serve_process("usersvc:service")
    with pytest.raises(zmsg.ProtocolError, match="different services"):
        async with zmsg.ClientProxy([math.endpoint, users.endpoint]):
            pass


async def test_no_events_lost_right_after_connect(serve_process) -> None:
    """The slow-joiner problem: events emitted as soon as connect() returns must all arrive."""
    for round_ in range(3):
        math = serve_process("mathsvc:service")
        client = zmsg.ClientProxy(math.endpoint)
        await client.connect()
        for i in range(2000):
            await client.emit("user_created", {"user_id": str(i), "email": "e"})
        await client.close()
        async with zmsg.ClientProxy(math.endpoint) as probe:
            seen = await _eventually(lambda: probe.send("events_seen", "user_created"), 2000)
        assert seen == 2000, f"round {round_}: {2000 - seen} events lost"


async def test_emit_validates_its_arguments_before_sending(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        with pytest.raises(TypeError, match="pattern"):
            await client.emit(42, {})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="cannot encode"):
            await client.emit("user_created", object())


async def test_an_event_with_a_bad_payload_is_rejected_by_the_handler_only(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        await client.emit("user_created", {"user_id": 1})  # wrong type, missing field
        await client.emit("user_created", {"user_id": "ok", "email": "e"})
        assert await _eventually(lambda: client.send("events_seen", "user_created"), 1) == 1
        assert await client.send({"cmd": "sum"}, [1, 1]) == 2


async def test_connect_fails_clearly_when_nobody_answers() -> None:
    client = zmsg.ClientProxy("tcp://127.0.0.1:9", connect_timeout=0.3)
    try:
        with pytest.raises(zmsg.ServiceUnavailable, match="no zmsg service answered"):
            await client.connect()
    finally:
        await client.close()


async def test_events_with_large_bodies_reach_typed_handlers(math_service) -> None:
    """An event body past the external threshold arrives as a ZeroMQ buffer (no copy) and
    still decodes into the handler's Struct; small events in the same batch are unaffected."""
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        before = await client.send("events_seen", "user_created")
        for i in range(40):
            email = "e" * (100_000 if i % 4 == 0 else 10)
            await client.emit("user_created", {"user_id": str(i), "email": email})
        assert await _eventually(lambda: client.send("events_seen", "user_created"), before + 40) == before + 40
