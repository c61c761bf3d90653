"""Faults injected into real service processes: deadlines, cancellation, retries, dead peers,
restarts, bounded resources, backpressure and loss detection."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import struct
from pathlib import Path

import pytest

import zmsg
from tests.conftest import free_port
from zmsg.testing import FaultyLink

pytestmark = pytest.mark.anyio


async def _eventually(probe, predicate, timeout: float = 20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = await probe()
        except zmsg.ServiceUnavailable:  # fails fast while the service is known down: ask again
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        if predicate(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_a_request_whose_deadline_passed_is_not_started(serve_process) -> None:
    limited = serve_process("limitedsvc:service")
    async with zmsg.ClientProxy(limited.endpoint) as client:
        busy = asyncio.ensure_future(client.send("hold", 1.0))
        await asyncio.sleep(0.1)
        with pytest.raises(zmsg.RequestTimeout):
            await client.send("hold", 0.01, timeout=0.3)  # waits behind max_concurrency=1
        assert await busy == 1.0
        await asyncio.sleep(0.1)
        assert (await client.send("started"))["started"] == [1.0]  # the late one never ran
        info = await client.send("$zmsg.info")
        assert info["stats"]["deadline_expired"] + info["stats"]["cancelled"] == 1


async def test_a_timeout_cancels_the_handler_at_the_service(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        with pytest.raises(zmsg.RequestTimeout):
            await client.send("sleep_tracked", 5.0, timeout=0.3)
        assert await _eventually(lambda: client.send("cancelled"), lambda v: v == [5.0]) == [5.0]


async def test_cancelling_the_caller_cancels_the_handler(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint) as client:
        task = asyncio.ensure_future(client.send("sleep_tracked", 6.0))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _eventually(lambda: client.send("cancelled"), lambda v: 6.0 in v) == [6.0]
        assert client.in_flight == 0


async def test_idempotent_calls_are_retried_and_others_never(serve_process) -> None:
    limited = serve_process("limitedsvc:service")
    async with zmsg.ClientProxy(limited.endpoint, retries=3, retry_backoff=0.01) as client:
        # flaky_once hangs on the first attempt; the retry (a new request) answers.
        assert await client.send("flaky_once", "a", timeout=0.5, idempotent=True) == 2
        assert client.stats.retries == 1
        # Not declared idempotent: the proxy-wide retries do not apply; one attempt only.
        with pytest.raises(zmsg.RequestTimeout):
            await client.send("flaky_once", "b", timeout=0.5)
        assert client.stats.retries == 1
        assert await client.send("attempts", "b") == 1
        with pytest.raises(ValueError, match="idempotent"):
            client.send("flaky_once", "c", retries=2)


async def test_in_flight_requests_fail_fast_when_the_service_dies_and_the_proxy_recovers(serve_process) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = serve_process("mathsvc:service", "--bind", endpoint)
    async with zmsg.ClientProxy(endpoint, timeout=60, emit_timeout=30) as client:
        assert await client.send("pid") == first.pid
        pending = asyncio.ensure_future(client.send("sleep", 30))
        await asyncio.sleep(0.3)
        first.terminate(signal.SIGKILL)
        with pytest.raises(zmsg.ServiceUnavailable, match="lost"):
            await asyncio.wait_for(pending, 10)  # promptly, not after the 60 s timeout
        second = serve_process("mathsvc:service", "--bind", endpoint)
        assert await _eventually(lambda: client.send("pid"), lambda pid: pid == second.pid) == second.pid
        # Events follow the restarted service to its new event endpoint.
        for _ in range(10):
            await client.emit("user_created", {"user_id": "u", "email": "e"})
        assert await _eventually(lambda: client.send("events_seen", "user_created"), lambda n: n == 10) == 10


async def test_heartbeats_detect_a_peer_that_vanished_without_closing(math_service) -> None:
    # A frozen link: the connection stays open but nothing crosses it, as when a host vanishes.
    async with FaultyLink(math_service.endpoint) as link, \
            zmsg.ClientProxy(link.endpoint, timeout=60, heartbeat=0.2) as client:
        assert await client.send({"cmd": "sum"}, [1]) == 1
        pending = asyncio.ensure_future(client.send("sleep", 1))
        link.freeze()
        with pytest.raises(zmsg.ServiceUnavailable):
            await asyncio.wait_for(pending, 15)  # the heartbeat, not the 60 s timeout
        assert client.stats.disconnects >= 1
        link.heal()
        assert await _eventually(lambda: client.send({"cmd": "sum"}, [2]), lambda v: v == 2) == 2


async def test_max_in_flight_makes_callers_wait_not_fail(math_service) -> None:
    async with zmsg.ClientProxy(math_service.endpoint, max_in_flight=4) as client:
        peak = 0

        async def call(i: int) -> int:
            nonlocal peak
            result = await client.send("echo", i)
            return result

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, client.in_flight)
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        results = await asyncio.gather(*(call(i) for i in range(300)))
        watcher.cancel()
        assert results == list(range(300))
        assert 1 <= peak <= 4


async def test_callers_waiting_for_a_slot_are_served_in_turn(math_service) -> None:
    # With one slot, the caller whose reply just came in runs before the one woken for the freed
    # slot: unless the slot is kept for the woken caller, the first takes it again and again.
    async with zmsg.ClientProxy(math_service.endpoint, max_in_flight=1) as client:
        order: list[str] = []

        async def caller(name: str) -> None:
            for i in range(40):
                assert await client.send("echo", i) == i
                order.append(name)

        await asyncio.gather(caller("a"), caller("b"), caller("c"))
    longest = max(len(list(run)) for _, run in itertools.groupby(order))
    assert sorted(order) == ["a"] * 40 + ["b"] * 40 + ["c"] * 40
    assert longest <= 2, "".join(order)


async def test_max_concurrency_bounds_handlers_at_the_service(serve_process) -> None:
    limited = serve_process("limitedsvc:service")
    async with zmsg.ClientProxy(limited.endpoint) as client:
        assert await asyncio.gather(*(client.send("hold", 0.05) for _ in range(10))) == [0.05] * 10
        assert (await client.send("started"))["peak"] == 1


async def test_oversize_messages_get_a_clear_error_before_sending(serve_process) -> None:
    limited = serve_process("limitedsvc:service")  # max_message_size = 1 MiB
    async with zmsg.ClientProxy(limited.endpoint) as client:
        assert await client.send("size", b"x" * 1000) == 1000
        with pytest.raises(zmsg.MessageTooLarge, match="max_message_size=1048576"):
            await client.send("size", b"x" * (2 * 1024 * 1024))
        assert await client.send("size", b"x" * (512 * 1024)) == 512 * 1024
    local = zmsg.ClientProxy(limited.endpoint, max_message_size=100)
    try:
        with pytest.raises(zmsg.MessageTooLarge):
            await local.send("size", b"x" * 200)
        with pytest.raises(zmsg.MessageTooLarge):
            await local.emit("tick", b"x" * 200)
    finally:
        await local.close()


async def test_slow_subscriber_makes_emit_wait_and_nothing_is_lost(serve_process) -> None:
    limited = serve_process("limitedsvc:service")  # its tick handler takes ~0.2 ms per event
    async with zmsg.ClientProxy(limited.endpoint, event_hwm=2, emit_timeout=60) as client:
        # 60 MB of events: more than loopback's socket buffers can hide from the emitter.
        blob = b"x" * 20_000
        for _ in range(3000):
            await client.emit("tick", blob)
        assert client.stats.emit_waits > 0, "the transport never pushed back"
        final = await _eventually(lambda: client.send("ticks"), lambda v: v["seen"] == 3000, timeout=60)
        assert final == {"seen": 3000, "missed": 0}


async def test_events_lost_to_a_vanished_subscriber_are_detected_and_counted(serve_process) -> None:
    math = serve_process("mathsvc:service")
    # wait_for_ready: emit waits through the outage (bounded by emit_timeout) instead of failing fast.
    async with zmsg.ClientProxy(math.endpoint, heartbeat=0.2, emit_timeout=30, event_hwm=50,
                                wait_for_ready=True) as client:
        emitted = 0

        async def emit_for(seconds: float) -> None:
            nonlocal emitted
            stop = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < stop:
                await client.emit("user_created", {"user_id": str(emitted), "email": "e"})
                emitted += 1

        await emit_for(0.5)
        os.kill(math.pid, signal.SIGSTOP)
        try:
            await emit_for(0.5)  # queues fill, then the heartbeat drops the silent subscriber
            await asyncio.sleep(1.5)
        finally:
            os.kill(math.pid, signal.SIGCONT)
        await emit_for(0.5)
        info = await _eventually(
            lambda: client.send("$zmsg.info"),
            lambda i: i["stats"]["events"] + i["stats"]["events_missed"] >= emitted,
        )
        seen, missed = info["stats"]["events"], info["stats"]["events_missed"]
        assert seen + missed == emitted, f"{emitted - seen - missed} events unaccounted for"
        assert seen == await client.send("events_seen", "user_created")


async def test_emit_during_an_outage_raises_instead_of_dropping(serve_process) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = serve_process("mathsvc:service", "--bind", endpoint)
    async with zmsg.ClientProxy(endpoint, emit_timeout=0.5) as client:
        await client.emit("user_created", {"user_id": "1", "email": "e"})
        first.terminate(signal.SIGKILL)
        await asyncio.sleep(0.5)
        with pytest.raises(zmsg.ServiceUnavailable, match="the event was not sent"):
            await client.emit("user_created", {"user_id": "2", "email": "e"})
        second = serve_process("mathsvc:service", "--bind", endpoint)
        async def emit_ok() -> bool:
            try:
                await client.emit("user_created", {"user_id": "3", "email": "e"})
            except zmsg.ServiceUnavailable:
                return False
            return True
        assert await _eventually(emit_ok, bool)
        async with zmsg.ClientProxy(second.endpoint) as probe:
            assert await _eventually(lambda: probe.send("events_seen", "user_created"), lambda n: n >= 1) >= 1


SOAK_DIR = Path(__file__).parents[2] / "scripts" / "soak"


async def test_a_subscriber_killed_and_restarted_mid_stream_reports_the_gap(serve_process, tmp_path: Path) -> None:
    """kill -9 of a subscriber mid-stream: the events it lost are counted, exactly, by its successor.

    The service (scripts/soak/soak_service.py) persists the last sequence it handled per emitter,
    as a consumer commits offsets, and seeds Service.restore_event_sequences with it on start.
    """
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {"SOAK_STATE": str(tmp_path / "state")}
    first = serve_process("soak_service:service", "--bind", endpoint, cwd=SOAK_DIR, env=env)
    emitted = 0
    async with zmsg.ClientProxy(endpoint, emit_timeout=30, heartbeat=0.2, wait_for_ready=True) as client:

        async def emit_for(seconds: float) -> None:
            nonlocal emitted
            stop = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < stop:
                await client.emit("tick", emitted)
                emitted += 1

        await emit_for(0.5)
        first.terminate(signal.SIGKILL)  # events in its buffers die with it
        restart = asyncio.get_running_loop().run_in_executor(
            None, lambda: serve_process("soak_service:service", "--bind", endpoint, cwd=SOAK_DIR, env=env))
        await emit_for(0.3)  # waits (bounded) while no subscriber is there: nothing is dropped silently
        await restart
        await emit_for(0.5)

    def read_state() -> tuple[int, int, int, int]:
        state = (tmp_path / "state").read_bytes()
        missed = struct.unpack_from("<QQ", state, 0)[0]
        _emitter, last, received, lost_before = struct.unpack_from("<QQQQ", state, 16)
        return missed, last, received, lost_before

    async def probe() -> tuple[int, int, int, int]:
        return read_state()

    missed, last, received, lost_before = await _eventually(probe, lambda st: st[1] == emitted, timeout=60)
    assert last == emitted, "the restarted service did not get the last events"
    assert received + missed + lost_before == emitted, (received, missed, lost_before, emitted)
    assert missed + lost_before > 0, "the kill lost nothing: the test did not exercise a gap"
